// See delivery_manager.h.
#include "daemon/delivery/delivery_manager.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/escape.h"
#include "common/format.h"
#include "daemon/loop/work.h"
#include "daemon/queue/dsn.h"
#include "daemon/smtp/status_text.h"

namespace esad::delivery {

namespace {
constexpr int kPicksPerTurn = 256;

// ESA reason vocabulary (esa-reference §8.4), RFC 3463 texts elsewhere (status_text.h).
std::string_view esa_reason(std::string_view enhanced, int code) {
    if (code == 421) return "Not accepting messages at this time";
    return smtp::status_text(enhanced);
}

// RFC 3464 Diagnostic-Code: "smtp; 550 ..." only for what an SMTP server said; local causes
// (DNS, expiry, TLS policy, refusals before sending) are typed as ours.
std::string diagnostic_code(int code, const std::vector<std::string>& lines) {
    const std::string text = lines.empty() ? std::string() : lines.front();
    if (code > 0) return fmt::format("smtp; {} {}", code, text);
    return "X-Esad; " + text;
}

// "('550', ['line one', 'line two'])" with the lines as Python-style literals.
std::string reply_tuple(int code, const std::vector<std::string>& lines) {
    std::string out = fmt::format("('{:03d}', [", code);
    for (size_t i = 0; i < lines.size(); ++i) {
        if (i) out += ", ";
        std::string line = escape_for_log(lines[i], 512);
        std::string quoted;
        for (char c : line) {
            if (c == '\'' || c == '\\') quoted.push_back('\\');
            quoted.push_back(c);
        }
        out += "'" + quoted + "'";
    }
    return out + "])";
}

std::string rid_list(const std::vector<uint32_t>& rids) {
    std::string out = "[";
    for (size_t i = 0; i < rids.size(); ++i)
        out += (i ? ", " : "") + std::to_string(rids[i]);
    return out + "]";
}

spool::BounceKind journal_kind(queue::HardKind k) {
    switch (k) {
        case queue::HardKind::kDns:
            return spool::BounceKind::kDns;
        case queue::HardKind::k5xx:
            return spool::BounceKind::k5xx;
        case queue::HardKind::kExpired:
            return spool::BounceKind::kExpired;
        case queue::HardKind::kFilter:
            return spool::BounceKind::kFilter;
        case queue::HardKind::kOther:
            return spool::BounceKind::kOther;
        case queue::HardKind::kNone:
            break;
    }
    return spool::BounceKind::kNone;
}

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

smtp::TlsPolicy tls_policy(const std::string& text) {
    return smtp::parse_tls_policy(text).value_or(smtp::TlsPolicy::kPreferred);
}
}  // namespace

struct DeliveryManager::Live {
    queue::DomainId domain = 0;
    queue::Work work;
    bool loading = false;
    bool idle = false;  // parked in idle_, waiting for work
    queue::TimeMs idle_since = 0;
    // The scheduler slot this session holds moved from pending to current (at its first
    // greeting). Kept here, not read off the session: a session that reconnects (the
    // plaintext retry, the next MX) starts a new connection without a greeting, and the
    // slot must still be released from where it is.
    bool slot_current = false;
};

DeliveryManager::DeliveryManager(uv_loop_t* loop, DaemonState& state, logs::MailLog& mail_log,
                                 spool::Spool& spool, inject::Committer& committer, Router& router,
                                 const Config& config, const Clock& clock)
    : loop_(loop),
      clock_(clock),
      state_(state),
      mail_log_(mail_log),
      spool_(spool),
      committer_(committer),
      router_(router),
      config_(config),
      rng_(std::random_device{}()),
      content_budget_(std::make_shared<ContentBudget>(config.delivery.content_buffer_budget)) {
    env_.loop = loop;
    env_.state = &state;
    env_.mail_log = &mail_log;
    env_.helo_name = config.daemon.hostname;
    env_.source_address = config.delivery.source_address;
    env_.timeouts = client_timeouts(config.delivery);
    std::string error;
    tls::ClientOptions plain;  // reports verification (against the same CAs), never fails on it
    plain.ca_file = config.delivery.tls_ca_file;
    env_.tls_plain = tls::make_client_context(plain, &error);
    tls::ClientOptions verify;
    verify.verify = true;
    verify.ca_file = config.delivery.tls_ca_file;
    env_.tls_verify = tls::make_client_context(verify, &error);
    if (!env_.tls_plain || !env_.tls_verify) tls_error_ = error;  // the daemon refuses to start

    queue::SchedulerOptions options;
    options.max_concurrency = config.delivery.max_concurrency;
    options.policy = [this](std::string_view domain) {
        const DestinationControl& d = destination(std::string(domain));
        queue::DomainPolicy p;
        p.max_concurrency = d.max_concurrency;
        p.bounce = profile(std::string(domain));
        return p;
    };
    options.rng = [this](uint64_t bound) { return bound ? rng_() % bound : 0; };
    scheduler_ = std::make_unique<queue::Scheduler>(hosts_, options);
    // One daemon-log line per host up/down change (the mail log has none).
    hosts_.set_observer([](std::string_view domain, const hosts::HostChange& c) {
        spdlog::info("host {}: {} -> {} ({})", escape_for_log(domain, 256),
                     hosts::to_string(c.from), hosts::to_string(c.to), c.event);
    });
    timer_ = loop::Timer::create(loop, [this] { dispatch(); });
    idle_timer_ = loop::Timer::create(loop, [this] { sweep_idle(); });
    Bouncer::Env be;
    be.loop = loop;
    be.store = spool_.store.get();
    be.committer = &committer_;
    be.helo_name = [this] { return env_.helo_name; };
    be.random = [this] { return rng_(); };
    be.now = [this] { return now_ms(); };
    be.wall_ms = [this] { return clock_.wall_ms(); };
    be.busy = [this](spool::Mid mid) {
        const queue::MessageIndex& index = scheduler_->index();
        uint32_t idx = index.find(mid);
        if (idx == queue::kNoIndex) return false;
        for (const auto& r : index.at(idx).rcpts)
            if (r.state == queue::RcptState::kInFlight || r.state == queue::RcptState::kReady)
                return true;
        return false;
    };
    be.log = [this](const std::string& line) { mail_log_.info(line); };
    be.release = [this](std::vector<queue::FinalRecipient> finals, std::vector<spool::Mid> done) {
        append_journal(finals, done);
    };
    be.queued = [this](const spool::Envelope& envelope, uint64_t size, bool delay_warning) {
        ++stats_.dsns;
        if (!delay_warning) state_.counters.add(Counter::kGenBounceRecipients);
        add_message(envelope, size);
    };
    bouncer_ = std::make_unique<Bouncer>(std::move(be));
}

DeliveryManager::~DeliveryManager() {
    bouncer_.reset();
    timer_.reset();
    idle_timer_.reset();
    sessions_.clear();
    graveyard_.clear();
}

void DeliveryManager::apply_config(const Config& config) {
    config_ = config;
    env_.helo_name = config.daemon.hostname;
    env_.source_address = config.delivery.source_address;
    env_.timeouts = client_timeouts(config.delivery);  // sessions opened from now on
    content_budget_->set_capacity(config.delivery.content_buffer_budget);
    // Idle connections were opened under the old routes and TLS policies: let them go.
    close_idle();
    scheduler_->set_max_concurrency(config.delivery.max_concurrency);
    scheduler_->reload_policies();
    kick();
}

const DestinationControl& DeliveryManager::destination(const std::string& domain) const {
    auto it = config_.destinations.find(domain);
    if (it != config_.destinations.end()) return it->second;
    // Parent domains: a control for "example.com" covers "mx.example.com" as ESA does.
    for (size_t dot = domain.find('.'); dot != std::string::npos; dot = domain.find('.', dot + 1)) {
        auto parent = config_.destinations.find(domain.substr(dot + 1));
        if (parent != config_.destinations.end()) return parent->second;
    }
    return config_.destinations.at("default");
}

const BounceProfile& DeliveryManager::profile(const std::string& domain) const {
    auto it = config_.bounce_profiles.find(destination(domain).bounce_profile);
    return it != config_.bounce_profiles.end() ? it->second : config_.bounce_profiles.at("default");
}

queue::TimeMs DeliveryManager::now_ms() const {
    return clock_.monotonic_ms();
}

void DeliveryManager::add_message(const spool::Envelope& envelope, uint64_t size) {
    queue::NewMessage m;
    m.mid = envelope.mid;
    m.received = clock_.to_monotonic(envelope.received_unix_ms);  // the spool keeps wall time
    m.sender = envelope.sender;
    for (const auto& r : envelope.recipients)
        m.recipients.push_back({r.rid, r.address, r.domain, 0, 0});
    if (!scheduler_->add_message(m, now_ms())) return;
    sizes_[envelope.mid] = size;
    queued_bytes_ += size;
    // New mail for a domain with an idle connection goes out on it right away.
    if (!idle_.empty() && !stopping_) {
        for (const auto& r : envelope.recipients) {
            std::optional<queue::DomainId> d = scheduler_->find_domain(r.domain);
            if (d) feed_idle(*d);
        }
    }
    kick();
}

void DeliveryManager::kick() {
    if (dispatch_scheduled_ || stopping_ || !timer_) return;
    dispatch_scheduled_ = true;
    timer_->start(0);
}

void DeliveryManager::stop() {
    stopping_ = true;
    timer_.reset();
    auto sessions = sessions_;
    for (auto& [raw, s] : sessions) {
        Live& l = *live_[raw];
        unpark(*s);
        if (!l.loading) s->quit();
    }
    idle_timer_.reset();
    bouncer_->stop();
}

void DeliveryManager::abort_sessions() {
    auto sessions = sessions_;
    for (auto& [raw, s] : sessions)
        s->abort();
}

void DeliveryManager::dispatch() {
    dispatch_scheduled_ = false;
    if (stopping_) return;
    for (int i = 0; i < kPicksPerTurn; ++i) {
        queue::Pick pick = scheduler_->next_work(now_ms());
        handle_pick_side_effects(pick);
        if (!pick.work) {
            if (pick.wake_at != queue::kNever && timer_) {
                queue::TimeMs delay = std::max<queue::TimeMs>(0, pick.wake_at - now_ms());
                timer_->start(static_cast<uint64_t>(std::min<queue::TimeMs>(delay, 3600 * 1000)));
            }
            return;
        }
        start_work(std::move(*pick.work));
    }
    kick();  // more work waits: continue on the next loop iteration
}

void DeliveryManager::handle_pick_side_effects(queue::Pick& pick) {
    if (!pick.expired.empty()) {
        std::map<spool::Mid, std::vector<BounceInfo>> bounces;
        std::map<spool::Mid, std::string> domains;
        for (const auto& f : pick.expired) {
            domains[f.mid] = scheduler_->domain(f.domain).name();
            mail_log_.info(fmt::format(
                "Bounced: DCID 0 MID {} to RID {} - 5.4.7 - Delivery expired (message too old) "
                "('000', ['timeout']) []",
                f.mid, f.rid));
            state_.counters.add(Counter::kExpiredHardBounces);
            state_.counters.add(Counter::kHardBouncedRecipients);
            state_.counters.add(Counter::kCompletedRecipients);
            bounces[f.mid].push_back(
                {f.rid, "5.4.7", "X-Esad; Delivery expired (message too old)", ""});
        }
        // The bouncer first: it holds these finals until their DSN is in the spool.
        for (auto& [mid, list] : bounces)
            bounce(mid, domains[mid], std::move(list));
    }
    if (pick.expired.empty() && pick.messages_done.empty()) return;
    journal(pick.expired, pick.messages_done);
    finish_messages(pick.messages_done);
}

void DeliveryManager::start_work(queue::Work work) {
    std::string domain = work.domain_name;
    router_.route(domain, [this, work = std::move(work)](RouteResult result) mutable {
        on_routed(std::move(work), std::move(result));
    });
}

void DeliveryManager::on_routed(queue::Work work, RouteResult result) {
    queue::DomainId d = work.domain;
    switch (result.status) {
        case RouteResult::Status::kDiscard:
            fail_work(work, queue::Outcome::kDelivered, queue::HardKind::kNone, "2.0.0",
                      "discarded by route /dev/null", "250", "discarded", 0);
            scheduler_->connection_ended(d, false, now_ms());
            kick();
            return;
        case RouteResult::Status::kHard:
            fail_work(work, queue::Outcome::kHardBounce, queue::HardKind::kDns, result.enhanced,
                      result.reason, "000", result.detail, 0);
            scheduler_->connection_ended(d, false, now_ms());
            kick();
            return;
        case RouteResult::Status::kTemporary: {
            hosts::HostState& host = scheduler_->host(d);
            hosts_.report(
                work.domain_name,
                host.on_dns_temporary_failure(
                    now_ms(),
                    static_cast<queue::TimeMs>(profile(work.domain_name).max_retry_s) * 1000));
            host.record_soft_error(now_ms(), result.detail);
            scheduler_->host_changed(d, now_ms());
            fail_work(work, queue::Outcome::kSoftBounce, queue::HardKind::kNone, result.enhanced,
                      result.reason, "000", result.detail, 0);
            scheduler_->connection_ended(d, false, now_ms());
            kick();
            return;
        }
        case RouteResult::Status::kOk:
            break;
    }
    std::vector<Candidate> candidates = std::move(result.candidates);
    with_transaction(work, [this, work, candidates](std::optional<smtp::Transaction> tx,
                                                    std::shared_ptr<ContentStream> content,
                                                    std::string error) mutable {
        queue::DomainId dom = work.domain;
        if (!tx || stopping_) {
            fail_work(work, queue::Outcome::kSoftBounce, queue::HardKind::kNone, "4.3.0",
                      "Other network problem", "000", stopping_ ? "shutting down" : error, 0);
            scheduler_->connection_ended(dom, false, now_ms());
            kick();
            return;
        }
        SmtpSession::Callbacks cb;
        cb.on_report = [this](SmtpSession& s, const smtp::TransactionReport& r) {
            on_report(s, r);
        };
        cb.on_greeting = [this](SmtpSession& s, const std::string& ip) {
            Live& l = *live_[&s];
            hosts::HostState& host = scheduler_->host(l.domain);
            hosts_.report(s.domain(), host.on_greeting_reached(now_ms(), ip));
            if (!l.slot_current) {
                l.slot_current = true;
                scheduler_->connection_established(l.domain);
            }
            scheduler_->host_changed(l.domain, now_ms());
        };
        cb.on_idle = [this](SmtpSession& s) { on_idle(s); };
        cb.on_closed = [this](SmtpSession& s) { on_closed(s); };
        const DestinationControl& dest = destination(work.domain_name);
        auto session = std::make_shared<SmtpSession>(env_, work.domain_name, std::move(candidates),
                                                     tls_policy(dest.tls), std::move(cb));
        auto live = std::make_unique<Live>();
        live->domain = dom;
        live->work = work;
        live_[session.get()] = std::move(live);
        sessions_[session.get()] = session;
        session->start(std::move(*tx), std::move(content));
    });
}

void DeliveryManager::with_transaction(const queue::Work& work, TransactionReady done) {
    // Only the envelope is read here (on a worker; a corrupt file is quarantined there): the
    // content follows piece by piece within the content budget (content_stream.h).
    ContentStream::Env cenv{loop_, spool_.store.get(), content_budget_, spool_.recent.get(), soon_};
    ContentStream::open(
        cenv, work.mid,
        [this, work, done = std::move(done)](std::shared_ptr<ContentStream> content,
                                             spool::LoadStatus status, const std::string& reason) {
            if (!content) {
                done(std::nullopt, nullptr, std::string(spool::to_string(status)) + ": " + reason);
                return;
            }
            smtp::Transaction tx;
            tx.mid = work.mid;
            const spool::Envelope& env = content->envelope();
            tx.sender = env.sender;
            for (uint32_t rid : work.rids) {
                auto addr = scheduler_->address(work.mid, rid);
                if (addr) tx.recipients.push_back({rid, std::string(*addr)});
            }
            tx.eight_bit = env.body_type != spool::BodyType::k7Bit;
            tx.smtputf8 = env.smtputf8;
            tx.pull = true;
            tx.content_size = content->content_size();
            done(std::move(tx), std::move(content), "");
        });
}

void DeliveryManager::fail_work(const queue::Work& work, queue::Outcome outcome,
                                queue::HardKind kind, const std::string& enhanced,
                                const std::string& reason, const std::string& code,
                                const std::string& detail, uint64_t dcid) {
    queue::Report rep{work.domain, work.mid, {}};
    for (uint32_t rid : work.rids)
        rep.outcomes.push_back({rid, outcome, kind});
    queue::ReportResult res = scheduler_->apply_report(rep, now_ms());
    smtp::TransactionReport fake;
    fake.mid = work.mid;
    fake.reply.code = std::atoi(code.c_str());
    fake.reply.enhanced = enhanced;
    fake.reply.lines = {detail};
    for (uint32_t rid : work.rids) {
        smtp::RecipientResult rr;
        rr.rid = rid;
        rr.outcome = outcome == queue::Outcome::kDelivered    ? smtp::RecipientOutcome::kDelivered
                     : outcome == queue::Outcome::kHardBounce ? smtp::RecipientOutcome::kHard
                                                              : smtp::RecipientOutcome::kSoft;
        rr.reply = fake.reply;
        fake.recipients.push_back(rr);
    }
    (void)reason;
    log_outcomes(work, &fake, res, dcid, "");
    record(res, work.domain_name);
}

void DeliveryManager::log_outcomes(const queue::Work& work, const smtp::TransactionReport* report,
                                   const queue::ReportResult& res, uint64_t dcid,
                                   const std::string& remote) {
    std::vector<uint32_t> delivered;
    std::map<spool::Mid, std::vector<BounceInfo>> bounces;
    std::string response;
    for (const auto& rr : report->recipients) {
        const auto& rep = rr.reply;
        std::string enhanced =
            rep.enhanced.empty() ? (rep.code >= 500 ? "5.0.0" : "4.0.0") : rep.enhanced;
        switch (rr.outcome) {
            case smtp::RecipientOutcome::kDelivered:
                delivered.push_back(rr.rid);
                if (response.empty() && !rep.lines.empty()) response = rep.lines.front();
                break;
            case smtp::RecipientOutcome::kSoft:
                mail_log_.info(fmt::format(
                    "Delayed: DCID {} MID {} to RID {} - {} - {} {}[]", dcid, work.mid, rr.rid,
                    enhanced, esa_reason(enhanced, rep.code), reply_tuple(rep.code, rep.lines)));
                state_.counters.add(Counter::kSoftBouncedEvents);
                break;
            case smtp::RecipientOutcome::kHard:
                mail_log_.info(fmt::format(
                    "Bounced: DCID {} MID {} to RID {} - {} - {} {} []", dcid, work.mid, rr.rid,
                    enhanced, esa_reason(enhanced, rep.code), reply_tuple(rep.code, rep.lines)));
                bounces[work.mid].push_back(
                    {rr.rid, enhanced, diagnostic_code(rep.code, rep.lines), remote});
                break;
            case smtp::RecipientOutcome::kDeferred:
                break;
        }
    }
    if (!delivered.empty()) {
        mail_log_.info(fmt::format("Message done DCID {} MID {} to RID {}", dcid, work.mid,
                                   rid_list(delivered)));
        mail_log_.info(fmt::format("MID {} RID {} Response '{}'", work.mid, rid_list(delivered),
                                   escape_for_log(response, 400)));
    }
    for (const auto& d : res.deferred)
        mail_log_.info(fmt::format(
            "Message {} to RID [{}] pending till {}", work.mid, d.rid,
            esa_log_time(static_cast<std::time_t>(clock_.to_wall(d.next_attempt) / 1000))));
    // Delay warning (bounce profile): once, after the second failed attempt (as the appliance).
    const BounceProfile& prof = profile(work.domain_name);
    if (prof.delay_warning && !res.deferred.empty()) {
        std::vector<BounceInfo> warn;
        for (const auto& d : res.deferred) {
            if (d.attempts != 2) continue;
            for (const auto& rr : report->recipients)
                if (rr.rid == d.rid)
                    warn.push_back({d.rid, rr.reply.enhanced.empty() ? "4.0.0" : rr.reply.enhanced,
                                    diagnostic_code(rr.reply.code, rr.reply.lines), remote, 0});
        }
        if (!warn.empty()) {
            uint32_t idx = scheduler_->index().find(work.mid);
            if (idx != queue::kNoIndex)
                for (auto& w : warn)
                    w.retry_until =
                        static_cast<std::time_t>(clock_.to_wall(queue::expiry_time(
                                                     prof, scheduler_->index().at(idx).received)) /
                                                 1000);
            bounce(work.mid, work.domain_name, std::move(warn), true);
        }
    }
    // A soft failure past the bounce profile's limits is final here: an expiry bounce.
    for (const auto& f : res.finals) {
        if (f.state != queue::FinalState::kHardBounced || f.kind != queue::HardKind::kExpired)
            continue;
        mail_log_.info(
            fmt::format("Bounced: DCID {} MID {} to RID {} - 5.4.7 - Delivery expired "
                        "(message too old) ('000', ['retry limit reached']) []",
                        dcid, f.mid, f.rid));
        bounces[f.mid].push_back(
            {f.rid, "5.4.7", "X-Esad; Delivery expired (retry limit reached)", remote});
    }
    // Only recipients the queue really made final bounce (in-flight deletions are ignored).
    for (auto& [mid, list] : bounces) {
        std::vector<BounceInfo> final_list;
        for (auto& b : list)
            for (const auto& f : res.finals)
                if (f.mid == mid && f.rid == b.rid && f.state == queue::FinalState::kHardBounced)
                    final_list.push_back(b);
        if (!final_list.empty()) bounce(mid, work.domain_name, std::move(final_list));
    }
}

void DeliveryManager::on_report(SmtpSession& s, const smtp::TransactionReport& report) {
    Live& l = *live_[&s];
    queue::TimeMs now = now_ms();
    const DestinationControl& dest = destination(s.domain());
    hosts::HostState& host = scheduler_->host(l.domain);
    std::string first_line = report.reply.lines.empty() ? "" : report.reply.lines.front();
    std::string reply_text =
        report.reply.code ? fmt::format("{} {}", report.reply.code, first_line) : first_line;
    // DESIGN §4: down only when the whole attempt failed before any greeting. A session that
    // was greeted and then failed to reconnect (the plaintext retry) reached the host.
    if (report.host == smtp::HostOutcome::kNotReached && !l.slot_current) {
        host.on_candidate_failed(now, s.current_ip(), reply_text);
        hosts_.report(s.domain(),
                      host.on_all_candidates_failed(
                          now, static_cast<queue::TimeMs>(profile(s.domain()).max_retry_s) * 1000));
        scheduler_->host_changed(l.domain, now);
    } else if (report.reply.code == 421) {
        host.on_421(now, s.current_ip(), reply_text);
    } else if (report.outcome == smtp::MessageOutcome::kDelivered) {
        host.on_transaction_success(now, dest.max_concurrency);
    }

    queue::Report rep{l.domain, report.mid, {}};
    // "Possible delivery" (ESA option, off by default): the connection died after the final
    // dot was sent and before its reply; count the recipients as delivered instead of
    // retrying them (no duplicate, at the risk of a loss).
    smtp::TransactionReport adjusted;
    const smtp::TransactionReport* effective = &report;
    if (report.possible_duplicate && config_.delivery.possible_delivery) {
        adjusted = report;
        for (auto& rr : adjusted.recipients)
            if (rr.outcome == smtp::RecipientOutcome::kSoft) {
                rr.outcome = smtp::RecipientOutcome::kDelivered;
                rr.reply.lines = {"possible delivery: connection lost after the final dot"};
            }
        effective = &adjusted;
        mail_log_.info(
            fmt::format("MID {} possible delivery: DCID {} lost the connection after the final dot",
                        report.mid, s.dcid()));
    }
    for (const auto& rr : effective->recipients) {
        queue::RecipientOutcome o{rr.rid, queue::Outcome::kSoftBounce, queue::HardKind::kOther};
        switch (rr.outcome) {
            case smtp::RecipientOutcome::kDelivered:
                o.outcome = queue::Outcome::kDelivered;
                break;
            case smtp::RecipientOutcome::kHard:
                o.outcome = queue::Outcome::kHardBounce;
                o.kind = rr.reply.code >= 500 ? queue::HardKind::k5xx : queue::HardKind::kOther;
                host.record_5xx(now,
                                fmt::format("{} {}", rr.reply.code,
                                            rr.reply.lines.empty() ? "" : rr.reply.lines.front()));
                break;
            case smtp::RecipientOutcome::kSoft:
                o.outcome = queue::Outcome::kSoftBounce;
                host.record_soft_error(
                    now, rr.reply.code
                             ? fmt::format("{} {}", rr.reply.code,
                                           rr.reply.lines.empty() ? "" : rr.reply.lines.front())
                             : (rr.reply.lines.empty() ? "" : rr.reply.lines.front()));
                break;
            case smtp::RecipientOutcome::kDeferred:
                o.outcome = queue::Outcome::kNotAttempted;
                break;
        }
        rep.outcomes.push_back(o);
    }
    queue::ReportResult res = scheduler_->apply_report(rep, now);
    queue::Work work = l.work;
    work.mid = report.mid;
    log_outcomes(work, effective, res, s.dcid(), s.current_ip());
    record(res, s.domain());
    kick();
}

void DeliveryManager::on_idle(SmtpSession& s) {
    auto it = live_.find(&s);
    if (it == live_.end()) return;
    Live& l = *it->second;
    if (l.loading || l.idle) return;
    if (stopping_ || s.messages() >= destination(s.domain()).max_messages_per_connection) {
        s.quit();
        return;
    }
    queue::Pick pick = scheduler_->next_work_on_connection(l.domain, now_ms());
    handle_pick_side_effects(pick);
    if (!pick.work) {
        // Keep the connection for a moment: mail for this domain that arrives meanwhile goes
        // out on it instead of paying for a new TCP and SMTP handshake (dispatch() offers
        // work to idle connections first; the idle sweep QUITs the ones left unused).
        l.idle = true;
        l.idle_since = now_ms();
        idle_[l.domain].push_back(&s);
        arm_idle_sweep();
        return;
    }
    submit_on(s, std::move(*pick.work));
}

void DeliveryManager::submit_on(SmtpSession& s, queue::Work work) {
    Live& l = *live_[&s];
    l.loading = true;
    l.idle = false;
    std::weak_ptr<SmtpSession> weak = sessions_[&s];
    with_transaction(
        work, [this, weak, work](std::optional<smtp::Transaction> tx,
                                 std::shared_ptr<ContentStream> content, std::string error) {
            auto session = weak.lock();
            if (!session || !live_.count(session.get())) {
                // The connection went away while the content loaded: the recipients go back.
                fail_work(work, queue::Outcome::kNotAttempted, queue::HardKind::kNone, "4.4.2",
                          "Other network problem", "000", "connection lost", 0);
                return;
            }
            Live& live = *live_[session.get()];
            live.loading = false;
            if (!tx) {
                fail_work(work, queue::Outcome::kSoftBounce, queue::HardKind::kNone, "4.3.0",
                          "Other network problem", "000", error, session->dcid());
                session->quit();
                return;
            }
            live.work = work;
            if (!session->submit(std::move(*tx), std::move(content))) {
                fail_work(work, queue::Outcome::kNotAttempted, queue::HardKind::kNone, "4.4.2",
                          "Other network problem", "000", "connection closing", session->dcid());
            }
        });
}

void DeliveryManager::unpark(SmtpSession& s) {
    auto live = live_.find(&s);
    if (live == live_.end() || !live->second->idle) return;
    live->second->idle = false;
    auto list = idle_.find(live->second->domain);
    if (list == idle_.end()) return;
    auto& v = list->second;
    v.erase(std::remove(v.begin(), v.end(), &s), v.end());
    if (v.empty()) idle_.erase(list);
}

void DeliveryManager::feed_idle(queue::DomainId d) {
    auto it = idle_.find(d);
    if (it == idle_.end()) return;
    queue::TimeMs now = now_ms();
    auto& list = it->second;
    while (!list.empty()) {
        queue::Pick pick = scheduler_->next_work_on_connection(d, now);
        handle_pick_side_effects(pick);
        if (!pick.work) break;
        SmtpSession* s = list.back();
        list.pop_back();
        submit_on(*s, std::move(*pick.work));
    }
    if (list.empty()) idle_.erase(d);
}

void DeliveryManager::arm_idle_sweep() {
    if (idle_sweep_armed_ || !idle_timer_) return;
    idle_sweep_armed_ = true;
    idle_timer_->start(kIdleSweepMs);
}

void DeliveryManager::close_idle() {
    std::vector<SmtpSession*> all;
    for (auto& [d, list] : idle_)
        all.insert(all.end(), list.begin(), list.end());
    for (SmtpSession* s : all) {
        unpark(*s);
        s->quit();
    }
}

void DeliveryManager::sweep_idle() {
    idle_sweep_armed_ = false;
    queue::TimeMs now = now_ms();
    std::vector<SmtpSession*> expired;
    for (auto& [d, list] : idle_)
        for (SmtpSession* s : list)
            if (now - live_[s]->idle_since >= kIdleKeepMs) expired.push_back(s);
    for (SmtpSession* s : expired) {
        unpark(*s);
        s->quit();
    }
    if (!idle_.empty()) arm_idle_sweep();
}

void DeliveryManager::on_closed(SmtpSession& s) {
    auto it = sessions_.find(&s);
    if (it == sessions_.end()) return;
    unpark(s);
    auto live = live_.find(&s);
    if (live != live_.end()) {
        scheduler_->connection_ended(live->second->domain, live->second->slot_current, now_ms());
        live_.erase(live);
    }
    graveyard_.bury(std::move(it->second));
    sessions_.erase(it);
    kick();
}

void DeliveryManager::record(const queue::ReportResult& res, const std::string&) {
    for (const auto& f : res.finals) {
        switch (f.state) {
            case queue::FinalState::kDelivered:
                state_.counters.add(Counter::kDeliveredRecipients);
                break;
            case queue::FinalState::kHardBounced:
                state_.counters.add(Counter::kHardBouncedRecipients);
                state_.counters.add(hard_counter(f.kind));
                break;
            case queue::FinalState::kDeleted:
                state_.counters.add(Counter::kDeletedRecipients);
                break;
        }
        state_.counters.add(Counter::kCompletedRecipients);
    }
    journal(res.finals, res.messages_done);
    finish_messages(res.messages_done);
}

void DeliveryManager::apply_removal(const queue::RemoveResult& removed, bool bounced) {
    queue::ReportResult res;
    res.finals = removed.removed;
    res.messages_done = removed.messages_done;
    if (bounced) {
        std::map<spool::Mid, std::vector<BounceInfo>> bounces;
        std::map<spool::Mid, std::string> domains;
        for (const auto& f : removed.removed) {
            domains[f.mid] = scheduler_->domain(f.domain).name();
            mail_log_.info(
                fmt::format("Bounced: DCID 0 MID {} to RID {} - 5.0.0 - Bounced by administrator "
                            "('000', []) []",
                            f.mid, f.rid));
            bounces[f.mid].push_back({f.rid, "5.0.0", "X-Esad; bounced by the administrator", ""});
        }
        for (auto& [mid, list] : bounces)
            bounce(mid, domains[mid], std::move(list));
    } else {
        for (const auto& f : removed.removed)
            mail_log_.info(fmt::format("MID {} RID [{}] deleted by administrator", f.mid, f.rid));
    }
    record(res, "");
    kick();
}

void DeliveryManager::journal(const std::vector<queue::FinalRecipient>& finals,
                              const std::vector<spool::Mid>& done) {
    // Hard bounces wait in the bouncer until their DSN is durable (see bouncer.h).
    std::vector<queue::FinalRecipient> now = finals;
    std::vector<spool::Mid> removals = done;
    bouncer_->hold(now, removals);
    append_journal(now, removals);
    bouncer_->kick();
}

void DeliveryManager::append_journal(const std::vector<queue::FinalRecipient>& finals,
                                     const std::vector<spool::Mid>& done) {
    for (const auto& f : finals) {
        spool::RcptState st =
            f.state == queue::FinalState::kDelivered     ? spool::RcptState::kDelivered
            : f.state == queue::FinalState::kHardBounced ? spool::RcptState::kHardBounced
                                                         : spool::RcptState::kDeleted;
        journal_pending_.push_back({f.mid, f.rid, st, journal_kind(f.kind)});
    }
    remove_pending_.insert(remove_pending_.end(), done.begin(), done.end());
    pump_journal();
}

void DeliveryManager::pump_journal() {
    spool::Spool* sp = &spool_;
    // Write at once (a killed process loses nothing written); one write in flight at a time,
    // records arriving meanwhile go out together with the next.
    if (!append_in_flight_ && (!journal_pending_.empty() || !remove_pending_.empty())) {
        append_in_flight_ = true;
        auto records =
            std::make_shared<std::vector<spool::JournalRecord>>(std::move(journal_pending_));
        auto removes = std::make_shared<std::vector<spool::Mid>>(std::move(remove_pending_));
        journal_pending_.clear();
        remove_pending_.clear();
        auto status = std::make_shared<spool::IoStatus>();
        loop::queue_work(
            loop_,
            [sp, records, status] {
                if (!records->empty()) *status = sp->journal->append(*records);
            },
            [this, records, removes, status] {
                append_in_flight_ = false;
                stats_.journal_records += records->size();
                if (status->ok()) {
                    unsynced_records_ += records->size();
                    sync_removes_.insert(sync_removes_.end(), removes->begin(), removes->end());
                } else {
                    // Their messages stay in queue/: the recipients are redone after a restart.
                    spdlog::error(
                        "spool: journal write failed ({} records; they will be redone after a "
                        "restart): {}",
                        records->size(), status->reason());
                }
                pump_journal();
            });
    }
    // Group commit: one fsync covers everything written before it; a message file goes only
    // after its final records are durable.
    if (!sync_in_flight_ && (unsynced_records_ > 0 || !sync_removes_.empty())) {
        sync_in_flight_ = true;
        const uint64_t count = unsynced_records_;
        unsynced_records_ = 0;
        auto removes = std::make_shared<std::vector<spool::Mid>>(std::move(sync_removes_));
        sync_removes_.clear();
        auto status = std::make_shared<spool::IoStatus>();
        loop::queue_work(
            loop_,
            [sp, count, removes, status] {
                if (count > 0) *status = sp->journal->sync();
                if (status->ok())
                    for (spool::Mid mid : *removes)
                        sp->store->remove_message(mid);
                if (status->ok() && sp->journal->needs_compaction())
                    spool::compact_journal(*sp->store, *sp->journal);
            },
            [this, count, status] {
                sync_in_flight_ = false;
                ++stats_.journal_flushes;
                if (!status->ok())
                    spdlog::error(
                        "spool: journal sync failed ({} records; they will be redone after a "
                        "restart): {}",
                        count, status->reason());
                pump_journal();
            });
    }
}

void DeliveryManager::finish_messages(const std::vector<spool::Mid>& done) {
    for (spool::Mid mid : done) {
        mail_log_.info(fmt::format("Message finished MID {} done", mid));
        if (spool_.recent) spool_.recent->erase(mid);
        auto it = sizes_.find(mid);
        if (it != sizes_.end()) {
            queued_bytes_ -= it->second;
            sizes_.erase(it);
        }
    }
}

void DeliveryManager::bounce(spool::Mid mid, const std::string& domain,
                             std::vector<BounceInfo> rcpts, bool delay_warning) {
    if (delay_warning) {
        bouncer_->delay_warning(mid, std::move(rcpts));
    } else if (profile(domain).send_dsn) {
        bouncer_->add(mid, std::move(rcpts));
    }
}

}  // namespace esad::delivery
