// Unit tests for daemon/delivery/outcome_policy: every outcome class of a delivery attempt,
// without a loop — what the queue, the host state, the mail log, the counters, the bouncer
// and the journal are told.
#include <catch2/catch.hpp>

#include <algorithm>

#include "daemon/delivery/outcome_policy.h"

using namespace esad;
using namespace esad::delivery;

namespace {

// Monotonic 1000 s is wall 1,700,000,000 s.
class FixedClock : public Clock {
  public:
    std::int64_t monotonic_ms() const override { return 1'000'000; }
    std::int64_t wall_ms() const override { return 1'700'000'000'000; }
};

constexpr queue::DomainId kDomain = 3;
constexpr spool::Mid kMid = 42;

Attempt make_attempt(std::vector<uint32_t> rids, bool greeted = true) {
    Attempt a;
    a.work.domain = kDomain;
    a.work.domain_name = "example.test";
    a.work.mid = kMid;
    a.work.rids = std::move(rids);
    a.dcid = 7;
    a.remote = "192.0.2.1";
    a.greeted = greeted;
    a.max_concurrency = 20;
    a.max_retry_ms = 3'600'000;
    a.now = 1'000'000;
    return a;
}

smtp::ReplySummary reply(int code, std::string enhanced, std::string line) {
    return {code, std::move(enhanced), {std::move(line)}};
}

smtp::RecipientResult rcpt(uint32_t rid, smtp::RecipientOutcome o, smtp::ReplySummary r) {
    smtp::RecipientResult rr;
    rr.rid = rid;
    rr.outcome = o;
    rr.reply = std::move(r);
    return rr;
}

smtp::TransactionReport report(smtp::MessageOutcome outcome, smtp::ReplySummary r,
                               std::vector<smtp::RecipientResult> rcpts,
                               smtp::HostOutcome host = smtp::HostOutcome::kReached) {
    smtp::TransactionReport rep;
    rep.mid = kMid;
    rep.outcome = outcome;
    rep.reply = std::move(r);
    rep.recipients = std::move(rcpts);
    rep.started = true;
    rep.host = host;
    return rep;
}

queue::FinalRecipient final_of(uint32_t rid, queue::FinalState s,
                               queue::HardKind k = queue::HardKind::kNone) {
    return {kMid, rid, kDomain, s, k};
}

std::vector<std::string> lines_of(const std::vector<LogRecord>& records) {
    std::vector<std::string> out;
    for (const auto& r : records)
        for (auto& l : format_log(r))
            out.push_back(std::move(l));
    return out;
}

size_t count(const std::vector<Counter>& counters, Counter c) {
    return static_cast<size_t>(std::count(counters.begin(), counters.end(), c));
}

std::vector<HostEvent::Kind> kinds(const Verdict& v) {
    std::vector<HostEvent::Kind> out;
    for (const auto& e : v.host)
        out.push_back(e.kind);
    return out;
}

const FixedClock kClock;
const BounceProfile kProfile;  // send_dsn on, no delay warnings

}  // namespace

TEST_CASE("outcome policy: 2xx delivers every accepted recipient", "[outcome_policy]") {
    Attempt a = make_attempt({0, 1});
    auto ok = reply(250, "2.0.0", "Ok: queued");
    Verdict v = judge_report(a, report(smtp::MessageOutcome::kDelivered, ok,
                                       {rcpt(0, smtp::RecipientOutcome::kDelivered, ok),
                                        rcpt(1, smtp::RecipientOutcome::kDelivered, ok)}));
    CHECK(kinds(v) == std::vector{HostEvent::Kind::kSuccess});
    CHECK_FALSE(v.host_changed);
    CHECK(v.update.domain == kDomain);
    CHECK(v.update.mid == kMid);
    REQUIRE(v.update.outcomes.size() == 2);
    CHECK(v.update.outcomes[0].outcome == queue::Outcome::kDelivered);
    CHECK(v.update.outcomes[1].outcome == queue::Outcome::kDelivered);
    CHECK(v.log.empty());

    queue::ReportResult res;
    res.finals = {final_of(0, queue::FinalState::kDelivered),
                  final_of(1, queue::FinalState::kDelivered)};
    res.messages_done = {kMid};
    FollowUp f = follow_up(a, v, res, kProfile, std::nullopt, kClock);
    CHECK(lines_of(f.log) == std::vector<std::string>{
                                 "Message done DCID 7 MID 42 to RID [0, 1]",
                                 "MID 42 RID [0, 1] Response 'Ok: queued'",
                                 "Message finished MID 42 done",
                             });
    CHECK(count(f.counters, Counter::kDeliveredRecipients) == 2);
    CHECK(count(f.counters, Counter::kCompletedRecipients) == 2);
    CHECK(f.bounces.empty());
    CHECK(f.finals == res.finals);
    CHECK(f.done == std::vector<spool::Mid>{kMid});
}

TEST_CASE("outcome policy: 4xx to one RCPT defers only that recipient", "[outcome_policy]") {
    Attempt a = make_attempt({0, 1});
    auto ok = reply(250, "2.0.0", "Ok");
    Verdict v = judge_report(
        a, report(smtp::MessageOutcome::kDelivered, ok,
                  {rcpt(0, smtp::RecipientOutcome::kDelivered, ok),
                   rcpt(1, smtp::RecipientOutcome::kSoft, reply(451, "4.3.0", "try later"))}));
    CHECK(kinds(v) == std::vector{HostEvent::Kind::kSuccess, HostEvent::Kind::kSoftError});
    CHECK(v.host[1].text == "451 try later");
    CHECK(v.update.outcomes[1].outcome == queue::Outcome::kSoftBounce);

    queue::ReportResult res;
    res.finals = {final_of(0, queue::FinalState::kDelivered)};
    res.deferred = {{1, 1, 1'060'000}};  // monotonic 1060 s = wall 1,700,000,060 s
    FollowUp f = follow_up(a, v, res, kProfile, std::nullopt, kClock);
    REQUIRE(f.log.size() == 3);
    CHECK(format_log(f.log[0])[0] ==
          "Delayed: DCID 7 MID 42 to RID 1 - 4.3.0 - Other or undefined mail system status "
          "('451', ['try later'])[]");
    CHECK(std::holds_alternative<logrec::Delivered>(f.log[1]));
    REQUIRE(std::holds_alternative<logrec::Pending>(f.log[2]));
    CHECK(std::get<logrec::Pending>(f.log[2]).until == 1'700'000'060);
    CHECK(count(f.counters, Counter::kSoftBouncedEvents) == 1);
    CHECK(f.bounces.empty());
    CHECK(f.done.empty());
}

TEST_CASE("outcome policy: 5xx to one RCPT bounces it with a DSN", "[outcome_policy]") {
    Attempt a = make_attempt({0, 1});
    auto ok = reply(250, "2.0.0", "Ok");
    Verdict v = judge_report(
        a, report(smtp::MessageOutcome::kDelivered, ok,
                  {rcpt(0, smtp::RecipientOutcome::kDelivered, ok),
                   rcpt(1, smtp::RecipientOutcome::kHard, reply(550, "5.1.1", "no such user"))}));
    CHECK(kinds(v) == std::vector{HostEvent::Kind::kSuccess, HostEvent::Kind::k5xx});
    CHECK(v.host[1].text == "550 no such user");
    CHECK(v.update.outcomes[1].outcome == queue::Outcome::kHardBounce);
    CHECK(v.update.outcomes[1].kind == queue::HardKind::k5xx);

    queue::ReportResult res;
    res.finals = {final_of(0, queue::FinalState::kDelivered),
                  final_of(1, queue::FinalState::kHardBounced, queue::HardKind::k5xx)};
    res.messages_done = {kMid};
    FollowUp f = follow_up(a, v, res, kProfile, std::nullopt, kClock);
    CHECK(lines_of(f.log)[0] ==
          "Bounced: DCID 7 MID 42 to RID 1 - 5.1.1 - Bad destination mailbox address ('550', "
          "['no such user']) []");
    REQUIRE(f.bounces.size() == 1);
    CHECK(f.bounces[0].mid == kMid);
    CHECK_FALSE(f.bounces[0].delay_warning);
    REQUIRE(f.bounces[0].rcpts.size() == 1);
    CHECK(f.bounces[0].rcpts[0].rid == 1);
    CHECK(f.bounces[0].rcpts[0].status == "5.1.1");
    CHECK(f.bounces[0].rcpts[0].diagnostic == "smtp; 550 no such user");
    CHECK(f.bounces[0].rcpts[0].remote_mta == "192.0.2.1");
    CHECK(count(f.counters, Counter::kHardBouncedRecipients) == 1);
    CHECK(count(f.counters, Counter::kHardBounces5xx) == 1);

    SECTION("no DSN when the bounce profile sends none") {
        BounceProfile quiet;
        quiet.send_dsn = false;
        CHECK(follow_up(a, v, res, quiet, std::nullopt, kClock).bounces.empty());
    }
    SECTION("no DSN for a recipient the queue did not make final (deleted in flight)") {
        res.finals = {final_of(0, queue::FinalState::kDelivered)};
        CHECK(follow_up(a, v, res, kProfile, std::nullopt, kClock).bounces.empty());
    }
}

TEST_CASE("outcome policy: 4xx and 5xx at MAIL, DATA or the final dot", "[outcome_policy]") {
    Attempt a = make_attempt({0, 1});
    SECTION("4xx: every recipient deferred, the host reached") {
        auto r = reply(452, "4.3.1", "insufficient storage");
        Verdict v = judge_report(a, report(smtp::MessageOutcome::kSoft, r,
                                           {rcpt(0, smtp::RecipientOutcome::kSoft, r),
                                            rcpt(1, smtp::RecipientOutcome::kSoft, r)}));
        CHECK(kinds(v) == std::vector{HostEvent::Kind::kSoftError, HostEvent::Kind::kSoftError});
        CHECK_FALSE(v.host_changed);
        for (const auto& o : v.update.outcomes)
            CHECK(o.outcome == queue::Outcome::kSoftBounce);
    }
    SECTION("421: the IP is told, the recipients deferred") {
        auto r = reply(421, "4.7.0", "busy");
        Verdict v = judge_report(a, report(smtp::MessageOutcome::kSoft, r,
                                           {rcpt(0, smtp::RecipientOutcome::kSoft, r),
                                            rcpt(1, smtp::RecipientOutcome::kSoft, r)}));
        REQUIRE(v.host.size() == 3);
        CHECK(v.host[0].kind == HostEvent::Kind::k421);
        CHECK(v.host[0].ip == "192.0.2.1");
        CHECK(v.host[0].text == "421 busy");
    }
    SECTION("5xx: every recipient bounced") {
        auto r = reply(554, "5.6.0", "content rejected");
        Verdict v = judge_report(a, report(smtp::MessageOutcome::kHard, r,
                                           {rcpt(0, smtp::RecipientOutcome::kHard, r),
                                            rcpt(1, smtp::RecipientOutcome::kHard, r)}));
        CHECK(kinds(v) == std::vector{HostEvent::Kind::k5xx, HostEvent::Kind::k5xx});
        for (const auto& o : v.update.outcomes) {
            CHECK(o.outcome == queue::Outcome::kHardBounce);
            CHECK(o.kind == queue::HardKind::k5xx);
        }
        queue::ReportResult res;
        res.finals = {final_of(0, queue::FinalState::kHardBounced, queue::HardKind::k5xx),
                      final_of(1, queue::FinalState::kHardBounced, queue::HardKind::k5xx)};
        res.messages_done = {kMid};
        FollowUp f = follow_up(a, v, res, kProfile, std::nullopt, kClock);
        REQUIRE(f.bounces.size() == 1);  // one DSN listing both
        CHECK(f.bounces[0].rcpts.size() == 2);
    }
    SECTION("a local refusal before sending (code 0) is a hard bounce of kind other") {
        auto r = reply(0, "5.3.4", "message too big for the peer");
        Verdict v = judge_report(
            a, report(smtp::MessageOutcome::kHard, r, {rcpt(0, smtp::RecipientOutcome::kHard, r)}));
        CHECK(v.update.outcomes[0].kind == queue::HardKind::kOther);
    }
}

TEST_CASE("outcome policy: the connection lost before and after the greeting", "[outcome_policy]") {
    auto lost = reply(0, "4.4.2", "connection lost");
    auto rep =
        report(smtp::MessageOutcome::kSoft, lost, {rcpt(0, smtp::RecipientOutcome::kSoft, lost)},
               smtp::HostOutcome::kNotReached);
    SECTION("never greeted: the host is unreachable (down)") {
        Attempt a = make_attempt({0}, false);
        Verdict v = judge_report(a, rep);
        CHECK(kinds(v) == std::vector{HostEvent::Kind::kUnreachable, HostEvent::Kind::kSoftError});
        CHECK(v.host[0].ip == "192.0.2.1");
        CHECK(v.host[0].text == "connection lost");
        CHECK(v.host_changed);
        CHECK(v.update.outcomes[0].outcome == queue::Outcome::kSoftBounce);
    }
    SECTION("greeted before (a reconnect failed): the host was reached, not down") {
        Attempt a = make_attempt({0}, true);
        Verdict v = judge_report(a, rep);
        CHECK(kinds(v) == std::vector{HostEvent::Kind::kSoftError});
        CHECK_FALSE(v.host_changed);
    }
    SECTION("lost mid-transaction: deferred, retried") {
        Attempt a = make_attempt({0}, true);
        rep.host = smtp::HostOutcome::kReached;
        Verdict v = judge_report(a, rep);
        CHECK(kinds(v) == std::vector{HostEvent::Kind::kSoftError});
        queue::ReportResult res;
        res.deferred = {{0, 1, 1'060'000}};
        FollowUp f = follow_up(a, v, res, kProfile, std::nullopt, kClock);
        CHECK(lines_of(f.log)[0] ==
              "Delayed: DCID 7 MID 42 to RID 0 - 4.4.2 - Other network problem "
              "('000', ['connection lost'])[]");
        CHECK(f.finals.empty());
        CHECK(f.done.empty());
    }
}

TEST_CASE("outcome policy: lost after the final dot (possible duplicate)", "[outcome_policy]") {
    auto lost = reply(0, "4.4.2", "connection lost after the final dot");
    auto rep =
        report(smtp::MessageOutcome::kSoft, lost, {rcpt(0, smtp::RecipientOutcome::kSoft, lost)});
    rep.possible_duplicate = true;
    Attempt a = make_attempt({0});
    SECTION("default: retried (a duplicate rather than a loss)") {
        Verdict v = judge_report(a, rep);
        CHECK(v.update.outcomes[0].outcome == queue::Outcome::kSoftBounce);
        CHECK(v.log.empty());
    }
    SECTION("possible_delivery: counted delivered, and said so") {
        a.possible_delivery = true;
        Verdict v = judge_report(a, rep);
        CHECK(v.update.outcomes[0].outcome == queue::Outcome::kDelivered);
        CHECK(lines_of(v.log) ==
              std::vector<std::string>{
                  "MID 42 possible delivery: DCID 7 lost the connection after the final dot"});
        CHECK(v.recipients[0].reply.lines ==
              std::vector<std::string>{"possible delivery: connection lost after the final dot"});
    }
}

TEST_CASE("outcome policy: TLS required and not negotiated defers", "[outcome_policy]") {
    auto r = reply(0, "4.7.5", "TLS was required but could not be successfully negotiated");
    auto rep = report(smtp::MessageOutcome::kSoft, r, {rcpt(0, smtp::RecipientOutcome::kSoft, r)});
    rep.started = false;
    Attempt a = make_attempt({0});
    Verdict v = judge_report(a, rep);
    CHECK(v.update.outcomes[0].outcome == queue::Outcome::kSoftBounce);
    CHECK(kinds(v) == std::vector{HostEvent::Kind::kSoftError});
    queue::ReportResult res;
    res.deferred = {{0, 1, 1'060'000}};
    FollowUp f = follow_up(a, v, res, kProfile, std::nullopt, kClock);
    CHECK(lines_of(f.log)[0].find("('000', ['TLS was required but could not be successfully "
                                  "negotiated'])[]") != std::string::npos);
}

TEST_CASE("outcome policy: local failures", "[outcome_policy]") {
    Attempt a = make_attempt({0, 1}, false);
    a.dcid = 0;
    a.remote = "";
    SECTION("route to /dev/null: delivered") {
        Verdict v = judge_failure(a, LocalFailure::discarded());
        CHECK(v.host.empty());
        CHECK(v.update.outcomes[0].outcome == queue::Outcome::kDelivered);
        queue::ReportResult res;
        res.finals = {final_of(0, queue::FinalState::kDelivered),
                      final_of(1, queue::FinalState::kDelivered)};
        FollowUp f = follow_up(a, v, res, kProfile, std::nullopt, kClock);
        CHECK(lines_of(f.log) == std::vector<std::string>{
                                     "Message done DCID 0 MID 42 to RID [0, 1]",
                                     "MID 42 RID [0, 1] Response 'discarded'",
                                 });
    }
    SECTION("DNS hard failure: bounced, kind DNS, typed as ours in the DSN") {
        Verdict v = judge_failure(a, LocalFailure::route_hard("5.1.2", "no such domain"));
        CHECK(v.update.outcomes[0].outcome == queue::Outcome::kHardBounce);
        CHECK(v.update.outcomes[0].kind == queue::HardKind::kDns);
        queue::ReportResult res;
        res.finals = {final_of(0, queue::FinalState::kHardBounced, queue::HardKind::kDns),
                      final_of(1, queue::FinalState::kHardBounced, queue::HardKind::kDns)};
        res.messages_done = {kMid};
        FollowUp f = follow_up(a, v, res, kProfile, std::nullopt, kClock);
        CHECK(lines_of(f.log)[0] ==
              "Bounced: DCID 0 MID 42 to RID 0 - 5.1.2 - Bad destination host ('000', ['no such "
              "domain']) []");
        REQUIRE(f.bounces.size() == 1);
        CHECK(f.bounces[0].rcpts[0].diagnostic == "X-Esad; no such domain");
        CHECK(count(f.counters, Counter::kDnsHardBounces) == 2);
    }
    SECTION("DNS temporary failure: the host backs off, the recipients are deferred") {
        Verdict v = judge_failure(a, LocalFailure::dns_temporary_failure("4.4.3", "SERVFAIL"));
        CHECK(kinds(v) == std::vector{HostEvent::Kind::kDnsTemporary, HostEvent::Kind::kSoftError});
        CHECK(v.host[1].text == "SERVFAIL");
        CHECK(v.host_changed);
        CHECK(v.update.outcomes[0].outcome == queue::Outcome::kSoftBounce);
    }
    SECTION("content not loaded, TLS context, shutting down: deferred") {
        Verdict v = judge_failure(a, LocalFailure::not_loaded("corrupt: bad header"));
        CHECK(v.update.outcomes[0].outcome == queue::Outcome::kSoftBounce);
        CHECK(v.recipients[0].reply.enhanced == "4.3.0");
        CHECK(v.recipients[0].reply.lines == std::vector<std::string>{"corrupt: bad header"});
    }
    SECTION("connection lost while the content loaded: not attempted, nothing counted") {
        Verdict v = judge_failure(a, LocalFailure::connection_lost());
        CHECK(v.update.outcomes[0].outcome == queue::Outcome::kNotAttempted);
        CHECK(judge_failure(a, LocalFailure::connection_closing()).update.outcomes[1].outcome ==
              queue::Outcome::kNotAttempted);
    }
}

TEST_CASE("outcome policy: expiry", "[outcome_policy]") {
    SECTION("past the retry limit after an attempt") {
        Attempt a = make_attempt({0});
        auto r = reply(451, "4.3.0", "try later");
        Verdict v = judge_report(
            a, report(smtp::MessageOutcome::kSoft, r, {rcpt(0, smtp::RecipientOutcome::kSoft, r)}));
        queue::ReportResult res;
        res.finals = {final_of(0, queue::FinalState::kHardBounced, queue::HardKind::kExpired)};
        res.messages_done = {kMid};
        FollowUp f = follow_up(a, v, res, kProfile, std::nullopt, kClock);
        auto lines = lines_of(f.log);
        REQUIRE(lines.size() == 3);
        CHECK(lines[1] ==
              "Bounced: DCID 7 MID 42 to RID 0 - 5.4.7 - Delivery expired (message too old) "
              "('000', ['retry limit reached']) []");
        REQUIRE(f.bounces.size() == 1);
        CHECK(f.bounces[0].rcpts[0].diagnostic == "X-Esad; Delivery expired (retry limit reached)");
        CHECK(count(f.counters, Counter::kExpiredHardBounces) == 1);
    }
    SECTION("expired in the queue (no attempt)") {
        std::vector<queue::FinalRecipient> expired = {
            final_of(0, queue::FinalState::kHardBounced, queue::HardKind::kExpired)};
        FollowUp f = follow_up_expired(expired, {kMid}, [](queue::DomainId) { return true; });
        CHECK(lines_of(f.log) ==
              std::vector<std::string>{
                  "Bounced: DCID 0 MID 42 to RID 0 - 5.4.7 - Delivery expired (message too old) "
                  "('000', ['timeout']) []",
                  "Message finished MID 42 done"});
        REQUIRE(f.bounces.size() == 1);
        CHECK(f.bounces[0].rcpts[0].diagnostic == "X-Esad; Delivery expired (message too old)");
        CHECK(f.finals == expired);
        CHECK(count(f.counters, Counter::kExpiredHardBounces) == 1);
        CHECK(count(f.counters, Counter::kCompletedRecipients) == 1);
        CHECK(follow_up_expired(expired, {kMid}, [](queue::DomainId) {
                  return false;
              }).bounces.empty());
    }
}

TEST_CASE("outcome policy: delay warning after the second failed attempt", "[outcome_policy]") {
    BounceProfile warn;
    warn.delay_warning = true;
    Attempt a = make_attempt({0});
    auto r = reply(451, "4.3.0", "try later");
    Verdict v = judge_report(
        a, report(smtp::MessageOutcome::kSoft, r, {rcpt(0, smtp::RecipientOutcome::kSoft, r)}));
    queue::ReportResult res;
    res.deferred = {{0, 1, 1'060'000}};
    CHECK(follow_up(a, v, res, warn, 0, kClock).bounces.empty());  // first attempt: none
    res.deferred = {{0, 2, 1'060'000}};
    FollowUp f = follow_up(a, v, res, warn, 0, kClock);
    REQUIRE(f.bounces.size() == 1);
    CHECK(f.bounces[0].delay_warning);
    CHECK(f.bounces[0].rcpts[0].diagnostic == "smtp; 451 try later");
    // Received at monotonic 0 = wall 1,699,999,000 s; retried until the queue-time limit.
    CHECK(f.bounces[0].rcpts[0].retry_until ==
          static_cast<std::time_t>(1'699'999'000 + warn.max_queue_time_s));
    CHECK(f.finals.empty());
}

TEST_CASE("outcome policy: operator removals", "[outcome_policy]") {
    queue::RemoveResult removed;
    removed.removed = {final_of(0, queue::FinalState::kDeleted)};
    removed.messages_done = {kMid};
    auto dsn = [](queue::DomainId) { return true; };
    FollowUp del = follow_up_removal(removed, false, dsn);
    CHECK(lines_of(del.log) == std::vector<std::string>{"MID 42 RID [0] deleted by administrator",
                                                        "Message finished MID 42 done"});
    CHECK(del.bounces.empty());
    CHECK(count(del.counters, Counter::kDeletedRecipients) == 1);

    removed.removed = {final_of(0, queue::FinalState::kHardBounced, queue::HardKind::kOther)};
    FollowUp b = follow_up_removal(removed, true, dsn);
    CHECK(lines_of(b.log)[0] ==
          "Bounced: DCID 0 MID 42 to RID 0 - 5.0.0 - Bounced by administrator ('000', []) []");
    REQUIRE(b.bounces.size() == 1);
    CHECK(b.bounces[0].rcpts[0].diagnostic == "X-Esad; bounced by the administrator");
    CHECK(count(b.counters, Counter::kOtherHardBounces) == 1);
}
