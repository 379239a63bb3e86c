// Tests for daemon/spool/content_reader: the envelope and trailer are checked before any
// content is handed out, the CRC32C runs over the pieces, and a corrupt file fails before
// its last piece (so the delivery never sends the final dot for it); Store::open_message.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <string>

#include "daemon/spool/content_reader.h"
#include "daemon/spool/store.h"
#include "tests/support/temp_dir.h"

using namespace esad::spool;

namespace {

Message make_message(Mid mid, std::string content, std::size_t recipients = 2) {
    Message m;
    m.envelope.mid = mid;
    m.envelope.sender = "s@src.test";
    for (std::size_t i = 0; i < recipients; ++i)
        m.envelope.recipients.push_back(
            {static_cast<std::uint32_t>(i), "r" + std::to_string(i) + "@dst.test", "dst.test"});
    m.content = std::move(content);
    return m;
}

// The file bytes behind a MessageRange (a pipe would not do: pread needs a file).
MessageRange range_of(const esad::test::TempDir& dir, const std::string& bytes,
                      std::uint64_t offset = 0) {
    const std::string path = dir.path + "/m";
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    REQUIRE(fd.valid());
    const std::string padded = std::string(offset, 'P') + bytes + "TAIL";
    REQUIRE(write_all(fd.get(), padded) == 0);
    MessageRange r;
    r.fd = std::move(fd);
    r.offset = offset;
    r.size = bytes.size();
    return r;
}

// Reads everything in pieces of `max`; returns the status of the first failure or kOk.
LoadStatus read_all(ContentReader& reader, std::size_t max, std::string& content, int& pieces) {
    bool last = false;
    std::string piece, reason;
    content.clear();
    pieces = 0;
    while (!last) {
        const LoadStatus st = reader.read(max, piece, last, reason);
        if (st != LoadStatus::kOk) return st;
        ++pieces;
        content += piece;
    }
    return LoadStatus::kOk;
}

}  // namespace

TEST_CASE("content reader: pieces of any size give the stored content", "[spool][reader]") {
    esad::test::TempDir dir("content_reader");
    const std::string content = "Subject: x\r\n\r\n" + std::string(100000, 'z') + "\r\n";
    const Message m = make_message(42, content, 300);  // an envelope beyond the first read
    for (std::uint64_t offset : {0u, 4096u}) {
        for (std::size_t max : {1u << 20, 65536u, 4096u, 7u}) {
            CAPTURE(offset, max);
            ContentReader reader;
            std::string reason;
            REQUIRE(reader.open(range_of(dir, encode(m), offset), 42, reason) == LoadStatus::kOk);
            CHECK(reader.envelope() == m.envelope);
            CHECK(reader.content_size() == content.size());
            std::string got;
            int pieces = 0;
            REQUIRE(read_all(reader, max, got, pieces) == LoadStatus::kOk);
            CHECK(got == content);
            CHECK(pieces == static_cast<int>((content.size() + max - 1) / max));
            // Rewind: a re-run on another connection reads it all again.
            reader.rewind();
            REQUIRE(read_all(reader, max, got, pieces) == LoadStatus::kOk);
            CHECK(got == content);
        }
    }
}

TEST_CASE("content reader: empty content is one last, empty piece", "[spool][reader]") {
    esad::test::TempDir dir("content_reader");
    ContentReader reader;
    std::string reason;
    REQUIRE(reader.open(range_of(dir, encode(make_message(5, ""))), 5, reason) == LoadStatus::kOk);
    std::string piece;
    bool last = false;
    REQUIRE(reader.read(65536, piece, last, reason) == LoadStatus::kOk);
    CHECK(last);
    CHECK(piece.empty());
}

TEST_CASE("content reader: a flipped content byte fails before the last piece", "[spool][reader]") {
    esad::test::TempDir dir("content_reader");
    const std::string content(10000, 'c');
    std::string bytes = encode(make_message(7, content));
    // Flip a byte in the middle of the content: the envelope and trailer still look fine.
    bytes[bytes.size() - kTrailerSize - content.size() / 2] ^= 0x20;
    ContentReader reader;
    std::string reason;
    REQUIRE(reader.open(range_of(dir, bytes), 7, reason) == LoadStatus::kOk);
    std::string piece;
    bool last = false;
    std::string handed;
    LoadStatus st = LoadStatus::kOk;
    while (st == LoadStatus::kOk && !last) {
        st = reader.read(1000, piece, last, reason);
        if (st == LoadStatus::kOk) handed += piece;
    }
    CHECK(st == LoadStatus::kCorrupt);
    CHECK_FALSE(last);
    CHECK(handed.size() == content.size() - 1000);  // every piece but the last
    CHECK(reason.find("checksum") != std::string::npos);
}

TEST_CASE("content reader: envelope, trailer and MID are checked at open", "[spool][reader]") {
    esad::test::TempDir dir("content_reader");
    const std::string good = encode(make_message(9, "hello\r\n"));
    std::string reason;
    SECTION("a bad trailer") {
        std::string bytes = good;
        bytes[bytes.size() - 1] ^= 1;  // end marker
        ContentReader reader;
        CHECK(reader.open(range_of(dir, bytes), 9, reason) == LoadStatus::kCorrupt);
    }
    SECTION("a flipped envelope byte") {
        std::string bytes = good;
        bytes[kHeaderSize + kRecordHeaderSize + 8 + kRecordHeaderSize + 2] ^= 1;
        ContentReader reader;
        CHECK(reader.open(range_of(dir, bytes), 9, reason) == LoadStatus::kCorrupt);
    }
    SECTION("truncated") {
        ContentReader reader;
        CHECK(reader.open(range_of(dir, good.substr(0, good.size() - 3)), 9, reason) ==
              LoadStatus::kCorrupt);
    }
    SECTION("another MID") {
        ContentReader reader;
        CHECK(reader.open(range_of(dir, good), 10, reason) == LoadStatus::kCorrupt);
        CHECK(reason.find("MID") != std::string::npos);
    }
}

TEST_CASE("content check: the pure validation", "[spool][reader]") {
    const Message m = make_message(11, "abc\r\n");
    const std::string bytes = encode(m);
    const std::string trailer = bytes.substr(bytes.size() - kTrailerSize);
    ContentCheck check;
    std::string reason;
    // A prefix too short for the envelope says how much it needs.
    CHECK(check.begin(std::string_view(bytes).substr(0, 20), trailer, bytes.size(), 11, &reason) ==
          DecodeStatus::kTruncated);
    CHECK(check.needed() > 20);
    REQUIRE(check.begin(bytes, trailer, bytes.size(), 11, &reason) == DecodeStatus::kOk);
    CHECK(check.feed("ab", &reason) == DecodeStatus::kOk);
    CHECK(check.finish(&reason) == DecodeStatus::kTruncated);
    CHECK(check.feed("c\r\n", &reason) == DecodeStatus::kOk);
    CHECK(check.finish(&reason) == DecodeStatus::kOk);
    CHECK(check.feed("x", &reason) == DecodeStatus::kMalformed);
    check.rewind();
    CHECK(check.feed("abX\r\n", &reason) == DecodeStatus::kOk);
    CHECK(check.finish(&reason) == DecodeStatus::kBadChecksum);
}
