// RateTracker: events per hour from 1/5/15-minute windows (esa-reference §4.1), fake clock.
#include <catch2/catch.hpp>

#include "common/rate_tracker.h"

using namespace esad;

namespace {
using Values = std::array<uint64_t, RateTracker::kRateCounters.size()>;
constexpr size_t kRcpts = 1;  // index of kRecipientsReceived in kRateCounters

Values with_recipients(uint64_t n) {
    Values v{};
    v[kRcpts] = n;
    return v;
}
}  // namespace

TEST_CASE("the ESA example: 100 recipients in one minute") {
    RateTracker t;
    int64_t t0 = 5000;
    t.sample(t0, with_recipients(0));
    for (int s = 1; s <= 60; ++s)
        t.sample(t0 + s, with_recipients(100 * s / 60));
    CHECK(t.per_hour(Counter::kRecipientsReceived, 60) == 6000);
    CHECK(t.per_hour(Counter::kRecipientsReceived, 300) == 1200);
    CHECK(t.per_hour(Counter::kRecipientsReceived, 900) == 400);
    CHECK(t.per_hour(Counter::kMessagesReceived, 60) == 0);
}

TEST_CASE("windows slide: old events leave the 1-minute window first") {
    RateTracker t;
    t.sample(0, with_recipients(0));
    t.sample(1, with_recipients(60));  // 60 events in the first second
    for (int s = 2; s <= 120; ++s)
        t.sample(s, with_recipients(60));
    CHECK(t.per_hour(Counter::kRecipientsReceived, 60) == 0);
    CHECK(t.per_hour(Counter::kRecipientsReceived, 300) == 60 * 3600 / 300);
    // After 15 minutes and a second, the burst is out of every window.
    for (int s = 121; s <= 902; ++s)
        t.sample(s, with_recipients(60));
    CHECK(t.per_hour(Counter::kRecipientsReceived, 900) == 0);
}

TEST_CASE("missed seconds and repeated seconds are handled") {
    RateTracker t;
    t.sample(100, with_recipients(10));
    t.sample(100, with_recipients(12));  // same second: replaces the newest
    CHECK(t.samples() == 1);
    t.sample(130, with_recipients(42));  // a 30-second gap (loop stalled)
    // Since the oldest sample (12 at t=100): 30 events, over the whole 60-second window.
    CHECK(t.per_hour(Counter::kRecipientsReceived, 60) == 30 * 60);
    t.sample(160, with_recipients(52));
    // The newest sample at or before t=100 is the base: 40 events.
    CHECK(t.per_hour(Counter::kRecipientsReceived, 60) == 40 * 60);
    t.sample(161, with_recipients(53));
    // The window starts at t=101: the base is still the sample at t=100.
    CHECK(t.per_hour(Counter::kRecipientsReceived, 60) == 41 * 60);
    t.sample(190, with_recipients(60));
    // The window starts at t=130: base 42.
    CHECK(t.per_hour(Counter::kRecipientsReceived, 60) == 18 * 60);
}

TEST_CASE("the ring keeps 15 minutes and counters going backwards count as zero") {
    RateTracker t;
    for (int s = 0; s < 3000; ++s)
        t.sample(s, with_recipients(static_cast<uint64_t>(s)));
    CHECK(t.samples() == RateTracker::kHorizonSeconds + 1);
    CHECK(t.per_hour(Counter::kRecipientsReceived, 60) == 3600);
    CHECK(t.per_hour(Counter::kRecipientsReceived, 900) == 3600);
    CHECK(t.per_hour(Counter::kRecipientsReceived, 5000) == 3600);  // clamped to 15 minutes
    t.sample(3000, with_recipients(0));
    CHECK(t.per_hour(Counter::kRecipientsReceived, 60) == 0);
}

TEST_CASE("no samples: zero; the rates object of status detail") {
    RateTracker t;
    CHECK(t.per_hour(Counter::kDeliveredRecipients, 60) == 0);
    CounterSet c;
    t.sample(10, c);
    c.add(Counter::kDeliveredRecipients, 5);
    c.add(Counter::kMessagesReceived, 1);
    t.sample(11, c);
    const nlohmann::json r = rates_of(t);
    CHECK(r.size() == 6);
    CHECK(r["delivered_recipients"]["1m"] == 300);
    CHECK(r["delivered_recipients"]["5m"] == 60);
    CHECK(r["delivered_recipients"]["15m"] == 20);
    CHECK(r["messages_received"]["1m"] == 60);
    CHECK(r.contains("hard_bounced_recipients"));
    CHECK(!r.contains("deleted_recipients"));
}
