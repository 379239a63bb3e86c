// One outbound delivery session: the pure smtp::ClientSession driven over an
// OutboundConnection (outbound_connection.h: socket, source address, stage deadline, STARTTLS
// through a memory-BIO tls::Engine, failures typed and at once).
//
// The session walks its candidate list (MX preference order, from the Router): a candidate
// that fails before a greeting (refused, unreachable, timeout, 421/554 banner) is logged as a
// Connection Error and the next candidate is tried with the same transaction; only when the
// last one fails does the report reach the manager (host not reached → the host goes down).
// A broken opportunistic TLS handshake is retried once on the same address without TLS;
// a verification result never is (preferred-verify encrypts to an unverified peer). Once
// the server answered STARTTLS, no byte is ever written in cleartext on that connection
// (the connection enforces it): a TLS session that fails or closes later is a lost
// connection.
// Reports go to the manager, which applies them to the queue (STYLE §1: this file never
// decides retry policy). Every action of the FSM is executed in order; mail log lines for
// connections (New SMTP DCID, TLS, Delivery start, DCID close, Connection Error) are written
// here, per-recipient outcome lines by the manager.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/config.h"
#include "daemon/daemon_state.h"
#include "daemon/delivery/content_stream.h"
#include "daemon/delivery/outbound_connection.h"
#include "daemon/logs/mail_log.h"
#include "daemon/smtp/client_fsm.h"
#include "daemon/tls/tls_context.h"

namespace esad::delivery {

struct Candidate {
    std::string ip;
    uint16_t port = 25;
    std::string mx_name;  // SNI / certificate name; the IP for address routes
};

// The client FSM's stage deadlines from [delivery] (greeting, MAIL, RCPT, DATA, data block,
// final dot); the other stages keep ClientTimeouts' defaults.
smtp::ClientTimeouts client_timeouts(const DeliveryConfig& config);

// The SMTP side of an OutboundConnection (delivery and smtpping): a connection failure as
// the FSM's event (a handshake failure, its own timeout, or a lost connection), and the
// FSM's next deadline as the connection's.
void tell_fsm(smtp::ClientSession& fsm, const OutboundConnection::Failure& failure,
              smtp::Millis now);
void arm_deadline(OutboundConnection& conn, const smtp::ClientSession& fsm);

struct SessionEnv {
    uv_loop_t* loop = nullptr;
    DaemonState* state = nullptr;
    logs::MailLog* mail_log = nullptr;
    std::shared_ptr<tls::ClientContext> tls_plain;   // opportunistic: no verification
    std::shared_ptr<tls::ClientContext> tls_verify;  // chain verified against the system store
    std::string helo_name;
    std::string source_address;  // empty: the kernel picks
    smtp::ClientTimeouts timeouts;
    // Domain debug: called with each SMTP trace line for domains being debugged.
    std::function<void(const std::string& domain, uint64_t dcid, const std::string& line)> trace;
    // TLS key log: the sink for a domain's sessions (empty: no key log for that domain).
    std::function<tls::Engine::KeylogSink(const std::string& domain)> keylog;
};

class SmtpSession : public std::enable_shared_from_this<SmtpSession> {
  public:
    struct Callbacks {
        // A transaction finished (delivered, bounced or deferred); dcid of the connection.
        std::function<void(SmtpSession&, const smtp::TransactionReport&)> on_report;
        // The connection reached a greeting from `ip` (host up).
        std::function<void(SmtpSession&, const std::string& ip)> on_greeting;
        // Ready for another transaction on this connection: submit() one or quit().
        std::function<void(SmtpSession&)> on_idle;
        // The connection is gone; the session can be released (on a later iteration).
        std::function<void(SmtpSession&)> on_closed;
    };

    SmtpSession(SessionEnv& env, std::string domain, std::vector<Candidate> candidates,
                smtp::TlsPolicy policy, Callbacks callbacks);
    ~SmtpSession();

    // A transaction with `pull` set takes its content from `content`, piece by piece.
    void start(smtp::Transaction first, std::shared_ptr<ContentStream> content = nullptr);
    bool submit(smtp::Transaction tx, std::shared_ptr<ContentStream> content = nullptr);
    void quit();
    // Shutdown deadline passed: drop the connection now (the transaction is reported soft).
    void abort();
    const std::string& domain() const { return domain_; }
    uint64_t dcid() const { return dcid_; }
    bool greeted() const { return greeted_; }
    uint32_t messages() const { return messages_; }
    const std::string& current_ip() const { return candidate().ip; }

  private:
    template <typename Owner>
    friend OutboundConnection::Callbacks callbacks_for(const std::shared_ptr<Owner>& owner);
    const Candidate& candidate() const { return candidates_[index_]; }
    void connect();
    void on_connected(const std::string& local);
    void on_data(std::string_view bytes);
    void on_tls(const tls::Engine& engine);
    // The connection failed (it is closed): the FSM hears it as what it is.
    void on_failed(const OutboundConnection::Failure& failure);
    void run_actions();
    void write(std::string bytes, bool content);
    // NeedContent: the piece (or the whole content) from the transaction's ContentStream.
    // False when the FSM was answered at once (no content source).
    bool need_content(const smtp::NeedContent& need);
    std::shared_ptr<ContentStream> content_of(uint64_t mid) const;
    void drop_content(uint64_t mid);
    void close_connection();
    smtp::Millis now() const { return smtp::Millis(uv_now(env_.loop)); }

    SessionEnv& env_;
    std::string domain_;
    std::vector<Candidate> candidates_;
    size_t index_ = 0;
    smtp::TlsPolicy policy_;
    Callbacks cb_;
    std::unique_ptr<smtp::ClientSession> fsm_;
    std::shared_ptr<OutboundConnection> conn_;
    std::optional<smtp::Transaction> retry_tx_;  // the transaction to re-run on the next candidate
    // The content streams of the submitted transactions (at most two: current and waiting),
    // kept across a re-run on the next candidate until the transaction is reported.
    std::vector<std::pair<uint64_t, std::shared_ptr<ContentStream>>> contents_;
    uint64_t generation_ = 0;  // bumped per connection: a piece read for an older one is stale
    uint64_t dcid_ = 0;
    uint32_t messages_ = 0;
    bool greeted_ = false;
    bool tls_retry_plain_ = false;
    bool pending_next_ = false;   // this candidate failed before a greeting: try the next
    bool pending_plain_ = false;  // opportunistic TLS broke the stream: once more without it
    bool closed_ = false;
    bool counted_ = false;  // connected: counted in outbound_connections until closed
};

}  // namespace esad::delivery
