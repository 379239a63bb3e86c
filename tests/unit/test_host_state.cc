// Unit tests for daemon/hosts/host_state and host_table: transitions, probe while down,
// host back-off cap, delivernow, DNS hold, slow start, per-IP detail.
#include <catch2/catch.hpp>

#include "daemon/hosts/host_table.h"

using namespace esad::hosts;

TEST_CASE("host state transitions up/down/unknown", "[host]") {
    HostState h;
    CHECK(h.status() == HostStatus::kUnknown);
    CHECK(to_string(h.status()) == "unknown");

    auto c = h.on_greeting_reached(1000, "192.0.2.1");
    CHECK(c.from == HostStatus::kUnknown);
    CHECK(c.to == HostStatus::kUp);
    CHECK(c.changed());
    CHECK(c.event == "greeting_reached");

    c = h.on_all_candidates_failed(2000, 3'600'000);
    CHECK(c.from == HostStatus::kUp);
    CHECK(c.to == HostStatus::kDown);
    CHECK(to_string(h.status()) == "down");
    CHECK(h.retry_at() == 2000 + 60'000);

    c = h.on_greeting_reached(70'000, "192.0.2.1");
    CHECK(h.status() == HostStatus::kUp);
    CHECK(h.retry_at() == 0);
    CHECK(h.consecutive_failures() == 0);
}

TEST_CASE("host back-off: 60 s doubling, capped at the profile max_retry", "[host]") {
    HostState h;
    const TimeMs cap = 600'000;  // 10 min
    const TimeMs expected[] = {60'000, 120'000, 240'000, 480'000, 600'000, 600'000};
    TimeMs now = 0;
    for (TimeMs want : expected) {
        (void)h.on_all_candidates_failed(now, cap);
        CHECK(h.current_retry_interval() == want);
        CHECK(h.retry_at() == now + want);
        now = h.retry_at();
    }
    // A cap below 60 s wins over the initial value.
    HostState small;
    (void)small.on_all_candidates_failed(0, 30'000);
    CHECK(small.retry_at() == 30'000);
}

TEST_CASE("down host: nothing before its retry time, then exactly one probe", "[host]") {
    HostState h;
    (void)h.on_all_candidates_failed(0, 3'600'000);
    CHECK_FALSE(h.may_open(59'999, 0, 500));
    CHECK(h.blocked_until(59'999) == 60'000);
    CHECK(h.may_open(60'000, 0, 500));
    h.on_connection_start(60'000);
    CHECK(h.probe_in_flight());
    CHECK_FALSE(h.may_open(60'001, 1, 500));  // one probe only
    CHECK(h.blocked_until(60'001) == kNever);
    // Probe fails: down again with a doubled interval.
    (void)h.on_all_candidates_failed(61'000, 3'600'000);
    CHECK_FALSE(h.probe_in_flight());
    CHECK(h.retry_at() == 61'000 + 120'000);
    // Operator delivernow: retry timer cleared, probe allowed at once.
    auto c = h.on_delivernow(62'000);
    CHECK_FALSE(c.changed());
    CHECK(h.may_open(62'000, 0, 500));
    CHECK(h.status() == HostStatus::kDown);
    // Probe connection ended without an outcome: on_idle clears the probe.
    h.on_connection_start(62'000);
    CHECK_FALSE(h.may_open(62'000, 1, 500));
    h.on_idle();
    CHECK(h.may_open(62'000, 0, 500));
}

TEST_CASE("DNS temporary failure holds the host without changing its state", "[host]") {
    HostState h;
    (void)h.on_greeting_reached(0, "192.0.2.1");
    auto c = h.on_dns_temporary_failure(1000, 3'600'000);
    CHECK_FALSE(c.changed());
    CHECK(h.status() == HostStatus::kUp);
    CHECK_FALSE(h.may_open(1000 + 59'999, 0, 500));
    CHECK(h.blocked_until(1000) == 61'000);
    CHECK(h.may_open(61'000, 0, 500));
    (void)h.on_dns_temporary_failure(61'000, 3'600'000);
    CHECK(h.hold_until() == 61'000 + 120'000);
    (void)h.on_delivernow(62'000);
    CHECK(h.may_open(62'000, 0, 500));
}

TEST_CASE("slow start: grows by one per window successes, shrinks on failures", "[host]") {
    HostState h;
    CHECK(h.window() == kInitialWindow);
    CHECK(h.may_open(0, kInitialWindow - 1, 500));
    CHECK_FALSE(h.may_open(0, kInitialWindow, 500));
    for (std::uint32_t i = 0; i < kInitialWindow; ++i)
        h.on_transaction_success(0, 500);
    CHECK(h.window() == kInitialWindow + 1);
    for (std::uint32_t i = 0; i < kInitialWindow + 1; ++i)
        h.on_transaction_success(0, 500);
    CHECK(h.window() == kInitialWindow + 2);
    // Capped at the destination's max_concurrency.
    for (int i = 0; i < 1000; ++i)
        h.on_transaction_success(0, 8);
    CHECK(h.window() == 8);
    CHECK_FALSE(h.may_open(0, 3, 3));  // destination limit below the window
    // 421 / connection failures back off, never below 1.
    h.on_421(0, "192.0.2.1", "421 4.7.0 try later");
    CHECK(h.window() == 7);
    for (int i = 0; i < 20; ++i)
        h.on_candidate_failed(0, "192.0.2.2", "connection refused");
    CHECK(h.window() == 1);
    CHECK(h.may_open(0, 0, 500));
    CHECK_FALSE(h.may_open(0, 1, 500));
}

TEST_CASE("per-IP detail, last errors, last activity", "[host]") {
    HostState h;
    h.on_candidate_failed(100, "192.0.2.1", std::string(1000, 'x'));
    (void)h.on_greeting_reached(200, "192.0.2.2");
    h.record_5xx(300, "550 5.1.1 user unknown");
    h.record_soft_error(400, "451 4.3.0 try again");
    REQUIRE(h.ips().size() == 2);
    CHECK(h.ips()[0].ip == "192.0.2.1");
    CHECK(h.ips()[0].failures == 1);
    CHECK(h.ips()[0].last_error.size() == kMaxErrorText);
    CHECK(h.ips()[0].last_attempt == 100);
    CHECK(h.ips()[1].successes == 1);
    CHECK(h.last_5xx().text == "550 5.1.1 user unknown");
    CHECK(h.last_5xx().at == 300);
    CHECK(h.last_soft_error().text == "451 4.3.0 try again");
    CHECK(h.last_activity() == 400);
    for (int i = 0; i < 50; ++i) {
        h.on_candidate_failed(1000 + i, "10.0.0." + std::to_string(i), "timeout");
    }
    CHECK(h.ips().size() == kMaxIps);
}

TEST_CASE("host table keys by lower-cased domain", "[host]") {
    HostTable t;
    HostState& a = t.get("Example.COM.");
    (void)a.on_greeting_reached(1, "");
    CHECK(t.find("example.com") == &a);
    CHECK(t.find("other.com") == nullptr);
    (void)t.get("b.com").on_all_candidates_failed(0, 3'600'000);
    t.delivernow_all(5);
    CHECK(t.find("b.com")->may_open(5, 0, 10));
    std::vector<std::string> names;
    t.for_each([&](const std::string& n, const HostState&) { names.push_back(n); });
    CHECK(names == std::vector<std::string>{"b.com", "example.com"});
}

TEST_CASE("the host table's observer hears every up/down change, and only changes", "[host]") {
    HostTable t;
    std::vector<std::string> heard;
    t.set_observer([&](std::string_view domain, const HostChange& c) {
        heard.push_back(std::string(domain) + " " + std::string(to_string(c.from)) + "->" +
                        std::string(to_string(c.to)) + " " + std::string(c.event));
    });
    HostState& a = t.get("a.example");
    t.report("a.example", a.on_greeting_reached(1, "192.0.2.1"));
    t.report("a.example", a.on_greeting_reached(2, "192.0.2.1"));  // up -> up: no line
    t.report("a.example", a.on_all_candidates_failed(3, 3'600'000));
    t.delivernow_all(4);  // clears the retry time; the state stays down
    CHECK(heard == std::vector<std::string>{"a.example unknown->up greeting_reached",
                                            "a.example up->down all_candidates_failed"});
}
