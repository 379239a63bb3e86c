// The one host:port parser (common/host_port.h) and the ASCII case folding (common/ascii.h).
#include <catch2/catch.hpp>

#include "common/ascii.h"
#include "common/host_port.h"

using namespace esad;

TEST_CASE("ports: digits only, at most 65535, a floor when asked") {
    CHECK(parse_port("25") == 25);
    CHECK(parse_port("0") == 0);
    CHECK(parse_port("65535") == 65535);
    CHECK_FALSE(parse_port("65536"));
    CHECK_FALSE(parse_port("0", 1));
    CHECK_FALSE(parse_port(""));
    CHECK_FALSE(parse_port("+25"));
    CHECK_FALSE(parse_port("-1"));
    CHECK_FALSE(parse_port("25x"));
    CHECK_FALSE(parse_port(" 25"));
    CHECK_FALSE(parse_port("000025"));      // more than five characters
    CHECK_FALSE(parse_port("4294967321"));  // would wrap to 25 in 32 bits
}

TEST_CASE("host:port and [v6]:port, port required by default") {
    auto v4 = parse_host_port("127.0.0.1:2525");
    REQUIRE(v4);
    CHECK(v4->host == "127.0.0.1");
    CHECK(v4->port == 2525);
    CHECK_FALSE(v4->bracketed);
    auto v6 = parse_host_port("[::1]:25");
    REQUIRE(v6);
    CHECK(v6->host == "::1");
    CHECK(v6->port == 25);
    CHECK(v6->bracketed);
    CHECK_FALSE(parse_host_port("127.0.0.1"));
    CHECK_FALSE(parse_host_port("127.0.0.1:"));
    CHECK_FALSE(parse_host_port(":25"));
    CHECK_FALSE(parse_host_port("127.0.0.1:abc"));  // atoi read this as port 0
    CHECK_FALSE(parse_host_port("[::1]25"));
    CHECK_FALSE(parse_host_port("[::1"));
    CHECK_FALSE(parse_host_port("::1:25"));  // IPv6 with a port needs brackets
    CHECK_FALSE(parse_host_port("[]:25"));
}

TEST_CASE("host with an optional port") {
    auto bare = parse_host_port("mx.example", PortRule::kOptional);
    REQUIRE(bare);
    CHECK(bare->host == "mx.example");
    CHECK_FALSE(bare->port);
    auto v6 = parse_host_port("2001:db8::1", PortRule::kOptional);
    REQUIRE(v6);
    CHECK(v6->host == "2001:db8::1");
    CHECK_FALSE(v6->port);
    auto br = parse_host_port("[2001:db8::1]", PortRule::kOptional);
    REQUIRE(br);
    CHECK(br->bracketed);
    CHECK_FALSE(br->port);
    CHECK(parse_host_port("mx.example:587", PortRule::kOptional)->port == 587);
    CHECK_FALSE(parse_host_port("", PortRule::kOptional));
    CHECK_FALSE(parse_host_port("mx.example:99999", PortRule::kOptional));
}

TEST_CASE("ASCII case folding leaves other bytes alone") {
    CHECK(iequals("Message-ID", "message-id"));
    CHECK_FALSE(iequals("Message-ID", "Message-IDs"));
    CHECK(iequals("\xc3\x9c", "\xc3\x9c"));
    CHECK_FALSE(iequals("\xc3\x9c", "\xc3\xbc"));  // Ü and ü: not ASCII, not folded
    CHECK(istarts_with("from:<a@b>", "FROM:"));
    CHECK_FALSE(istarts_with("FRO", "FROM:"));
    CHECK(ascii_lowercase("MX.Example.COM") == "mx.example.com");
    static_assert(iequals("EHLO", "ehlo"));
}
