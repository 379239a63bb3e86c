// See inject_session.h.
#include "daemon/inject/inject_session.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>

#include "common/escape.h"
#include "common/header_fields.h"
#include "common/idna.h"
#include "common/log_search.h"

namespace esad::inject {

namespace {
constexpr size_t kLogAddr = 256;

std::string rfc5322_date(std::time_t t) {
    struct tm tm_local {};
    localtime_r(&t, &tm_local);
    char buf[64];
    size_t n = std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S %z", &tm_local);
    return std::string(buf, n);
}

spool::BodyType body_type(BodyType b) {
    return b == BodyType::k8BitMime ? spool::BodyType::k8BitMime : spool::BodyType::k7Bit;
}
}  // namespace

InjectSession::InjectSession(InjectEnv& env, loop::HandlePtr<loop::Tcp> tcp, uint64_t icid,
                             std::string peer_ip, bool relay_allowed)
    : env_(env), tcp_(std::move(tcp)), icid_(icid), peer_ip_(std::move(peer_ip)) {
    smtp::ServerConfig config;
    config.hostname = env.hostname;
    config.relay_allowed = relay_allowed;
    config.tls_available = env.tls != nullptr;
    config.limits = env.limits;
    Committer* committer = env.committer;
    config.spool_admit = [committer](uint64_t size) { return committer->admit(size); };
    fsm_ = std::make_unique<smtp::ServerSession>(std::move(config));
}

InjectSession::~InjectSession() = default;

void InjectSession::start(smtp::Greeting greeting,
                          std::function<void(InjectSession*)> on_finished) {
    on_finished_ = std::move(on_finished);
    ++env_.state->inbound_connections;
    env_.mail_log->info(
        fmt::format("New SMTP ICID {} interface {} address {} reverse dns host unknown verified no",
                    icid_, env_.interface_ip, peer_ip_));
    std::weak_ptr<InjectSession> weak = weak_from_this();
    timer_ = loop::Timer::create(env_.loop, [weak] {
        if (auto self = weak.lock()) {
            self->fsm_->on_timeout(self->now());
            self->run_actions();
        }
    });
    start_reading();
    fsm_->start(now(), greeting);
    run_actions();
}

void InjectSession::shutdown() {
    if (finished_ || closing_) return;
    fsm_->shutdown(now());
    run_actions();
}

void InjectSession::on_read(const char* data, ssize_t n) {
    if (n < 0) {
        // Client went away (or a read error): the FSM's transaction dies with it. A commit in
        // flight still completes; its reply just has nowhere to go.
        finish();
        return;
    }
    std::string_view bytes(data, static_cast<size_t>(n));
    if (tls_) {
        tls_->feed_ciphertext(bytes);
        flush_tls();
        if (tls_->state() == tls::Engine::State::kFailed) {
            env_.mail_log->info(
                fmt::format("ICID {} TLS failed: {}", icid_, escape_for_log(tls_->error(), 200)));
            fsm_->on_tls_failed();
            run_actions();
            finish();
            return;
        }
        if (fsm_->state() == smtp::State::kTlsHandshake &&
            tls_->state() == tls::Engine::State::kEstablished) {
            env_.mail_log->info(fmt::format("ICID {} TLS success protocol {} cipher {}", icid_,
                                            tls_->protocol(), tls_->cipher()));
            fsm_->on_tls_established(now());
            run_actions();
        }
        std::string plain = tls_->take_plaintext();
        if (!plain.empty()) feed_plain(plain);
        if (!finished_ && tls_->state() == tls::Engine::State::kClosed) {
            // The client's close_notify: TLS is over and nothing may follow in cleartext.
            env_.mail_log->info(fmt::format("ICID {} TLS closed by the client", icid_));
            finish();
        }
        return;
    }
    feed_plain(bytes);
}

void InjectSession::feed_plain(std::string_view bytes) {
    if (finished_) return;
    fsm_->feed(bytes, now());
    run_actions();
}

void InjectSession::start_reading() {
    std::weak_ptr<InjectSession> weak = weak_from_this();
    tcp_->read_start([weak](const char* data, ssize_t n) {
        if (auto self = weak.lock()) self->on_read(data, n);
    });
}

void InjectSession::send(const std::string& text) {
    if (finished_) return;
    // After "220 Ready to start TLS" every byte goes through TLS or nowhere: a reply while
    // the handshake runs, or after TLS failed or closed, is dropped (such a session is
    // ending).
    if (tls_ && tls_->state() != tls::Engine::State::kEstablished) return;
    out_ += text;
}

// The replies of one round of actions go out together: one write, and over TLS one record,
// not one of each per reply (a pipelining client gets thousands per read).
void InjectSession::flush_out() {
    if (out_.empty()) return;
    if (!tls_) {
        write_to_client(std::move(out_));
    } else if (tls_->state() == tls::Engine::State::kEstablished) {
        tls_->write_plaintext(out_);
        flush_tls();
    }
    out_.clear();
}

// A write, plaintext or TLS records, that may leave more than kMaxUnsentReplyBytes queued
// may be the one that pauses reading: it carries the callback that resumes it once the
// kernel took the queue. Any other write (nothing queued before it, and itself no larger)
// cannot pause, and goes to the kernel at once without one.
void InjectSession::write_to_client(std::string bytes) {
    if (!tcp_) return;
    if (tcp_->write_queue_size() == 0 && bytes.size() <= kMaxUnsentReplyBytes) {
        tcp_->write(std::move(bytes));
        return;
    }
    std::weak_ptr<InjectSession> weak = weak_from_this();
    tcp_->write(std::move(bytes), [weak] {
        auto self = weak.lock();
        if (!self || self->finished_ || !self->reading_paused_) return;
        if (self->tcp_->write_queue_size() > kResumeReplyBytes) return;
        self->reading_paused_ = false;
        self->start_reading();
    });
}

void InjectSession::apply_backpressure() {
    if (finished_ || reading_paused_ || tcp_->write_queue_size() <= kMaxUnsentReplyBytes) return;
    reading_paused_ = true;
    tcp_->read_stop();
    env_.mail_log->info(
        fmt::format("ICID {} client does not read its replies ({} bytes unsent): reading paused",
                    icid_, tcp_->write_queue_size()));
}

void InjectSession::flush_tls() {
    std::string out = tls_->take_ciphertext();
    if (!out.empty()) write_to_client(std::move(out));
}

void InjectSession::start_tls() {
    flush_out();  // "220 Ready to start TLS" goes out in plaintext
    tls_ = tls::Engine::server(*env_.tls);
    if (!tls_) {
        fsm_->on_tls_failed();
        finish();
    }
}

// One daemon-log trace line per server FSM transition ([logging] level = "trace").
void InjectSession::trace_state() {
    const smtp::State state = fsm_->state();
    if (state == traced_state_) return;
    spdlog::trace("ICID {} SMTP state {} -> {}", icid_, smtp::to_string(traced_state_),
                  smtp::to_string(state));
    traced_state_ = state;
}

void InjectSession::run_actions() {
    auto self = shared_from_this();  // an action may end the session
    trace_state();
    // Executing an action can produce more (a commit refused at once, e.g. no MID): run
    // until none is left, so every reply goes out now and not at the next event.
    for (auto actions = fsm_->take_actions(); !actions.empty() && !finished_;
         actions = fsm_->take_actions(), trace_state())
        for (auto& action : actions) {
            if (finished_) break;
            if (auto* r = std::get_if<smtp::Reply>(&action)) {
                send(r->text);
            } else if (std::holds_alternative<smtp::Close>(action)) {
                closing_ = true;
                finish();
            } else if (std::holds_alternative<smtp::StartTls>(action)) {
                start_tls();
            } else if (auto* c = std::get_if<smtp::CommitMessage>(&action)) {
                commit(*c);
            } else if (auto* m = std::get_if<smtp::MailFrom>(&action)) {
                spool::IoStatus st = env_.committer->next_mid(&mid_);
                if (!st.ok()) {
                    spdlog::error("spool: no MID available: {}", st.reason());
                    mid_ = 0;
                    continue;
                }
                env_.state->current_mid = mid_;
                sender_path_ = escape_for_log(m->address, kLogAddr);
                env_.mail_log->info(fmt::format("Start MID {} ICID {}", mid_, icid_));
                env_.mail_log->info(
                    fmt::format("MID {} ICID {} From: {}", mid_, icid_, sender_path_));
            } else if (auto* rc = std::get_if<smtp::RcptTo>(&action)) {
                if (mid_)
                    env_.mail_log->info(fmt::format("MID {} ICID {} RID {} To: {}", mid_, icid_,
                                                    rc->rid,
                                                    escape_for_log(rc->address, kLogAddr)));
            } else if (auto* id = std::get_if<smtp::MessageIdSeen>(&action)) {
                if (mid_)
                    env_.mail_log->info(fmt::format("MID {} Message-ID '{}'", mid_,
                                                    escape_for_log(id->message_id, 256)));
            } else if (auto* rj = std::get_if<smtp::RcptRejected>(&action)) {
                env_.state->counters.add(Counter::kRejectedRecipients);
                // A probing client must not be able to write the log for us: the first few
                // per session are logged, the rest counted and summed up at close.
                if (++rejected_ > kMaxRejectedLogged) continue;
                env_.mail_log->info(
                    fmt::format("ICID {} Rejected recipient {}: relaying denied ({})", icid_,
                                rj->address, rj->enhanced));
            } else if (auto* rs = std::get_if<smtp::Rset>(&action)) {
                if (mid_)
                    env_.mail_log->info(fmt::format("MID {} ICID {} aborted: {}", mid_, icid_,
                                                    escape_for_log(rs->reason, 200)));
                mid_ = 0;
            }
        }
    flush_out();
    apply_backpressure();
    arm_timer();
}

void InjectSession::commit(smtp::CommitMessage& msg) {
    spool::Mid mid = mid_;
    mid_ = 0;
    if (mid == 0) {
        fsm_->on_commit_result(smtp::CommitResult::io_error(), now());
        return;
    }
    const smtp::Envelope& env = msg.envelope;
    spool::Message m;
    m.envelope.mid = mid;
    m.envelope.received_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count();
    m.envelope.sender = env.sender.address();
    m.envelope.icid = icid_;
    m.envelope.client_ip = peer_ip_;
    m.envelope.client_helo = env.helo;
    m.envelope.body_type = body_type(env.params.body);
    m.envelope.smtputf8 = env.params.smtputf8;
    // The recipient host is the A-label form (DNS, queues, tophosts); the address keeps the
    // U-label form the client sent, for SMTPUTF8 peers. parse_path() checked it converts.
    for (size_t i = 0; i < env.recipients.size(); ++i)
        m.envelope.recipients.push_back(
            {static_cast<uint32_t>(i), env.recipients[i].address(),
             to_a_label(env.recipients[i].domain).value_or(env.recipients[i].domain)});

    std::string mid_text = std::to_string(mid);
    std::string for_path = env.recipients.size() == 1 ? env.recipients[0].path() : "";
    std::string with = smtp::received_protocol(env);
    std::string date = rfc5322_date(std::time(nullptr));
    smtp::ReceivedFields fields{env.helo, peer_ip_, "",       env_.hostname,
                                with,     mid_text, for_path, date};
    m.content = smtp::make_received_header(fields);
    m.content += msg.content;
    uint64_t size = m.content.size();
    env_.mail_log->info(
        subject_log_line(mid, first_field(msg.content, "Subject", 512).value_or("")));
    env_.mail_log->info(fmt::format("MID {} ready {} bytes from {}", mid, size,
                                    escape_for_log(env.sender.path(), kLogAddr)));

    spool::Envelope envelope_copy = m.envelope;
    std::weak_ptr<InjectSession> weak = weak_from_this();
    InjectEnv* shared_env = &env_;
    uint64_t icid = icid_;
    env_.committer->commit(std::move(m), [weak, shared_env, envelope_copy, size, mid,
                                          icid](const spool::IoStatus& st) {
        if (st.ok()) {
            shared_env->state->counters.add(Counter::kMessagesReceived);
            shared_env->state->counters.add(Counter::kRecipientsReceived,
                                            envelope_copy.recipients.size());
            shared_env->mail_log->info(fmt::format("MID {} queued for delivery", mid));
            if (shared_env->on_queued) shared_env->on_queued(envelope_copy, size);
        } else {
            shared_env->mail_log->warning(fmt::format("MID {} ICID {} not queued: {} ({})", mid,
                                                      icid, spool::smtp_reply_for(st.error_class()),
                                                      st.reason()));
        }
        auto self = weak.lock();
        if (!self || self->finished_) return;
        smtp::CommitResult result = st.ok() ? smtp::CommitResult::queued(std::to_string(mid))
                                    : st.error_class() == spool::ErrorClass::kNoSpace
                                        ? smtp::CommitResult::no_space()
                                        : smtp::CommitResult::io_error();
        self->fsm_->on_commit_result(result, self->now());
        self->run_actions();
    });
}

void InjectSession::arm_timer() {
    if (finished_ || !timer_) return;
    std::optional<smtp::Millis> deadline = fsm_->deadline();
    if (!deadline) {
        timer_->stop();
        return;
    }
    uint64_t now_ms = uv_now(env_.loop);
    uint64_t at = static_cast<uint64_t>(deadline->count());
    timer_->start(at > now_ms ? at - now_ms : 0);
}

void InjectSession::finish() {
    if (finished_) return;
    flush_out();
    finished_ = true;
    if (tls_) flush_tls();
    timer_.reset();
    // Flush replies already queued (e.g. the 421), then close.
    loop::Tcp* raw = tcp_.release();
    raw->close_after_writes();
    --env_.state->inbound_connections;
    if (rejected_ > kMaxRejectedLogged)
        env_.mail_log->info(fmt::format("ICID {} {} more rejected recipients not logged", icid_,
                                        rejected_ - kMaxRejectedLogged));
    env_.mail_log->info(fmt::format("ICID {} close", icid_));
    if (on_finished_) on_finished_(this);
}

}  // namespace esad::inject
