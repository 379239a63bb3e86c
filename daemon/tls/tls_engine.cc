// Memory-BIO TLS engine for tls_engine.h. Contract there.
//
// Every public entry point ends with ERR_clear_error(): whatever OpenSSL queued while we
// drove it was either turned into error_ or is irrelevant, and must not be seen by the next
// connection on this thread.
#include "daemon/tls/tls_engine.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

namespace esad::tls {

namespace {

constexpr size_t kMaxErrorText = 512;
constexpr size_t kMaxHostName = 253;
constexpr size_t kReadChunk = 16 * 1024;

std::string_view strip_trailing_dot(std::string_view host) {
    if (!host.empty() && host.back() == '.') host.remove_suffix(1);
    return host;
}

bool is_ip_literal(std::string_view host) {
    std::string s(host);
    unsigned char buf[16];
    return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

// LDH labels (plus '_', seen in the wild) or an IP literal; nothing that could smuggle
// control characters into SNI or a log line.
bool is_sane_host(std::string_view host) {
    if (host.empty() || host.size() > kMaxHostName) return false;
    for (char c : host) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.' || c == '_' || c == ':';
        if (!ok) return false;
    }
    return true;
}

}  // namespace

std::string_view to_string(Engine::State state) {
    switch (state) {
        case Engine::State::kHandshaking:
            return "handshaking";
        case Engine::State::kEstablished:
            return "established";
        case Engine::State::kFailed:
            return "failed";
        case Engine::State::kClosed:
            return "closed";
    }
    return "?";
}

Engine::Engine(Side side, SSL* ssl) : side_(side), ssl_(ssl) {
    if (!ssl_) {
        fail("cannot create TLS session");
        return;
    }
    rbio_ = BIO_new(BIO_s_mem());
    wbio_ = BIO_new(BIO_s_mem());
    if (!rbio_ || !wbio_) {
        BIO_free(rbio_);
        BIO_free(wbio_);
        rbio_ = wbio_ = nullptr;
        SSL_free(ssl_);
        ssl_ = nullptr;
        fail("cannot create TLS memory buffers");
        return;
    }
    // An empty read buffer means "wait for more", not end of stream.
    BIO_set_mem_eof_return(rbio_, -1);
    BIO_set_mem_eof_return(wbio_, -1);
    SSL_set_bio(ssl_, rbio_, wbio_);  // ssl_ owns both from here
    SSL_set_app_data(ssl_, this);     // keylog_callback finds the engine
    if (side_ == Side::kServer) {
        SSL_set_accept_state(ssl_);
    } else {
        SSL_set_connect_state(ssl_);
    }
}

void Engine::keylog_callback(const SSL* ssl, const char* line) {
    auto* engine = static_cast<Engine*>(SSL_get_app_data(ssl));
    if (engine && engine->keylog_ && line) engine->keylog_(line);
}

Engine::~Engine() {
    if (ssl_) SSL_free(ssl_);
    ERR_clear_error();
}

std::unique_ptr<Engine> Engine::server(const ServerContext& ctx) {
    ERR_clear_error();
    std::unique_ptr<Engine> engine(new Engine(Side::kServer, SSL_new(ctx.native())));
    ERR_clear_error();
    return engine;
}

std::unique_ptr<Engine> Engine::client(const ClientContext& ctx, std::string_view sni_host,
                                       std::string_view verify_host) {
    ERR_clear_error();
    std::unique_ptr<Engine> engine(new Engine(Side::kClient, SSL_new(ctx.native())));
    Engine& e = *engine;
    sni_host = strip_trailing_dot(sni_host);
    verify_host = strip_trailing_dot(verify_host);
    if (e.ssl_ && !sni_host.empty()) {
        if (!is_sane_host(sni_host)) {
            e.fail("invalid SNI host name");
        } else if (!is_ip_literal(sni_host) &&  // RFC 6066 §3: no IP literals in SNI
                   SSL_set_tlsext_host_name(e.ssl_, std::string(sni_host).c_str()) != 1) {
            e.fail("cannot set SNI: " + take_openssl_errors());
        }
    }
    if (e.ssl_ && e.state_ == State::kHandshaking && !verify_host.empty()) {
        e.verify_host_ = std::string(verify_host);
        if (!is_sane_host(verify_host)) {
            e.fail("invalid verify host name");
        } else {
            // A wildcard covers exactly one whole left-most label (RFC 6125, RFC 8461 §4.1).
            SSL_set_hostflags(e.ssl_, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            if (SSL_set1_host(e.ssl_, e.verify_host_.c_str()) != 1) {
                e.fail("cannot set verify host name: " + take_openssl_errors());
            }
        }
    }
    e.drive();  // the ClientHello, ready for take_ciphertext()
    ERR_clear_error();
    return engine;
}

void Engine::feed_ciphertext(std::string_view bytes) {
    if (!ssl_ || (state_ != State::kHandshaking && state_ != State::kEstablished)) return;
    if (!bytes.empty()) {
        size_t written = 0;
        if (BIO_write_ex(rbio_, bytes.data(), bytes.size(), &written) != 1 ||
            written != bytes.size()) {
            fail("cannot buffer received TLS data");
            ERR_clear_error();
            return;
        }
    }
    drive();
    ERR_clear_error();
}

void Engine::write_plaintext(std::string_view bytes) {
    if (!ssl_ || (state_ != State::kHandshaking && state_ != State::kEstablished)) return;
    if (bytes.empty()) return;
    size_t held = pending_out_.size() - pending_offset_ + BIO_ctrl_pending(wbio_);
    if (held + bytes.size() > kMaxBuffered) {
        fail("outbound TLS buffer over " + std::to_string(kMaxBuffered) + " bytes");
        ERR_clear_error();
        return;
    }
    pending_out_.append(bytes);
    if (state_ == State::kEstablished) flush_pending();
    ERR_clear_error();
}

std::string Engine::take_ciphertext() {
    std::string out;
    if (!wbio_) return out;
    size_t n = BIO_ctrl_pending(wbio_);
    if (n > 0) {
        out.resize(n);
        size_t got = 0;
        if (BIO_read_ex(wbio_, out.data(), n, &got) != 1) got = 0;
        out.resize(got);
    }
    ERR_clear_error();
    return out;
}

std::string Engine::take_plaintext() {
    std::string out;
    out.swap(plaintext_in_);
    return out;
}

void Engine::shutdown() {
    if (!ssl_ || (state_ != State::kHandshaking && state_ != State::kEstablished)) return;
    if (state_ == State::kEstablished) {
        flush_pending();
        // 0 = our close_notify is queued, the peer's not yet seen: that is all we wait for.
        if (state_ == State::kEstablished) SSL_shutdown(ssl_);
    }
    if (state_ != State::kFailed) state_ = State::kClosed;
    std::string().swap(pending_out_);
    pending_offset_ = 0;
    ERR_clear_error();
}

void Engine::drive() {
    if (state_ == State::kHandshaking) handshake();
    // Application data may have arrived in the same flight as the handshake's end.
    if (state_ == State::kEstablished) read_plaintext();
    if (state_ == State::kEstablished) flush_pending();
}

void Engine::handshake() {
    int rc = SSL_do_handshake(ssl_);
    if (rc == 1) {
        on_established();
        return;
    }
    int err = SSL_get_error(ssl_, rc);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return;
    record_verify_result();
    fail_ssl("TLS handshake failed", err);
}

void Engine::on_established() {
    state_ = State::kEstablished;
    const char* version = SSL_get_version(ssl_);
    const char* cipher = SSL_get_cipher_name(ssl_);
    protocol_ = version ? version : "";
    cipher_ = cipher ? cipher : "";
    record_verify_result();
}

void Engine::record_verify_result() {
    if (side_ != Side::kClient) return;
    long result = SSL_get_verify_result(ssl_);
    bool have_cert = SSL_get0_peer_certificate(ssl_) != nullptr;
    verified_ = false;
    if (result != X509_V_OK) {
        verify_result_ = "certificate verify failed: ";
        verify_result_ += X509_verify_cert_error_string(result);
        if (result == X509_V_ERR_HOSTNAME_MISMATCH) {
            verify_result_ += " (expected " + verify_host_ + ")";
        }
        verify_result_ = printable(verify_result_, kMaxErrorText);
    } else if (have_cert) {
        verify_result_ = "ok";
        verified_ = true;
    } else if (state_ == State::kEstablished) {
        verify_result_ = "no peer certificate";
    }
}

void Engine::flush_pending() {
    while (pending_offset_ < pending_out_.size()) {
        size_t written = 0;
        int rc = SSL_write_ex(ssl_, pending_out_.data() + pending_offset_,
                              pending_out_.size() - pending_offset_, &written);
        if (rc == 1) {
            pending_offset_ += written;
            continue;
        }
        int err = SSL_get_error(ssl_, rc);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return;
        fail_ssl("TLS write failed", err);
        return;
    }
    // Everything is encrypted: give the (possibly large) buffer back.
    std::string().swap(pending_out_);
    pending_offset_ = 0;
}

void Engine::read_plaintext() {
    char buf[kReadChunk];
    for (;;) {
        size_t n = 0;
        int rc = SSL_read_ex(ssl_, buf, sizeof buf, &n);
        if (rc == 1) {
            if (plaintext_in_.size() + n > kMaxBuffered) {
                fail("received TLS plaintext not taken over " + std::to_string(kMaxBuffered) +
                         " bytes",
                     /*free_received=*/true);
                return;
            }
            plaintext_in_.append(buf, n);
            continue;
        }
        int err = SSL_get_error(ssl_, rc);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return;
        if (err == SSL_ERROR_ZERO_RETURN) {
            // The peer's close_notify: answer with ours and stop.
            closed_by_peer_ = true;
            SSL_shutdown(ssl_);
            state_ = State::kClosed;
            std::string().swap(pending_out_);
            pending_offset_ = 0;
            return;
        }
        fail_ssl("TLS read failed", err);
        return;
    }
}

void Engine::fail_ssl(std::string_view what, int ssl_error) {
    std::string text(what);
    // The verification result explains the failure only where it could cause it (the
    // context enforces it); otherwise a peer's alert would read "certificate verify failed".
    if (side_ == Side::kClient && (SSL_get_verify_mode(ssl_) & SSL_VERIFY_PEER) != 0 &&
        !verify_result_.empty() && verify_result_ != "ok") {
        text += ": " + verify_result_;
    }
    std::string queue = take_openssl_errors();
    if (!queue.empty()) {
        text += ": " + queue;
    } else if (ssl_error == SSL_ERROR_SYSCALL) {
        text += ": unexpected end of stream";
    } else {
        text += ": SSL error " + std::to_string(ssl_error);
    }
    fail(std::move(text));
}

void Engine::fail(std::string what, bool free_received) {
    if (state_ == State::kFailed) return;
    state_ = State::kFailed;
    error_ = printable(what, kMaxErrorText);
    std::string().swap(pending_out_);
    pending_offset_ = 0;
    // The inbound cap must actually free memory; other failures keep what was decrypted.
    if (free_received) std::string().swap(plaintext_in_);
}

}  // namespace esad::tls
