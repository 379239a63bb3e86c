// OutboundConnection: one TCP connection from esad to a remote host, shared by delivery
// (smtp_session), `esactl smtpping` (smtp_probe) and `esactl telnet` (telnet_relay). It owns
// the socket, the source-address bind, the deadline of the current stage, the TLS engine
// after STARTTLS and the rule that once the server answered STARTTLS no byte goes out in
// cleartext; its owner owns the protocol spoken over it.
//
//   auto c = OutboundConnection::create(loop, callbacks);
//   c->connect(ip, port, source);            // source "" = the kernel picks
//   c->set_deadline(uv_now(loop) + ms);      // one deadline (uv_now clock), re-armed per stage
//   c->write(bytes, done);                   // plaintext; through the TLS engine after start_tls
//   c->start_tls(ctx, sni, verify_host, keylog);  // the server said 220 to STARTTLS
//   c->close();                              // graceful (close_notify under TLS); then silent
//
// Callbacks, in order (each may call any method, or drop the last reference):
//   on_connected(local address)   TCP connected
//   on_data(bytes)                peer bytes: raw before start_tls(), decrypted after it
//   on_tls(engine)                the handshake completed (protocol, cipher, verification)
//   on_failed(Failure)            exactly once, last; the socket is already closed. Never
//                                 after close() and never from the destructor.
// Every failure reaches the owner at once, typed (Failure::Kind): a failure seen in a libuv
// callback is reported from that callback; one found inside an owner's call (connect with a
// bad address, a write after the TLS session ended) from the next loop iteration, so the
// owner's handler never runs on its own call's stack. Reads go through the loop's one shared
// buffer (handle.h): a connection keeps no read buffer of its own. Logs nothing.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "daemon/loop/handle.h"
#include "daemon/tls/tls_context.h"
#include "daemon/tls/tls_engine.h"

namespace esad::delivery {

class OutboundConnection : public std::enable_shared_from_this<OutboundConnection> {
  public:
    struct Failure {
        enum class Kind {
            kAddress,       // the destination or source is not an IP literal
            kBind,          // the source address cannot be bound (not on this host)
            kConnect,       // refused, unreachable, ...
            kWrite,         // a write failed (reset, broken pipe)
            kRead,          // a read failed (reset)
            kEof,           // the peer closed the connection (no TLS close_notify)
            kTlsHandshake,  // the handshake failed (or the peer ended it before completion)
            kTlsEnded,      // after the handshake: a bad record or the peer's close_notify
            kDeadline,      // the stage deadline passed
        };
        Kind kind;
        std::string detail;  // "connection refused", "EOF", the TLS engine's error, ...
    };
    struct Callbacks {
        std::function<void(const std::string& local_address)> on_connected;
        std::function<void(std::string_view bytes)> on_data;
        std::function<void(const tls::Engine& engine)> on_tls;
        std::function<void(const Failure& failure)> on_failed;
    };

    static std::shared_ptr<OutboundConnection> create(uv_loop_t* loop, Callbacks callbacks);
    ~OutboundConnection();
    OutboundConnection(const OutboundConnection&) = delete;
    OutboundConnection& operator=(const OutboundConnection&) = delete;

    // Once per connection. The source address is bound first: a bind that fails fails the
    // connection (kBind) instead of connecting from another interface.
    void connect(const std::string& ip, uint16_t port, const std::string& source);
    // kDeadline when uv_now() reaches `at_ms` before the next set_deadline/clear_deadline.
    void set_deadline(uint64_t at_ms);
    void clear_deadline();
    // Plaintext to the peer; false (nothing sent) when not connected or already ended. `done`
    // runs when the kernel took the bytes, never after the connection ended. After
    // start_tls() the bytes go through the engine, or nowhere: an engine that failed or
    // closed fails the connection (kTlsEnded) instead of letting a byte out in cleartext.
    bool write(std::string bytes, std::function<void()> done = nullptr);
    // The client handshake starts now; every later peer byte goes to the engine. `verify_host`
    // empty: chain only (tls_engine.h). `keylog` may be empty.
    void start_tls(const tls::ClientContext& ctx, std::string_view sni,
                   std::string_view verify_host, tls::Engine::KeylogSink keylog = nullptr);
    // Graceful end: close_notify when TLS is established, queued bytes flushed, then closed.
    // No callback runs afterwards. Idempotent.
    void close();

    bool connected() const { return connected_ && !ended_; }
    bool ended() const { return ended_; }
    const std::string& local_address() const { return local_; }
    bool tls_started() const { return tls_ != nullptr; }

  private:
    OutboundConnection(uv_loop_t* loop, Callbacks callbacks);
    void on_connect(int status);
    void on_read(const char* data, ssize_t n);
    void on_read_tls(std::string_view bytes);
    void on_timer();
    void send_ciphertext();
    // Ends the connection and tells the owner (once). fail_soon: from the next iteration.
    void fail(Failure::Kind kind, std::string detail);
    void fail_soon(Failure::Kind kind, std::string detail);
    // The TLS session is over after the handshake: why, as the engine tells it.
    std::string tls_end_reason() const;
    void release_socket(bool flush);

    uv_loop_t* loop_;
    Callbacks cb_;
    loop::HandlePtr<loop::Tcp> tcp_;
    loop::HandlePtr<loop::Timer> timer_;
    std::unique_ptr<tls::Engine> tls_;
    std::optional<uint64_t> deadline_;
    std::optional<Failure> pending_;  // found inside an owner's call: reported by the timer
    std::string local_;
    bool connected_ = false;
    bool ended_ = false;  // failed or closed: nothing more goes out, no callback runs
};

std::string_view to_string(OutboundConnection::Failure::Kind kind);

// Callbacks that reach `owner` through a weak reference (a late event after the owner is
// gone finds nothing): owner->on_connected(local), on_data(bytes), on_tls(engine),
// on_failed(failure).
template <typename Owner>
OutboundConnection::Callbacks callbacks_for(const std::shared_ptr<Owner>& owner) {
    std::weak_ptr<Owner> weak = owner;
    OutboundConnection::Callbacks cb;
    cb.on_connected = [weak](const std::string& local) {
        if (auto self = weak.lock()) self->on_connected(local);
    };
    cb.on_data = [weak](std::string_view bytes) {
        if (auto self = weak.lock()) self->on_data(bytes);
    };
    cb.on_tls = [weak](const tls::Engine& engine) {
        if (auto self = weak.lock()) self->on_tls(engine);
    };
    cb.on_failed = [weak](const OutboundConnection::Failure& failure) {
        if (auto self = weak.lock()) self->on_failed(failure);
    };
    return cb;
}

}  // namespace esad::delivery
