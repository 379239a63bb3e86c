// domain_queue — the queue of one recipient host (lower-cased domain): its ready groups
// (a message's ready recipients for this domain, FIFO), its deferred recipients (a min-heap
// by next-attempt time), its ESA counters and gauges, its policy and its connection counts.
// Pure data structure driven by the Scheduler; no I/O, no logging.
//
// Entries are references into the MessageIndex and may go stale (recipient deleted,
// rescheduled, message released); the Scheduler validates each one when it pops it, and
// compact_*() drop stale entries when they outnumber the live ones.
//
// Counters follow DESIGN.md §5 / esa-reference §3: Completed = Hard Bounced + Delivered +
// Deleted; Hard Bounced = DNS + 5XX + Filter + Expired + Other. Gauges: Active =
// Unattempted + Attempted (in-flight recipients included).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "common/config.h"
#include "daemon/hosts/host_state.h"
#include "daemon/queue/message_index.h"

namespace esad::queue {

// What the scheduler needs from the configuration for one domain (destconfig + its
// bounce profile), looked up by the glue's PolicyLookup.
struct DomainPolicy {
    std::uint32_t max_concurrency = 500;                 // destconfig max_concurrency
    std::uint32_t max_recipients_per_transaction = 100;  // RFC 5321 minimum is 100
    BounceProfile bounce;
};

struct GroupRef {
    std::uint32_t msg = 0;
    std::uint32_t gen = 0;
};

struct DeferredEntry {
    TimeMs at = 0;
    std::uint32_t msg = 0;
    std::uint32_t slot = 0;
};

struct DomainCounters {
    std::uint64_t soft_bounced_events = 0;
    std::uint64_t delivered = 0;
    std::uint64_t dns_hard = 0;
    std::uint64_t fivexx_hard = 0;
    std::uint64_t expired_hard = 0;
    std::uint64_t filter_hard = 0;
    std::uint64_t other_hard = 0;
    std::uint64_t deleted = 0;

    std::uint64_t hard_bounced() const {
        return dns_hard + fivexx_hard + expired_hard + filter_hard + other_hard;
    }
    std::uint64_t completed() const { return hard_bounced() + delivered + deleted; }
};

struct DomainGauges {
    std::uint64_t unattempted = 0;
    std::uint64_t attempted = 0;
    std::uint64_t ready = 0;
    std::uint64_t deferred = 0;
    std::uint64_t in_flight = 0;
    std::uint32_t current_connections = 0;  // established (greeting reached)
    std::uint32_t pending_connections = 0;  // handed out, not yet established
    TimeMs oldest_received = kNever;        // kNever: no messages

    std::uint64_t active() const { return unattempted + attempted; }
};

class DomainQueue {
  public:
    DomainQueue(std::string name, DomainPolicy policy, hosts::HostState* host)
        : name_(std::move(name)), policy_(std::move(policy)), host_(host) {}

    const std::string& name() const { return name_; }
    const DomainPolicy& policy() const { return policy_; }
    void set_policy(DomainPolicy p) { policy_ = std::move(p); }
    hosts::HostState& host() const { return *host_; }
    bool suspended() const { return suspended_; }
    void set_suspended(bool s) { suspended_ = s; }
    std::uint32_t connections() const { return pending_ + current_; }

    // Ready FIFO.
    void push_ready(GroupRef ref) { ready_.push_back(ref); }
    bool ready_list_empty() const { return ready_head_ == ready_.size(); }
    GroupRef pop_ready();
    template <class Valid>
    void compact_ready(Valid valid);  // keep refs for which valid(ref) is true
    const std::vector<GroupRef>& ready_list() const { return ready_; }
    std::size_t ready_head() const { return ready_head_; }
    void clear_ready();

    // Deferred min-heap by (at, msg, slot).
    void push_deferred(DeferredEntry e);
    bool deferred_empty() const { return deferred_.empty(); }
    const DeferredEntry& deferred_top() const { return deferred_.front(); }
    DeferredEntry pop_deferred();
    std::vector<DeferredEntry> take_all_deferred();
    template <class Valid>
    void compact_deferred(Valid valid);
    std::size_t deferred_entries() const { return deferred_.size(); }

    // Arrival order of groups, for the Oldest Message gauge.
    void push_arrival(GroupRef ref) { arrivals_.push_back(ref); }
    template <class Live>
    const GroupRef* oldest_arrival(Live live);  // drops dead refs from the front
    const std::vector<GroupRef>& arrivals() const { return arrivals_; }
    std::size_t arrivals_head() const { return arrivals_head_; }
    void clear_arrivals();

    std::size_t approx_memory_bytes() const;

    DomainCounters counters;
    DomainGauges gauges;  // oldest_received is filled in on request by the Scheduler
    bool in_ring = false;
    TimeMs armed_at = kNever;  // earliest valid wake-up entry in the scheduler's timer heap
    std::uint32_t pending_ = 0;
    std::uint32_t current_ = 0;

  private:
    std::string name_;
    DomainPolicy policy_;
    hosts::HostState* host_;
    bool suspended_ = false;
    std::vector<GroupRef> ready_;
    std::size_t ready_head_ = 0;
    std::vector<DeferredEntry> deferred_;
    std::vector<GroupRef> arrivals_;
    std::size_t arrivals_head_ = 0;
};

// --- templates ---------------------------------------------------------------------------

template <class Valid>
void DomainQueue::compact_ready(Valid valid) {
    std::vector<GroupRef> kept;
    kept.reserve(ready_.size() - ready_head_);
    for (std::size_t i = ready_head_; i < ready_.size(); ++i) {
        if (valid(ready_[i])) kept.push_back(ready_[i]);
    }
    ready_.swap(kept);
    ready_head_ = 0;
}

bool deferred_later(const DeferredEntry& a, const DeferredEntry& b);  // heap comparator

template <class Valid>
void DomainQueue::compact_deferred(Valid valid) {
    std::vector<DeferredEntry> kept;
    kept.reserve(deferred_.size());
    for (const auto& e : deferred_) {
        if (valid(e)) kept.push_back(e);
    }
    std::make_heap(kept.begin(), kept.end(), deferred_later);
    deferred_.swap(kept);
}

template <class Live>
const GroupRef* DomainQueue::oldest_arrival(Live live) {
    while (arrivals_head_ < arrivals_.size() && !live(arrivals_[arrivals_head_])) {
        ++arrivals_head_;
    }
    if (arrivals_head_ > 64 && arrivals_head_ * 2 > arrivals_.size()) {
        arrivals_.erase(arrivals_.begin(),
                        arrivals_.begin() + static_cast<std::ptrdiff_t>(arrivals_head_));
        arrivals_head_ = 0;
    }
    return arrivals_head_ < arrivals_.size() ? &arrivals_[arrivals_head_] : nullptr;
}

}  // namespace esad::queue
