// See delivery_manager.h.
#include "daemon/delivery/delivery_manager.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/escape.h"

namespace esad::delivery {

namespace {
constexpr int kPicksPerTurn = 256;

smtp::TlsPolicy tls_policy(const std::string& text) {
    return smtp::parse_tls_policy(text).value_or(smtp::TlsPolicy::kPreferred);
}
}  // namespace

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
      content_budget_(std::make_shared<ContentBudget>(config.delivery.content_buffer_budget)),
      pool_(loop, [this] { return now_ms(); }),
      journal_(loop, spool) {
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
        journal_.append(finals, done);
    };
    be.queued = [this](const spool::Envelope& envelope, uint64_t size, bool delay_warning) {
        ++dsns_;
        if (!delay_warning) state_.counters.add(Counter::kGenBounceRecipients);
        add_message(envelope, size);
    };
    bouncer_ = std::make_unique<Bouncer>(std::move(be));
}

DeliveryManager::~DeliveryManager() {
    bouncer_.reset();
    timer_.reset();
}

DeliveryStats DeliveryManager::stats() const {
    return {journal_.flushes(), journal_.records_written(), dsns_};
}

void DeliveryManager::apply_config(const Config& config) {
    config_ = config;
    env_.helo_name = config.daemon.hostname;
    env_.source_address = config.delivery.source_address;
    env_.timeouts = client_timeouts(config.delivery);  // sessions opened from now on
    content_budget_->set_capacity(config.delivery.content_buffer_budget);
    // Idle connections were opened under the old routes and TLS policies: let them go.
    pool_.close_idle();
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

bool DeliveryManager::sends_dsn(queue::DomainId d) const {
    return profile(scheduler_->domain(d).name()).send_dsn;
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
    if (pool_.has_idle() && !stopping_) {
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
    pool_.stop();
    bouncer_->stop();
}

void DeliveryManager::abort_sessions() {
    pool_.abort();
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
    if (pick.expired.empty() && pick.messages_done.empty()) return;
    carry_out(follow_up_expired(pick.expired, pick.messages_done,
                                [this](queue::DomainId d) { return sends_dsn(d); }));
}

void DeliveryManager::start_work(queue::Work work) {
    std::string domain = work.domain_name;
    router_.route(domain, [this, work = std::move(work)](RouteResult result) mutable {
        on_routed(std::move(work), std::move(result));
    });
}

void DeliveryManager::on_routed(queue::Work work, RouteResult result) {
    std::optional<LocalFailure> failure;
    switch (result.status) {
        case RouteResult::Status::kDiscard:
            failure = LocalFailure::discarded();
            break;
        case RouteResult::Status::kHard:
            failure = LocalFailure::route_hard(result.enhanced, result.detail);
            break;
        case RouteResult::Status::kTemporary:
            failure = LocalFailure::dns_temporary_failure(result.enhanced, result.detail);
            break;
        case RouteResult::Status::kOk:
            break;
    }
    if (failure) {
        fail_work(work, *failure);
        scheduler_->connection_ended(work.domain, false, now_ms());
        kick();
        return;
    }
    with_transaction(work, [this, work, candidates = std::move(result.candidates)](
                               std::optional<smtp::Transaction> tx,
                               std::shared_ptr<ContentStream> content, std::string error) mutable {
        if (!tx || stopping_) {
            fail_work(work, LocalFailure::not_loaded(stopping_ ? "shutting down" : error));
            scheduler_->connection_ended(work.domain, false, now_ms());
            kick();
            return;
        }
        open_session(std::move(work), std::move(candidates), std::move(*tx), std::move(content));
    });
}

void DeliveryManager::open_session(queue::Work work, std::vector<Candidate> candidates,
                                   smtp::Transaction tx, std::shared_ptr<ContentStream> content) {
    const SessionId id = pool_.next_id();
    SmtpSession::Callbacks cb;
    cb.on_report = [this, id](SmtpSession& s, const smtp::TransactionReport& r) {
        on_report(id, s, r);
    };
    cb.on_greeting = [this, id](SmtpSession& s, const std::string& ip) { on_greeting(id, s, ip); };
    cb.on_idle = [this, id](SmtpSession& s) { on_idle(id, s); };
    cb.on_closed = [this, id](SmtpSession&) { on_closed(id); };
    const DestinationControl& dest = destination(work.domain_name);
    auto session = std::make_shared<SmtpSession>(env_, work.domain_name, std::move(candidates),
                                                 tls_policy(dest.tls), std::move(cb));
    const queue::DomainId d = work.domain;
    pool_.add(id, session, d, std::move(work));
    session->start(std::move(tx), std::move(content));
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

void DeliveryManager::on_greeting(SessionId id, SmtpSession& s, const std::string& ip) {
    ConnectionPool::Entry* e = pool_.find(id);
    if (!e) return;
    hosts::HostState& host = scheduler_->host(e->domain);
    hosts_.report(s.domain(), host.on_greeting_reached(now_ms(), ip));
    if (!e->slot_current) {
        e->slot_current = true;
        scheduler_->connection_established(e->domain);
    }
    scheduler_->host_changed(e->domain, now_ms());
}

Attempt DeliveryManager::attempt(const queue::Work& work, uint64_t dcid, const std::string& remote,
                                 bool greeted) const {
    Attempt a;
    a.work = work;
    a.dcid = dcid;
    a.remote = remote;
    a.greeted = greeted;
    a.possible_delivery = config_.delivery.possible_delivery;
    a.max_concurrency = destination(work.domain_name).max_concurrency;
    a.max_retry_ms = static_cast<queue::TimeMs>(profile(work.domain_name).max_retry_s) * 1000;
    a.now = now_ms();
    return a;
}

void DeliveryManager::fail_work(const queue::Work& work, const LocalFailure& failure,
                                uint64_t dcid) {
    Attempt a = attempt(work, dcid, "", false);
    apply(a, judge_failure(a, failure));
}

void DeliveryManager::on_report(SessionId id, SmtpSession& s,
                                const smtp::TransactionReport& report) {
    ConnectionPool::Entry* e = pool_.find(id);
    if (!e) return;
    Attempt a = attempt(e->work, s.dcid(), s.current_ip(), e->slot_current);
    a.work.mid = report.mid;
    apply(a, judge_report(a, report));
    kick();
}

void DeliveryManager::apply(const Attempt& a, const Verdict& v) {
    const queue::DomainId d = a.work.domain;
    hosts::HostState& host = scheduler_->host(d);
    for (const HostEvent& ev : v.host) {
        switch (ev.kind) {
            case HostEvent::Kind::kUnreachable:
                host.on_candidate_failed(a.now, ev.ip, ev.text);
                hosts_.report(a.work.domain_name,
                              host.on_all_candidates_failed(a.now, a.max_retry_ms));
                break;
            case HostEvent::Kind::kDnsTemporary:
                hosts_.report(a.work.domain_name,
                              host.on_dns_temporary_failure(a.now, a.max_retry_ms));
                break;
            case HostEvent::Kind::k421:
                host.on_421(a.now, ev.ip, ev.text);
                break;
            case HostEvent::Kind::kSuccess:
                host.on_transaction_success(a.now, a.max_concurrency);
                break;
            case HostEvent::Kind::k5xx:
                host.record_5xx(a.now, ev.text);
                break;
            case HostEvent::Kind::kSoftError:
                host.record_soft_error(a.now, ev.text);
                break;
        }
    }
    if (v.host_changed) scheduler_->host_changed(d, a.now);
    for (const LogRecord& r : v.log)
        for (const std::string& line : format_log(r))
            mail_log_.info(line);
    queue::ReportResult res = scheduler_->apply_report(v.update, a.now);
    std::optional<queue::TimeMs> received;
    const uint32_t idx = scheduler_->index().find(v.update.mid);
    if (idx != queue::kNoIndex) received = scheduler_->index().at(idx).received;
    carry_out(follow_up(a, v, res, profile(a.work.domain_name), received, clock_));
}

void DeliveryManager::carry_out(const FollowUp& f) {
    for (const LogRecord& r : f.log)
        for (const std::string& line : format_log(r))
            mail_log_.info(line);
    for (Counter c : f.counters)
        state_.counters.add(c);
    // The bouncer first: it holds hard-bounced finals until their DSN is in the spool.
    for (const BounceRequest& b : f.bounces)
        bounce(b);
    std::vector<queue::FinalRecipient> finals = f.finals;
    std::vector<spool::Mid> done = f.done;
    bouncer_->hold(finals, done);
    journal_.append(finals, done);
    bouncer_->kick();
    for (spool::Mid mid : f.done) {
        if (spool_.recent) spool_.recent->erase(mid);
        auto it = sizes_.find(mid);
        if (it != sizes_.end()) {
            queued_bytes_ -= it->second;
            sizes_.erase(it);
        }
    }
}

void DeliveryManager::bounce(const BounceRequest& b) {
    if (b.delay_warning)
        bouncer_->delay_warning(b.mid, b.rcpts);
    else
        bouncer_->add(b.mid, b.rcpts);
}

void DeliveryManager::on_idle(SessionId id, SmtpSession& s) {
    ConnectionPool::Entry* e = pool_.find(id);
    if (!e || e->loading || e->idle) return;
    if (stopping_ || s.messages() >= destination(s.domain()).max_messages_per_connection) {
        s.quit();
        return;
    }
    queue::Pick pick = scheduler_->next_work_on_connection(e->domain, now_ms());
    handle_pick_side_effects(pick);
    if (!pick.work) {
        // Keep the connection for a moment: mail for this domain that arrives meanwhile goes
        // out on it instead of paying for a new TCP and SMTP handshake (dispatch() offers
        // work to idle connections first; the pool's sweep QUITs the ones left unused).
        pool_.park(id);
        return;
    }
    submit_on(id, std::move(*pick.work));
}

void DeliveryManager::submit_on(SessionId id, queue::Work work) {
    ConnectionPool::Entry* e = pool_.find(id);
    if (!e) {
        fail_work(work, LocalFailure::connection_lost());
        return;
    }
    e->loading = true;
    e->idle = false;
    with_transaction(work,
                     [this, id, work](std::optional<smtp::Transaction> tx,
                                      std::shared_ptr<ContentStream> content, std::string error) {
                         ConnectionPool::Entry* live = pool_.find(id);
                         if (!live) {
                             // The connection went away while the content loaded: the recipients go
                             // back.
                             fail_work(work, LocalFailure::connection_lost());
                             return;
                         }
                         live->loading = false;
                         std::shared_ptr<SmtpSession> session = live->session;
                         if (!tx) {
                             fail_work(work, LocalFailure::not_loaded(error), session->dcid());
                             session->quit();
                             return;
                         }
                         live->work = work;
                         if (!session->submit(std::move(*tx), std::move(content)))
                             fail_work(work, LocalFailure::connection_closing(), session->dcid());
                     });
}

void DeliveryManager::feed_idle(queue::DomainId d) {
    const queue::TimeMs now = now_ms();
    while (pool_.has_idle(d)) {
        queue::Pick pick = scheduler_->next_work_on_connection(d, now);
        handle_pick_side_effects(pick);
        if (!pick.work) break;
        std::optional<SessionId> id = pool_.take_idle(d);
        if (!id) break;
        submit_on(*id, std::move(*pick.work));
    }
}

void DeliveryManager::on_closed(SessionId id) {
    std::optional<ConnectionPool::Entry> gone = pool_.remove(id);
    if (!gone) return;
    scheduler_->connection_ended(gone->domain, gone->slot_current, now_ms());
    kick();
}

void DeliveryManager::apply_removal(const queue::RemoveResult& removed, bool bounced) {
    carry_out(
        follow_up_removal(removed, bounced, [this](queue::DomainId d) { return sends_dsn(d); }));
    kick();
}

}  // namespace esad::delivery
