// Table tests for common/cidr.h.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "common/cidr.h"

TEST_CASE("Cidr::parse", "[cidr]") {
    struct Case {
        std::string in;
        bool ok;
        std::string canonical;
    };
    const std::vector<Case> cases = {
        {"127.0.0.0/8", true, "127.0.0.0/8"},
        {"10.1.2.3/8", true, "10.0.0.0/8"},  // host bits masked
        {"192.168.1.7", true, "192.168.1.7/32"},
        {"0.0.0.0/0", true, "0.0.0.0/0"},
        {"  10.0.0.0/16  ", true, "10.0.0.0/16"},
        {"::1/128", true, "::1/128"},
        {"::1", true, "::1/128"},
        {"2001:db8::/32", true, "2001:db8::/32"},
        {"2001:db8:ffff::1/33", true, "2001:db8:8000::/33"},
        {"::/0", true, "::/0"},
        {"::ffff:0:0/96", true, "::ffff:0.0.0.0/96"},
        {"", false, ""},
        {"/8", false, ""},
        {"10.0.0.0/", false, ""},
        {"10.0.0.0/33", false, ""},
        {"10.0.0.0/-1", false, ""},
        {"10.0.0.0/8/8", false, ""},
        {"10.0.0.0/a", false, ""},
        {"10.0.0.0/0008", false, ""},
        {"::1/129", false, ""},
        {"10.0.0", false, ""},
        {"256.0.0.0/8", false, ""},
        {"fe80::1%eth0", false, ""},
        {"example.com", false, ""},
        {"10.0.0.0 /8", false, ""},
    };
    for (const auto& c : cases) {
        INFO(c.in);
        const auto r = esad::Cidr::parse(c.in);
        REQUIRE(r.has_value() == c.ok);
        if (c.ok) CHECK(r->to_string() == c.canonical);
    }
}

TEST_CASE("Cidr::contains", "[cidr]") {
    struct Case {
        std::string net;
        std::string ip;
        bool in;
    };
    const std::vector<Case> cases = {
        {"127.0.0.0/8", "127.0.0.1", true},
        {"127.0.0.0/8", "127.255.255.255", true},
        {"127.0.0.0/8", "128.0.0.1", false},
        {"10.0.0.0/31", "10.0.0.1", true},
        {"10.0.0.0/31", "10.0.0.2", false},
        {"10.128.0.0/9", "10.200.1.1", true},
        {"10.128.0.0/9", "10.127.1.1", false},
        {"192.168.1.7", "192.168.1.7", true},
        {"192.168.1.7", "192.168.1.8", false},
        {"0.0.0.0/0", "8.8.8.8", true},
        {"0.0.0.0/0", "::1", false},
        {"::1/128", "::1", true},
        {"::1/128", "::2", false},
        {"::1/128", "127.0.0.1", false},
        {"2001:db8::/32", "2001:db8:1234::5", true},
        {"2001:db8::/32", "2001:db9::5", false},
        {"::/0", "2001:db8::1", true},
        // dual-stack sockets report IPv4 clients as IPv4-mapped IPv6
        {"127.0.0.0/8", "::ffff:127.0.0.1", true},
        {"127.0.0.0/8", "::ffff:10.0.0.1", false},
        {"::ffff:0:0/96", "1.2.3.4", true},
        {"::ffff:10.0.0.0/104", "10.9.9.9", true},
        {"::ffff:10.0.0.0/104", "11.9.9.9", false},
        // garbage matches nothing
        {"0.0.0.0/0", "", false},
        {"0.0.0.0/0", "localhost", false},
        {"::/0", "::1%lo", false},
        {"0.0.0.0/0", "1.2.3.4.5", false},
    };
    for (const auto& c : cases) {
        INFO(c.net << " contains " << c.ip);
        const auto net = esad::Cidr::parse(c.net);
        REQUIRE(net.has_value());
        CHECK(net->contains(c.ip) == c.in);
    }
}

TEST_CASE("CidrList", "[cidr]") {
    std::string error;
    auto list = esad::CidrList::parse({"127.0.0.0/8", "::1/128", "192.0.2.0/24"}, &error);
    REQUIRE(list.has_value());
    CHECK(list->size() == 3);
    CHECK(list->contains("127.0.0.1"));
    CHECK(list->contains("::1"));
    CHECK(list->contains("192.0.2.200"));
    CHECK(list->contains("::ffff:192.0.2.1"));
    CHECK_FALSE(list->contains("192.0.3.1"));
    CHECK_FALSE(list->contains("2001:db8::1"));
    CHECK_FALSE(list->contains("garbage"));

    auto bad = esad::CidrList::parse({"127.0.0.0/8", "300.0.0.0/8"}, &error);
    CHECK_FALSE(bad.has_value());
    CHECK(error.find("300.0.0.0/8") != std::string::npos);

    esad::CidrList empty;
    CHECK(empty.empty());
    CHECK_FALSE(empty.contains("127.0.0.1"));
    CHECK_FALSE(empty.add("nope"));
    CHECK(empty.empty());
    CHECK(empty.add("10.0.0.0/8"));
    CHECK(empty.contains("10.1.1.1"));
}
