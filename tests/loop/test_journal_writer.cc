// JournalWriter on a real loop with a real spool in a temp dir: final records reach the
// journal file, a finished message's file is removed only after the sync that covers its
// records, and records arriving while a write or sync is in flight go out together (group
// commit: fewer syncs than appends). Waits are on the writer going idle.
#include <catch2/catch.hpp>

#include "daemon/delivery/journal_writer.h"
#include "daemon/loop/handle.h"
#include "daemon/loop/work.h"
#include "tests/support/run_until.h"
#include "tests/support/spool_files.h"
#include "tests/support/temp_dir.h"

using namespace esad;

namespace {

constexpr uint64_t kGuardMs = 120 * 1000;

struct Fixture {
    test::TempDir dir{"journal_writer"};
    uv_loop_t loop;
    spool::Spool spool;
    spool::Mid last_mid = 1000;

    Fixture() {
        uv_loop_init(&loop);
        spool::SpoolOptions options;
        options.store.state_dir = dir.path;
        spool::RecoveryReport report;
        REQUIRE(spool::open_spool(options, spool, report).ok());
    }
    ~Fixture() { CHECK(loop::drain_and_close(&loop) == 0); }

    spool::Mid commit() {
        std::vector<spool::PendingMessage> batch(1);
        const spool::Mid mid = ++last_mid;
        batch[0].message.envelope.mid = mid;
        batch[0].message.envelope.sender = "s@client.test";
        batch[0].message.envelope.recipients = {{0, "a@example.test", "example.test"},
                                                {1, "b@example.test", "example.test"}};
        batch[0].message.content = "Subject: t\r\n\r\nhello\r\n";
        spool.store->commit_batch(batch);
        REQUIRE(batch[0].result.ok());
        return mid;
    }

    bool exists(spool::Mid mid) const { return test::message_file_exists(dir.path, mid); }
    std::vector<spool::JournalRecord> records() const { return test::journal_records(dir.path); }

    // The hashed store unlinks removed messages on its reclaimer thread: finish that now.
    void drain_removals() { REQUIRE(spool.store->sync_removals().ok()); }

    void run_until_idle(const delivery::JournalWriter& w) {
        bool timed_out = false;
        auto guard = loop::Timer::create(&loop, [&] { timed_out = true; });
        guard->start(kGuardMs);
        while (!timed_out && !w.idle())
            uv_run(&loop, UV_RUN_ONCE);
        REQUIRE_FALSE(timed_out);
    }
};

queue::FinalRecipient delivered(spool::Mid mid, uint32_t rid) {
    return {mid, rid, 0, queue::FinalState::kDelivered, queue::HardKind::kNone};
}

}  // namespace

TEST_CASE("journal writer: records written and synced, then the message removed") {
    Fixture f;
    spool::Mid mid = f.commit();
    delivery::JournalWriter w(&f.loop, f.spool);
    const uint64_t syncs_before = f.spool.journal->sync_count();
    // The first recipient is final, the message is not done: its file stays.
    w.append({delivered(mid, 0)}, {});
    CHECK_FALSE(w.idle());
    f.run_until_idle(w);
    CHECK(f.exists(mid));
    CHECK(f.records() == std::vector<spool::JournalRecord>{
                             {mid, 0, spool::RcptState::kDelivered, spool::BounceKind::kNone}});
    // The last one finishes it: removed once its record is synced.
    w.append({{mid, 1, 0, queue::FinalState::kHardBounced, queue::HardKind::k5xx}}, {mid});
    f.run_until_idle(w);
    f.drain_removals();
    CHECK_FALSE(f.exists(mid));
    CHECK(f.records().back() ==
          spool::JournalRecord{mid, 1, spool::RcptState::kHardBounced, spool::BounceKind::k5xx});
    CHECK(f.spool.journal->sync_count() >= syncs_before + 2);
    CHECK(w.records_written() == 2);
    CHECK(w.flushes() == 2);
}

TEST_CASE("journal writer: an idle writer writes and syncs in one worker job") {
    Fixture f;
    spool::Mid mid = f.commit();
    delivery::JournalWriter w(&f.loop, f.spool);
    const uint64_t syncs_before = f.spool.journal->sync_count();
    w.append({delivered(mid, 0), delivered(mid, 1)}, {mid});
    REQUIRE(loop::pending_work() == 1);
    // Run until that job is back on the loop: nothing more was queued after it.
    REQUIRE(test::run_until(&f.loop, [] { return loop::pending_work() == 0; }));
    CHECK(w.idle());
    CHECK(f.spool.journal->sync_count() == syncs_before + 1);
    CHECK(w.flushes() == 1);
    f.drain_removals();
    CHECK_FALSE(f.exists(mid));
    CHECK(f.records().size() == 2);
}

TEST_CASE("journal writer: appends during a write go out together (group commit)") {
    Fixture f;
    std::vector<spool::Mid> mids;
    for (int i = 0; i < 20; ++i)
        mids.push_back(f.commit());
    delivery::JournalWriter w(&f.loop, f.spool);
    for (spool::Mid mid : mids)  // all on one loop turn: one write in flight, the rest wait
        w.append({delivered(mid, 0), delivered(mid, 1)}, {mid});
    f.run_until_idle(w);
    f.drain_removals();
    for (spool::Mid mid : mids)
        CHECK_FALSE(f.exists(mid));
    CHECK(w.records_written() == 40);
    CHECK(f.records().size() == 40);
    CHECK(w.flushes() < mids.size());
    CHECK(w.flushes() >= 1);
}
