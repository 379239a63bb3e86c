// One injection connection: the pure smtp::ServerSession driven over a uv TCP handle, with
// optional STARTTLS through a memory-BIO tls::Engine.
//
// Reads feed the FSM (through TLS once it is up); its actions are executed in order:
// replies written, CommitMessage handed to the Committer with our Received: header
// prepended and the reply sent only from the commit completion (250 after durable commit,
// 451/452 otherwise), log events written as ESA mail_log lines (peer text escaped), one
// timer armed from the FSM's deadline. The replies of one round of actions go out as one
// write; reading stops while more than kMaxUnsentReplyBytes of them are unsent. The session is
// owned by the Listener; when it ends it tells the Listener, which frees it on a later loop
// iteration (never on its own stack).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "common/cidr.h"
#include "daemon/daemon_state.h"
#include "daemon/inject/committer.h"
#include "daemon/logs/mail_log.h"
#include "daemon/loop/handle.h"
#include "daemon/smtp/server_fsm.h"
#include "daemon/tls/tls_context.h"
#include "daemon/tls/tls_engine.h"

namespace esad::inject {

// What every session of one listener shares (owned by the Listener's owner).
struct InjectEnv {
    uv_loop_t* loop = nullptr;
    DaemonState* state = nullptr;
    Committer* committer = nullptr;
    logs::MailLog* mail_log = nullptr;
    std::shared_ptr<tls::ServerContext> tls;  // null: no STARTTLS
    smtp::ServerLimits limits;
    std::string hostname;
    std::string interface_ip;  // our listening address, for the log
    // Called once per message after a successful commit (the queue takes it from here).
    std::function<void(const spool::Envelope&, uint64_t size)> on_queued;
};

class InjectSession : public std::enable_shared_from_this<InjectSession> {
  public:
    InjectSession(InjectEnv& env, loop::HandlePtr<loop::Tcp> tcp, uint64_t icid,
                  std::string peer_ip, bool relay_allowed);
    ~InjectSession();

    void start(smtp::Greeting greeting, std::function<void(InjectSession*)> on_finished);
    // Graceful stop: 421 4.3.2 now, or after the commit in progress.
    void shutdown();
    // Shutdown deadline passed: close now.
    void abort() { finish(); }
    const std::string& peer_ip() const { return peer_ip_; }
    uint64_t icid() const { return icid_; }

  private:
    void on_read(const char* data, ssize_t n);
    void feed_plain(std::string_view bytes);
    void run_actions();
    void trace_state();
    void arm_timer();
    void send(const std::string& text);
    void flush_out();
    void flush_tls();
    void write_to_client(std::string bytes);
    void start_reading();
    void apply_backpressure();
    void start_tls();
    void commit(smtp::CommitMessage& msg);
    void finish();
    smtp::Millis now() const { return smtp::Millis(uv_now(env_.loop)); }

    InjectEnv& env_;
    loop::HandlePtr<loop::Tcp> tcp_;
    loop::HandlePtr<loop::Timer> timer_;
    std::unique_ptr<smtp::ServerSession> fsm_;
    smtp::State traced_state_ = smtp::State::kInit;  // the last state trace_state() logged
    std::unique_ptr<tls::Engine> tls_;
    uint64_t icid_;
    std::string peer_ip_;
    spool::Mid mid_ = 0;  // current transaction's MID; 0 when none
    std::string sender_path_;
    std::function<void(InjectSession*)> on_finished_;
    bool finished_ = false;
    bool closing_ = false;
    std::string out_;              // plaintext replies of this round, written as one
    bool reading_paused_ = false;  // the client is not reading its replies
    uint64_t rejected_ = 0;        // recipients refused by policy in this session
};

// Mail-log lines for refused recipients per session; the rest are summed up at close.
inline constexpr uint64_t kMaxRejectedLogged = 5;

// A client that pipelines commands without reading the replies (a million RCPTs) would
// make us queue replies without limit: past kMaxUnsentReplyBytes unsent, the session stops
// reading until the kernel took all but kResumeReplyBytes.
inline constexpr size_t kMaxUnsentReplyBytes = 64 * 1024;
// The kernel's send buffer of an SMTP connection (SO_SNDBUF, set on the listening socket and
// so on every connection it accepts). Replies are small; autotuning would let a client that
// never reads park megabytes of them in each connection's buffer before the session's own
// queue, the bound above, even starts to fill.
inline constexpr int kReplySendBufferBytes = 64 * 1024;
inline constexpr size_t kResumeReplyBytes = 16 * 1024;

}  // namespace esad::inject
