// See smtp_probe.h.
#include "daemon/delivery/smtp_probe.h"

#include <algorithm>
#include <cctype>

#include "common/ascii.h"

namespace esad::delivery {

namespace {
std::string capitalized(std::string text) {
    if (!text.empty())
        text[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(text[0])));
    return text;
}

// The stage a reply belongs to: the verb of the command it answers, "." = the final dot.
std::string stage_of_verb(const std::string& verb) {
    return verb == "." ? std::string("final") : ascii_lowercase(verb);
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
    conn_.reset();
}

void SmtpProbe::start() {
    if (candidates_.empty()) {
        finish();
        return;
    }
    connect();
}

void SmtpProbe::cancel() {
    done_ = true;
    cb_ = {};
    conn_.reset();
}

void SmtpProbe::connect() {
    smtp::ClientConfig config;
    config.helo_name = env_.helo_name;
    config.mx_name = candidate().mx_name;
    config.tls = plain_retry_ ? smtp::TlsPolicy::kNone : policy_;
    config.timeouts = env_.timeouts;
    fsm_ = std::make_unique<smtp::ClientSession>(config);
    sent_at_.clear();
    connect_reported_ = false;
    quit_asked_ = false;
    connect_at_ = last_reply_at_ = now();
    fsm_->submit(tx_, smtp::Millis(now()));
    fsm_->start(smtp::Millis(now()));

    conn_ = OutboundConnection::create(env_.loop, callbacks_for(shared_from_this()));
    conn_->connect(candidate().ip, candidate().port, env_.source_address);
    arm_deadline(*conn_, *fsm_);
}

void SmtpProbe::on_data(std::string_view bytes) {
    if (done_) return;
    fsm_->on_bytes(bytes, smtp::Millis(now()));
    run_actions();
}

void SmtpProbe::on_connected(const std::string& local) {
    if (done_) return;
    connect_reported_ = true;
    last_reply_at_ = now();
    emit(connect_stage(now() - connect_at_, true, local));
    if (done_) return;
    fsm_->on_connected(smtp::Millis(now()));
    run_actions();
}

void SmtpProbe::on_tls(const tls::Engine& engine) {
    if (done_) return;
    ProbeStage s = make_stage("tls", now() - tls_at_, true, engine.verify_result());
    s.protocol = engine.protocol();
    s.cipher = engine.cipher();
    s.verified = engine.verified();
    last_reply_at_ = now();
    emit(std::move(s));
    if (done_) return;
    fsm_->on_tls_established(smtp::Millis(now()), engine.verified());
    run_actions();
}

void SmtpProbe::on_failed(const OutboundConnection::Failure& failure) {
    if (done_) return;
    using Kind = OutboundConnection::Failure::Kind;
    if (failure.kind == Kind::kAddress || failure.kind == Kind::kBind ||
        failure.kind == Kind::kConnect) {
        connect_reported_ = true;
        emit(connect_stage(now() - connect_at_, false, capitalized(failure.detail)));
        if (done_) return;
    }
    tell_fsm(*fsm_, failure, smtp::Millis(now()));
    run_actions();
}

void SmtpProbe::write(std::string bytes, bool content) {
    if (!conn_) return;
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
    conn_->write(std::move(bytes), std::move(done));
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
            tls_at_ = now();
            sent_at_.clear();  // nothing sent before the switch is answered inside TLS
            if (conn_) conn_->start_tls(*ctx, st->sni, st->verify ? st->sni : "");
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
        } else if (auto* cs = std::get_if<smtp::CommandSent>(&action)) {
            on_command(*cs);
        } else if (auto* rr = std::get_if<smtp::ReplyReceived>(&action)) {
            on_reply(std::move(*rr));
        }
    }
    if (done_) return;
    if (report_ && !quit_asked_ && !fsm_->closed()) {
        quit_asked_ = true;
        fsm_->quit(smtp::Millis(now()));
        run_actions();
        return;
    }
    if (fsm_->closed()) close_connection();  // CloseConnection is emitted once; be sure
    if (fsm_->closed() && !conn_) {
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
    if (conn_) arm_deadline(*conn_, *fsm_);
}

void SmtpProbe::on_command(const smtp::CommandSent&) {
    sent_at_.push_back(now());
}

void SmtpProbe::on_reply(smtp::ReplyReceived reply) {
    ProbeStage s;
    uint64_t since = last_reply_at_;
    if (reply.greeting) {
        s.name = "banner";
    } else if (!reply.answers.empty() && !sent_at_.empty()) {
        s.name = stage_of_verb(reply.answers);
        since = std::max(since, sent_at_.front());
        sent_at_.pop_front();
    } else {
        s.name = "reply";  // unsolicited
    }
    s.ms = now() - since;
    s.ok = reply.code >= 200 && reply.code < 400;
    s.reply = std::move(reply.lines);
    last_reply_at_ = now();
    emit(std::move(s));
}

void SmtpProbe::close_connection() {
    if (!conn_) return;
    conn_->close();  // graceful; a no-op when the connection already failed
    conn_.reset();
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
