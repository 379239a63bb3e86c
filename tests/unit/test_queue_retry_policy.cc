// Unit tests for daemon/queue/retry_policy: schedule, cap, jitter bounds, expiry.
#include <catch2/catch.hpp>

#include <random>

#include "daemon/queue/retry_policy.h"

using namespace esad::queue;

namespace {
esad::BounceProfile profile(std::uint32_t retries, std::uint64_t queue_s, std::uint64_t init_s,
                            std::uint64_t max_s) {
    esad::BounceProfile p;
    p.max_retries = retries;
    p.max_queue_time_s = queue_s;
    p.initial_retry_s = init_s;
    p.max_retry_s = max_s;
    return p;
}
}  // namespace

TEST_CASE("retry delay doubles from initial_retry and is capped at max_retry", "[queue][retry]") {
    const RetryPolicy policy;  // no rng: no jitter
    const auto p = profile(100, 259200, 60, 3600);
    struct Row {
        std::uint32_t attempts;
        TimeMs delay;
    };
    const Row rows[] = {{0, 60'000},    {1, 60'000},     {2, 120'000},      {3, 240'000},
                        {4, 480'000},   {5, 960'000},    {6, 1'920'000},    {7, 3'600'000},
                        {8, 3'600'000}, {50, 3'600'000}, {65535, 3'600'000}};
    for (const auto& r : rows) {
        INFO("attempts " << r.attempts);
        CHECK(policy.delay_ms(p, r.attempts, 0) == r.delay);
    }
    // ESA example 1: max retry interval 60 → every wait is 60 s.
    CHECK(policy.delay_ms(profile(2, 259200, 60, 60), 2, 0) == 60'000);
    // Initial above the cap: the cap wins.
    CHECK(policy.delay_ms(profile(2, 259200, 600, 60), 1, 0) == 60'000);
}

TEST_CASE("retry jitter only shortens the wait, within jitter_percent", "[queue][retry]") {
    std::mt19937_64 gen(42);
    const RetryPolicy policy([&](std::uint64_t bound) { return gen() % bound; }, 10);
    const auto p = profile(100, 259200, 60, 3600);
    for (int i = 0; i < 200; ++i) {
        const std::uint32_t attempts = 1 + static_cast<std::uint32_t>(i % 9);
        const TimeMs base = RetryPolicy().delay_ms(p, attempts, 0);
        const TimeMs d = policy.next_attempt(p, attempts, 1'000'000) - 1'000'000;
        CHECK(d <= base);
        CHECK(d >= base - base / 10);
    }
    // Deterministic with a fixed draw.
    CHECK(policy.delay_ms(p, 1, 500'000) == 57'000);
    CHECK(policy.delay_ms(p, 7, 999'999) > 3'240'000);
}

TEST_CASE("expiry by attempts and by age", "[queue][retry]") {
    struct Row {
        std::uint32_t retries;
        std::uint64_t queue_s;
        std::uint32_t attempts;
        TimeMs age_ms;
        bool expired;
    };
    const Row rows[] = {
        {2, 259200, 1, 0, false},     {2, 259200, 2, 0, false},
        {2, 259200, 3, 0, true},  // ESA example 1: third failed attempt bounces
        {100, 100, 1, 60'000, false}, {100, 100, 1, 100'000, false},
        {100, 100, 1, 100'001, true},  // ESA example 2: due at 120 s > 100 s
        {100, 100, 2, 120'000, true}, {0, 259200, 1, 0, true},
    };
    const TimeMs received = 5'000'000;
    for (const auto& r : rows) {
        INFO("retries " << r.retries << " attempts " << r.attempts << " age " << r.age_ms);
        CHECK(is_expired(profile(r.retries, r.queue_s, 60, 3600), r.attempts, received,
                         received + r.age_ms) == r.expired);
    }
    CHECK(expiry_time(profile(1, 72 * 3600, 60, 3600), 1000) == 1000 + 72 * 3600 * 1000LL);
    CHECK(expiry_time(profile(1, UINT64_MAX, 60, 3600), 1000) > 1000);  // no overflow
    CHECK(kExpiredText == "5.4.7 Delivery expired (message too old)");
}
