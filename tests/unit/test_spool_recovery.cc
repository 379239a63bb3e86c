// Tests for daemon/spool/recovery: commit then recover, stale tmp removal, quarantine of
// truncated / flipped / unknown-version / mis-named files with reasons, skipped symlinks and
// odd names, journal application (partial and complete messages), journal compaction,
// torn journal tail, MID continuity, and verify_content=false deferring to load_content.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "daemon/spool/recovery.h"
#include "tests/support/temp_dir.h"

using namespace esad::spool;
namespace fs = std::filesystem;

namespace {

struct TempDir : esad::test::TempDir {
    explicit TempDir(Layout l) : esad::test::TempDir("spool_recovery"), layout(l) {}
    // Where `as` (default: this test's layout) puts a message file.
    std::string queue(Mid mid) const { return queue(mid, layout); }
    std::string queue(Mid mid, Layout as) const {
        std::string p = path + "/spool/queue/";
        if (as == Layout::kHashed) p += mid_name(mid).substr(14) + "/";
        return p + mid_name(mid);
    }
    Layout layout;
};

Layout any_layout() {
    return GENERATE(Layout::kFlat, Layout::kHashed);
}

Message make_message(Mid mid, std::uint32_t rcpts = 3) {
    Message m;
    m.envelope.mid = mid;
    m.envelope.sender = "s@src.test";
    m.envelope.client_helo = "client.test";
    for (std::uint32_t r = 0; r < rcpts; ++r) {
        m.envelope.recipients.push_back(
            {r, "u" + std::to_string(r) + "@d" + std::to_string(r % 2) + ".test",
             "d" + std::to_string(r % 2) + ".test"});
    }
    m.content = "Subject: " + std::to_string(mid) + "\r\n\r\n" + std::string(3000, 'q');
    return m;
}

Spool open_as(const std::string& dir, Layout layout, RecoveryReport& report,
              RecoveryOptions ropts = {}) {
    SpoolOptions opts;
    opts.store.state_dir = dir;
    opts.store.layout = layout;
    opts.recovery = ropts;
    opts.mid_block = 100;
    Spool spool;
    const IoStatus st = open_spool(opts, spool, report);
    INFO(st.reason());
    REQUIRE(st.ok());
    return spool;
}

Spool open_ok(const TempDir& dir, RecoveryReport& report, RecoveryOptions ropts = {}) {
    return open_as(dir.path, dir.layout, report, ropts);
}

void commit(Spool& spool, std::vector<Mid> mids) {
    std::vector<PendingMessage> batch(mids.size());
    for (std::size_t i = 0; i < mids.size(); ++i)
        batch[i].message = make_message(mids[i]);
    spool.store->commit_batch(batch);
    for (const auto& pm : batch)
        REQUIRE(pm.result.ok());
}

std::vector<Mid> commit_new(Spool& spool, int n) {
    std::vector<Mid> mids;
    for (int i = 0; i < n; ++i) {
        Mid m = 0;
        REQUIRE(spool.mids->next(m).ok());
        mids.push_back(m);
    }
    commit(spool, mids);
    return mids;
}

// Journal records that make every recipient of make_message(mid) final.
std::vector<JournalRecord> all_delivered(Mid mid) {
    std::vector<JournalRecord> done;
    for (std::uint32_t rid = 0; rid < 3; ++rid)
        done.push_back({mid, rid, RcptState::kDelivered, BounceKind::kNone});
    return done;
}

std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

void spit(const std::string& path, const std::string& bytes) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << bytes;
}

const QuarantinedFile* find_quarantined(const RecoveryReport& r, Mid mid) {
    for (const auto& q : r.quarantined) {
        if (q.name.ends_with(mid_name(mid))) return &q;
    }
    return nullptr;
}

}  // namespace

TEST_CASE("committed messages come back after a restart", "[spool][recovery]") {
    TempDir dir(any_layout());
    INFO("layout " << to_string(dir.layout));
    std::vector<Mid> mids;
    {
        RecoveryReport report;
        Spool spool = open_ok(dir, report);
        CHECK(report.messages.empty());
        mids = commit_new(spool, 5);
        spit(dir.path + "/spool/tmp/" + mid_name(999) + ".tmp", "half written");
        spit(dir.path + "/spool/tmp/.probe", "p");
    }
    RecoveryReport report;
    Spool spool = open_ok(dir, report);
    CHECK(report.stale_tmp_removed == 2);
    CHECK(fs::is_empty(dir.path + "/spool/tmp"));
    REQUIRE(report.messages.size() == 5);
    for (std::size_t i = 0; i < mids.size(); ++i) {
        const RecoveredMessage& m = report.messages[i];
        CHECK(m.envelope == make_message(mids[i]).envelope);
        CHECK(m.total_recipients == 3);
        CHECK(m.file_size > 3000);
    }
    CHECK(report.live_recipients == 15);
    CHECK(report.quarantined.empty());
    CHECK(report.skipped.empty());
    // Content stays on disk until asked for.
    const LoadResult lr = spool.store->load_content(mids[2]);
    REQUIRE(lr.status == LoadStatus::kOk);
    CHECK(lr.message == make_message(mids[2]));
    // New MIDs are above everything recovered (the stale tmp MID included nothing).
    Mid next = 0;
    REQUIRE(spool.mids->next(next).ok());
    CHECK(next > mids.back());
}

TEST_CASE("damaged queue files are quarantined with a reason", "[spool][recovery]") {
    TempDir dir(any_layout());
    INFO("layout " << to_string(dir.layout));
    {
        RecoveryReport report;
        Spool spool = open_ok(dir, report);
        commit(spool, {10, 11, 12, 13, 14, 15});
    }
    // 10: truncated; 11: flipped content byte; 12: future version; 13: flipped envelope;
    // 14: copied under another MID's name (15 stays intact); plus odd entries.
    const std::string f10 = slurp(dir.queue(10));
    spit(dir.queue(10), f10.substr(0, f10.size() / 2));
    std::string f11 = slurp(dir.queue(11));
    f11[f11.size() - 100] ^= 0x01;
    spit(dir.queue(11), f11);
    std::string f12 = slurp(dir.queue(12));
    f12[8] = 2;
    spit(dir.queue(12), f12);
    std::string f13 = slurp(dir.queue(13));
    f13[40] ^= 0x20;
    spit(dir.queue(13), f13);
    fs::remove(dir.queue(14));
    fs::copy_file(dir.queue(15), dir.queue(14));
    fs::create_symlink("/etc/passwd", dir.queue(16));
    spit(dir.path + "/spool/queue/not-a-mid", "x");
    spit(dir.path + "/spool/corrupt/" + mid_name(500), "old quarantine");

    RecoveryReport report;
    Spool spool = open_ok(dir, report);
    REQUIRE(report.messages.size() == 1);
    CHECK(report.messages[0].envelope.mid == 15);
    REQUIRE(report.quarantined.size() == 5);
    CHECK(find_quarantined(report, 10)->status == DecodeStatus::kTruncated);
    CHECK(find_quarantined(report, 11)->status == DecodeStatus::kBadChecksum);
    CHECK(find_quarantined(report, 12)->status == DecodeStatus::kUnknownVersion);
    CHECK(find_quarantined(report, 13)->status == DecodeStatus::kBadChecksum);
    CHECK(find_quarantined(report, 14)->reason.find("does not match") != std::string::npos);
    for (const auto& q : report.quarantined) {
        CHECK(!q.reason.empty());
        CHECK(q.name.ends_with(q.moved_to));
        CHECK(fs::exists(dir.path + "/spool/corrupt/" + q.moved_to));
        CHECK_FALSE(fs::exists(dir.path + "/spool/queue/" + q.name));
    }
    // Never followed, never moved: reported as skipped.
    REQUIRE(report.skipped.size() == 2);
    CHECK(fs::is_symlink(dir.queue(16)));
    CHECK(fs::exists("/etc/passwd"));
    // The old quarantined MID counts for MID allocation.
    CHECK(report.max_mid_seen == 500);
    Mid next = 0;
    REQUIRE(spool.mids->next(next).ok());
    CHECK(next > 500);
}

TEST_CASE("a file cut at any offset is quarantined as truncated", "[spool][recovery]") {
    TempDir dir(any_layout());
    INFO("layout " << to_string(dir.layout));
    RecoveryReport report;
    Spool spool = open_ok(dir, report);
    Message small = make_message(7, 2);
    small.content = "tiny body\r\n";
    const std::string full = encode(small);
    const RecoveryOptions ropts;
    for (std::size_t n = 0; n < full.size(); n += 3) {
        spit(dir.queue(7), full.substr(0, n));
        for (const auto& e : fs::directory_iterator(dir.path + "/spool/corrupt")) {
            fs::remove(e.path());
        }
        JournalScan scan;
        REQUIRE(recover(*spool.store, *spool.journal, scan, *spool.mids, ropts, report).ok());
        INFO("length " << n);
        CHECK(report.messages.empty());
        REQUIRE(report.quarantined.size() == 1);
        CHECK(report.quarantined[0].status == DecodeStatus::kTruncated);
        CHECK_FALSE(fs::exists(dir.queue(7)));
    }
}

TEST_CASE("the journal removes final recipients and finished messages", "[spool][recovery]") {
    TempDir dir(any_layout());
    INFO("layout " << to_string(dir.layout));
    std::vector<Mid> mids;
    std::string torn;
    {
        RecoveryReport report;
        Spool spool = open_ok(dir, report);
        mids = commit_new(spool, 3);
        torn = encode_journal_record({mids[2], 0, RcptState::kDelivered, BounceKind::kNone})
                   .substr(0, 15);
        const std::vector<JournalRecord> recs = {
            {mids[0], 1, RcptState::kDelivered, BounceKind::kNone},
            {mids[1], 0, RcptState::kDelivered, BounceKind::kNone},
            {mids[1], 1, RcptState::kHardBounced, BounceKind::k5xx},
            {mids[1], 2, RcptState::kDeleted, BounceKind::kNone},
        };
        REQUIRE(spool.journal->append(recs).ok());
        REQUIRE(spool.journal->sync().ok());
        // Crash before mids[1] was removed, and a torn record for mids[2] after the others
        // (in the journal's prefilled room).
        std::fstream f(dir.path + "/spool/journal",
                       std::ios::binary | std::ios::in | std::ios::out);
        f.seekp(static_cast<std::streamoff>(spool.journal->size_bytes()));
        f << torn;
    }
    RecoveryReport report;
    Spool spool = open_ok(dir, report);
    CHECK(report.journal_records == 4);
    CHECK(report.journal_ignored_bytes == torn.find_last_not_of('\0') + 1);
    CHECK(!report.journal_tail_reason.empty());
    CHECK(report.completed_removed == 1);
    CHECK_FALSE(spool.store->has_message(mids[1]));
    REQUIRE(report.messages.size() == 2);
    const Envelope& e0 = report.messages[0].envelope;
    CHECK(e0.mid == mids[0]);
    REQUIRE(e0.recipients.size() == 2);
    CHECK(e0.recipients[0].rid == 0);
    CHECK(e0.recipients[1].rid == 2);
    CHECK(report.messages[0].total_recipients == 3);
    // The torn record is lost: a possible duplicate, never a loss.
    CHECK(report.messages[1].envelope.recipients.size() == 3);
    CHECK(report.live_recipients == 5);

    // Compacted: only the record of the still-queued message remains.
    const JournalScan scan = parse_journal(slurp(dir.path + "/spool/journal"));
    REQUIRE(scan.records.size() == 1);
    CHECK(scan.records[0].mid == mids[0]);
    CHECK(scan.ignored_bytes == 0);

    SECTION("runtime: all recipients final, then remove and compact") {
        const std::vector<JournalRecord> rest = {
            {mids[0], 0, RcptState::kDelivered, BounceKind::kNone},
            {mids[0], 2, RcptState::kHardBounced, BounceKind::kFilter},
        };
        REQUIRE(spool.journal->append(rest).ok());
        REQUIRE(spool.journal->sync().ok());
        const std::uint64_t dir_syncs = spool.store->stats().dir_fsyncs;
        REQUIRE(spool.store->remove_message(mids[0]).ok());
        REQUIRE(compact_journal(*spool.store, *spool.journal).ok());
        CHECK_FALSE(fs::exists(dir.queue(mids[0])));
        CHECK(spool.store->stats().dir_fsyncs == dir_syncs + 1);
        CHECK(parse_journal(slurp(dir.path + "/spool/journal")).records.empty());
        spool = Spool{};
        RecoveryReport again;
        Spool reopened = open_ok(dir, again);
        REQUIRE(again.messages.size() == 1);
        CHECK(again.messages[0].envelope.mid == mids[2]);
    }
}

TEST_CASE("MIDs stay unique when the reservation file is lost", "[spool][recovery]") {
    TempDir dir(any_layout());
    INFO("layout " << to_string(dir.layout));
    Mid last = 0;
    {
        RecoveryReport report;
        Spool spool = open_ok(dir, report);
        REQUIRE(spool.mids->observe(123456).ok());
        last = commit_new(spool, 2).back();
    }
    fs::remove(dir.path + "/spool/mid_reservation");
    RecoveryReport report;
    Spool spool = open_ok(dir, report);
    CHECK(report.max_mid_seen == last);
    Mid next = 0;
    REQUIRE(spool.mids->next(next).ok());
    CHECK(next > last);
}

TEST_CASE("verify_content=false defers the body check to load_content", "[spool][recovery]") {
    TempDir dir(any_layout());
    INFO("layout " << to_string(dir.layout));
    {
        RecoveryReport report;
        Spool spool = open_ok(dir, report);
        commit(spool, {20});
    }
    std::string f = slurp(dir.queue(20));
    f[f.size() - 200] ^= 0x04;
    spit(dir.queue(20), f);
    RecoveryOptions fast;
    fast.verify_content = false;
    RecoveryReport report;
    Spool spool = open_ok(dir, report, fast);
    REQUIRE(report.messages.size() == 1);
    const LoadResult lr = spool.store->load_content(20);
    CHECK(lr.status == LoadStatus::kCorrupt);
    std::string moved;
    CHECK(spool.store->quarantine(20, &moved).ok());
}

TEST_CASE("recovered envelopes are compact", "[spool][recovery]") {
    // 1,000,000 recipients must fit in 1 GiB: the per-recipient cost is a Recipient (rid +
    // two strings) plus heap for longer addresses.
    CHECK(sizeof(Recipient) <= 80);
    CHECK(sizeof(RecoveredMessage) <= 256);
}

// Defect: a queue file with a second hard link was skipped at every start: neither
// delivered nor quarantined nor counted. Another name can change its content behind the
// spool, so it is quarantined like any other file the spool cannot vouch for.
TEST_CASE("a hard-linked queue file is quarantined", "[spool][recovery]") {
    TempDir dir(any_layout());
    INFO("layout " << to_string(dir.layout));
    {
        RecoveryReport report;
        Spool spool = open_ok(dir, report);
        commit(spool, {20, 21});
    }
    fs::create_hard_link(dir.queue(20), dir.path + "/elsewhere");
    RecoveryReport report;
    Spool spool = open_ok(dir, report);
    REQUIRE(report.messages.size() == 1);
    CHECK(report.messages[0].envelope.mid == 21);
    CHECK(report.skipped.empty());
    REQUIRE(report.quarantined.size() == 1);
    const QuarantinedFile& q = report.quarantined[0];
    CHECK(q.name.ends_with(mid_name(20)));
    CHECK(q.reason.find("hard-linked: 2 names") != std::string::npos);
    CHECK(fs::exists(dir.path + "/spool/corrupt/" + q.moved_to));
    CHECK_FALSE(fs::exists(dir.queue(20)));
    CHECK(fs::exists(dir.path + "/elsewhere"));  // the other name is not ours to touch
}

// An operator switches [spool] layout: what the old layout queued is recovered, delivered
// and reclaimed where it lies, a damaged file is still quarantined, and new mail goes where
// the new layout puts it.
TEST_CASE("a spool written in one layout recovers and delivers in the other", "[spool][recovery]") {
    const Layout from = GENERATE(Layout::kFlat, Layout::kHashed);
    const Layout to = from == Layout::kFlat ? Layout::kHashed : Layout::kFlat;
    INFO("from " << to_string(from));
    TempDir dir(from);
    std::vector<Mid> mids;
    {
        RecoveryReport report;
        Spool spool = open_ok(dir, report);
        mids = commit_new(spool, 4);
        // mids[1] is finished in the journal but its file was never removed.
        REQUIRE(spool.journal->append(all_delivered(mids[1])).ok());
        REQUIRE(spool.journal->sync().ok());
    }
    std::string damaged = slurp(dir.queue(mids[2]));
    damaged[damaged.size() - 100] ^= 0x01;
    spit(dir.queue(mids[2]), damaged);

    RecoveryReport report;
    Spool spool = open_as(dir.path, to, report);
    REQUIRE(report.messages.size() == 2);
    CHECK(report.messages[0].envelope.mid == mids[0]);
    CHECK(report.messages[1].envelope.mid == mids[3]);
    CHECK(report.completed_removed == 1);
    CHECK_FALSE(fs::exists(dir.queue(mids[1])));
    REQUIRE(report.quarantined.size() == 1);
    CHECK(report.quarantined[0].status == DecodeStatus::kBadChecksum);
    CHECK(fs::exists(dir.path + "/spool/corrupt/" + report.quarantined[0].moved_to));
    CHECK(report.skipped.empty());

    for (Mid mid : {mids[0], mids[3]}) {
        const LoadResult lr = spool.store->load_content(mid);
        REQUIRE(lr.status == LoadStatus::kOk);
        CHECK(lr.message == make_message(mid));
        MessageRange range;
        std::string reason;
        REQUIRE(spool.store->open_message(mid, range, reason) == LoadStatus::kOk);
        CHECK(range.size == fs::file_size(dir.queue(mid)));
        CHECK(spool.store->remove_message(mid).ok());
    }
    REQUIRE(spool.store->sync_removals().ok());
    for (Mid mid : mids) {
        CHECK_FALSE(fs::exists(dir.queue(mid, from)));
        CHECK_FALSE(spool.store->has_message(mid));
    }
    const Mid fresh = commit_new(spool, 1)[0];
    CHECK(fs::exists(dir.queue(fresh, to)));
}

// A removal lost in a crash (the unlink never reached the disk) brings the file back; its
// journal records say every recipient is final, so recovery removes it and nothing is
// delivered twice.
TEST_CASE("a lost removal brings back a finished message, which recovery removes",
          "[spool][recovery]") {
    TempDir dir(any_layout());
    INFO("layout " << to_string(dir.layout));
    Mid mid = 0;
    std::string bytes;
    {
        RecoveryReport report;
        Spool spool = open_ok(dir, report);
        mid = commit_new(spool, 1)[0];
        bytes = slurp(dir.queue(mid));
        REQUIRE(spool.journal->append(all_delivered(mid)).ok());
        REQUIRE(spool.journal->sync().ok());
        REQUIRE(spool.store->remove_message(mid).ok());
        REQUIRE(spool.store->sync_removals().ok());
        REQUIRE_FALSE(fs::exists(dir.queue(mid)));
    }
    spit(dir.queue(mid), bytes);  // the unlink was lost
    RecoveryReport report;
    Spool spool = open_ok(dir, report);
    CHECK(report.messages.empty());
    CHECK(report.completed_removed == 1);
    CHECK_FALSE(fs::exists(dir.queue(mid)));
}
