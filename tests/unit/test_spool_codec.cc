// Tests for daemon/spool/record_codec and crc32c: round trips, every truncation, byte flips,
// version and magic checks, envelope-only decoding.
#include <catch2/catch.hpp>

#include <random>

#include "daemon/spool/crc32c.h"
#include "daemon/spool/record_codec.h"

using namespace esad::spool;

namespace {

Message sample_message(Mid mid, std::string content) {
    Message m;
    m.envelope.mid = mid;
    m.envelope.received_unix_ms = 1'700'000'000'123;
    m.envelope.sender = "Sender@Example.ORG";
    m.envelope.icid = 42;
    m.envelope.client_ip = "192.0.2.7";
    m.envelope.client_helo = "mx\r\n.evil\0name";
    m.envelope.body_type = BodyType::k8BitMime;
    m.envelope.smtputf8 = true;
    m.envelope.recipients = {{0, "Foo.Bar@Example.COM", "example.com"},
                             {1, "b@second.test", "second.test"},
                             {2, std::string("n\0ul@x.test", 11), "x.test"}};
    m.content = std::move(content);
    return m;
}

void set_u32(std::string& s, std::size_t pos, std::uint32_t v) {
    for (int i = 0; i < 4; ++i)
        s[pos + i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}

}  // namespace

TEST_CASE("crc32c matches the standard check value", "[spool][codec]") {
    CHECK(crc32c("123456789") == 0xE3069283u);
    CHECK(crc32c("") == 0u);
    Crc32c inc;
    inc.update("1234");
    inc.update("56789");
    CHECK(inc.value() == 0xE3069283u);
}

TEST_CASE("crc32c: the fast path agrees with the table at every length and split",
          "[spool][codec]") {
    std::string data;
    std::uint32_t x = 2463534242u;
    for (int i = 0; i < 300; ++i) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        data.push_back(static_cast<char>(x & 0xFF));
    }
    for (std::size_t len = 0; len <= data.size(); ++len) {
        const std::string_view piece(data.data(), len);
        INFO("length " << len);
        REQUIRE(crc32c(piece) == ~crc32c_update_portable(0xFFFFFFFFu, piece));
        // Pieces that split the 8-byte steps anywhere give the same value.
        Crc32c inc;
        inc.update(piece.substr(0, len / 3));
        inc.update(piece.substr(len / 3));
        REQUIRE(inc.value() == crc32c(piece));
    }
}

TEST_CASE("record codec round trips binary-safe messages", "[spool][codec]") {
    std::string content = "Subject: x\r\n\r\nline\r\n.\r\n..dot\r\n";
    content.push_back('\0');
    content += "\xff\xfe\r\r\n\n";
    const Message m = sample_message(1234, content);
    const DecodeResult r = decode(encode(m));
    REQUIRE(r.status == DecodeStatus::kOk);
    CHECK(r.reason.empty());
    CHECK(r.message == m);

    SECTION("empty content and null sender") {
        Message e = sample_message(7, "");
        e.envelope.sender.clear();
        e.envelope.smtputf8 = false;
        e.envelope.body_type = BodyType::kBinaryMime;
        const DecodeResult d = decode(encode(e));
        REQUIRE(d.status == DecodeStatus::kOk);
        CHECK(d.message == e);
    }
    SECTION("encode_parts concatenates to encode") {
        const EncodedParts p = encode_parts(m);
        CHECK(p.head + m.content + p.tail == encode(m));
        CHECK(p.tail.size() == kTrailerSize);
    }
}

TEST_CASE("recipient domains are lower-cased, addresses keep their case", "[spool][codec]") {
    Message m = sample_message(9, "x");
    m.envelope.recipients = {{0, "Foo@MiXeD.Test", "MiXeD.Test"}};
    const DecodeResult r = decode(encode(m));
    REQUIRE(r.status == DecodeStatus::kOk);
    CHECK(r.message.envelope.recipients[0].domain == "mixed.test");
    CHECK(r.message.envelope.recipients[0].address == "Foo@MiXeD.Test");
}

TEST_CASE("every truncation is reported as truncated", "[spool][codec]") {
    const std::string full = encode(sample_message(77, std::string(300, 'c')));
    for (std::size_t n = 0; n < full.size(); ++n) {
        const DecodeResult r = decode(std::string_view(full).substr(0, n));
        INFO("length " << n);
        CHECK(r.status == DecodeStatus::kTruncated);
        CHECK(!r.reason.empty());
    }
}

TEST_CASE("byte flips never decode as ok and never crash", "[spool][codec]") {
    const Message m = sample_message(77, std::string(200, 'c'));
    const std::string full = encode(m);
    const EncodedParts parts = encode_parts(m);
    for (std::size_t pos = 0; pos < full.size(); ++pos) {
        for (int bit = 0; bit < 8; ++bit) {
            std::string bad = full;
            bad[pos] = static_cast<char>(bad[pos] ^ (1 << bit));
            const DecodeResult r = decode(bad);
            INFO("pos " << pos << " bit " << bit);
            REQUIRE(r.status != DecodeStatus::kOk);
            // Any flip in the content of a complete file is a checksum failure.
            if (pos >= parts.head.size() && pos < parts.head.size() + m.content.size()) {
                CHECK(r.status == DecodeStatus::kBadChecksum);
            }
        }
    }
}

TEST_CASE("random garbage and random multi-byte damage never crash", "[spool][codec]") {
    std::mt19937 rng(12345);
    const std::string full = encode(sample_message(5, std::string(100, 'z')));
    for (int i = 0; i < 3000; ++i) {
        std::string bad = full;
        const int flips = 1 + static_cast<int>(rng() % 8);
        for (int f = 0; f < flips; ++f)
            bad[rng() % bad.size()] = static_cast<char>(rng());
        if (rng() % 3 == 0) bad.resize(rng() % bad.size());
        const DecodeResult r = decode(bad);
        if (r.status == DecodeStatus::kOk) CHECK(bad == full);  // only if damage was a no-op
        (void)decode_envelope(bad, bad.size() + rng() % 64);
    }
    for (int i = 0; i < 2000; ++i) {
        std::string junk(rng() % 200, '\0');
        for (char& c : junk)
            c = static_cast<char>(rng());
        if (i % 2 == 0 && junk.size() >= 12) junk.replace(0, 12, full.substr(0, 12));
        CHECK(decode(junk).status != DecodeStatus::kOk);
    }
}

TEST_CASE("version and magic are checked first", "[spool][codec]") {
    std::string full = encode(sample_message(3, "hello"));
    SECTION("future version") {
        set_u32(full, 8, kFormatVersion + 1);
        const DecodeResult r = decode(full);
        CHECK(r.status == DecodeStatus::kUnknownVersion);
        CHECK(r.reason.find("version") != std::string::npos);
    }
    SECTION("wrong magic") {
        full[0] = 'X';
        CHECK(decode(full).status == DecodeStatus::kMalformed);
        CHECK(decode("").status == DecodeStatus::kTruncated);
        CHECK(decode("Z").status == DecodeStatus::kMalformed);
    }
    SECTION("trailing bytes after the end record") {
        CHECK(decode(full + "x").status != DecodeStatus::kOk);
    }
    SECTION("message without recipients is malformed") {
        Message m = sample_message(3, "x");
        m.envelope.recipients.clear();
        CHECK(decode(encode(m)).status == DecodeStatus::kMalformed);
    }
}

TEST_CASE("decode_envelope reads the envelope from a prefix", "[spool][codec]") {
    const Message m = sample_message(99, std::string(5000, 'b'));
    const std::string full = encode(m);
    const EncodedParts parts = encode_parts(m);

    const EnvelopeDecodeResult ok = decode_envelope(parts.head, full.size());
    REQUIRE(ok.status == DecodeStatus::kOk);
    CHECK(ok.envelope == m.envelope);
    CHECK(ok.content_offset == parts.head.size());
    CHECK(ok.content_length == m.content.size());

    const EnvelopeDecodeResult part = decode_envelope(parts.head.substr(0, 40), full.size());
    CHECK(part.status == DecodeStatus::kTruncated);
    CHECK(part.bytes_needed > 40);

    // File shorter than the content record says.
    const EnvelopeDecodeResult cut = decode_envelope(parts.head, full.size() - 1);
    CHECK(cut.status == DecodeStatus::kTruncated);
    CHECK(cut.bytes_needed == 0);

    std::string reason;
    const std::string_view trailer = std::string_view(full).substr(full.size() - kTrailerSize);
    CHECK(check_trailer(trailer, full.size(),
                        crc32c(std::string_view(full).substr(0, full.size() - kTrailerSize)),
                        &reason) == DecodeStatus::kOk);
    CHECK(check_trailer(trailer, full.size(), 0xDEADBEEF, &reason) == DecodeStatus::kBadChecksum);
    CHECK(check_trailer(trailer.substr(1), full.size(), std::nullopt, &reason) ==
          DecodeStatus::kTruncated);
}
