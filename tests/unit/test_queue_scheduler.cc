// Unit tests for daemon/queue/scheduler (with message_index, domain_queue, host_state):
// fairness, concurrency caps, "nothing until T", deterministic ties, transaction grouping
// and limits, 452 re-split, retries, expiry, profile changes, host down + probe,
// delivernow, suspend/resume, delete/bounce, counters and gauges. Fake clock throughout.
#include <catch2/catch.hpp>

#include <map>
#include <set>

#include "daemon/queue/scheduler.h"

using namespace esad::queue;
using esad::hosts::HostStatus;
using esad::hosts::HostTable;

namespace {

constexpr TimeMs kSec = 1000;

struct Fixture {
    HostTable hosts;
    std::map<std::string, DomainPolicy> policies;  // by domain; missing: `base`
    DomainPolicy base;
    Scheduler s;

    explicit Fixture(std::uint32_t max_concurrency = 10000)
        : s(hosts, SchedulerOptions{max_concurrency,
                                    [this](std::string_view d) {
                                        auto it = policies.find(std::string(d));
                                        return it == policies.end() ? base : it->second;
                                    },
                                    {},
                                    10}) {}

    // rcpts: addresses; the domain is the part after '@'.
    bool add(Mid mid, TimeMs received, std::vector<std::string> rcpts,
             std::string sender = "s@x.org", TimeMs now = 0) {
        NewMessage m;
        m.mid = mid;
        m.received = received;
        m.sender = std::move(sender);
        for (std::uint32_t i = 0; i < rcpts.size(); ++i) {
            NewRecipient r;
            r.rid = i;
            r.address = rcpts[i];
            r.domain = rcpts[i].substr(rcpts[i].find('@') + 1);
            m.recipients.push_back(r);
        }
        return s.add_message(m, now);
    }

    DomainId id(std::string_view d) {
        auto x = s.find_domain(d);
        REQUIRE(x);
        return *x;
    }

    ReportResult report(const Work& w, Outcome o, TimeMs now, HardKind k = HardKind::kOther) {
        Report r{w.domain, w.mid, {}};
        for (auto rid : w.rids)
            r.outcomes.push_back({rid, o, k});
        return s.apply_report(r, now);
    }
};

std::vector<std::uint32_t> rids(std::initializer_list<std::uint32_t> l) {
    return l;
}

}  // namespace

TEST_CASE("a message's recipients for one domain travel together", "[queue][scheduler]") {
    Fixture f;
    REQUIRE(f.add(1, 0, {"a@a.com", "b@b.com", "c@A.com"}));
    CHECK_FALSE(f.add(1, 0, {"x@a.com"}));  // duplicate MID
    CHECK_FALSE(f.add(2, 0, {}));           // no recipients

    Pick p = f.s.next_work(0);
    REQUIRE(p.work);
    CHECK(p.work->domain_name == "a.com");
    CHECK(p.work->mid == 1);
    CHECK(p.work->rids == rids({0, 2}));
    CHECK(p.work->new_connection);
    CHECK_FALSE(p.work->probe);
    CHECK(f.s.address(1, 2) == "c@A.com");
    CHECK(f.s.sender(1) == "s@x.org");

    p = f.s.next_work(0);
    REQUIRE(p.work);
    CHECK(p.work->domain_name == "b.com");
    CHECK(p.work->rids == rids({1}));

    p = f.s.next_work(0);
    CHECK_FALSE(p.work);
    CHECK(p.wake_at == kNever);
    CHECK(f.s.domain(f.id("a.com")).connections() == 1);
}

TEST_CASE("transaction recipient limit splits a group; 452 re-splits", "[queue][scheduler]") {
    Fixture f;
    f.base.max_recipients_per_transaction = 2;
    REQUIRE(f.add(7, 0, {"0@a.com", "1@a.com", "2@a.com", "3@a.com", "4@a.com"}));
    const DomainId a = f.id("a.com");

    Pick p = f.s.next_work(0);
    REQUIRE(p.work);
    CHECK(p.work->rids == rids({0, 1}));
    // Server said 452 to RCPT 1: delivered 0, 1 not attempted → ready again at once.
    ReportResult r = f.s.apply_report(
        {a, 7, {{0, Outcome::kDelivered, {}}, {1, Outcome::kNotAttempted, {}}}}, 0);
    CHECK(r.finals.size() == 1);
    CHECK(r.ignored == 0);

    std::vector<std::vector<std::uint32_t>> seen;
    while (true) {
        Pick q = f.s.next_work_on_connection(a, 0);
        if (!q.work) break;
        CHECK_FALSE(q.work->new_connection);
        seen.push_back(q.work->rids);
        f.report(*q.work, Outcome::kDelivered, 0);
    }
    CHECK(seen == std::vector<std::vector<std::uint32_t>>{{1, 2}, {3, 4}});
    CHECK(f.s.counters(a).delivered == 5);
    CHECK(f.s.index().message_count() == 0);
    CHECK_FALSE(f.s.next_work_on_connection(a, 0).work);
}

TEST_CASE("fairness: a huge domain does not starve small ones", "[queue][scheduler]") {
    Fixture f;
    f.policies["big.com"].max_concurrency = 10000;
    for (Mid m = 1; m <= 10000; ++m)
        REQUIRE(f.add(m, 0, {"u@big.com"}));
    for (int d = 0; d < 10; ++d) {
        REQUIRE(f.add(20000 + d, 0, {"u@small" + std::to_string(d) + ".com"}));
    }
    // Let big.com have a wide-open window so only fairness protects the others.
    for (int i = 0; i < 100000; ++i)
        f.s.host(f.id("big.com")).on_transaction_success(0, 10000);

    std::set<std::string> small_served;
    int big = 0;
    for (int pick = 0; pick < 12; ++pick) {
        Pick p = f.s.next_work(0);
        REQUIRE(p.work);
        if (p.work->domain_name == "big.com") {
            big++;
        } else {
            small_served.insert(p.work->domain_name);
        }
    }
    CHECK(small_served.size() == 10);
    CHECK(big == 2);
}

TEST_CASE("per-domain and system-wide concurrency caps", "[queue][scheduler]") {
    SECTION("destination max_concurrency") {
        Fixture f;
        f.policies["a.com"].max_concurrency = 2;
        for (Mid m = 1; m <= 10; ++m)
            REQUIRE(f.add(m, 0, {"u@a.com"}));
        const DomainId a = f.id("a.com");
        CHECK(f.s.next_work(0).work);
        CHECK(f.s.next_work(0).work);
        Pick p = f.s.next_work(0);
        CHECK_FALSE(p.work);
        CHECK(p.wake_at == kNever);  // only a connection end can change this
        f.s.connection_established(a);
        CHECK(f.s.gauges(a).current_connections == 1);
        CHECK(f.s.gauges(a).pending_connections == 1);
        f.s.connection_ended(a, true, 0);
        CHECK(f.s.next_work(0).work);
        CHECK_FALSE(f.s.next_work(0).work);
    }
    SECTION("slow-start window limits a fresh host") {
        Fixture f;
        for (Mid m = 1; m <= 20; ++m)
            REQUIRE(f.add(m, 0, {"u@a.com"}));
        int n = 0;
        while (f.s.next_work(0).work)
            n++;
        CHECK(n == static_cast<int>(esad::hosts::kInitialWindow));
    }
    SECTION("system-wide max_concurrency") {
        Fixture f(3);
        for (int d = 0; d < 5; ++d)
            REQUIRE(f.add(1 + d, 0, {"u@d" + std::to_string(d) + ".com"}));
        std::vector<DomainId> got;
        for (int i = 0; i < 3; ++i) {
            Pick p = f.s.next_work(0);
            REQUIRE(p.work);
            got.push_back(p.work->domain);
        }
        CHECK_FALSE(f.s.next_work(0).work);
        CHECK(f.s.totals().connections == 3);
        f.s.connection_ended(got[0], false, 0);
        Pick p = f.s.next_work(0);
        REQUIRE(p.work);
        CHECK(p.work->domain_name == "d3.com");
    }
}

TEST_CASE("soft bounce: nothing until T, then the retry", "[queue][scheduler]") {
    Fixture f;
    REQUIRE(f.add(1, 0, {"u@a.com", "v@a.com"}));
    const DomainId a = f.id("a.com");
    Pick p = f.s.next_work(1000);
    REQUIRE(p.work);
    ReportResult r = f.report(*p.work, Outcome::kSoftBounce, 1000);
    REQUIRE(r.deferred.size() == 2);
    CHECK(r.deferred[0].next_attempt == 61'000);
    CHECK(r.deferred[0].attempts == 1);
    CHECK(f.s.counters(a).soft_bounced_events == 2);
    f.s.connection_ended(a, true, 1000);

    DomainGauges g = f.s.gauges(a);
    CHECK(g.unattempted == 0);
    CHECK(g.attempted == 2);
    CHECK(g.active() == 2);
    CHECK(g.deferred == 2);

    p = f.s.next_work(1000);
    CHECK_FALSE(p.work);
    CHECK(p.wake_at == 61'000);
    CHECK_FALSE(f.s.next_work(60'999).work);
    p = f.s.next_work(61'000);
    REQUIRE(p.work);
    CHECK(p.work->rids == rids({0, 1}));  // still one transaction
    r = f.report(*p.work, Outcome::kSoftBounce, 61'000);
    CHECK(r.deferred[0].next_attempt == 61'000 + 120'000);
}

TEST_CASE("ties break deterministically", "[queue][scheduler]") {
    auto run = [](std::vector<int> report_order) {
        Fixture f;
        for (Mid m = 1; m <= 3; ++m)
            REQUIRE(f.add(m, 0, {"u@a.com"}));
        std::vector<Work> works;
        for (int i = 0; i < 3; ++i)
            works.push_back(*f.s.next_work(0).work);
        for (int i : report_order)
            f.report(works[i], Outcome::kSoftBounce, 0);
        for (int i = 0; i < 3; ++i)
            f.s.connection_ended(works[i].domain, false, 0);
        std::vector<Mid> order;
        for (int i = 0; i < 3; ++i)
            order.push_back(f.s.next_work(60'000).work->mid);
        return order;
    };
    CHECK(run({2, 0, 1}) == std::vector<Mid>{1, 2, 3});
    CHECK(run({1, 2, 0}) == std::vector<Mid>{1, 2, 3});
}

TEST_CASE("host down: held until the host retry time, then one probe", "[queue][scheduler]") {
    Fixture f;
    for (Mid m = 1; m <= 10; ++m)
        REQUIRE(f.add(m, 0, {"u@a.com"}));
    const DomainId a = f.id("a.com");
    Pick p = f.s.next_work(0);
    REQUIRE(p.work);
    (void)f.s.host(a).on_all_candidates_failed(1000, 3600 * kSec);
    f.report(*p.work, Outcome::kSoftBounce, 1000);
    f.s.connection_ended(a, false, 1000);

    p = f.s.next_work(1000);
    CHECK_FALSE(p.work);
    CHECK(p.wake_at == 61'000);
    p = f.s.next_work(61'000);
    REQUIRE(p.work);
    CHECK(p.work->probe);
    CHECK_FALSE(f.s.next_work(61'000).work);  // exactly one probe
    CHECK_FALSE(f.s.next_work(200'000).work);

    // The probe reaches a greeting: up, and the queue opens (slow start).
    (void)f.s.host(a).on_greeting_reached(61'500, "192.0.2.1");
    f.s.connection_established(a);
    f.s.host_changed(a, 61'500);
    int more = 0;
    while (f.s.next_work(61'500).work)
        more++;
    CHECK(more == static_cast<int>(esad::hosts::kInitialWindow) - 1);
}

TEST_CASE("delivernow makes recipients due and clears the host timer", "[queue][scheduler]") {
    Fixture f;
    REQUIRE(f.add(1, 0, {"u@a.com"}));
    REQUIRE(f.add(2, 0, {"u@b.com"}));
    const DomainId a = f.id("a.com");
    for (int i = 0; i < 2; ++i) {
        Pick p = f.s.next_work(0);
        REQUIRE(p.work);
        (void)f.s.host(p.work->domain).on_all_candidates_failed(0, 3600 * kSec);
        f.report(*p.work, Outcome::kSoftBounce, 0);
        f.s.connection_ended(p.work->domain, false, 0);
    }
    CHECK_FALSE(f.s.next_work(10'000).work);
    CHECK(f.s.delivernow("nosuch.com", 10'000) == std::nullopt);
    for (int i = 0; i < 100; ++i)
        CHECK(f.s.delivernow("A.com", 10'000).has_value());
    Pick p = f.s.next_work(10'000);
    REQUIRE(p.work);
    CHECK(p.work->domain == a);
    CHECK(p.work->probe);
    CHECK_FALSE(f.s.next_work(10'000).work);  // idempotent: one probe, b.com still waits

    CHECK(f.s.delivernow_all(10'000) == 1u);  // a.com's one is in flight; b.com's is due now
    p = f.s.next_work(10'000);
    REQUIRE(p.work);
    CHECK(p.work->domain_name == "b.com");
}

TEST_CASE("suspend and resume delivery", "[queue][scheduler]") {
    Fixture f;
    REQUIRE(f.add(1, 0, {"u@a.com"}));
    REQUIRE(f.add(2, 0, {"u@b.com"}));
    CHECK_FALSE(f.s.suspend("nosuch.com"));
    CHECK(f.s.suspend("A.COM"));
    Pick p = f.s.next_work(0);
    REQUIRE(p.work);
    CHECK(p.work->domain_name == "b.com");
    CHECK_FALSE(f.s.next_work(0).work);
    CHECK_FALSE(f.s.next_work_on_connection(f.id("a.com"), 0).work);
    CHECK(f.s.resume("a.com"));
    REQUIRE(f.add(3, 0, {"v@b.com"}));
    f.s.suspend_all();
    CHECK(f.s.suspended_all());
    CHECK_FALSE(f.s.next_work(0).work);
    f.s.resume_all();
    int n = 0;
    while (f.s.next_work(0).work)
        n++;
    CHECK(n == 2);
}

TEST_CASE("expiry by age and by attempts", "[queue][scheduler]") {
    SECTION("age: ESA example 2 (max 100 s in queue)") {
        Fixture f;
        f.base.bounce.max_queue_time_s = 100;
        f.base.bounce.max_retry_s = 60;
        REQUIRE(f.add(1, 0, {"u@a.com"}));
        const DomainId a = f.id("a.com");
        Pick p = f.s.next_work(0);
        f.report(*p.work, Outcome::kSoftBounce, 0);
        f.s.connection_ended(a, true, 0);
        p = f.s.next_work(60'000);
        REQUIRE(p.work);
        f.report(*p.work, Outcome::kSoftBounce, 60'000);  // next due at 120 s
        f.s.connection_ended(a, true, 60'000);
        p = f.s.next_work(120'000);
        CHECK_FALSE(p.work);
        REQUIRE(p.expired.size() == 1);
        CHECK(p.expired[0] ==
              FinalRecipient{1, 0, a, FinalState::kHardBounced, HardKind::kExpired});
        CHECK(p.messages_done == std::vector<Mid>{1});
        CHECK(f.s.counters(a).expired_hard == 1);
        CHECK(f.s.counters(a).hard_bounced() == 1);
        CHECK(f.s.counters(a).completed() == 1);
        CHECK(f.s.gauges(a).active() == 0);
    }
    SECTION("attempts: ESA example 1 (max 2 retries)") {
        Fixture f;
        f.base.bounce.max_retries = 2;
        f.base.bounce.max_retry_s = 60;
        REQUIRE(f.add(1, 0, {"u@a.com"}));
        const DomainId a = f.id("a.com");
        TimeMs now = 0;
        for (int attempt = 1; attempt <= 3; ++attempt) {
            Pick p = f.s.next_work(now);
            REQUIRE(p.work);
            ReportResult r = f.report(*p.work, Outcome::kSoftBounce, now);
            f.s.connection_ended(a, true, now);
            if (attempt < 3) {
                REQUIRE(r.deferred.size() == 1);
                now = r.deferred[0].next_attempt;
                CHECK(now == attempt * 60'000);
            } else {
                CHECK(r.deferred.empty());
                REQUIRE(r.finals.size() == 1);
                CHECK(r.finals[0].kind == HardKind::kExpired);
                CHECK(r.messages_done == std::vector<Mid>{1});
            }
        }
        CHECK(f.s.counters(a).soft_bounced_events == 3);
    }
    SECTION("a down host's queue expires at its host retry time") {
        Fixture f;
        f.base.bounce.max_queue_time_s = 30;
        for (Mid m = 1; m <= 50; ++m)
            REQUIRE(f.add(m, 0, {"u@a.com"}));
        const DomainId a = f.id("a.com");
        Pick p = f.s.next_work(0);
        (void)f.s.host(a).on_all_candidates_failed(0, 3600 * kSec);
        f.report(*p.work, Outcome::kSoftBounce, 0);
        f.s.connection_ended(a, false, 0);
        p = f.s.next_work(0);
        CHECK(p.wake_at == 60'000);
        p = f.s.next_work(60'000);
        CHECK(p.expired.size() == 50);
        CHECK(p.messages_done.size() == 50);
        CHECK_FALSE(p.work);
        CHECK(f.s.gauges(a).active() == 0);
    }
}

TEST_CASE("a changed bounce profile applies to mail already queued", "[queue][scheduler]") {
    Fixture f;
    REQUIRE(f.add(1, 0, {"u@a.com"}));
    const DomainId a = f.id("a.com");
    Pick p = f.s.next_work(0);
    f.report(*p.work, Outcome::kSoftBounce, 0);
    f.s.connection_ended(a, true, 0);
    f.base.bounce.max_queue_time_s = 30;  // reload: 72 h → 30 s
    f.s.reload_policies();
    p = f.s.next_work(60'000);
    CHECK_FALSE(p.work);
    REQUIRE(p.expired.size() == 1);

    // And the other way: a longer retry count keeps mail alive that would have expired.
    Fixture g;
    g.base.bounce.max_retries = 1;
    REQUIRE(g.add(1, 0, {"u@a.com"}));
    p = g.s.next_work(0);
    g.report(*p.work, Outcome::kSoftBounce, 0);
    g.s.connection_ended(p.work->domain, true, 0);
    g.base.bounce.max_retries = 5;
    g.s.reload_policies();
    p = g.s.next_work(60'000);
    REQUIRE(p.work);
    ReportResult r = g.report(*p.work, Outcome::kSoftBounce, 60'000);
    CHECK(r.deferred.size() == 1);  // 2 attempts ≤ 5: not expired
}

TEST_CASE("reports: delivered, hard bounce kinds, unknown entries", "[queue][scheduler]") {
    Fixture f;
    REQUIRE(f.add(1, 0, {"0@a.com", "1@a.com", "2@a.com", "3@a.com", "4@a.com", "5@a.com"}));
    const DomainId a = f.id("a.com");
    Pick p = f.s.next_work(0);
    REQUIRE(p.work);
    ReportResult r = f.s.apply_report({a,
                                       1,
                                       {{0, Outcome::kDelivered, {}},
                                        {1, Outcome::kHardBounce, HardKind::k5xx},
                                        {2, Outcome::kHardBounce, HardKind::kDns},
                                        {3, Outcome::kHardBounce, HardKind::kFilter},
                                        {4, Outcome::kHardBounce, HardKind::kNone},
                                        {5, Outcome::kDelivered, {}},
                                        {5, Outcome::kDelivered, {}},
                                        {9, Outcome::kDelivered, {}}}},
                                      0);
    CHECK(r.finals.size() == 6);
    CHECK(r.ignored == 2);
    CHECK(r.messages_done == std::vector<Mid>{1});
    const DomainCounters& c = f.s.counters(a);
    CHECK(c.delivered == 2);
    CHECK(c.fivexx_hard == 1);
    CHECK(c.dns_hard == 1);
    CHECK(c.filter_hard == 1);
    CHECK(c.other_hard == 1);
    CHECK(c.completed() == 6);
    CHECK(f.s.totals().counters.completed() == 6);
    CHECK(f.s.apply_report({a, 99, {{0, Outcome::kDelivered, {}}}}, 0).ignored == 1);
}

TEST_CASE("delete and bounce recipients by domain, sender, all", "[queue][scheduler]") {
    Fixture f;
    REQUIRE(f.add(1, 0, {"u@a.com", "v@b.com"}, "alice@x.org"));
    REQUIRE(f.add(2, 0, {"w@a.com"}, "bob@x.org"));
    REQUIRE(f.add(3, 0, {"x@c.com"}, "Bob@X.org"));
    const DomainId a = f.id("a.com");

    RemoveResult r = f.s.delete_recipients(Selector::domain("nosuch.com"), 0);
    CHECK_FALSE(r.found);

    r = f.s.delete_recipients(Selector::domain("A.com"), 0);
    CHECK(r.found);
    CHECK(r.removed.size() == 2);
    CHECK(r.messages_done == std::vector<Mid>{2});
    CHECK(f.s.counters(a).deleted == 2);
    CHECK(f.s.gauges(a).active() == 0);
    CHECK(f.s.gauges(a).oldest_received == kNever);

    r = f.s.bounce_recipients(Selector::sender("bob@x.org"), 0);
    CHECK(r.found);
    REQUIRE(r.removed.size() == 1);
    CHECK(r.removed[0].mid == 3);
    CHECK(r.removed[0].kind == HardKind::kOther);
    CHECK(f.s.counters(f.id("c.com")).other_hard == 1);
    CHECK_FALSE(f.s.bounce_recipients(Selector::sender("nobody@x.org"), 0).found);

    r = f.s.delete_recipients(Selector::all(), 0);
    CHECK(r.removed.size() == 1);
    CHECK(r.messages_done == std::vector<Mid>{1});
    CHECK(f.s.index().message_count() == 0);
    Pick p = f.s.next_work(0);
    CHECK_FALSE(p.work);
    CHECK(p.wake_at == kNever);
}

TEST_CASE("in-flight recipients removed by the operator ignore their report",
          "[queue][scheduler]") {
    Fixture f;
    REQUIRE(f.add(1, 0, {"u@a.com"}));
    Pick p = f.s.next_work(0);
    REQUIRE(p.work);
    RemoveResult r = f.s.delete_recipients(Selector::domain("a.com"), 0);
    CHECK(r.removed.size() == 1);
    CHECK(f.report(*p.work, Outcome::kDelivered, 0).ignored == 1);
    CHECK(f.s.counters(p.work->domain).delivered == 0);
}

TEST_CASE("gauges: active, oldest message", "[queue][scheduler]") {
    Fixture f;
    REQUIRE(f.add(1, 5000, {"u@a.com"}));
    REQUIRE(f.add(2, 7000, {"v@a.com", "w@a.com"}));
    const DomainId a = f.id("a.com");
    DomainGauges g = f.s.gauges(a);
    CHECK(g.unattempted == 3);
    CHECK(g.active() == 3);
    CHECK(g.ready == 3);
    CHECK(g.oldest_received == 5000);
    Pick p = f.s.next_work(10'000);
    REQUIRE(p.work);
    CHECK(p.work->mid == 1);
    CHECK(f.s.gauges(a).in_flight == 1);
    f.report(*p.work, Outcome::kDelivered, 10'000);
    g = f.s.gauges(a);
    CHECK(g.oldest_received == 7000);
    CHECK(g.active() == 2);
    CHECK(f.s.totals().active() == 2);
    CHECK(f.s.totals().messages == 1);
}

TEST_CASE("recovered recipients keep attempts and next attempt time", "[queue][scheduler]") {
    Fixture f;
    NewMessage m;
    m.mid = 5;
    m.received = 0;
    m.recipients.push_back({0, "u@a.com", "a.com", 3, 90'000});
    REQUIRE(f.s.add_message(m, 1000));
    const DomainId a = f.id("a.com");
    CHECK(f.s.gauges(a).attempted == 1);
    Pick p = f.s.next_work(1000);
    CHECK_FALSE(p.work);
    CHECK(p.wake_at == 90'000);
    p = f.s.next_work(90'000);
    REQUIRE(p.work);
    ReportResult r = f.report(*p.work, Outcome::kSoftBounce, 90'000);
    CHECK(r.deferred[0].attempts == 4);
    CHECK(r.deferred[0].next_attempt == 90'000 + 480'000);
}
