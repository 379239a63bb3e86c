// Tests for daemon/spool/journal: record codec, torn tails at every length, corrupt middle
// records, reopen after a torn tail, compaction and its before_replace barrier.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "daemon/spool/journal.h"
#include "tests/support/temp_dir.h"

using namespace esad::spool;
namespace fs = std::filesystem;

namespace {

struct TempDir : esad::test::TempDir {
    TempDir() : esad::test::TempDir("spool_journal") {}
};

const std::vector<JournalRecord> kRecords = {
    {1, 0, RcptState::kDelivered, BounceKind::kNone},
    {1, 1, RcptState::kHardBounced, BounceKind::k5xx},
    {2, 0, RcptState::kHardBounced, BounceKind::kExpired},
    {3, 7, RcptState::kDeleted, BounceKind::kNone},
};

std::unique_ptr<Journal> open_journal(const std::string& dir, JournalScan* scan = nullptr,
                                      std::uint64_t threshold = 1 << 20) {
    std::unique_ptr<Journal> j;
    const IoStatus st = Journal::open(dir, threshold, j, scan);
    INFO(st.reason());
    REQUIRE(st.ok());
    return j;
}

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

}  // namespace

TEST_CASE("journal records round trip", "[spool][journal]") {
    std::string bytes(kJournalMagic);
    for (const auto& r : kRecords)
        bytes += encode_journal_record(r);
    const JournalScan scan = parse_journal(bytes);
    CHECK(scan.records == kRecords);
    CHECK(scan.valid_bytes == bytes.size());
    CHECK(scan.ignored_bytes == 0);
    CHECK(scan.tail_reason.empty());
}

TEST_CASE("a torn tail of any length is ignored", "[spool][journal]") {
    std::string bytes(kJournalMagic);
    std::vector<std::size_t> ends;
    for (const auto& r : kRecords) {
        bytes += encode_journal_record(r);
        ends.push_back(bytes.size());
    }
    for (std::size_t n = kJournalMagic.size(); n <= bytes.size(); ++n) {
        const JournalScan scan = parse_journal(std::string_view(bytes).substr(0, n));
        std::size_t complete = 0;
        while (complete < ends.size() && ends[complete] <= n)
            ++complete;
        INFO("length " << n);
        CHECK(scan.records.size() == complete);
        CHECK(scan.valid_bytes + scan.ignored_bytes + scan.room_bytes == n);
        CHECK((scan.ignored_bytes > 0) == !scan.tail_reason.empty());
    }
    CHECK(parse_journal("ESAJ").valid_bytes == 0);
    CHECK(parse_journal("XXXXXXXX").valid_bytes == 0);
}

TEST_CASE("a flipped byte stops the replay at that record", "[spool][journal]") {
    std::string bytes(kJournalMagic);
    for (const auto& r : kRecords)
        bytes += encode_journal_record(r);
    const std::size_t second = kJournalMagic.size() + encode_journal_record(kRecords[0]).size();
    for (std::size_t pos = second; pos < second + 22; ++pos) {
        std::string bad = bytes;
        bad[pos] = static_cast<char>(bad[pos] ^ 0x10);
        const JournalScan scan = parse_journal(bad);
        CHECK(scan.records.size() == 1);
        CHECK(!scan.tail_reason.empty());
    }
}

TEST_CASE("open, append, sync and reopen after a torn tail", "[spool][journal]") {
    // Crash mid-append: half a record after the others, in the prefilled room or at the end
    // of a journal without room (one that ran out of space).
    const bool in_room = GENERATE(true, false);
    INFO((in_room ? "half a record in the room" : "half a record at the end of the file"));
    TempDir dir;
    const std::string path = dir.path + "/journal";
    const std::string half =
        encode_journal_record({9, 9, RcptState::kDelivered, BounceKind::kNone}).substr(0, 11);
    std::uint64_t records_end = 0;
    if (in_room) {
        auto j = open_journal(dir.path);
        REQUIRE(j->append(kRecords).ok());
        REQUIRE(j->sync().ok());
        CHECK(j->sync_count() == 1);
        records_end = j->size_bytes();
        j.reset();
        std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
        f.seekp(static_cast<std::streamoff>(records_end));
        f << half;
    } else {
        std::string bytes(kJournalMagic);
        for (const auto& r : kRecords)
            bytes += encode_journal_record(r);
        records_end = bytes.size();
        std::ofstream f(path, std::ios::binary);
        f << bytes << half;
    }
    JournalScan scan;
    const auto file_size = fs::file_size(path);
    auto j = open_journal(dir.path, &scan);
    CHECK(scan.records == kRecords);
    CHECK(scan.valid_bytes == records_end);
    // The half record up to its last non-zero byte; the zeros after it are room.
    CHECK(scan.ignored_bytes == half.find_last_not_of('\0') + 1);
    CHECK(scan.valid_bytes + scan.ignored_bytes + scan.room_bytes == file_size);
    CHECK(scan.tail_reason == (in_room ? "record checksum mismatch" : "torn record"));
    // The tail was cut, so a new append is readable afterwards.
    const JournalRecord extra{10, 2, RcptState::kHardBounced, BounceKind::kDns};
    REQUIRE(j->append(std::vector<JournalRecord>{extra}).ok());
    REQUIRE(j->sync().ok());
    const JournalScan again = parse_journal(read_file(path));
    REQUIRE(again.records.size() == kRecords.size() + 1);
    CHECK(again.records.back() == extra);
    CHECK(again.ignored_bytes == 0);
}

TEST_CASE("appends go into room prefilled with zeros, which a reopen keeps", "[spool][journal]") {
    TempDir dir;
    const std::string path = dir.path + "/journal";
    auto j = open_journal(dir.path);
    REQUIRE(j->append(kRecords).ok());
    REQUIRE(j->sync().ok());
    const std::uint64_t records = j->size_bytes();
    CHECK(records == kJournalMagic.size() + kRecords.size() * 22);
    CHECK(fs::file_size(path) == 256 * 1024);
    // More records fit the room: the file's size does not change.
    REQUIRE(j->append(kRecords).ok());
    REQUIRE(j->sync().ok());
    CHECK(fs::file_size(path) == 256 * 1024);
    j.reset();

    JournalScan scan;
    j = open_journal(dir.path, &scan);
    CHECK(scan.records.size() == 2 * kRecords.size());
    CHECK(scan.ignored_bytes == 0);
    CHECK(scan.tail_reason.empty());
    CHECK(scan.room_bytes == 256 * 1024 - scan.valid_bytes);
    CHECK(fs::file_size(path) == 256 * 1024);  // the room is not cut as a torn tail
    const JournalRecord extra{10, 2, RcptState::kHardBounced, BounceKind::kDns};
    REQUIRE(j->append(std::vector<JournalRecord>{extra}).ok());
    const JournalScan again = parse_journal(read_file(path));
    REQUIRE(again.records.size() == 2 * kRecords.size() + 1);
    CHECK(again.records.back() == extra);
    CHECK(again.valid_bytes + again.room_bytes == 256 * 1024);
}

TEST_CASE("a journal with a damaged header is refused", "[spool][journal]") {
    TempDir dir;
    {
        std::ofstream f(dir.path + "/journal", std::ios::binary);
        f << "garbage!";
    }
    std::unique_ptr<Journal> j;
    const IoStatus st = Journal::open(dir.path, 1 << 20, j, nullptr);
    CHECK(st.err == EBADMSG);
    CHECK(j == nullptr);
}

TEST_CASE("compaction keeps only live messages, after the barrier", "[spool][journal]") {
    TempDir dir;
    auto j = open_journal(dir.path, nullptr, 64);
    REQUIRE(j->append(kRecords).ok());
    CHECK(j->needs_compaction());
    const std::uint64_t before = j->size_bytes();

    SECTION("a failing barrier leaves the journal alone") {
        const IoStatus st =
            j->compact([](Mid) { return false; }, [] { return IoStatus::failure(EIO, "x"); });
        CHECK(st.err == EIO);
        CHECK(j->size_bytes() == before);
        CHECK(parse_journal(read_file(dir.path + "/journal")).records == kRecords);
    }
    SECTION("records of dropped MIDs disappear") {
        int barrier_calls = 0;
        REQUIRE(j->compact([](Mid m) { return m == 1; },
                           [&] {
                               ++barrier_calls;
                               return IoStatus::success();
                           })
                    .ok());
        CHECK(barrier_calls == 1);
        const JournalScan scan = parse_journal(read_file(dir.path + "/journal"));
        REQUIRE(scan.records.size() == 2);
        CHECK(scan.records[0] == kRecords[0]);
        CHECK(scan.records[1] == kRecords[1]);
        CHECK(j->size_bytes() == scan.valid_bytes);
        CHECK_FALSE(j->needs_compaction());
        // Appends go to the new file.
        REQUIRE(j->append(std::vector<JournalRecord>{kRecords[3]}).ok());
        REQUIRE(j->sync().ok());
        CHECK(parse_journal(read_file(dir.path + "/journal")).records.size() == 3);
        CHECK_FALSE(fs::exists(dir.path + "/journal.tmp"));
    }
}
