// outcome_policy — owns what a delivery attempt's result MEANS (Postfix's smtp_trouble): for
// a TransactionReport from a session, or a local failure (route, DNS, content, shutdown), it
// decides the queue updates, the host events, the mail-log records, the counters, the DSNs
// to generate and the final recipients to journal. It decides and DeliveryManager applies;
// nothing here touches the scheduler, the loop or the disk. Pure: values in, values out
// (tests/unit/test_outcome_policy.cc exercises every outcome class without a loop).
//
// Two steps, because what is final depends on the queue (retry limits, attempts so far):
//   Verdict v = judge_report(attempt, report);          // or judge_failure(attempt, failure)
//   ...apply v.host to the host state, v.update to the scheduler -> queue::ReportResult r
//   FollowUp f = follow_up(attempt, v, r, profile, received, clock);
//   ...write f.log, add f.counters, hand f.bounces to the bouncer, journal f.finals/f.done
// The operator's removals and the queue's own expiries have one step each
// (follow_up_removal, follow_up_expired): the queue already decided.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/config.h"
#include "common/counters.h"
#include "daemon/delivery/delivery_log.h"
#include "daemon/queue/bounce_book.h"
#include "daemon/queue/scheduler.h"
#include "daemon/smtp/client_fsm.h"

namespace esad::delivery {

// One attempt at a unit of work, as the policy needs to know it.
struct Attempt {
    queue::Work work;        // domain, MID (the report's), recipients
    std::uint64_t dcid = 0;  // 0: no connection
    std::string remote;      // the peer's IP ("" when none)
    // The attempt's connection slot moved to current: a greeting was reached on it. A
    // reconnect that fails afterwards (the plaintext retry) does not make the host down.
    bool greeted = false;
    bool possible_delivery = false;     // [delivery] possible_delivery
    std::uint32_t max_concurrency = 0;  // the destination control's
    queue::TimeMs max_retry_ms = 0;     // the bounce profile's, for host back-off
    queue::TimeMs now = 0;              // monotonic
};

// A failure of the work before or outside an SMTP transaction.
struct LocalFailure {
    queue::Outcome outcome = queue::Outcome::kSoftBounce;
    queue::HardKind kind = queue::HardKind::kNone;
    std::string enhanced;
    int code = 0;  // 250 for a discard, else 0 ("000")
    std::string detail;
    bool dns_temporary = false;  // also a host event: DNS failed for now

    static LocalFailure discarded();  // route /dev/null: counted delivered
    static LocalFailure route_hard(std::string enhanced, std::string detail);
    static LocalFailure dns_temporary_failure(std::string enhanced, std::string detail);
    static LocalFailure not_loaded(std::string detail);  // content/envelope, or shutting down
    static LocalFailure connection_lost();               // the connection went while content loaded
    static LocalFailure connection_closing();            // the session refused the transaction
};

// What the domain's host state hears, in order.
struct HostEvent {
    enum class Kind {
        kUnreachable,   // every candidate failed before a greeting: on_candidate_failed +
                        // on_all_candidates_failed (host down)
        kDnsTemporary,  // on_dns_temporary_failure
        k421,           // on_421
        kSuccess,       // on_transaction_success
        k5xx,           // record_5xx
        kSoftError,     // record_soft_error
    };
    Kind kind = Kind::kSoftError;
    std::string ip;
    std::string text;
    bool operator==(const HostEvent&) const = default;
};

struct Verdict {
    queue::Report update;         // for Scheduler::apply_report
    std::vector<HostEvent> host;  // apply before the update
    bool host_changed = false;    // then Scheduler::host_changed
    // The recipients' results as counted (possible delivery applied), same order as the
    // report's; a local failure gives every recipient of the work the failure's reply.
    std::vector<smtp::RecipientResult> recipients;
    std::vector<LogRecord> log;  // written before the follow-up's
};

struct BounceRequest {
    spool::Mid mid = 0;
    std::vector<queue::BounceInfo> rcpts;
    bool delay_warning = false;
};

struct FollowUp {
    std::vector<LogRecord> log;
    std::vector<Counter> counters;              // one increment each
    std::vector<BounceRequest> bounces;         // before the journal: the bouncer holds
    std::vector<queue::FinalRecipient> finals;  // journal these
    std::vector<spool::Mid> done;               // remove after the covering sync
};

Verdict judge_report(const Attempt& attempt, const smtp::TransactionReport& report);
Verdict judge_failure(const Attempt& attempt, const LocalFailure& failure);

// received: the message's arrival (monotonic) when it is still queued (delay warnings say
// until when it is retried); the clock converts times for display.
FollowUp follow_up(const Attempt& attempt, const Verdict& verdict,
                   const queue::ReportResult& result, const BounceProfile& profile,
                   std::optional<queue::TimeMs> received, const Clock& clock);

// send_dsn(domain): the bounce profile of that domain sends DSNs.
using SendsDsn = std::function<bool(queue::DomainId)>;
// Recipients the queue expired on its own (Pick::expired) and messages it finished.
FollowUp follow_up_expired(const std::vector<queue::FinalRecipient>& expired,
                           const std::vector<spool::Mid>& done, const SendsDsn& send_dsn);
// The operator deleted (bounce false) or bounced recipients.
FollowUp follow_up_removal(const queue::RemoveResult& removed, bool bounce,
                           const SendsDsn& send_dsn);

// RFC 3464 Diagnostic-Code: "smtp; 550 ..." for what an SMTP server said, "X-Esad; ..." for
// local causes.
std::string diagnostic_code(int code, const std::vector<std::string>& lines);

}  // namespace esad::delivery
