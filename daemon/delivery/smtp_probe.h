// SmtpProbe: the daemon's side of `esactl smtpping` — one test transaction driven through the
// delivery path (the pure smtp::ClientSession over TCP, STARTTLS through a tls::Engine, the
// destination's TLS policy), reporting every stage with its latency instead of touching the
// queue: nothing is spooled, journaled, counted or retried, and no mail log line is written.
//
//   auto probe = std::make_shared<SmtpProbe>(env, candidates, policy, tx, callbacks);
//   probe->start();     // candidates in order, as delivery walks them
//   probe->cancel();    // silent: no callback runs afterwards
//
// Stages (on_stage, in order; ms from the start of the wait to its end, uv_now clock):
//   "connect"   TCP connect to ip:port (ok=false: the error; the next candidate follows)
//   "banner" "ehlo" "helo" "starttls" "mail" "rcpt" "data" "final" "rset" "quit"
//               one per SMTP reply, matched in order to the command it answers (pipelined
//               commands are timed from the previous reply); reply = the reply's lines
//   "tls"       the handshake: protocol, cipher, certificate verified (ok=false: why)
//   "note"      a delivery rule that changed the course (next candidate, TLS retried
//               without TLS after a broken opportunistic handshake)
// Stages come from the FSM's ClientTrace lines ("> COMMAND", "< reply line"), so they show
// exactly what was sent and received. on_done runs once, last, after the connection closed,
// with the transaction's report (or a local failure when no transaction ran).
// As in delivery (smtp_session.h), once the server answered STARTTLS no byte is written in
// cleartext on that connection: a TLS engine that fails or closes later is a lost connection.
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "daemon/delivery/smtp_session.h"
#include "daemon/loop/handle.h"
#include "daemon/smtp/client_fsm.h"
#include "daemon/tls/tls_context.h"
#include "daemon/tls/tls_engine.h"

namespace esad::delivery {

struct ProbeEnv {
    uv_loop_t* loop = nullptr;
    std::shared_ptr<tls::ClientContext> tls_plain;
    std::shared_ptr<tls::ClientContext> tls_verify;
    std::string helo_name;
    std::string source_address;
    smtp::ClientTimeouts timeouts;
};

struct ProbeStage {
    std::string name;
    uint64_t ms = 0;
    bool ok = true;
    std::string ip;                  // connect
    uint16_t port = 0;               // connect
    std::string text;                // connect: local address or error; tls/note: detail
    std::vector<std::string> reply;  // SMTP stages: the reply lines ("250 2.1.5 ok")
    std::string protocol, cipher;    // tls
    bool verified = false;           // tls
};

struct ProbeResult {
    bool delivered = false;    // 2xx to the final dot
    std::string outcome;       // "delivered", "soft", "hard", "no-recipients"
    smtp::ReplySummary reply;  // what decided it
    bool tls = false;
    std::string ip;  // the candidate used last
};

class SmtpProbe : public std::enable_shared_from_this<SmtpProbe> {
  public:
    struct Callbacks {
        std::function<void(const ProbeStage&)> on_stage;
        std::function<void(const ProbeResult&)> on_done;
    };

    SmtpProbe(ProbeEnv env, std::vector<Candidate> candidates, smtp::TlsPolicy policy,
              smtp::Transaction tx, Callbacks callbacks);
    ~SmtpProbe();

    void start();
    void cancel();

  private:
    struct Sent {
        std::string stage;
        uint64_t at = 0;
    };
    const Candidate& candidate() const { return candidates_[index_]; }
    uint64_t now() const { return uv_now(env_.loop); }
    void connect();
    void on_connect(int status);
    void on_read(const char* data, ssize_t n);
    void run_actions();
    void on_trace(const std::string& line);
    void write(std::string bytes, bool content);
    void arm_timer();
    void close_connection();
    // The TLS engine failed or closed after the handshake: the connection is lost.
    void lose_tls_session();
    ProbeStage connect_stage(uint64_t ms, bool ok, std::string text) const;
    void emit(ProbeStage stage);
    void finish();

    ProbeEnv env_;
    std::vector<Candidate> candidates_;
    size_t index_ = 0;
    smtp::TlsPolicy policy_;
    smtp::Transaction tx_;
    Callbacks cb_;
    std::unique_ptr<smtp::ClientSession> fsm_;
    std::unique_ptr<tls::Engine> tls_;
    loop::HandlePtr<loop::Tcp> tcp_;
    loop::HandlePtr<loop::Timer> timer_;
    std::optional<smtp::TransactionReport> report_;
    std::deque<Sent> sent_;           // commands waiting for their reply, in order
    std::vector<std::string> reply_;  // lines of the reply being read
    uint64_t attempt_ = 0;
    uint64_t connect_at_ = 0;
    uint64_t last_reply_at_ = 0;
    uint64_t tls_at_ = 0;
    bool connected_ = false;
    bool plain_retry_ = false;
    bool pending_next_ = false;
    bool pending_plain_ = false;
    bool quit_asked_ = false;
    bool connect_reported_ = false;
    bool banner_seen_ = false;
    bool done_ = false;
    bool tls_lost_ = false;  // a write found the TLS engine no longer established
};

}  // namespace esad::delivery
