// See smtp_session.h.
#include "daemon/delivery/smtp_session.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/escape.h"

namespace esad::delivery {

smtp::ClientTimeouts client_timeouts(const DeliveryConfig& config) {
    using T = smtp::ClientTimeouts;
    T t;
    for (auto [stage, seconds] : {std::pair{&T::greeting, config.greeting_timeout_s},
                                  {&T::mail, config.mail_timeout_s},
                                  {&T::rcpt, config.rcpt_timeout_s},
                                  {&T::data_init, config.data_init_timeout_s},
                                  {&T::data_block, config.data_block_timeout_s},
                                  {&T::data_done, config.data_done_timeout_s}})
        t.*stage = smtp::Millis(uint64_t{seconds} * 1000);
    return t;
}

namespace {
std::string rid_list(const std::vector<uint32_t>& rids) {
    std::string out = "[";
    for (size_t i = 0; i < rids.size(); ++i) {
        if (i) out += ", ";
        out += std::to_string(rids[i]);
    }
    return out + "]";
}
}  // namespace

SmtpSession::SmtpSession(SessionEnv& env, std::string domain, std::vector<Candidate> candidates,
                         smtp::TlsPolicy policy, Callbacks callbacks)
    : env_(env),
      domain_(std::move(domain)),
      candidates_(std::move(candidates)),
      policy_(policy),
      cb_(std::move(callbacks)) {}

SmtpSession::~SmtpSession() = default;

void SmtpSession::start(smtp::Transaction first, std::shared_ptr<ContentStream> content) {
    if (content) contents_.emplace_back(first.mid, std::move(content));
    retry_tx_ = std::move(first);
    connect();
}

void SmtpSession::connect() {
    dcid_ = ++env_.state->current_dcid;
    ++generation_;
    smtp::ClientConfig config;
    config.helo_name = env_.helo_name;
    config.mx_name = candidate().mx_name;
    config.tls = tls_retry_plain_ ? smtp::TlsPolicy::kNone : policy_;
    config.timeouts = env_.timeouts;
    fsm_ = std::make_unique<smtp::ClientSession>(config);
    greeted_ = false;
    fsm_->submit(*retry_tx_, now());
    fsm_->start(now());

    conn_ = OutboundConnection::create(env_.loop, callbacks_for(shared_from_this()));
    conn_->connect(candidate().ip, candidate().port, env_.source_address);
    run_actions();
}

void SmtpSession::on_connected(const std::string& local) {
    counted_ = true;
    ++env_.state->outbound_connections;
    env_.mail_log->info(fmt::format("New SMTP DCID {} interface {} address {} port {}", dcid_,
                                    local, candidate().ip, candidate().port));
    fsm_->on_connected(now());
    run_actions();
}

void SmtpSession::on_tls(const tls::Engine& engine) {
    env_.mail_log->info(fmt::format("DCID {} TLS success protocol {} cipher {}", dcid_,
                                    engine.protocol(), engine.cipher()));
    fsm_->on_tls_established(now(), engine.verified());
    run_actions();
}

void SmtpSession::on_data(std::string_view bytes) {
    fsm_->on_bytes(bytes, now());
    run_actions();
}

void SmtpSession::on_failed(const OutboundConnection::Failure& failure) {
    tell_fsm(*fsm_, failure, now());
    run_actions();
}

void tell_fsm(smtp::ClientSession& fsm, const OutboundConnection::Failure& failure,
              smtp::Millis now) {
    using Kind = OutboundConnection::Failure::Kind;
    switch (failure.kind) {
        case Kind::kTlsHandshake:
            fsm.on_tls_failed(failure.detail, now);
            break;
        case Kind::kDeadline:
            // The connection's deadline is the FSM's own (arm_deadline): it acts on it.
            if (!fsm.on_timeout(now)) fsm.on_disconnected(now, failure.detail);
            break;
        default:
            fsm.on_disconnected(now, failure.detail);
            break;
    }
}

void arm_deadline(OutboundConnection& conn, const smtp::ClientSession& fsm) {
    if (fsm.closed()) return;
    std::optional<smtp::Millis> deadline = fsm.next_deadline();
    if (deadline)
        conn.set_deadline(static_cast<uint64_t>(deadline->count()));
    else
        conn.clear_deadline();
}

void SmtpSession::write(std::string bytes, bool content) {
    if (!conn_) return;
    std::function<void()> done;
    if (content) {
        std::weak_ptr<SmtpSession> weak = weak_from_this();
        done = [weak] {
            auto self = weak.lock();
            if (!self || !self->fsm_ || self->fsm_->closed()) return;
            self->fsm_->on_content_sent(self->now());
            self->run_actions();
        };
    }
    conn_->write(std::move(bytes), std::move(done));
}

void SmtpSession::run_actions() {
    if (!fsm_) return;
    auto self = shared_from_this();
    std::string failure_detail;
    bool rerun = false;  // the FSM was fed during this run: its new actions follow
    for (auto& action : fsm_->take_actions()) {
        if (auto* c = std::get_if<smtp::SendCommands>(&action)) {
            write(std::move(c->bytes), false);
        } else if (auto* sc = std::get_if<smtp::SendContent>(&action)) {
            write(std::move(sc->bytes), true);
        } else if (auto* nc = std::get_if<smtp::NeedContent>(&action)) {
            if (!need_content(*nc)) rerun = true;
        } else if (auto* st = std::get_if<smtp::StartTlsHandshake>(&action)) {
            // Only required-verify lets a failed check abort the handshake: a stricter
            // policy never ends up with less protection (plaintext) than `preferred`.
            const auto& ctx = st->enforce ? env_.tls_verify : env_.tls_plain;
            if (conn_)
                conn_->start_tls(*ctx, st->sni, st->verify ? st->sni : "",
                                 env_.keylog ? env_.keylog(domain_) : nullptr);
        } else if (std::holds_alternative<smtp::CloseConnection>(action)) {
            close_connection();
        } else if (auto* ts = std::get_if<smtp::TransactionStarted>(&action)) {
            env_.mail_log->info(fmt::format("Delivery start DCID {} MID {} to RID {}", dcid_,
                                            ts->mid, rid_list(ts->rids)));
        } else if (auto* r = std::get_if<smtp::TransactionReport>(&action)) {
            bool reached = r->host == smtp::HostOutcome::kReached || greeted_;
            if (!reached && !r->started) {
                // The server's own words when it answered (a 421/554 banner), with its code.
                failure_detail =
                    r->reply.lines.empty() ? "connection failed" : r->reply.lines.front();
                if (r->reply.code > 0)
                    failure_detail = fmt::format("{} {}", r->reply.code, failure_detail);
                env_.mail_log->info(
                    fmt::format("Connection Error: DCID {} domain: {} IP: {} port: {} details: {} "
                                "interface: {} "
                                "reason: network error",
                                dcid_, domain_, candidate().ip, candidate().port,
                                escape_for_log(failure_detail, 200),
                                env_.source_address.empty() ? "default" : env_.source_address));
                if (index_ + 1 < candidates_.size()) {
                    pending_next_ = true;
                    continue;
                }
            }
            if (r->tls_handshake_failed && !tls_retry_plain_ &&
                (policy_ == smtp::TlsPolicy::kPreferred ||
                 policy_ == smtp::TlsPolicy::kPreferredVerify)) {
                pending_plain_ = true;
                continue;
            }
            ++messages_;
            drop_content(r->mid);
            if (cb_.on_report) cb_.on_report(*this, *r);
        } else if (auto* tf = std::get_if<smtp::TlsFailed>(&action)) {
            if (tf->required)
                env_.mail_log->info(fmt::format(
                    "DCID {} IP {} TLS was required but could not be successfully negotiated",
                    dcid_, candidate().ip));
            else
                env_.mail_log->info(
                    fmt::format("DCID {} TLS failed: {}", dcid_, escape_for_log(tf->reason, 200)));
        } else if (auto* tr = std::get_if<smtp::ClientTrace>(&action)) {
            if (env_.trace) env_.trace(domain_, dcid_, tr->line);
        }
    }
    if (rerun) return run_actions();
    if (fsm_ && !greeted_ && fsm_->greeting_received()) {
        greeted_ = true;
        if (cb_.on_greeting) cb_.on_greeting(*this, candidate().ip);
    }
    if (closed_) return;
    if (fsm_->closed()) close_connection();  // CloseConnection is emitted once; be sure
    if ((pending_next_ || pending_plain_) && fsm_->closed() && !conn_) {
        if (pending_next_) ++index_;
        if (pending_plain_) tls_retry_plain_ = true;
        pending_next_ = pending_plain_ = false;
        connect();
        return;
    }
    if (fsm_->closed() && !conn_) {
        closed_ = true;
        for (auto& [mid, content] : contents_)
            content->drop();
        contents_.clear();
        if (cb_.on_closed) cb_.on_closed(*this);
        return;
    }
    if (fsm_->idle() && cb_.on_idle) cb_.on_idle(*this);
    if (conn_ && fsm_) arm_deadline(*conn_, *fsm_);
}

bool SmtpSession::submit(smtp::Transaction tx, std::shared_ptr<ContentStream> content) {
    if (!fsm_ || fsm_->closed()) return false;
    retry_tx_ = tx;
    const uint64_t mid = tx.mid;
    bool ok = fsm_->submit(std::move(tx), now());
    if (ok && content) contents_.emplace_back(mid, std::move(content));
    if (ok) run_actions();
    return ok;
}

std::shared_ptr<ContentStream> SmtpSession::content_of(uint64_t mid) const {
    for (const auto& [m, content] : contents_)
        if (m == mid) return content;
    return nullptr;
}

void SmtpSession::drop_content(uint64_t mid) {
    for (auto it = contents_.begin(); it != contents_.end(); ++it) {
        if (it->first != mid) continue;
        it->second->drop();
        contents_.erase(it);
        return;
    }
}

bool SmtpSession::need_content(const smtp::NeedContent& need) {
    std::shared_ptr<ContentStream> content = content_of(need.mid);
    std::weak_ptr<SmtpSession> weak = weak_from_this();
    const uint64_t generation = generation_;
    // The FSM of this connection, still waiting: a piece for an older one is dropped.
    auto live = [weak, generation]() -> std::shared_ptr<SmtpSession> {
        auto self = weak.lock();
        if (!self || self->generation_ != generation || !self->fsm_ || self->fsm_->closed())
            return nullptr;
        return self;
    };
    if (!content) {
        fsm_->on_content_failed("no content source", now());
        return false;
    }
    if (need.whole) {
        content->whole([live](std::shared_ptr<const std::string> whole, const std::string& why) {
            auto self = live();
            if (!self) return;
            if (whole)
                self->fsm_->on_whole_content(std::move(whole), self->now());
            else
                self->fsm_->on_content_failed(why, self->now());
            self->run_actions();
        });
        return true;
    }
    content->next(need.offset, need.max, [live](ContentStream::Piece piece) {
        auto self = live();
        if (!self) return;
        if (piece.ok)
            self->fsm_->on_content(piece.data, piece.last, self->now());
        else
            self->fsm_->on_content_failed(piece.reason, self->now());
        self->run_actions();
    });
    return true;
}

void SmtpSession::quit() {
    if (!fsm_ || fsm_->closed()) return;
    fsm_->quit(now());
    run_actions();
}

void SmtpSession::abort() {
    if (!fsm_ || fsm_->closed()) return;
    fsm_->on_disconnected(now(), "shutting down");
    run_actions();
}

void SmtpSession::close_connection() {
    if (!conn_) return;
    conn_->close();  // graceful; a no-op when the connection already failed
    conn_.reset();
    if (counted_) {
        counted_ = false;
        --env_.state->outbound_connections;
        env_.mail_log->info(fmt::format("DCID {} close", dcid_));
    }
}

}  // namespace esad::delivery
