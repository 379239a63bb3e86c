// See rate_tracker.h.
#include "common/rate_tracker.h"

#include <algorithm>

namespace esad {

RateTracker::RateTracker() : ring_(static_cast<size_t>(kHorizonSeconds) + 1) {}

void RateTracker::sample(int64_t now_s, const CounterSet& counters) {
    std::array<uint64_t, kRateCounters.size()> values{};
    for (size_t i = 0; i < kRateCounters.size(); ++i)
        values[i] = counters.uptime(kRateCounters[i]);
    sample(now_s, values);
}

void RateTracker::sample(int64_t now_s, const std::array<uint64_t, kRateCounters.size()>& values) {
    if (size_ > 0) {
        Snapshot& newest = ring_[(head_ + ring_.size() - 1) % ring_.size()];
        if (now_s <= newest.at) {  // same second (or a clock hiccup): keep the newest values
            newest.values = values;
            return;
        }
    }
    ring_[head_] = Snapshot{now_s, values};
    head_ = (head_ + 1) % ring_.size();
    size_ = std::min(size_ + 1, ring_.size());
}

const RateTracker::Snapshot& RateTracker::at_index(size_t i) const {
    size_t oldest = (head_ + ring_.size() - size_) % ring_.size();
    return ring_[(oldest + i) % ring_.size()];
}

uint64_t RateTracker::per_hour(Counter c, int64_t window_s) const {
    auto it = std::find(kRateCounters.begin(), kRateCounters.end(), c);
    if (it == kRateCounters.end() || size_ == 0 || window_s <= 0) return 0;
    window_s = std::min(window_s, kHorizonSeconds);
    size_t k = static_cast<size_t>(it - kRateCounters.begin());
    const Snapshot& newest = at_index(size_ - 1);
    int64_t from = newest.at - window_s;
    // The newest snapshot at or before `from`; the oldest one when history is shorter.
    size_t lo = 0, hi = size_;  // first index with at > from
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (at_index(mid).at <= from)
            lo = mid + 1;
        else
            hi = mid;
    }
    const Snapshot& base = at_index(lo == 0 ? 0 : lo - 1);
    uint64_t events = newest.values[k] >= base.values[k] ? newest.values[k] - base.values[k] : 0;
    return events * 3600 / static_cast<uint64_t>(window_s);
}

std::map<std::string, payloads::RateValues> rates_of(const RateTracker& tracker) {
    std::map<std::string, payloads::RateValues> out;
    for (Counter c : RateTracker::kRateCounters)
        out[std::string(counter_info(c).key)] = {.per_1m = tracker.per_hour(c, 60),
                                                 .per_5m = tracker.per_hour(c, 300),
                                                 .per_15m = tracker.per_hour(c, 900)};
    return out;
}

}  // namespace esad
