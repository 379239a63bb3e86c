// A one-connection scripted peer on 127.0.0.1, port 0, for loop-tier tests of the outbound
// side (outbound_connection, smtp_session): it records every octet received (`raw`) and the
// plaintext (`plain`: in the clear, then decrypted once TLS runs). With `tls_ctx` set it
// answers "STARTTLS\r\n" itself with "220 go ahead" and runs the server handshake.
//   test::ScriptedPeer peer(loop);
//   peer.on_accepted = [](ScriptedPeer& p) { p.send("220 hi\r\n"); };
//   peer.on_plain = [](ScriptedPeer& p) { ... p.plain ... };   // after every read
//   p.close();   // FIN after the queued bytes      p.reset();   // RST, at once
#pragma once

#include <sys/socket.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "daemon/tls/tls_context.h"
#include "daemon/tls/tls_engine.h"
#include "tests/support/loopback_listener.h"
#include "tests/support/test_pki.h"

namespace esad::test {

// A one-connection peer. With `tls`, bytes after "STARTTLS\r\n" go through a server engine.
struct ScriptedPeer {
    uv_loop_t* loop;
    loop::HandlePtr<loop::Tcp> listener;
    loop::HandlePtr<loop::Tcp> conn;
    uint16_t port = 0;
    std::string raw;    // every octet received, as it came off the wire
    std::string plain;  // received plaintext (before STARTTLS, then decrypted)
    std::shared_ptr<tls::ServerContext> tls_ctx;
    std::unique_ptr<tls::Engine> tls;
    bool eof = false;
    std::function<void(ScriptedPeer&)> on_accepted;
    std::function<void(ScriptedPeer&)> on_plain;   // after each read, with `plain` updated
    std::function<void(ScriptedPeer&)> on_secure;  // the server handshake completed

    explicit ScriptedPeer(uv_loop_t* l) : loop(l) {
        listener = test::listen_loopback(loop, &port, [this](int status) {
            if (status != 0) return;
            conn = loop::Tcp::create(loop);
            REQUIRE(uv_accept(listener->stream(), conn->stream()) == 0);
            conn->read_start([this](const char* data, ssize_t n) { on_read(data, n); });
            if (on_accepted) on_accepted(*this);
        });
    }

    void on_read(const char* data, ssize_t n) {
        if (n < 0) {
            eof = true;
            conn.reset();
            return;
        }
        std::string_view bytes(data, static_cast<size_t>(n));
        raw.append(bytes);
        if (!tls) {
            plain.append(bytes);
            if (tls_ctx && plain.find("STARTTLS\r\n") != std::string::npos) {
                send("220 go ahead\r\n");
                tls = tls::Engine::server(*tls_ctx);
            }
        } else {
            const bool was = tls->state() == tls::Engine::State::kEstablished;
            tls->feed_ciphertext(bytes);
            flush();
            plain += tls->take_plaintext();
            if (!was && tls->state() == tls::Engine::State::kEstablished && on_secure)
                on_secure(*this);
        }
        if (conn && on_plain) on_plain(*this);
    }

    // Plaintext to the client: in the clear before STARTTLS, then through the engine (or
    // nowhere, once the engine ended).
    void send(const std::string& text) {
        if (!conn) return;
        if (!tls) {
            conn->write(text);
        } else if (tls->state() == tls::Engine::State::kEstablished) {
            tls->write_plaintext(text);
            flush();
        }
    }
    void flush() {
        std::string out = tls->take_ciphertext();
        if (!out.empty() && conn) conn->write(std::move(out));
    }
    void close() {
        if (conn) conn.release()->close_after_writes();
        listener.reset();
    }
    // An RST, no FIN (SO_LINGER 0), at once.
    void reset() {
        linger l{1, 0};
        setsockopt(conn->fileno(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
        conn.release()->close();
        listener.reset();
    }
};

// A server context with the "mx.test" test identity (test_pki.h).
inline std::shared_ptr<tls::ServerContext> test_server_context() {
    std::string error;
    auto ctx = tls::make_server_context(pki().cert_a, pki().key_a, &error);
    INFO(error);
    REQUIRE(ctx);
    return ctx;
}

}  // namespace esad::test
