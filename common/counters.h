// Delivery counters with the ESA semantics (DESIGN.md §5, esa-reference §4.1).
//
// Each counter has three views, as `status` prints them: Reset (since `resetcounters`),
// Uptime (since this process started) and Lifetime (persisted across restarts). The JSON
// key of each counter (kCounterInfo[].key) is part of the control-protocol contract.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace esad {

enum class Counter : uint8_t {
    kMessagesReceived,
    kRecipientsReceived,
    kGenBounceRecipients,
    kRejectedRecipients,
    kDroppedMessages,
    kSoftBouncedEvents,
    kCompletedRecipients,
    kHardBouncedRecipients,
    kDnsHardBounces,
    kHardBounces5xx,
    kExpiredHardBounces,
    kFilterHardBounces,
    kOtherHardBounces,
    kDeliveredRecipients,
    kDeletedRecipients,
    kCount
};

inline constexpr size_t kCounterCount = static_cast<size_t>(Counter::kCount);

struct CounterInfo {
    std::string_view key;    // JSON key
    std::string_view label;  // ESA label
    int indent;              // ESA indentation level below "Counters:"
};

inline constexpr std::array<CounterInfo, kCounterCount> kCounterInfo = {{
    {"messages_received", "Messages Received", 2},
    {"recipients_received", "Recipients Received", 2},
    {"gen_bounce_recipients", "Gen. Bounce Recipients", 1},
    {"rejected_recipients", "Rejected Recipients", 2},
    {"dropped_messages", "Dropped Messages", 2},
    {"soft_bounced_events", "Soft Bounced Events", 2},
    {"completed_recipients", "Completed Recipients", 2},
    {"hard_bounced_recipients", "Hard Bounced Recipients", 3},
    {"dns_hard_bounces", "DNS Hard Bounces", 4},
    {"5xx_hard_bounces", "5XX Hard Bounces", 4},
    {"expired_hard_bounces", "Expired Hard Bounces", 4},
    {"filter_hard_bounces", "Filter Hard Bounces", 4},
    {"other_hard_bounces", "Other Hard Bounces", 4},
    {"delivered_recipients", "Delivered Recipients", 3},
    {"deleted_recipients", "Deleted Recipients", 3},
}};

inline constexpr const CounterInfo& counter_info(Counter c) {
    return kCounterInfo[static_cast<size_t>(c)];
}

// Reset / Uptime / Lifetime views over one set of counters.
class CounterSet {
  public:
    void add(Counter c, uint64_t n = 1) { uptime_[static_cast<size_t>(c)] += n; }
    uint64_t uptime(Counter c) const { return uptime_[static_cast<size_t>(c)]; }
    uint64_t reset_view(Counter c) const {
        size_t i = static_cast<size_t>(c);
        return uptime_[i] - reset_mark_[i];
    }
    uint64_t lifetime(Counter c) const {
        size_t i = static_cast<size_t>(c);
        return lifetime_base_[i] + uptime_[i];
    }
    void reset() { reset_mark_ = uptime_; }
    // Lifetime totals recovered from disk at startup.
    void set_lifetime_base(Counter c, uint64_t n) { lifetime_base_[static_cast<size_t>(c)] = n; }

  private:
    std::array<uint64_t, kCounterCount> uptime_{};
    std::array<uint64_t, kCounterCount> reset_mark_{};
    std::array<uint64_t, kCounterCount> lifetime_base_{};
};

}  // namespace esad
