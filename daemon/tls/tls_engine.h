// One TLS session as a memory-BIO engine (STYLE.md §5): no sockets, no libuv, no clock.
// The glue moves bytes between the socket and the engine's CIPHERTEXT side, and between the
// engine's PLAINTEXT side and the SMTP state machine.
//
//   auto tls = tls::Engine::server(*server_ctx);              // injection STARTTLS
//   auto tls = tls::Engine::client(*client_ctx, mx, mx);       // delivery (SNI, verify name)
//   socket bytes read       -> tls->feed_ciphertext(bytes)
//   app bytes to send       -> tls->write_plaintext(bytes)    (buffered until established)
//   after EVERY call (incl. creation): write tls->take_ciphertext() to the socket, then hand
//                              tls->take_plaintext() to the SMTP core, then look at state().
//   graceful end            -> tls->shutdown(), write take_ciphertext(), close the socket.
//
// Only bytes read AFTER the STARTTLS switch may be fed: anything buffered across the
// boundary is plaintext injection (CVE-2011-0411 / CVE-2021-38371) and the glue drops it.
//
// States: kHandshaking -> kEstablished -> kClosed (our shutdown() or the peer's close_notify)
//         any -> kFailed (handshake/verify failure, bad record, cap exceeded). kFailed and
//         kClosed are final; further feeds and writes are ignored. take_ciphertext() may still
//         return an alert / close_notify to send; take_plaintext() returns what was decrypted
//         before the end (except after a cap failure, which frees the buffers).
// Caps (kMaxBuffered, 1 MiB): outbound, plaintext not yet encrypted + ciphertext not yet
//   taken + the new write; inbound, decrypted plaintext not yet taken. Over a cap -> kFailed.
//   The glue must therefore write large content (DATA) in chunks <= kMaxBuffered and take
//   the ciphertext after each.
// Never throws, never blocks, leaves this thread's OpenSSL error queue empty after every call.
// Logs nothing: error(), protocol(), cipher() and verify_result() are texts for the glue's
// mail log ("TLS success protocol TLSv1.3 cipher TLS_AES_256_GCM_SHA384").
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "daemon/tls/tls_context.h"

namespace esad::tls {

class Engine {
  public:
    enum class Side { kServer, kClient };
    enum class State { kHandshaking, kEstablished, kFailed, kClosed };
    static constexpr size_t kMaxBuffered = 1024 * 1024;

    // Never null. If OpenSSL cannot create the session the engine starts in kFailed.
    static std::unique_ptr<Engine> server(const ServerContext& ctx);
    // sni_host: sent as SNI unless empty or an IP literal. verify_host: the name the
    // certificate must carry (the MX name); empty = chain only. A trailing dot is ignored.
    // Whether a failure aborts the handshake is the context's ClientOptions::verify.
    static std::unique_ptr<Engine> client(const ClientContext& ctx, std::string_view sni_host,
                                          std::string_view verify_host);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    void feed_ciphertext(std::string_view bytes);
    void write_plaintext(std::string_view bytes);
    std::string take_ciphertext();
    std::string take_plaintext();
    // Sends close_notify when established; before that just ends the session. Idempotent.
    void shutdown();

    Side side() const { return side_; }
    State state() const { return state_; }
    // Why kFailed (bounded, printable); empty otherwise.
    const std::string& error() const { return error_; }
    // Once established: "TLSv1.3", "TLS_AES_256_GCM_SHA384"; empty before.
    const std::string& protocol() const { return protocol_; }
    const std::string& cipher() const { return cipher_; }
    // Client side, after the peer's certificate arrived: "ok", or the failure named, e.g.
    // "certificate verify failed: hostname mismatch (expected mx.example)" /
    // "certificate verify failed: self-signed certificate". Empty on the server side and
    // before the certificate was seen.
    const std::string& verify_result() const { return verify_result_; }
    // Client side: chain (and host name, if given) verified.
    bool verified() const { return verified_; }
    // The peer sent close_notify (as opposed to our shutdown()).
    bool closed_by_peer() const { return closed_by_peer_; }

    // TLS key log (docs/capture.md): every session secret of this connection, as one line of
    // the NSS key log format ("CLIENT_RANDOM ...", "CLIENT_TRAFFIC_SECRET_0 ..."), is passed
    // to `sink`. Set it right after client(): the first secrets exist only once the server's
    // hello arrived. Only client contexts made by make_client_context() report secrets; the
    // delivery code sets a sink only for domains under domaindebug.
    using KeylogSink = std::function<void(const char* line)>;
    void set_keylog(KeylogSink sink) { keylog_ = std::move(sink); }
    // SSL_CTX keylog callback that forwards to the engine owning the SSL (make_client_context).
    static void keylog_callback(const SSL* ssl, const char* line);

  private:
    Engine(Side side, SSL* ssl);
    void drive();  // handshake, flush pending writes, read; all error handling
    void handshake();
    void flush_pending();
    void read_plaintext();
    void fail(std::string what, bool free_received = false);
    void fail_ssl(std::string_view what, int ssl_error);
    void on_established();
    void record_verify_result();

    Side side_;
    State state_ = State::kHandshaking;
    SSL* ssl_;                 // owns rbio_/wbio_
    BIO* rbio_ = nullptr;      // ciphertext from the peer
    BIO* wbio_ = nullptr;      // ciphertext to the peer
    std::string pending_out_;  // plaintext not yet encrypted
    size_t pending_offset_ = 0;
    std::string plaintext_in_;  // decrypted, not yet taken
    std::string error_;
    std::string protocol_;
    std::string cipher_;
    std::string verify_host_;
    std::string verify_result_;
    bool verified_ = false;
    bool closed_by_peer_ = false;
    KeylogSink keylog_;
};

std::string_view to_string(Engine::State state);  // "handshaking", "established", ...

}  // namespace esad::tls
