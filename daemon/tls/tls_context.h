// TLS contexts (OpenSSL 3 SSL_CTX, RAII): one server context for the injection listener's
// STARTTLS, client contexts for delivery. Built once at startup / config reload and shared by
// every connection's tls::Engine (an engine keeps its own reference to the SSL_CTX, so a
// context may be dropped while engines built from it are still alive).
//
//   std::string err;
//   auto server = tls::make_server_context(cfg.tls_cert, cfg.tls_key, &err);  // null + err
//   auto client = tls::make_client_context({.verify = true}, &err);            // null + err
//
// Server: TLS 1.2+, forward-secret AEAD-first TLS 1.2 ciphers (OpenSSL's TLS 1.3 suites),
// server cipher preference, no renegotiation, no compression. Session resumption is OFF
// (no tickets, no session cache): the injection clients are few, local and long-lived, so a
// full handshake costs little, while tickets would need ticket-key rotation across restarts
// to keep forward secrecy and a cache would grow per connection. The key must match the
// certificate (checked here, with a clear message) and must not be passphrase-protected
// (no prompt: a daemon never reads a tty).
// Client: min protocol TLS 1.2 (or 1.3), OpenSSL's default ciphers; the trust store is the
// system one (/etc/ssl/certs) or ClientOptions::ca_file. With verify=false the chain and
// host name are still checked and reported (Engine::verify_result()) but do not fail the
// handshake: opportunistic TLS encrypts even to self-signed peers and records verified=no.
//
// Errors: returned as text (never logged here, never thrown), carrying OpenSSL's error-queue
// text; the queue is always left empty so a failure never leaks into the next connection.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <string_view>

namespace esad::tls {

enum class MinProtocol { kTls12, kTls13 };
std::string_view to_string(MinProtocol protocol);  // "TLSv1.2", "TLSv1.3"

struct ClientOptions {
    // true: a chain or host-name failure fails the handshake (MTA-STS enforce, DANE-less
    // "verify" policy). false: opportunistic, failures are only reported.
    bool verify = false;
    // PEM file of trusted certificates (tests, private CAs); empty = system store.
    std::string ca_file;
    MinProtocol min_protocol = MinProtocol::kTls12;
};

// Owns one SSL_CTX. Not copyable; shared through shared_ptr.
class Context {
  public:
    explicit Context(SSL_CTX* ctx) : ctx_(ctx) {}
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;
    SSL_CTX* native() const { return ctx_.get(); }

  private:
    struct Free {
        void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
    };
    std::unique_ptr<SSL_CTX, Free> ctx_;
};

class ServerContext : public Context {
  public:
    using Context::Context;
};

class ClientContext : public Context {
  public:
    ClientContext(SSL_CTX* ctx, bool verify) : Context(ctx), verify_(verify) {}
    bool verify() const { return verify_; }

  private:
    bool verify_;
};

// Null on failure, with *error set (e.g. "tls_key /k.pem does not match the certificate in
// /c.pem: error:05800074:x509 certificate routines::key values mismatch").
std::shared_ptr<ServerContext> make_server_context(const std::string& cert_path,
                                                   const std::string& key_path, std::string* error);
std::shared_ptr<ClientContext> make_client_context(const ClientOptions& options,
                                                   std::string* error);

// Pops the whole OpenSSL error queue of this thread and returns it as one bounded (<= 512
// octets), printable line ("error:0A000086:SSL routines::certificate verify failed; ...").
// Empty when the queue was empty. Afterwards the queue is empty.
std::string take_openssl_errors();

// Replaces non-printable octets by '?' and cuts at max_len (appending "...").
std::string printable(std::string_view text, size_t max_len);

}  // namespace esad::tls
