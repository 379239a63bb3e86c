// See smtp_probe.h.
#include "daemon/delivery/smtp_probe.h"

#include <algorithm>
#include <cctype>

#include "common/ascii.h"
#include "daemon/loop/tcp_connect.h"

namespace esad::delivery {

namespace {
std::string capitalized(std::string text) {
    if (!text.empty())
        text[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(text[0])));
    return text;
}

// "EHLO esad.test" → "ehlo"; "[123 octets of content, final dot]" / "." → "final".
std::string stage_of_command(const std::string& cmd) {
    if (cmd == "." || (cmd.rfind("[", 0) == 0 && cmd.find("final dot") != std::string::npos))
        return "final";
    if (cmd.rfind("[", 0) == 0) return "";  // an intermediate content chunk: no reply
    return ascii_lowercase(std::string_view(cmd).substr(0, cmd.find(' ')));
}

bool preferred(smtp::TlsPolicy policy) {
    return policy == smtp::TlsPolicy::kPreferred || policy == smtp::TlsPolicy::kPreferredVerify;
}

ProbeStage make_stage(std::string name, uint64_t ms, bool ok, std::string text) {
    ProbeStage s;
    s.name = std::move(name);
    s.ms = ms;
    s.ok = ok;
    s.text = std::move(text);
    return s;
}
}  // namespace

SmtpProbe::SmtpProbe(ProbeEnv env, std::vector<Candidate> candidates, smtp::TlsPolicy policy,
                     smtp::Transaction tx, Callbacks callbacks)
    : env_(std::move(env)),
      candidates_(std::move(candidates)),
      policy_(policy),
      tx_(std::move(tx)),
      cb_(std::move(callbacks)) {}

SmtpProbe::~SmtpProbe() {
    done_ = true;
    timer_.reset();
    tcp_.reset();
}

void SmtpProbe::start() {
    std::weak_ptr<SmtpProbe> weak = weak_from_this();
    timer_ = loop::Timer::create(env_.loop, [weak] {
        auto self = weak.lock();
        if (!self || self->done_ || !self->fsm_) return;
        self->fsm_->on_timeout(smtp::Millis(self->now()));
        self->run_actions();
    });
    if (candidates_.empty()) {
        finish();
        return;
    }
    connect();
}

void SmtpProbe::cancel() {
    done_ = true;
    cb_ = {};
    timer_.reset();
    tcp_.reset();
}

void SmtpProbe::connect() {
    ++attempt_;
    smtp::ClientConfig config;
    config.helo_name = env_.helo_name;
    config.mx_name = candidate().mx_name;
    config.tls = plain_retry_ ? smtp::TlsPolicy::kNone : policy_;
    config.timeouts = env_.timeouts;
    fsm_ = std::make_unique<smtp::ClientSession>(config);
    tls_.reset();
    sent_.clear();
    reply_.clear();
    connected_ = false;
    connect_reported_ = false;
    banner_seen_ = false;
    quit_asked_ = false;
    connect_at_ = last_reply_at_ = now();
    fsm_->submit(tx_, smtp::Millis(now()));
    fsm_->start(smtp::Millis(now()));

    tcp_ = loop::Tcp::create(env_.loop);
    std::weak_ptr<SmtpProbe> weak = weak_from_this();
    uint64_t attempt = attempt_;
    std::string error;
    bool started = loop::tcp_connect(
        *tcp_, candidate().ip, candidate().port, env_.source_address,
        [weak, attempt](int status) {
            auto self = weak.lock();
            if (self && self->attempt_ == attempt) self->on_connect(status);
        },
        &error);
    if (!started) {
        tcp_.reset();
        connect_reported_ = true;
        emit(connect_stage(0, false, capitalized(error)));
        if (done_) return;
        fsm_->on_disconnected(smtp::Millis(now()), error);
        run_actions();
        return;
    }
    arm_timer();
}

void SmtpProbe::on_connect(int status) {
    if (done_ || !fsm_ || fsm_->closed() || status == UV_ECANCELED) return;
    auto self = shared_from_this();
    connect_reported_ = true;
    if (status != 0) {
        emit(connect_stage(now() - connect_at_, false, capitalized(uv_strerror(status))));
        if (done_) return;
        fsm_->on_disconnected(smtp::Millis(now()), uv_strerror(status));
        run_actions();
        return;
    }
    connected_ = true;
    uv_tcp_nodelay(tcp_->tcp(), 1);
    last_reply_at_ = now();
    emit(connect_stage(now() - connect_at_, true, loop::local_address(*tcp_)));
    if (done_) return;
    std::weak_ptr<SmtpProbe> weak = weak_from_this();
    tcp_->read_start([weak](const char* data, ssize_t n) {
        if (auto p = weak.lock()) p->on_read(data, n);
    });
    fsm_->on_connected(smtp::Millis(now()));
    run_actions();
}

void SmtpProbe::on_read(const char* data, ssize_t n) {
    if (done_ || !fsm_ || fsm_->closed()) return;
    auto self = shared_from_this();
    smtp::Millis t(now());
    if (n < 0) {
        fsm_->on_disconnected(t, n == UV_EOF ? "EOF" : uv_strerror(static_cast<int>(n)));
        run_actions();
        return;
    }
    std::string_view bytes(data, static_cast<size_t>(n));
    if (!tls_) {
        fsm_->on_bytes(bytes, t);
        run_actions();
        return;
    }
    bool was_established = tls_->state() == tls::Engine::State::kEstablished;
    tls_->feed_ciphertext(bytes);
    std::string out = tls_->take_ciphertext();
    if (!out.empty() && tcp_) tcp_->write(std::move(out));
    if (was_established && tls_->state() != tls::Engine::State::kEstablished) {
        // As in delivery: a bad record or the peer's close_notify after the handshake ends
        // the connection; nothing may follow in cleartext.
        std::string plain = tls_->take_plaintext();
        if (!plain.empty()) fsm_->on_bytes(plain, t);
        lose_tls_session();
        return;
    }
    if (tls_->state() == tls::Engine::State::kFailed) {
        fsm_->on_tls_failed(tls_->error(), t);
        run_actions();
        return;
    }
    if (!was_established && tls_->state() == tls::Engine::State::kEstablished) {
        ProbeStage s = make_stage("tls", now() - tls_at_, true, tls_->verify_result());
        s.protocol = tls_->protocol();
        s.cipher = tls_->cipher();
        s.verified = tls_->verified();
        last_reply_at_ = now();
        emit(std::move(s));
        if (done_) return;
        fsm_->on_tls_established(t, tls_->verified());
        run_actions();
        if (done_ || !fsm_ || fsm_->closed() || !tls_) return;
    }
    std::string plain = tls_->take_plaintext();
    if (!plain.empty()) {
        fsm_->on_bytes(plain, t);
        run_actions();
    }
}

void SmtpProbe::write(std::string bytes, bool content) {
    if (!tcp_ || !connected_) return;
    std::function<void()> done;
    if (content) {
        std::weak_ptr<SmtpProbe> weak = weak_from_this();
        done = [weak] {
            auto self = weak.lock();
            if (!self || self->done_ || !self->fsm_ || self->fsm_->closed()) return;
            self->fsm_->on_content_sent(smtp::Millis(self->now()));
            self->run_actions();
        };
    }
    if (tls_) {
        // Once STARTTLS was answered, every byte goes through the engine or nowhere: a
        // failed or closed engine ends the connection (run_actions() reports it).
        if (tls_->state() != tls::Engine::State::kEstablished) {
            tls_lost_ = true;
            return;
        }
        tls_->write_plaintext(bytes);
        tcp_->write(tls_->take_ciphertext(), std::move(done));
    } else {
        tcp_->write(std::move(bytes), std::move(done));
    }
}

void SmtpProbe::run_actions() {
    if (!fsm_ || done_) return;
    auto self = shared_from_this();
    for (auto& action : fsm_->take_actions()) {
        if (done_) return;
        if (auto* c = std::get_if<smtp::SendCommands>(&action)) {
            write(std::move(c->bytes), false);
        } else if (auto* sc = std::get_if<smtp::SendContent>(&action)) {
            write(std::move(sc->bytes), true);
        } else if (auto* st = std::get_if<smtp::StartTlsHandshake>(&action)) {
            // Only required-verify lets a failed check abort the handshake: a stricter
            // policy never ends up with less protection (plaintext) than `preferred`.
            const auto& ctx = st->enforce ? env_.tls_verify : env_.tls_plain;
            tls_ = tls::Engine::client(*ctx, st->sni, st->verify ? st->sni : "");
            tls_at_ = now();
            std::string out = tls_->take_ciphertext();
            if (!out.empty() && tcp_) tcp_->write(std::move(out));
        } else if (std::holds_alternative<smtp::CloseConnection>(action)) {
            close_connection();
        } else if (auto* r = std::get_if<smtp::TransactionReport>(&action)) {
            const std::string why = r->reply.lines.empty() ? std::string() : r->reply.lines.front();
            if (!connect_reported_) {
                connect_reported_ = true;
                emit(connect_stage(now() - connect_at_, false, why));
            }
            bool reached = r->host == smtp::HostOutcome::kReached || fsm_->greeting_received();
            if (!reached && !r->started && index_ + 1 < candidates_.size()) {
                pending_next_ = true;
                emit(make_stage("note", 0, true,
                                candidate().ip + " not reached (" + why +
                                    "): trying the next candidate, as delivery does"));
                continue;
            }
            if (r->tls_handshake_failed && !plain_retry_ && preferred(policy_)) {
                pending_plain_ = true;
                emit(make_stage("note", 0, true,
                                "opportunistic TLS failed: retrying once without TLS, as "
                                "delivery does"));
                continue;
            }
            report_ = *r;
        } else if (auto* tf = std::get_if<smtp::TlsFailed>(&action)) {
            emit(make_stage("tls", tls_at_ ? now() - tls_at_ : 0, false,
                            tf->required ? "TLS was required but could not be successfully "
                                           "negotiated: " +
                                               tf->reason
                                         : "TLS failed: " + tf->reason));
        } else if (auto* tr = std::get_if<smtp::ClientTrace>(&action)) {
            on_trace(tr->line);
        }
    }
    if (done_) return;
    if (tls_lost_ && !fsm_->closed()) return lose_tls_session();
    if (report_ && !quit_asked_ && !fsm_->closed()) {
        quit_asked_ = true;
        fsm_->quit(smtp::Millis(now()));
        run_actions();
        return;
    }
    if (fsm_->closed() && !tcp_) {
        if (pending_next_ || pending_plain_) {
            if (pending_next_) ++index_;
            if (pending_plain_) plain_retry_ = true;
            pending_next_ = pending_plain_ = false;
            tls_at_ = 0;
            connect();
            return;
        }
        finish();
        return;
    }
    arm_timer();
}

void SmtpProbe::lose_tls_session() {
    tls_lost_ = false;
    std::string why = tls_->error();
    if (why.empty())
        why = tls_->state() == tls::Engine::State::kClosed ? "closed by the peer" : "failed";
    fsm_->on_disconnected(smtp::Millis(now()), "TLS session " + why);
    run_actions();
}

void SmtpProbe::on_trace(const std::string& line) {
    if (line.rfind("> ", 0) == 0) {
        std::string stage = stage_of_command(line.substr(2));
        if (!stage.empty()) sent_.push_back({stage, now()});
        return;
    }
    if (line.rfind("< ", 0) != 0) return;
    std::string text = line.substr(2);
    reply_.push_back(text);
    // "250-..." continues; "250 ..." ends; "... (n more lines)" ends a cut reply.
    bool complete = text.rfind("...", 0) == 0 || text.size() < 4 || text[3] != '-';
    if (!complete) return;
    ProbeStage s;
    uint64_t since = last_reply_at_;
    if (!banner_seen_) {
        banner_seen_ = true;
        s.name = "banner";
    } else if (!sent_.empty()) {
        s.name = sent_.front().stage;
        since = std::max(since, sent_.front().at);
        sent_.pop_front();
    } else {
        s.name = "reply";  // unsolicited
    }
    s.ms = now() - since;
    s.ok = !reply_.front().empty() && (reply_.front()[0] == '2' || reply_.front()[0] == '3');
    s.reply = std::move(reply_);
    reply_.clear();
    last_reply_at_ = now();
    emit(std::move(s));
}

void SmtpProbe::arm_timer() {
    if (!timer_ || !fsm_ || fsm_->closed()) return;
    std::optional<smtp::Millis> deadline = fsm_->next_deadline();
    if (!deadline) {
        timer_->stop();
        return;
    }
    uint64_t at = static_cast<uint64_t>(deadline->count());
    uint64_t t = now();
    timer_->start(at > t ? at - t : 0);
}

void SmtpProbe::close_connection() {
    if (!tcp_) return;
    if (tls_ && tls_->state() == tls::Engine::State::kEstablished) {
        tls_->shutdown();
        std::string out = tls_->take_ciphertext();
        if (!out.empty()) tcp_->write(std::move(out));
    }
    loop::Tcp* raw = tcp_.release();
    raw->close_after_writes();
    connected_ = false;
}

ProbeStage SmtpProbe::connect_stage(uint64_t ms, bool ok, std::string text) const {
    ProbeStage s = make_stage("connect", ms, ok, std::move(text));
    s.ip = candidate().ip;
    s.port = candidate().port;
    return s;
}

void SmtpProbe::emit(ProbeStage stage) {
    if (!done_ && cb_.on_stage) cb_.on_stage(stage);
}

void SmtpProbe::finish() {
    if (done_) return;
    done_ = true;
    timer_.reset();
    ProbeResult result;
    result.ip = candidates_.empty() ? std::string() : candidate().ip;
    if (report_) {
        result.delivered = report_->outcome == smtp::MessageOutcome::kDelivered;
        result.outcome = std::string(smtp::to_string(report_->outcome));
        result.reply = report_->reply;
        result.tls = report_->tls;
        // One recipient: its own outcome and deciding reply say more than the message's
        // (a refused RCPT ends as "no-recipients" with the reply to DATA).
        if (!report_->recipients.empty()) {
            const smtp::RecipientResult& rcpt = report_->recipients.front();
            result.outcome = std::string(smtp::to_string(rcpt.outcome));
            if (!result.delivered && rcpt.reply.code != 0) result.reply = rcpt.reply;
        }
    } else {
        result.outcome = "soft";
        result.reply = smtp::local_summary("4.4.1", "no candidate to connect to");
    }
    auto on_done = std::move(cb_.on_done);
    cb_ = {};
    if (on_done) on_done(result);
}

}  // namespace esad::delivery
