// retry_policy — see retry_policy.h. Saturating arithmetic: huge profile values never
// overflow the 64-bit millisecond clock.
#include "daemon/queue/retry_policy.h"

#include <algorithm>

namespace esad::queue {
namespace {

constexpr std::uint64_t kMaxSeconds = 1ull << 40;  // ~34,000 years: beyond any real value

std::uint64_t clamp_s(std::uint64_t s) {
    return std::min(s, kMaxSeconds);
}

}  // namespace

std::uint32_t RetryPolicy::draw_jitter() const {
    if (!rng_ || jitter_percent_ == 0) return 0;
    return static_cast<std::uint32_t>(rng_(1'000'000) % 1'000'000);
}

TimeMs RetryPolicy::delay_ms(const BounceProfile& profile, std::uint32_t attempts,
                             std::uint32_t jitter_ppm) const {
    const std::uint64_t cap = std::max<std::uint64_t>(1, clamp_s(profile.max_retry_s));
    std::uint64_t wait = std::max<std::uint64_t>(1, clamp_s(profile.initial_retry_s));
    for (std::uint32_t i = 1; i < attempts && wait < cap; ++i)
        wait *= 2;
    wait = std::min(wait, cap);
    std::uint64_t ms = wait * 1000;
    // Jitter shortens the wait by up to jitter_percent_ (ppm of that share).
    const std::uint64_t span = ms * jitter_percent_ / 100;
    ms -= span * std::min<std::uint32_t>(jitter_ppm, 999'999) / 1'000'000;
    return static_cast<TimeMs>(std::max<std::uint64_t>(ms, 1000));
}

bool is_expired(const BounceProfile& profile, std::uint32_t attempts, TimeMs received, TimeMs now) {
    if (attempts > profile.max_retries) return true;
    return now > expiry_time(profile, received);
}

TimeMs expiry_time(const BounceProfile& profile, TimeMs received) {
    const auto limit = static_cast<TimeMs>(clamp_s(profile.max_queue_time_s) * 1000);
    if (received > kNever - limit) return kNever;
    return received + limit;
}

}  // namespace esad::queue
