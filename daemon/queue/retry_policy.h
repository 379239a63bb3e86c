// retry_policy — when a soft-bounced recipient is tried again, and when it has expired.
// Pure: time is a parameter, randomness comes from an injected source; no I/O, no logging.
//
// Schedule (esa-reference §9.2, DESIGN.md §3.5): after the n-th failed attempt (n >= 1) the
// wait is initial_retry * 2^(n-1), capped at max_retry, minus a random jitter of up to
// jitter_percent of that wait (never longer than the cap, never less than 1 s). Jitter only
// shortens the wait so the bounce profile's maximum stays a true maximum.
//
// Expiry: a recipient has expired when attempts > max_retries (ESA example 1: max 2 retries
// → the 3rd failed attempt bounces) or when now - received > max_queue_time (checked just
// before the next attempt, ESA example 2). Expiry is a hard bounce with kExpiredText.
//
// Nothing here is stored per recipient: every answer is computed from (profile, attempts,
// received time, now), so a changed bounce profile applies to mail already queued.
//
// API
//   RetryPolicy policy(rng, jitter_percent);
//   policy.next_attempt(profile, attempts, now) -> time of the next attempt
//   policy.delay_ms(profile, attempts, jitter_draw) -> the wait itself (deterministic)
//   is_expired(profile, attempts, received, now) / expiry_time(profile, received)
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>

#include "common/config.h"

namespace esad::queue {

using TimeMs = std::int64_t;  // milliseconds on the glue's clock (one clock for everything)
using Mid = std::uint64_t;

inline constexpr TimeMs kNever = INT64_MAX;

// Uniform random integer in [0, bound); bound > 0. Tests pass a seeded generator.
using RandomFn = std::function<std::uint64_t(std::uint64_t bound)>;

inline constexpr std::string_view kExpiredStatus = "5.4.7";
inline constexpr std::string_view kExpiredText = "5.4.7 Delivery expired (message too old)";

class RetryPolicy {
  public:
    // rng may be empty: then there is no jitter.
    explicit RetryPolicy(RandomFn rng = {}, std::uint32_t jitter_percent = 10)
        : rng_(std::move(rng)), jitter_percent_(jitter_percent > 100 ? 100 : jitter_percent) {}

    // One random draw in [0, 1'000'000) used as the jitter fraction (parts per million).
    // A report draws once and uses it for every recipient of one transaction, so recipients
    // that failed together stay together.
    std::uint32_t draw_jitter() const;

    // Wait after `attempts` failed attempts (attempts >= 1; 0 is treated as 1).
    TimeMs delay_ms(const BounceProfile& profile, std::uint32_t attempts,
                    std::uint32_t jitter_ppm) const;

    TimeMs next_attempt(const BounceProfile& profile, std::uint32_t attempts, TimeMs now) const {
        return now + delay_ms(profile, attempts, draw_jitter());
    }

  private:
    RandomFn rng_;
    std::uint32_t jitter_percent_;
};

bool is_expired(const BounceProfile& profile, std::uint32_t attempts, TimeMs received, TimeMs now);

// The instant after which the recipient is too old (received + max_queue_time).
TimeMs expiry_time(const BounceProfile& profile, TimeMs received);

}  // namespace esad::queue
