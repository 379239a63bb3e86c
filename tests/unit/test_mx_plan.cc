// Unit tests for daemon/dns/mx_plan: ordering by preference, shuffling of equal preferences
// with a seeded RNG, null MX, implicit MX, IP preference, caps, loop detection.
#include <catch2/catch.hpp>

#include <map>
#include <random>
#include <set>

#include "daemon/dns/mx_plan.h"

using namespace esad::dns;

namespace {
RandomFn seeded(std::uint64_t seed) {
    auto gen = std::make_shared<std::mt19937_64>(seed);
    return [gen](std::uint64_t bound) { return (*gen)() % bound; };
}
std::vector<std::string> names(const MxOrder& o) {
    std::vector<std::string> out;
    for (const auto& h : o.hosts)
        out.push_back(h.host);
    return out;
}
}  // namespace

TEST_CASE("MX ordering by preference; equal preferences shuffled", "[mx]") {
    const std::vector<MxRecord> mx = {
        {20, "backup.example.com.", 300}, {10, "MX-A.example.com", 300},
        {10, "mx-b.example.com", 300},    {10, "mx-c.example.com", 300},
        {30, "mx-a.example.com", 300},  // duplicate keeps its best preference
    };
    MxOrder o = order_mx("example.com", mx, seeded(1));
    REQUIRE(o.status == MxStatus::kOk);
    CHECK_FALSE(o.implicit);
    REQUIRE(o.hosts.size() == 4);
    CHECK(o.hosts.back() == MxHost{20, "backup.example.com"});
    const std::vector<std::string> ordered = names(o);
    std::set<std::string> top(ordered.begin(), ordered.begin() + 3);
    CHECK(top == std::set<std::string>{"mx-a.example.com", "mx-b.example.com", "mx-c.example.com"});

    // Same seed → same order; over many seeds every host comes first sometimes.
    CHECK(names(order_mx("example.com", mx, seeded(7))) ==
          names(order_mx("example.com", mx, seeded(7))));
    std::map<std::string, int> first;
    for (std::uint64_t seed = 0; seed < 300; ++seed) {
        first[order_mx("example.com", mx, seeded(seed)).hosts[0].host]++;
    }
    REQUIRE(first.size() == 3);
    for (const auto& [host, n] : first) {
        INFO(host);
        CHECK(n > 60);  // ~100 expected each
    }
    // No rng: deterministic name order among ties.
    CHECK(names(order_mx("example.com", mx, {}))[0] == "mx-a.example.com");
}

TEST_CASE("null MX, implicit MX, host cap", "[mx]") {
    MxOrder null_mx = order_mx("nullmx.test", {{0, ".", 300}}, {});
    CHECK(null_mx.status == MxStatus::kNullMx);
    CHECK(plan_candidates(null_mx, {}, {}).status == PlanStatus::kNullMx);
    CHECK(kNullMxText.substr(0, 6) == "5.1.10");
    // Mixed answer treated as null MX (Postfix policy).
    CHECK(order_mx("d.test", {{10, "mx.d.test", 1}, {0, "", 1}}, {}).status == MxStatus::kNullMx);

    MxOrder implicit = order_mx("Amx.Test.", {}, {});
    CHECK(implicit.implicit);
    REQUIRE(implicit.hosts.size() == 1);
    CHECK(implicit.hosts[0] == MxHost{0, "amx.test"});

    std::vector<MxRecord> many;
    for (int i = 0; i < 300; ++i) {
        many.push_back({static_cast<std::uint16_t>(i % 7), "mx" + std::to_string(i) + ".big", 1});
    }
    MxOrder capped = order_mx("big", many, seeded(3));
    CHECK(capped.hosts.size() == kDefaultMaxMxHosts);
    for (const auto& h : capped.hosts)
        CHECK(h.preference == 0);
}

TEST_CASE("candidates: address order, IP preference, address cap, TTL", "[mx]") {
    MxOrder o = order_mx("d.test", {{10, "mx1.d.test", 1}, {20, "mx2.d.test", 1}}, {});
    std::map<std::string, std::vector<AddressRecord>> addrs = {
        {"mx1.d.test", {{"2001:db8::1", 60}, {"192.0.2.1", 300}, {"192.0.2.2", 30}}},
        {"mx2.d.test", {{"192.0.2.9", 300}, {"2001:db8::9", 300}}},
    };
    auto ips = [](const CandidatePlan& p) {
        std::vector<std::string> out;
        for (const auto& c : p.candidates)
            out.push_back(c.ip);
        return out;
    };
    PlanOptions opt;
    CandidatePlan p = plan_candidates(o, addrs, opt);
    REQUIRE(p.status == PlanStatus::kOk);
    CHECK(ips(p) == std::vector<std::string>{"192.0.2.1", "192.0.2.2", "2001:db8::1", "192.0.2.9",
                                             "2001:db8::9"});
    CHECK(p.candidates[0].host == "mx1.d.test");
    CHECK(p.candidates[0].preference == 10);
    CHECK(p.candidates[2].ipv6);
    CHECK(p.min_ttl == 30);

    opt.ip_preference = IpPreference::kPreferV6;
    CHECK(ips(plan_candidates(o, addrs, opt)) ==
          std::vector<std::string>{"2001:db8::1", "192.0.2.1", "192.0.2.2", "2001:db8::9",
                                   "192.0.2.9"});
    opt.ip_preference = IpPreference::kRequireV4;
    CHECK(ips(plan_candidates(o, addrs, opt)) ==
          std::vector<std::string>{"192.0.2.1", "192.0.2.2", "192.0.2.9"});
    opt.ip_preference = IpPreference::kRequireV6;
    CHECK(ips(plan_candidates(o, addrs, opt)) ==
          std::vector<std::string>{"2001:db8::1", "2001:db8::9"});
    opt.ip_preference = IpPreference::kPreferV4;
    opt.max_addresses = 2;
    CHECK(ips(plan_candidates(o, addrs, opt)).size() == 2);

    // 2,048 addresses for one host: capped at 20.
    std::map<std::string, std::vector<AddressRecord>> manyhome;
    for (int i = 0; i < 2048; ++i) {
        manyhome["mx1.d.test"].push_back(
            {"10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256), 60});
    }
    CHECK(plan_candidates(o, manyhome, {}).candidates.size() == kDefaultMaxAddresses);
    CHECK(plan_candidates(o, {}, {}).status == PlanStatus::kNoAddresses);
}

TEST_CASE("loop detection: MX pointing at ourselves", "[mx]") {
    MxOrder o = order_mx("d.test", {{10, "mx1.d.test", 1}, {20, "mx2.d.test", 1}}, {});
    struct Row {
        const char* mx1_ip;
        const char* mx2_ip;
        PlanStatus status;
        std::size_t count;
    };
    const Row rows[] = {
        {"192.0.2.1", "192.0.2.2", PlanStatus::kOk, 2},
        {"127.0.0.1", "192.0.2.2", PlanStatus::kLoop, 0},  // best MX is us: drop it and worse
        {"192.0.2.1", "127.0.0.5", PlanStatus::kOk, 1},    // backup MX is us: keep better one
        {"0.0.0.0", "192.0.2.2", PlanStatus::kLoop, 0},
        {"::1", "192.0.2.2", PlanStatus::kLoop, 0},
        {"::ffff:127.0.0.1", "192.0.2.2", PlanStatus::kLoop, 0},
        {"198.51.100.7", "192.0.2.2", PlanStatus::kLoop, 0},  // our own listener address
    };
    PlanOptions opt;
    opt.own_addresses = {"198.51.100.7"};
    for (const auto& r : rows) {
        INFO(r.mx1_ip << " / " << r.mx2_ip);
        std::map<std::string, std::vector<AddressRecord>> addrs = {
            {"mx1.d.test", {{r.mx1_ip, 60}}}, {"mx2.d.test", {{r.mx2_ip, 60}}}};
        CandidatePlan p = plan_candidates(o, addrs, opt);
        CHECK(p.status == r.status);
        CHECK(p.candidates.size() == r.count);
    }
    // Our own host name as MX.
    PlanOptions named;
    named.own_names = {"mx1.d.test"};
    CHECK(plan_candidates(o, {{"mx1.d.test", {{"192.0.2.1", 1}}}}, named).status ==
          PlanStatus::kLoop);
    // Routed there explicitly (smtproutes): allowed.
    PlanOptions routed;
    routed.explicit_route = true;
    CandidatePlan p =
        plan_candidates(order_mx("127.0.0.1", {}, {}), {{"127.0.0.1", {{"127.0.0.1", 0}}}}, routed);
    CHECK(p.status == PlanStatus::kOk);
    CHECK(p.candidates.size() == 1);
    CHECK(is_loopback_or_unspecified("127.1.2.3"));
    CHECK_FALSE(is_loopback_or_unspecified("192.0.2.1"));
    CHECK(is_ipv6_text("::1"));
}
