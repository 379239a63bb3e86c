// See outcome_policy.h.
// GCC 12 at -O2 reports -Wmaybe-uninitialized inside std::variant's move constructor when a
// logrec::Record is appended to a vector (a false positive of GCC's variant analysis, GCC bug
// 105593); every alternative is fully initialised where it is built.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "daemon/delivery/outcome_policy.h"

#include <fmt/format.h>

#include <map>

#include "daemon/queue/retry_policy.h"

namespace esad::delivery {

namespace {

Counter hard_counter(queue::HardKind k) {
    switch (k) {
        case queue::HardKind::kDns:
            return Counter::kDnsHardBounces;
        case queue::HardKind::k5xx:
            return Counter::kHardBounces5xx;
        case queue::HardKind::kExpired:
            return Counter::kExpiredHardBounces;
        case queue::HardKind::kFilter:
            return Counter::kFilterHardBounces;
        default:
            return Counter::kOtherHardBounces;
    }
}

std::string first_line(const smtp::ReplySummary& reply) {
    return reply.lines.empty() ? std::string() : reply.lines.front();
}

// "550 text", or the text alone for a local failure (code 0).
std::string reply_text(const smtp::ReplySummary& reply) {
    return reply.code ? fmt::format("{} {}", reply.code, first_line(reply)) : first_line(reply);
}

using Bounces = std::map<spool::Mid, std::vector<queue::BounceInfo>>;

// Only recipients the queue really made final bounce (in-flight deletions are ignored).
void request_final_bounces(const Bounces& bounces, const std::vector<queue::FinalRecipient>& finals,
                           bool send_dsn, FollowUp& out) {
    if (!send_dsn) return;
    for (const auto& [mid, list] : bounces) {
        BounceRequest req{mid, {}, false};
        for (const auto& b : list)
            for (const auto& f : finals)
                if (f.mid == mid && f.rid == b.rid && f.state == queue::FinalState::kHardBounced)
                    req.rcpts.push_back(b);
        if (!req.rcpts.empty()) out.bounces.push_back(std::move(req));
    }
}

// The queue's bookkeeping for final recipients and finished messages: counters, journal,
// "Message finished".
void settle(const std::vector<queue::FinalRecipient>& finals, const std::vector<spool::Mid>& done,
            FollowUp& out) {
    for (const auto& f : finals) {
        switch (f.state) {
            case queue::FinalState::kDelivered:
                out.counters.push_back(Counter::kDeliveredRecipients);
                break;
            case queue::FinalState::kHardBounced:
                out.counters.push_back(Counter::kHardBouncedRecipients);
                out.counters.push_back(hard_counter(f.kind));
                break;
            case queue::FinalState::kDeleted:
                out.counters.push_back(Counter::kDeletedRecipients);
                break;
        }
        out.counters.push_back(Counter::kCompletedRecipients);
    }
    out.finals.insert(out.finals.end(), finals.begin(), finals.end());
    out.done.insert(out.done.end(), done.begin(), done.end());
    for (spool::Mid mid : done)
        out.log.push_back(logrec::Finished{mid});
}

// Bounces decided by the queue or the operator: one log line and DSN entry per recipient.
FollowUp follow_up_queue_bounces(const std::vector<queue::FinalRecipient>& finals,
                                 const std::vector<spool::Mid>& done, const SendsDsn& send_dsn,
                                 const logrec::Bounced& line, const std::string& diagnostic) {
    FollowUp out;
    std::map<spool::Mid, queue::DomainId> domains;
    Bounces bounces;
    for (const auto& f : finals) {
        logrec::Bounced b = line;
        b.mid = f.mid;
        b.rid = f.rid;
        out.log.push_back(std::move(b));
        domains[f.mid] = f.domain;
        bounces[f.mid].push_back({f.rid, line.enhanced, diagnostic, "", 0});
    }
    for (auto& [mid, list] : bounces)
        if (send_dsn(domains[mid])) out.bounces.push_back({mid, std::move(list), false});
    settle(finals, done, out);
    return out;
}

}  // namespace

LocalFailure LocalFailure::discarded() {
    return {queue::Outcome::kDelivered, queue::HardKind::kNone, "2.0.0", 250, "discarded", false};
}
LocalFailure LocalFailure::route_hard(std::string enhanced, std::string detail) {
    return {queue::Outcome::kHardBounce, queue::HardKind::kDns,
            std::move(enhanced),         0,
            std::move(detail),           false};
}
LocalFailure LocalFailure::dns_temporary_failure(std::string enhanced, std::string detail) {
    return {queue::Outcome::kSoftBounce, queue::HardKind::kNone,
            std::move(enhanced),         0,
            std::move(detail),           true};
}
LocalFailure LocalFailure::not_loaded(std::string detail) {
    return {
        queue::Outcome::kSoftBounce, queue::HardKind::kNone, "4.3.0", 0, std::move(detail), false};
}
LocalFailure LocalFailure::connection_lost() {
    return {queue::Outcome::kNotAttempted,
            queue::HardKind::kNone,
            "4.4.2",
            0,
            "connection lost",
            false};
}
LocalFailure LocalFailure::connection_closing() {
    return {queue::Outcome::kNotAttempted,
            queue::HardKind::kNone,
            "4.4.2",
            0,
            "connection closing",
            false};
}

std::string diagnostic_code(int code, const std::vector<std::string>& lines) {
    const std::string text = lines.empty() ? std::string() : lines.front();
    if (code > 0) return fmt::format("smtp; {} {}", code, text);
    std::string out = "X-Esad; ";
    out.append(text);
    return out;
}

Verdict judge_report(const Attempt& a, const smtp::TransactionReport& report) {
    Verdict v;
    const std::string text = reply_text(report.reply);
    // DESIGN §4: down only when the whole attempt failed before any greeting. A session that
    // was greeted and then failed to reconnect (the plaintext retry) reached the host.
    if (report.host == smtp::HostOutcome::kNotReached && !a.greeted) {
        v.host.push_back({HostEvent::Kind::kUnreachable, a.remote, text});
        v.host_changed = true;
    } else if (report.reply.code == 421) {
        v.host.push_back({HostEvent::Kind::k421, a.remote, text});
    } else if (report.outcome == smtp::MessageOutcome::kDelivered) {
        v.host.push_back({HostEvent::Kind::kSuccess, "", ""});
    }
    v.recipients = report.recipients;
    // "Possible delivery" (ESA option, off by default): the connection died after the final
    // dot was sent and before its reply; count the recipients as delivered instead of
    // retrying them (no duplicate, at the risk of a loss).
    if (report.possible_duplicate && a.possible_delivery) {
        for (auto& rr : v.recipients)
            if (rr.outcome == smtp::RecipientOutcome::kSoft) {
                rr.outcome = smtp::RecipientOutcome::kDelivered;
                rr.reply.lines = {"possible delivery: connection lost after the final dot"};
            }
        v.log.push_back(logrec::PossibleDelivery{report.mid, a.dcid});
    }
    v.update = {a.work.domain, report.mid, {}};
    for (const auto& rr : v.recipients) {
        queue::RecipientOutcome o{rr.rid, queue::Outcome::kSoftBounce, queue::HardKind::kOther};
        switch (rr.outcome) {
            case smtp::RecipientOutcome::kDelivered:
                o.outcome = queue::Outcome::kDelivered;
                break;
            case smtp::RecipientOutcome::kHard:
                o.outcome = queue::Outcome::kHardBounce;
                o.kind = rr.reply.code >= 500 ? queue::HardKind::k5xx : queue::HardKind::kOther;
                v.host.push_back({HostEvent::Kind::k5xx, "",
                                  fmt::format("{} {}", rr.reply.code, first_line(rr.reply))});
                break;
            case smtp::RecipientOutcome::kSoft:
                o.outcome = queue::Outcome::kSoftBounce;
                v.host.push_back({HostEvent::Kind::kSoftError, "", reply_text(rr.reply)});
                break;
            case smtp::RecipientOutcome::kDeferred:
                o.outcome = queue::Outcome::kNotAttempted;
                break;
        }
        v.update.outcomes.push_back(o);
    }
    return v;
}

Verdict judge_failure(const Attempt& a, const LocalFailure& failure) {
    Verdict v;
    if (failure.dns_temporary) {
        v.host.push_back({HostEvent::Kind::kDnsTemporary, "", ""});
        v.host.push_back({HostEvent::Kind::kSoftError, "", failure.detail});
        v.host_changed = true;
    }
    v.update = {a.work.domain, a.work.mid, {}};
    smtp::ReplySummary reply{failure.code, failure.enhanced, {failure.detail}};
    const smtp::RecipientOutcome counted =
        failure.outcome == queue::Outcome::kDelivered    ? smtp::RecipientOutcome::kDelivered
        : failure.outcome == queue::Outcome::kHardBounce ? smtp::RecipientOutcome::kHard
                                                         : smtp::RecipientOutcome::kSoft;
    for (uint32_t rid : a.work.rids) {
        v.update.outcomes.push_back({rid, failure.outcome, failure.kind});
        smtp::RecipientResult rr;
        rr.rid = rid;
        rr.outcome = counted;
        rr.reply = reply;
        v.recipients.push_back(std::move(rr));
    }
    return v;
}

FollowUp follow_up(const Attempt& a, const Verdict& v, const queue::ReportResult& res,
                   const BounceProfile& profile, std::optional<queue::TimeMs> received,
                   const Clock& clock) {
    FollowUp out;
    const spool::Mid mid = v.update.mid;
    logrec::Delivered delivered{a.dcid, mid, {}, ""};
    Bounces bounces;
    for (const auto& rr : v.recipients) {
        const auto& rep = rr.reply;
        std::string enhanced =
            rep.enhanced.empty() ? (rep.code >= 500 ? "5.0.0" : "4.0.0") : rep.enhanced;
        switch (rr.outcome) {
            case smtp::RecipientOutcome::kDelivered:
                delivered.rids.push_back(rr.rid);
                if (delivered.response.empty() && !rep.lines.empty())
                    delivered.response = rep.lines.front();
                break;
            case smtp::RecipientOutcome::kSoft:
                out.log.push_back(
                    logrec::Delayed{a.dcid, mid, rr.rid, enhanced, rep.code, rep.lines});
                out.counters.push_back(Counter::kSoftBouncedEvents);
                break;
            case smtp::RecipientOutcome::kHard:
                bounces[mid].push_back(
                    {rr.rid, enhanced, diagnostic_code(rep.code, rep.lines), a.remote, 0});
                out.log.push_back(logrec::Bounced{a.dcid, mid, rr.rid, std::move(enhanced), "",
                                                  rep.code, rep.lines});
                break;
            case smtp::RecipientOutcome::kDeferred:
                break;
        }
    }
    if (!delivered.rids.empty()) out.log.push_back(std::move(delivered));
    for (const auto& d : res.deferred)
        out.log.emplace_back(logrec::Pending{
            mid, d.rid, static_cast<std::time_t>(clock.to_wall(d.next_attempt) / 1000)});
    // Delay warning (bounce profile): once, after the second failed attempt (as the appliance).
    if (profile.delay_warning && !res.deferred.empty()) {
        BounceRequest warn{mid, {}, true};
        const std::time_t until =
            received ? static_cast<std::time_t>(
                           clock.to_wall(queue::expiry_time(profile, *received)) / 1000)
                     : 0;
        for (const auto& d : res.deferred) {
            if (d.attempts != 2) continue;
            for (const auto& rr : v.recipients)
                if (rr.rid == d.rid)
                    warn.rcpts.push_back(
                        {d.rid, rr.reply.enhanced.empty() ? "4.0.0" : rr.reply.enhanced,
                         diagnostic_code(rr.reply.code, rr.reply.lines), a.remote, until});
        }
        if (!warn.rcpts.empty()) out.bounces.push_back(std::move(warn));
    }
    // A soft failure past the bounce profile's limits is final here: an expiry bounce.
    for (const auto& f : res.finals) {
        if (f.state != queue::FinalState::kHardBounced || f.kind != queue::HardKind::kExpired)
            continue;
        out.log.push_back(logrec::Bounced{a.dcid,
                                          f.mid,
                                          f.rid,
                                          "5.4.7",
                                          "Delivery expired (message too old)",
                                          0,
                                          {"retry limit reached"}});
        bounces[f.mid].push_back(
            {f.rid, "5.4.7", "X-Esad; Delivery expired (retry limit reached)", a.remote, 0});
    }
    request_final_bounces(bounces, res.finals, profile.send_dsn, out);
    settle(res.finals, res.messages_done, out);
    return out;
}

FollowUp follow_up_expired(const std::vector<queue::FinalRecipient>& expired,
                           const std::vector<spool::Mid>& done, const SendsDsn& send_dsn) {
    return follow_up_queue_bounces(
        expired, done, send_dsn,
        logrec::Bounced{0, 0, 0, "5.4.7", "Delivery expired (message too old)", 0, {"timeout"}},
        "X-Esad; Delivery expired (message too old)");
}

FollowUp follow_up_removal(const queue::RemoveResult& removed, bool bounce,
                           const SendsDsn& send_dsn) {
    if (bounce)
        return follow_up_queue_bounces(
            removed.removed, removed.messages_done, send_dsn,
            logrec::Bounced{0, 0, 0, "5.0.0", "Bounced by administrator", 0, {}},
            "X-Esad; bounced by the administrator");
    FollowUp out;
    for (const auto& f : removed.removed)
        out.log.push_back(logrec::Deleted{f.mid, f.rid});
    settle(removed.removed, removed.messages_done, out);
    return out;
}

}  // namespace esad::delivery
