// Unit tests for daemon/dns/routes: every destination syntax, comments and blanks, errors
// with line numbers, lookup precedence (exact > longest .suffix > ALL).
#include <catch2/catch.hpp>

#include "daemon/dns/routes.h"

using namespace esad::dns;
using Kind = RouteDest::Kind;

TEST_CASE("route destination syntax", "[routes]") {
    struct Row {
        const char* token;
        Kind kind;
        const char* host;
        bool a_only;
        bool ipv6;
        std::uint16_t port;
        std::uint32_t pri;
        const char* canonical;
    };
    const Row rows[] = {
        {"mx.Example.com", Kind::kHost, "mx.example.com", false, false, 0, 0, "mx.example.com"},
        {"mx.example.com.", Kind::kHost, "mx.example.com", false, false, 0, 0, "mx.example.com"},
        {"relay:2525", Kind::kHost, "relay", false, false, 2525, 0, "relay:2525"},
        {"relay:25/pri=10", Kind::kHost, "relay", false, false, 25, 10, "relay:25/pri=10"},
        {"relay/PRI=5", Kind::kHost, "relay", false, false, 0, 5, "relay/pri=5"},
        {"[mx.example.com]", Kind::kHost, "mx.example.com", true, false, 0, 0, "[mx.example.com]"},
        {"[mx.example.com]:26", Kind::kHost, "mx.example.com", true, false, 26, 0,
         "[mx.example.com]:26"},
        {"1.2.3.4", Kind::kAddress, "1.2.3.4", false, false, 0, 0, "[1.2.3.4]"},
        {"[1.2.3.4]:2525", Kind::kAddress, "1.2.3.4", false, false, 2525, 0, "[1.2.3.4]:2525"},
        {"[1.2.3.4]:2525/pri=100", Kind::kAddress, "1.2.3.4", false, false, 2525, 100,
         "[1.2.3.4]:2525/pri=100"},
        {"[IPv6:2001:DB8::1]:25", Kind::kAddress, "2001:db8::1", false, true, 25, 0,
         "[IPv6:2001:db8::1]:25"},
        {"[ipv6:::1]", Kind::kAddress, "::1", false, true, 0, 0, "[IPv6:::1]"},
        {"USEDNS", Kind::kUseDns, "", false, false, 0, 0, "USEDNS"},
        {"usedns", Kind::kUseDns, "", false, false, 0, 0, "USEDNS"},
        {"/dev/null", Kind::kDiscard, "", false, false, 0, 0, "/dev/null"},
    };
    for (const auto& r : rows) {
        INFO(r.token);
        RouteDest d;
        std::string error;
        REQUIRE(parse_route_dest(r.token, d, error));
        CHECK(d.kind == r.kind);
        CHECK(d.host == r.host);
        CHECK(d.a_only == r.a_only);
        CHECK(d.ipv6 == r.ipv6);
        CHECK(d.port == r.port);
        CHECK(d.priority == r.pri);
        CHECK(d.to_string() == r.canonical);
    }
    const char* bad[] = {"",         "relay:",     "relay:0",      "relay:65536",
                         "relay:x",  "relay/pri=", "relay/prio=1", "relay/pri=70000",
                         "[1.2.3.4", "[1.2.3.4]x", "[IPv6:zz::1]", "2001:db8::1",
                         "bad host", "a..b",       "-/pri=1x",     "host!name"};
    for (const char* token : bad) {
        INFO(token);
        RouteDest d;
        std::string error;
        CHECK_FALSE(parse_route_dest(token, d, error));
        CHECK_FALSE(error.empty());
    }
}

TEST_CASE("routes file parsing and lookup precedence", "[routes]") {
    const char* text =
        "# static routes\n"
        "\n"
        "example.com      mx1.example.net, mx2.example.net:2525/pri=10\n"
        ".example.com     [10.0.0.1]:25   # subdomains\n"
        ".b.example.com   [IPv6:2001:db8::25]\n"
        "dns.example.com  USEDNS\n"
        "void.test        /dev/null\r\n"
        "ALL              smarthost.local:587\n";
    RoutesParseResult r = parse_routes(text);
    for (const auto& e : r.errors)
        INFO(e.to_string());
    REQUIRE(r.ok());
    REQUIRE(r.table.routes().size() == 6);

    struct Row {
        const char* domain;
        const char* pattern;
    };
    const Row rows[] = {
        {"example.com", "example.com"},
        {"EXAMPLE.com.", "example.com"},
        {"a.example.com", ".example.com"},
        {"x.a.example.com", ".example.com"},
        {"b.example.com", ".example.com"},
        {"c.b.example.com", ".b.example.com"},
        {"dns.example.com", "dns.example.com"},
        {"void.test", "ALL" /* replaced below */},
        {"other.org", "ALL"},
    };
    for (const auto& row : rows) {
        INFO(row.domain);
        const Route* route = r.table.lookup(row.domain);
        REQUIRE(route);
        if (std::string(row.domain) == "void.test") {
            CHECK(route->pattern == "void.test");
            CHECK(route->dests[0].kind == Kind::kDiscard);
        } else {
            CHECK(route->pattern == row.pattern);
        }
    }
    const Route* ex = r.table.lookup("example.com");
    REQUIRE(ex->dests.size() == 2);
    CHECK(ex->dests[1].port == 2525);
    CHECK(ex->dests[1].priority == 10);
    CHECK(ex->line == 3);
    CHECK(r.table.lookup("dns.example.com")->dests[0].kind == Kind::kUseDns);

    RoutesParseResult none = parse_routes("example.com relay\n");
    REQUIRE(none.ok());
    CHECK(none.table.lookup("other.com") == nullptr);
    CHECK(none.table.lookup("sub.example.com") == nullptr);  // exact does not cover subdomains
    CHECK(parse_routes("").ok());
    CHECK(parse_routes("# only a comment").table.empty());
}

TEST_CASE("routes file errors carry line numbers", "[routes]") {
    const char* text =
        "ok.com relay\n"            // 1
        "nodest.com\n"              // 2
        "bad..com relay\n"          // 3
        "x.com relay:99999\n"       // 4
        "ok.com other\n"            // 5 duplicate
        "ALL a\n"                   // 6
        "all b\n"                   // 7 second default
        "y.com USEDNS, relay\n"     // 8
        "z.com relay,\n"            // 9 empty destination
        "\n"                        // 10
        "w.com /dev/null,relay\n";  // 11
    RoutesParseResult r = parse_routes(text);
    std::vector<std::uint32_t> lines;
    for (const auto& e : r.errors)
        lines.push_back(e.line);
    CHECK(lines == std::vector<std::uint32_t>{2, 3, 4, 5, 7, 8, 9, 11});
    CHECK_FALSE(r.ok());
    REQUIRE(r.errors.size() >= 5);
    CHECK(r.errors[3].message == "The value ok.com is already in the routing table.");
    CHECK(r.errors[4].message == "There is already a default route set.");
    CHECK(r.errors[0].to_string().rfind("line 2: ", 0) == 0);
}

// Fuzz findings (tests/fuzz/fuzz_routes): a NUL hid the rest of a destination from
// inet_pton; "192.0.2.1." and "usedns." became host names that do not read back as
// themselves.
TEST_CASE("route destinations refuse NULs and ambiguous trailing dots and round-trip", "[routes]") {
    using namespace std::string_literals;
    RouteDest d;
    std::string error;
    for (const std::string& bad : {"192.0.2.1\0x"s, "[192.0.2.1\0]"s, "mx\0.example.com"s,
                                   "[IPv6:::1\0]"s, "192.0.2.1."s, "usedns."s, "USEDNS./pri=3"s}) {
        INFO(bad);
        CHECK_FALSE(parse_route_dest(bad, d, error));
        CHECK_FALSE(error.empty());
    }
    CHECK_FALSE(parse_routes("a.example 192.0.2.1\0x\n"s).ok());
    for (const char* good :
         {"mx.example.com.", "[mx.example.com]:2525/pri=7", "192.0.2.1", "[192.0.2.1]:25",
          "[IPv6:2001:DB8::1]:25/pri=1", "USEDNS", "/dev/null", "1.2.3"}) {
        INFO(good);
        REQUIRE(parse_route_dest(good, d, error));
        RouteDest again;
        REQUIRE(parse_route_dest(d.to_string(), again, error));
        CHECK(again == d);
    }
}
