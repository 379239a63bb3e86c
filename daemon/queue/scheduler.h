// scheduler — the delivery scheduler: a data structure you ask "give me work, or tell me
// when to ask again" (STYLE.md §9). Pure: time is a parameter (`now`, milliseconds on one
// clock the glue chooses — received times must be on the same clock), randomness is
// injected; no libuv, no sockets, no logging, no exceptions.
//
// It owns the MessageIndex and one DomainQueue per recipient host, and consults (does not
// own) the HostTable for up/down/probe/slow-start admission.
//
// How the glue drives it
//   Scheduler s(hosts, options);            // options.policy: domain -> DomainPolicy
//   s.add_message(msg, now);                // after the spool commit / at recovery
//   Pick p = s.next_work(now);
//     p.expired        recipients that expired now (hard bounce 5.4.7, kExpiredText):
//                      journal them, DSN them; p.messages_done: every recipient final
//     p.work           {domain, MID, RIDs} to send in ONE transaction over a NEW connection
//                      (already counted as a pending connection of that domain; if the
//                      host is down this is its single probe, work->probe)
//     no work          arm one timer for p.wake_at (kNever: none) and ask again then, or
//                      after any call that changes state (add, report, connection end,
//                      delivernow, resume ...), whichever comes first.
//   s.connection_established(domain)         greeting reached (pending → current)
//   s.next_work_on_connection(domain, now)   reuse an open connection for the next message
//                                            of that domain (the glue enforces
//                                            max_messages_per_connection)
//   s.apply_report(report, now)              per-recipient outcome of a transaction: every
//                                            RID of the Work must appear exactly once
//   s.connection_ended(domain, established, now)
//   Host transitions (greeting reached, all candidates failed, DNS temp failure, 421 ...)
//   are called on s.host(domain) directly; call s.host_changed(domain, now) afterwards.
//
// Policy
//   * Fairness: domains with ready work take turns (round-robin ring, in the order they
//     became ready), one transaction per turn, so one huge domain cannot starve small ones.
//   * Admission per new connection: domain not suspended (and delivery not suspended
//     globally), system-wide connections < max_concurrency, and the host admits it
//     (HostState::may_open: slow-start window and destination max_concurrency; while down
//     nothing until the host retry time, then exactly one probe).
//   * Ties break deterministically: the ring keeps insertion order, deferred recipients are
//     due in (time, message slot, recipient slot) order, wake-ups in (time, domain id) order.
//   * A message's ready recipients for one domain form one Work, at most
//     max_recipients_per_transaction RIDs; the rest are listed again as ready.
//   * Reports: delivered / hard → final; soft → attempts+1, deferred by RetryPolicy (one
//     jitter draw per report, so recipients that failed together stay together) or expired
//     when attempts > max_retries / too old; not attempted (452 too many recipients) →
//     ready again at once, attempts unchanged.
//   * Expiry by age is checked when a recipient becomes due and when it is picked; for a
//     down host also at each host retry time, so lateness is bounded by the host retry
//     interval (≤ the profile's max_retry). Suspended domains do not expire.
//   * The bounce profile is looked up at each decision (never copied into recipients):
//     after a reload call reload_policies() and queued mail follows the new profile.
//   * Removing recipients that are in flight makes them final at once; their later report
//     entries are ignored (counted in ReportResult::ignored).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "daemon/hosts/host_table.h"
#include "daemon/queue/domain_queue.h"
#include "daemon/queue/message_index.h"
#include "daemon/queue/retry_policy.h"

namespace esad::queue {

using PolicyLookup = std::function<DomainPolicy(std::string_view domain)>;

struct SchedulerOptions {
    std::uint32_t max_concurrency = 10000;  // system-wide outbound connections
    PolicyLookup policy;                    // empty: DomainPolicy defaults for everyone
    RandomFn rng;                           // retry jitter; empty: no jitter
    std::uint32_t jitter_percent = 10;
};

struct NewRecipient {
    std::uint32_t rid = 0;
    std::string address;
    std::string domain;  // recipient host; lower-cased by the scheduler
    std::uint16_t attempts = 0;
    TimeMs next_attempt = 0;  // > now: starts deferred
};

struct NewMessage {
    Mid mid = 0;
    TimeMs received = 0;
    std::string sender;
    std::vector<NewRecipient> recipients;
};

enum class FinalState : std::uint8_t { kDelivered, kHardBounced, kDeleted };
enum class HardKind : std::uint8_t { kNone, kDns, k5xx, kExpired, kFilter, kOther };
std::string_view to_string(FinalState s);
std::string_view to_string(HardKind k);

struct FinalRecipient {
    Mid mid = 0;
    std::uint32_t rid = 0;
    DomainId domain = 0;
    FinalState state = FinalState::kDelivered;
    HardKind kind = HardKind::kNone;
    bool operator==(const FinalRecipient&) const = default;
};

struct Work {
    DomainId domain = 0;
    std::string domain_name;
    Mid mid = 0;
    std::vector<std::uint32_t> rids;  // ascending
    bool new_connection = false;      // counted as a pending connection of `domain`
    bool probe = false;               // the single probe of a down host
};

struct Pick {
    std::optional<Work> work;
    TimeMs wake_at = kNever;  // meaningful when !work
    std::vector<FinalRecipient> expired;
    std::vector<Mid> messages_done;
};

enum class Outcome : std::uint8_t { kDelivered, kHardBounce, kSoftBounce, kNotAttempted };

struct RecipientOutcome {
    std::uint32_t rid = 0;
    Outcome outcome = Outcome::kDelivered;
    HardKind kind = HardKind::kOther;  // for kHardBounce
};

struct Report {
    DomainId domain = 0;
    Mid mid = 0;
    std::vector<RecipientOutcome> outcomes;
};

struct Rescheduled {
    std::uint32_t rid = 0;
    std::uint32_t attempts = 0;
    TimeMs next_attempt = 0;  // "pending till"
};

struct ReportResult {
    std::vector<FinalRecipient> finals;  // journal these (expired ones have kExpired)
    std::vector<Rescheduled> deferred;
    std::vector<Mid> messages_done;
    std::uint32_t ignored = 0;  // unknown MID/RID or recipient not in flight
};

struct Selector {
    enum class By : std::uint8_t { kAll, kDomain, kSender };
    By by = By::kAll;
    std::string value;  // domain (any case) or sender address (compared case-insensitively)
    static Selector all() { return {}; }
    static Selector domain(std::string d) { return {By::kDomain, std::move(d)}; }
    static Selector sender(std::string s) { return {By::kSender, std::move(s)}; }
};

struct RemoveResult {
    bool found = false;  // kDomain: host known; kSender: a message matched; kAll: true
    std::vector<FinalRecipient> removed;
    std::vector<Mid> messages_done;
};

struct GlobalStats {
    DomainCounters counters;
    std::uint64_t unattempted = 0;
    std::uint64_t attempted = 0;
    std::uint32_t connections = 0;
    std::size_t messages = 0;
    std::uint64_t active() const { return unattempted + attempted; }
};

class Scheduler {
  public:
    Scheduler(hosts::HostTable& hosts, SchedulerOptions options);

    // --- input ----------------------------------------------------------------------------
    // False for MID 0, a MID already queued, or no recipients.
    bool add_message(const NewMessage& message, TimeMs now);
    ReportResult apply_report(const Report& report, TimeMs now);

    // --- asking for work ------------------------------------------------------------------
    Pick next_work(TimeMs now);
    Pick next_work_on_connection(DomainId domain, TimeMs now);
    void connection_established(DomainId domain);
    void connection_ended(DomainId domain, bool established, TimeMs now);
    void host_changed(DomainId domain, TimeMs now);

    // --- operator -------------------------------------------------------------------------
    // Every selected recipient due now, host retry timers cleared. nullopt: unknown domain.
    std::optional<std::uint64_t> delivernow_all(TimeMs now);
    std::optional<std::uint64_t> delivernow(std::string_view domain, TimeMs now);
    bool suspend(std::string_view domain);  // false: unknown domain
    bool resume(std::string_view domain);
    void suspend_all();
    void resume_all();  // also clears every per-domain suspension
    bool suspended_all() const { return suspended_all_; }
    RemoveResult delete_recipients(const Selector& selector, TimeMs now);
    RemoveResult bounce_recipients(const Selector& selector, TimeMs now);  // HardKind::kOther
    void reload_policies();
    void set_max_concurrency(std::uint32_t n) { options_.max_concurrency = n; }

    // --- inspection -----------------------------------------------------------------------
    std::optional<DomainId> find_domain(std::string_view name) const;
    std::size_t domain_count() const { return domains_.size(); }
    const DomainQueue& domain(DomainId id) const { return domains_[id]; }
    hosts::HostState& host(DomainId id) { return domains_[id].host(); }
    DomainGauges gauges(DomainId id);  // fills oldest_received
    const DomainCounters& counters(DomainId id) const { return domains_[id].counters; }
    const GlobalStats& totals() const { return totals_; }
    std::optional<std::string_view> sender(Mid mid) const;
    std::optional<std::string_view> address(Mid mid, std::uint32_t rid) const;
    const MessageIndex& index() const { return index_; }
    std::size_t approx_memory_bytes() const;
    void reserve(std::size_t messages, std::size_t domains);

  private:
    struct Timer {
        TimeMs at;
        DomainId domain;
        bool operator>(const Timer& o) const { return at != o.at ? at > o.at : domain > o.domain; }
    };

    DomainId intern(std::string_view name);
    bool is_suspended(const DomainQueue& dq) const { return suspended_all_ || dq.suspended(); }
    void touch(DomainId d);
    void rearm(DomainId d, TimeMs now);
    void run_timers(TimeMs now, Pick& pick);
    TimeMs earliest_timer();
    void promote_due(DomainId d, TimeMs now, Pick& pick);
    void make_ready(DomainId d, std::uint32_t msg, std::uint32_t slot);
    bool take_group(DomainId d, TimeMs now, Work& work, Pick& pick);
    void sweep_expired(DomainId d, TimeMs now, Pick& pick);
    bool group_live(DomainId d, GroupRef ref) const;
    void finalize(std::uint32_t msg, std::uint32_t slot, FinalState state, HardKind kind,
                  std::vector<FinalRecipient>& out);
    void release_if_done(std::uint32_t msg, std::vector<Mid>& done);
    void maybe_compact(DomainId d);
    std::uint64_t delivernow_domain(DomainId d, TimeMs now);
    RemoveResult remove(const Selector& selector, FinalState state, HardKind kind, TimeMs now);
    void open_connection(DomainId d, TimeMs now, Work& work);

    hosts::HostTable& hosts_;
    SchedulerOptions options_;
    RetryPolicy retry_;
    MessageIndex index_;
    std::vector<DomainQueue> domains_;
    std::unordered_map<std::string, DomainId> domain_ids_;
    std::deque<DomainId> ring_;
    std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_;
    GlobalStats totals_;
    bool suspended_all_ = false;
};

}  // namespace esad::queue
