// ESA formatting helpers.
#include <catch2/catch.hpp>

#include <cstdlib>

#include "common/counters.h"
#include "common/format.h"

using namespace esad;

TEST_CASE("thousands separators") {
    CHECK(thousands(0) == "0");
    CHECK(thousands(999) == "999");
    CHECK(thousands(1000) == "1,000");
    CHECK(thousands(7055) == "7,055");
    CHECK(thousands(12345) == "12,345");
    CHECK(thousands(182000) == "182,000");
    CHECK(thousands(1234567) == "1,234,567");
}

TEST_CASE("ESA time layouts") {
    setenv("TZ", "UTC", 1);
    tzset();
    CHECK(esa_time(1597343382) == "Thu Aug 13 18:29:42 2020 UTC");
    CHECK(esa_log_time(1694005996) == "Wed Sep  6 13:13:16 2023");
}

TEST_CASE("human durations") {
    CHECK(human_duration(5) == "5s");
    CHECK(human_duration(65) == "1m 5s");
    CHECK(human_duration(3661) == "1h 1m 1s");
    CHECK(human_duration(90061) == "1d 1h 1m 1s");
}

TEST_CASE("counter views: reset, uptime, lifetime") {
    CounterSet c;
    c.set_lifetime_base(Counter::kDeliveredRecipients, 100);
    c.add(Counter::kDeliveredRecipients, 5);
    c.reset();
    c.add(Counter::kDeliveredRecipients, 2);
    CHECK(c.reset_view(Counter::kDeliveredRecipients) == 2);
    CHECK(c.uptime(Counter::kDeliveredRecipients) == 7);
    CHECK(c.lifetime(Counter::kDeliveredRecipients) == 107);
    CHECK(c.uptime(Counter::kMessagesReceived) == 0);
}
