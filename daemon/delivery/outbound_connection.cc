// See outbound_connection.h.
#include "daemon/delivery/outbound_connection.h"

#include "daemon/loop/tcp_connect.h"

namespace esad::delivery {

using Kind = OutboundConnection::Failure::Kind;

std::string_view to_string(Kind kind) {
    switch (kind) {
        case Kind::kAddress:
            return "address";
        case Kind::kBind:
            return "bind";
        case Kind::kConnect:
            return "connect";
        case Kind::kWrite:
            return "write";
        case Kind::kRead:
            return "read";
        case Kind::kEof:
            return "eof";
        case Kind::kTlsHandshake:
            return "tls-handshake";
        case Kind::kTlsEnded:
            return "tls-ended";
        case Kind::kDeadline:
            return "deadline";
    }
    return "?";
}

std::shared_ptr<OutboundConnection> OutboundConnection::create(uv_loop_t* loop,
                                                               Callbacks callbacks) {
    return std::shared_ptr<OutboundConnection>(new OutboundConnection(loop, std::move(callbacks)));
}

OutboundConnection::OutboundConnection(uv_loop_t* loop, Callbacks callbacks)
    : loop_(loop), cb_(std::move(callbacks)) {}

OutboundConnection::~OutboundConnection() {
    // Silent: the owner let go. The handles close themselves (an abortive close).
    ended_ = true;
    timer_.reset();
    tcp_.reset();
}

void OutboundConnection::connect(const std::string& ip, uint16_t port, const std::string& source) {
    if (ended_ || tcp_) return;
    std::weak_ptr<OutboundConnection> weak = weak_from_this();
    timer_ = loop::Timer::create(loop_, [weak] {
        if (auto self = weak.lock()) self->on_timer();
    });
    tcp_ = loop::Tcp::create(loop_);
    std::string error;
    loop::ConnectStartError why = loop::ConnectStartError::kConnect;
    bool started = loop::tcp_connect(
        *tcp_, ip, port, source,
        [weak](int status) {
            if (auto self = weak.lock()) self->on_connect(status);
        },
        &error, &why);
    if (started) return;
    switch (why) {
        case loop::ConnectStartError::kAddress:
            return fail_soon(Kind::kAddress, std::move(error));
        case loop::ConnectStartError::kBind:
            return fail_soon(Kind::kBind, std::move(error));
        case loop::ConnectStartError::kConnect:
            return fail_soon(Kind::kConnect, std::move(error));
    }
}

void OutboundConnection::on_connect(int status) {
    if (ended_ || status == UV_ECANCELED) return;
    auto self = shared_from_this();
    if (status != 0) return fail(Kind::kConnect, uv_strerror(status));
    connected_ = true;
    uv_tcp_nodelay(tcp_->tcp(), 1);
    local_ = loop::local_address(*tcp_);
    std::weak_ptr<OutboundConnection> weak = weak_from_this();
    int rc = tcp_->read_start([weak](const char* data, ssize_t n) {
        if (auto s = weak.lock()) s->on_read(data, n);
    });
    if (rc != 0) return fail(Kind::kRead, uv_strerror(rc));
    if (cb_.on_connected) cb_.on_connected(local_);
}

void OutboundConnection::on_read(const char* data, ssize_t n) {
    if (ended_ || pending_) return;
    auto self = shared_from_this();
    if (n < 0) {
        const int write_error = tcp_->write_error();
        if (write_error != 0) return fail(Kind::kWrite, uv_strerror(write_error));
        if (n == UV_EOF) return fail(Kind::kEof, "EOF");
        return fail(Kind::kRead, uv_strerror(static_cast<int>(n)));
    }
    std::string_view bytes(data, static_cast<size_t>(n));
    if (tls_) return on_read_tls(bytes);
    if (cb_.on_data) cb_.on_data(bytes);
}

void OutboundConnection::on_read_tls(std::string_view bytes) {
    using State = tls::Engine::State;
    const bool was_established = tls_->state() == State::kEstablished;
    tls_->feed_ciphertext(bytes);
    send_ciphertext();  // handshake messages, an alert, the answer to a close_notify
    const State state = tls_->state();
    if (was_established && state != State::kEstablished) {
        // A bad record or the peer's close_notify: the session is over, and so is the
        // connection. What was decrypted before the end still counts.
        std::string plain = tls_->take_plaintext();
        if (!plain.empty() && cb_.on_data) cb_.on_data(plain);
        if (!ended_) fail(Kind::kTlsEnded, tls_end_reason());
        return;
    }
    if (state == State::kFailed) return fail(Kind::kTlsHandshake, tls_->error());
    if (state == State::kClosed) return fail(Kind::kTlsHandshake, "closed during the handshake");
    if (!was_established && state == State::kEstablished && cb_.on_tls) {
        cb_.on_tls(*tls_);
        if (ended_ || !tls_) return;
    }
    std::string plain = tls_->take_plaintext();
    if (!plain.empty() && cb_.on_data) cb_.on_data(plain);
}

bool OutboundConnection::write(std::string bytes, std::function<void()> done) {
    if (ended_ || pending_ || !connected_) return false;
    if (done) {
        // Never after the end: the owner may already be on another connection.
        std::weak_ptr<OutboundConnection> weak = weak_from_this();
        done = [weak, done = std::move(done)] {
            auto self = weak.lock();
            if (self && !self->ended_ && !self->pending_) done();
        };
    }
    if (!tls_) {
        tcp_->write(std::move(bytes), std::move(done));
        return true;
    }
    // The one place that decides: once STARTTLS was answered, bytes go through the engine
    // (buffered by it while the handshake runs) or nowhere.
    using State = tls::Engine::State;
    if (tls_->state() == State::kFailed || tls_->state() == State::kClosed) {
        fail_soon(Kind::kTlsEnded, tls_end_reason());
        return false;
    }
    tls_->write_plaintext(bytes);
    if (tls_->state() == State::kFailed) {  // over the engine's cap
        fail_soon(Kind::kTlsEnded, tls_end_reason());
        return false;
    }
    tcp_->write(tls_->take_ciphertext(), std::move(done));
    return true;
}

void OutboundConnection::start_tls(const tls::ClientContext& ctx, std::string_view sni,
                                   std::string_view verify_host, tls::Engine::KeylogSink keylog) {
    if (ended_ || pending_ || !connected_ || tls_) return;
    tls_ = tls::Engine::client(ctx, sni, verify_host);
    if (keylog) tls_->set_keylog(std::move(keylog));
    send_ciphertext();
    if (tls_->state() == tls::Engine::State::kFailed) fail_soon(Kind::kTlsHandshake, tls_->error());
}

void OutboundConnection::set_deadline(uint64_t at_ms) {
    deadline_ = at_ms;
    if (ended_ || pending_ || !timer_) return;
    const uint64_t now = uv_now(loop_);
    timer_->start(at_ms > now ? at_ms - now : 0);
}

void OutboundConnection::clear_deadline() {
    deadline_.reset();
    if (timer_ && !pending_) timer_->stop();
}

void OutboundConnection::close() {
    if (ended_) return;
    ended_ = true;
    cb_ = {};
    pending_.reset();
    timer_.reset();
    if (tls_ && tls_->state() == tls::Engine::State::kEstablished) {
        tls_->shutdown();
        send_ciphertext();
    }
    release_socket(true);
}

void OutboundConnection::on_timer() {
    if (ended_) return;
    auto self = shared_from_this();
    if (pending_) {
        Failure f = std::move(*pending_);
        pending_.reset();
        return fail(f.kind, std::move(f.detail));
    }
    if (!deadline_) return;
    const uint64_t now = uv_now(loop_);
    if (now < *deadline_) {
        timer_->start(*deadline_ - now);
        return;
    }
    fail(Kind::kDeadline, connected_ ? "timed out" : "connection timed out");
}

void OutboundConnection::send_ciphertext() {
    std::string out = tls_->take_ciphertext();
    if (!out.empty() && tcp_) tcp_->write(std::move(out));
}

void OutboundConnection::fail(Kind kind, std::string detail) {
    if (ended_) return;
    ended_ = true;
    timer_.reset();
    // A TLS alert the engine produced still goes out; nothing else does.
    release_socket(kind == Kind::kTlsHandshake || kind == Kind::kTlsEnded);
    auto on_failed = std::move(cb_.on_failed);
    cb_ = {};
    if (on_failed) on_failed(Failure{kind, std::move(detail)});
}

void OutboundConnection::fail_soon(Kind kind, std::string detail) {
    if (ended_ || pending_) return;
    pending_ = Failure{kind, std::move(detail)};
    if (tcp_) tcp_->read_stop();
    if (timer_) timer_->start(0);
}

std::string OutboundConnection::tls_end_reason() const {
    if (!tls_->error().empty()) return "TLS session " + tls_->error();
    return tls_->state() == tls::Engine::State::kClosed ? "TLS session closed by the peer"
                                                        : "TLS session failed";
}

void OutboundConnection::release_socket(bool flush) {
    if (!tcp_) return;
    if (flush && tcp_->write_error() == 0) {
        tcp_.release()->close_after_writes();
    } else {
        tcp_.reset();
    }
}

}  // namespace esad::delivery
