// Event rates for `status detail` (esa-reference §4.1): events per hour extrapolated from the
// last 1, 5 and 15 minutes.
//
//   RateTracker t;                       // keeps 15 minutes of history
//   t.sample(now_s, counters);           // once a second, from the loop's timer
//   t.per_hour(Counter::kRecipientsReceived, 60);   // 100 in the last minute -> 6,000
//
// Pure and single-threaded. It keeps one snapshot of the cumulative (uptime) counters per
// second in a ring, so sampling costs nothing on the delivery hot path and a rate is a
// difference of two snapshots: (now - snapshot at or before now - window) * 3600 / window.
// Like the appliance, a window reaching back before the first sample still divides by the
// whole window (100 events in the first minute of uptime read 6,000 / 1,200 / 400).
// Samples with a time that does not advance replace the newest one; counters that went
// backwards (never for uptime counters) count as zero events.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/counters.h"
#include "common/payloads/status.h"

namespace esad {

class RateTracker {
  public:
    // The counters `status detail` shows a rate for, in ESA order.
    static constexpr std::array<Counter, 6> kRateCounters = {
        Counter::kMessagesReceived,      Counter::kRecipientsReceived,
        Counter::kSoftBouncedEvents,     Counter::kCompletedRecipients,
        Counter::kHardBouncedRecipients, Counter::kDeliveredRecipients};
    static constexpr int64_t kHorizonSeconds = 15 * 60;

    RateTracker();

    // Records the uptime value of every kRateCounters counter at `now_s` (seconds on any
    // monotonic clock).
    void sample(int64_t now_s, const CounterSet& counters);
    // The same with raw values, one per kRateCounters entry (tests).
    void sample(int64_t now_s, const std::array<uint64_t, kRateCounters.size()>& values);

    // Events per hour over the last `window_s` seconds (1..kHorizonSeconds) as of the newest
    // sample; 0 for a counter not in kRateCounters or before any sample.
    uint64_t per_hour(Counter c, int64_t window_s) const;
    size_t samples() const { return size_; }

  private:
    struct Snapshot {
        int64_t at = 0;
        std::array<uint64_t, kRateCounters.size()> values{};
    };
    const Snapshot& at_index(size_t i) const;  // 0 = oldest
    std::vector<Snapshot> ring_;
    size_t head_ = 0;  // next write position
    size_t size_ = 0;
};

// {"messages_received": {"1m": n, "5m": n, "15m": n}, ...} for the kRateCounters, keyed by
// their counter JSON keys: the `rates` of `status` with `detail`.
std::map<std::string, payloads::RateValues> rates_of(const RateTracker& tracker);

}  // namespace esad
