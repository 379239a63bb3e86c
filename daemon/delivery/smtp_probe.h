// SmtpProbe: the daemon's side of `esactl smtpping` — one test transaction driven through the
// delivery path (the pure smtp::ClientSession over an OutboundConnection, the destination's
// TLS policy), reporting every stage with its latency instead of touching the queue: nothing
// is spooled, journaled, counted or retried, and no mail log line is written.
//
//   auto probe = std::make_shared<SmtpProbe>(env, candidates, policy, tx, callbacks);
//   probe->start();     // candidates in order, as delivery walks them
//   probe->cancel();    // silent: no callback runs afterwards
//
// Stages (on_stage, in order; ms from the start of the wait to its end, uv_now clock):
//   "connect"   TCP connect to ip:port (ok=false: the error; the next candidate follows)
//   "banner" "ehlo" "helo" "starttls" "mail" "rcpt" "data" "final" "rset" "quit"
//               one per SMTP reply, named by the command it answers (the FSM's ReplyReceived
//               event; pipelined commands are timed from the previous reply); reply = the
//               reply's lines
//   "tls"       the handshake: protocol, cipher, certificate verified (ok=false: why)
//   "note"      a delivery rule that changed the course (next candidate, TLS retried
//               without TLS after a broken opportunistic handshake)
// Stages come from the FSM's CommandSent/ReplyReceived events, so they show exactly what was
// sent and received. on_done runs once, last, after the connection closed, with the
// transaction's report (or a local failure when no transaction ran). As in delivery, the
// connection (outbound_connection.h) never lets a byte out in cleartext once the server
// answered STARTTLS.
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "daemon/delivery/outbound_connection.h"
#include "daemon/delivery/smtp_session.h"
#include "daemon/smtp/client_fsm.h"
#include "daemon/tls/tls_context.h"

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
    template <typename Owner>
    friend OutboundConnection::Callbacks callbacks_for(const std::shared_ptr<Owner>& owner);
    const Candidate& candidate() const { return candidates_[index_]; }
    uint64_t now() const { return uv_now(env_.loop); }
    void connect();
    void on_connected(const std::string& local);
    void on_data(std::string_view bytes);
    void on_tls(const tls::Engine& engine);
    void on_failed(const OutboundConnection::Failure& failure);
    void run_actions();
    void on_command(const smtp::CommandSent& command);
    void on_reply(smtp::ReplyReceived reply);
    void write(std::string bytes, bool content);
    void close_connection();
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
    std::shared_ptr<OutboundConnection> conn_;
    std::optional<smtp::TransactionReport> report_;
    std::deque<uint64_t> sent_at_;  // when the commands waiting for their reply went out
    uint64_t connect_at_ = 0;
    uint64_t last_reply_at_ = 0;
    uint64_t tls_at_ = 0;
    bool plain_retry_ = false;
    bool pending_next_ = false;
    bool pending_plain_ = false;
    bool quit_asked_ = false;
    bool connect_reported_ = false;
    bool done_ = false;
};

}  // namespace esad::delivery
