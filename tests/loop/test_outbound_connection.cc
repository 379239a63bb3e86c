// OutboundConnection on a real loop against a scripted peer on 127.0.0.1 (same loop): connect
// refused, a source address that is no address or not on this host, the stage deadline, a
// write failing under a reset, TLS failing in the handshake, the peer's close_notify (nothing
// more in cleartext) and the peer closing at each stage. Every failure reaches the owner once,
// typed, and never from inside the owner's own call. No deadline is set where a failure is
// expected from the peer: an outcome within the guard came from the failure itself.
#include <sys/socket.h>
#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <vector>

#include "daemon/delivery/outbound_connection.h"
#include "tests/support/scripted_peer.h"

using namespace esad;
using delivery::OutboundConnection;
using Kind = OutboundConnection::Failure::Kind;

namespace {

constexpr uint64_t kGuardMs = 60 * 1000;  // generous: the outcome is expected at once

using Peer = test::ScriptedPeer;

struct Owner {
    uv_loop_t* loop;
    std::shared_ptr<OutboundConnection> conn;
    std::optional<OutboundConnection::Failure> failure;
    int failures = 0;
    bool connected = false;
    bool tls = false;
    bool inside_call = false;  // a failure must never arrive while the owner is in a call
    std::string data;
    std::function<void(Owner&)> on_connected;
    std::function<void(Owner&)> on_data;
    std::function<void(Owner&)> on_tls;

    explicit Owner(uv_loop_t* l) : loop(l) {
        OutboundConnection::Callbacks cb;
        cb.on_connected = [this](const std::string& local) {
            CHECK(local == "127.0.0.1");
            connected = true;
            if (on_connected) on_connected(*this);
        };
        cb.on_data = [this](std::string_view bytes) {
            data.append(bytes);
            if (on_data) on_data(*this);
        };
        cb.on_tls = [this](const tls::Engine& engine) {
            CHECK_FALSE(engine.protocol().empty());
            tls = true;
            if (on_tls) on_tls(*this);
        };
        cb.on_failed = [this](const OutboundConnection::Failure& f) {
            CHECK_FALSE(inside_call);
            failure = f;
            ++failures;
        };
        conn = OutboundConnection::create(loop, std::move(cb));
    }

    void connect(uint16_t port, const std::string& source = "",
                 const std::string& ip = "127.0.0.1") {
        inside_call = true;
        conn->connect(ip, port, source);
        inside_call = false;
    }
    bool write(const std::string& bytes) {
        inside_call = true;
        bool ok = conn->write(bytes);
        inside_call = false;
        return ok;
    }
    void start_tls(const tls::ClientContext& ctx) {
        inside_call = true;
        conn->start_tls(ctx, "mx.test", "");
        inside_call = false;
    }

    // STARTTLS once connected, the handshake on the peer's "220 go ahead".
    void starttls_when_connected(const tls::ClientContext& ctx) {
        on_connected = [](Owner& o) { o.write("STARTTLS\r\n"); };
        on_data = [&ctx](Owner& o) {
            if (o.data == "220 go ahead\r\n") o.start_tls(ctx);
        };
    }

    // Runs the loop until the connection failed (or the guard fired: `failure` stays empty).
    void run_until_failed() {
        bool guard_fired = false;
        auto guard = loop::Timer::create(loop, [&] { guard_fired = true; });
        guard->start(kGuardMs);
        while (!failure && !guard_fired)
            uv_run(loop, UV_RUN_ONCE);
        CHECK_FALSE(guard_fired);
    }
};

std::shared_ptr<tls::ClientContext> client_ctx() {
    std::string error;
    auto ctx = tls::make_client_context({}, &error);
    INFO(error);
    REQUIRE(ctx);
    return ctx;
}

// A closed port: nothing listens on it any more.
uint16_t closed_port(uv_loop_t* loop) {
    uint16_t port = 0;
    {
        Peer peer(loop);
        port = peer.port;
    }
    uv_run(loop, UV_RUN_NOWAIT);
    return port;
}

// The test's loop: every handle closed at the end, uv_loop_close() returns 0.
struct TestLoop {
    uv_loop_t loop;
    TestLoop() { uv_loop_init(&loop); }
    ~TestLoop() { CHECK(loop::drain_and_close(&loop) == 0); }
};

}  // namespace

TEST_CASE("outbound connection: refused is a connect failure") {
    TestLoop test_loop;
    uv_loop_t& loop = test_loop.loop;
    {
        Owner owner(&loop);
        owner.connect(closed_port(&loop));
        owner.run_until_failed();
        REQUIRE(owner.failure);
        CHECK(owner.failure->kind == Kind::kConnect);
        CHECK(owner.failure->detail == "connection refused");
        CHECK_FALSE(owner.connected);
        CHECK(owner.failures == 1);
    }
}

TEST_CASE("outbound connection: a bad source address fails before any traffic, not inline") {
    TestLoop test_loop;
    uv_loop_t& loop = test_loop.loop;
    for (auto [source, kind, text] :
         {std::tuple{"192.0.2.1", Kind::kBind, "cannot bind source address 192.0.2.1"},
          std::tuple{"not-an-ip", Kind::kAddress, "bad source address not-an-ip"}}) {
        INFO(source);
        Peer peer(&loop);
        bool accepted = false;
        peer.on_accepted = [&](Peer&) { accepted = true; };
        Owner owner(&loop);
        owner.connect(peer.port, source);
        CHECK_FALSE(owner.failure);  // from the next iteration, never inside connect()
        owner.run_until_failed();
        REQUIRE(owner.failure);
        CHECK(owner.failure->kind == kind);
        CHECK_THAT(owner.failure->detail, Catch::StartsWith(text));
        uv_run(&loop, UV_RUN_NOWAIT);
        CHECK_FALSE(accepted);  // the message never leaves from another address
    }
    {
        Owner owner(&loop);
        owner.connect(25, "", "mx.example.test");
        owner.run_until_failed();
        REQUIRE(owner.failure);
        CHECK(owner.failure->kind == Kind::kAddress);
    }
}

TEST_CASE("outbound connection: the deadline is per stage") {
    TestLoop test_loop;
    uv_loop_t& loop = test_loop.loop;
    SECTION("while connecting") {
        // A deadline already due fires on the next iteration's timers, before the poll that
        // would complete the connect.
        Peer peer(&loop);
        Owner owner(&loop);
        owner.connect(peer.port);
        owner.conn->set_deadline(uv_now(&loop));
        owner.run_until_failed();
        REQUIRE(owner.failure);
        CHECK(owner.failure->kind == Kind::kDeadline);
        CHECK(owner.failure->detail == "connection timed out");
        CHECK_FALSE(owner.connected);
    }
    SECTION("re-armed per stage: the greeting stage's deadline, not the connect stage's") {
        // The connect stage's deadline is long; the peer greets from a timer; the next stage's
        // deadline is short and the peer never answers it.
        Peer peer(&loop);
        loop::HandlePtr<loop::Timer> greet;
        peer.on_accepted = [&](Peer& p) {
            greet = loop::Timer::create(&loop, [&p] { p.send("220 hello\r\n"); });
            greet->start(20);
        };
        Owner owner(&loop);
        owner.on_connected = [](Owner& o) { o.conn->set_deadline(uv_now(o.loop) + 60 * 1000); };
        owner.on_data = [](Owner& o) {
            CHECK(o.write("EHLO client.test\r\n"));
            o.conn->set_deadline(uv_now(o.loop) + 20);
        };
        owner.connect(peer.port);
        owner.conn->set_deadline(uv_now(&loop) + 60 * 1000);
        owner.run_until_failed();
        REQUIRE(owner.failure);
        CHECK(owner.failure->kind == Kind::kDeadline);
        CHECK(owner.failure->detail == "timed out");
        CHECK(owner.data == "220 hello\r\n");
        greet.reset();
    }
    SECTION("cleared: no deadline, no failure") {
        Peer peer(&loop);
        Owner owner(&loop);
        owner.connect(peer.port);
        owner.conn->set_deadline(uv_now(&loop) + 10);
        owner.conn->clear_deadline();
        bool done = false;
        auto later = loop::Timer::create(&loop, [&] { done = true; });
        later->start(50);
        while (!done)
            uv_run(&loop, UV_RUN_ONCE);
        CHECK_FALSE(owner.failure);
        CHECK(owner.connected);
        owner.conn->close();
    }
}

TEST_CASE("outbound connection: a write failing under a reset reaches the owner at once") {
    TestLoop test_loop;
    uv_loop_t& loop = test_loop.loop;
    {
        Peer peer(&loop);
        Owner owner(&loop);
        owner.connect(peer.port);
        while (!owner.connected || !peer.conn)
            uv_run(&loop, UV_RUN_ONCE);
        // The reset is there before the loop polls the socket again: the write is the first to
        // see it, and its failure is the only news.
        peer.reset();
        owner.write("MAIL FROM:<a@b.test>\r\n");
        owner.run_until_failed();
        REQUIRE(owner.failure);
        CHECK(owner.failure->kind == Kind::kWrite);
        CHECK(owner.failures == 1);
        CHECK_FALSE(owner.write("more\r\n"));  // ended: nothing goes out
    }
}

TEST_CASE("outbound connection: the peer closing at each stage is reported at once") {
    TestLoop test_loop;
    uv_loop_t& loop = test_loop.loop;
    auto cctx = client_ctx();
    auto sctx = test::test_server_context();
    SECTION("connected, in plaintext") {
        Peer peer(&loop);
        peer.on_accepted = [](Peer& p) {
            p.send("220 bye\r\n");
            p.close();
        };
        Owner owner(&loop);
        owner.connect(peer.port);
        owner.run_until_failed();
        REQUIRE(owner.failure);
        CHECK(owner.failure->kind == Kind::kEof);
        CHECK(owner.data == "220 bye\r\n");  // what came before the close still counts
    }
    SECTION("during the TLS handshake") {
        // The peer says 220 to STARTTLS and closes instead of answering the ClientHello.
        Peer peer(&loop);
        peer.on_accepted = [](Peer& p) { p.send("220 hi\r\n"); };
        peer.on_plain = [](Peer& p) {
            if (p.plain == "STARTTLS\r\n") {
                p.send("220 go ahead\r\n");
                p.close();
            }
        };
        Owner owner(&loop);
        owner.on_data = [&](Owner& o) {
            if (o.data == "220 hi\r\n") o.write("STARTTLS\r\n");
            if (o.data == "220 hi\r\n220 go ahead\r\n") o.start_tls(*cctx);
        };
        owner.connect(peer.port);
        owner.run_until_failed();
        REQUIRE(owner.failure);
        CHECK(owner.failure->kind == Kind::kEof);
        CHECK(owner.conn->tls_started());
        CHECK_FALSE(owner.tls);
    }
    SECTION("after the handshake, without close_notify") {
        Peer peer(&loop);
        peer.tls_ctx = sctx;
        peer.on_secure = [](Peer& p) { p.close(); };
        Owner owner(&loop);
        owner.starttls_when_connected(*cctx);
        owner.connect(peer.port);
        owner.run_until_failed();
        REQUIRE(owner.failure);
        CHECK(owner.tls);
        CHECK(owner.failure->kind == Kind::kEof);
    }
}

TEST_CASE("outbound connection: a TLS handshake failure is typed") {
    TestLoop test_loop;
    uv_loop_t& loop = test_loop.loop;
    auto cctx = client_ctx();
    {
        // The server says 220 to STARTTLS and then speaks plaintext instead of a ServerHello.
        Peer peer(&loop);
        peer.on_plain = [](Peer& p) {
            if (p.plain == "STARTTLS\r\n") p.send("220 go ahead\r\n");
            if (p.raw.size() > std::string("STARTTLS\r\n").size() && !p.plain.empty()) {
                p.plain.clear();
                p.send("250 this is not TLS at all, but a long enough line of plaintext\r\n");
            }
        };
        Owner owner(&loop);
        owner.starttls_when_connected(*cctx);
        owner.connect(peer.port);
        owner.run_until_failed();
        REQUIRE(owner.failure);
        CHECK(owner.failure->kind == Kind::kTlsHandshake);
        CHECK_FALSE(owner.failure->detail.empty());
        CHECK_FALSE(owner.tls);
        // Nothing the server sent in plaintext after the switch reached the owner.
        CHECK(owner.data == "220 go ahead\r\n");
    }
}

TEST_CASE("outbound connection: after the peer's close_notify nothing goes out in cleartext") {
    TestLoop test_loop;
    uv_loop_t& loop = test_loop.loop;
    auto cctx = client_ctx();
    auto sctx = test::test_server_context();
    {
        // The server answers EHLO inside TLS and ends the TLS session in the same flight. The
        // owner answers that reply with MAIL FROM: it must not go out, encrypted or not.
        Peer peer(&loop);
        peer.tls_ctx = sctx;
        size_t raw_after_ehlo = 0;
        peer.on_plain = [&](Peer& p) {
            if (p.tls && p.plain.find("EHLO inside\r\n") != std::string::npos && !raw_after_ehlo) {
                raw_after_ehlo = p.raw.size();
                p.tls->write_plaintext("250 ok\r\n");
                p.tls->shutdown();  // close_notify right behind the reply
                p.flush();
            }
        };
        Owner owner(&loop);
        bool refused = false;
        owner.starttls_when_connected(*cctx);
        owner.on_tls = [](Owner& o) { CHECK(o.write("EHLO inside\r\n")); };
        auto upgrade = owner.on_data;
        owner.on_data = [&](Owner& o) {
            upgrade(o);
            if (o.data == "220 go ahead\r\n250 ok\r\n")
                refused = !o.write("MAIL FROM:<secret@example.test>\r\n");
        };
        owner.connect(peer.port);
        owner.run_until_failed();
        REQUIRE(owner.failure);
        CHECK(owner.failure->kind == Kind::kTlsEnded);
        CHECK(owner.failure->detail == "TLS session closed by the peer");
        CHECK(owner.failures == 1);
        CHECK(refused);
        CHECK_FALSE(owner.write("RSET\r\n"));
        // Let whatever the client sent arrive, until it closed the connection.
        while (!peer.eof)
            uv_run(&loop, UV_RUN_ONCE);
        CHECK(peer.raw.find("secret") == std::string::npos);
        CHECK(peer.raw.find("RSET") == std::string::npos);
        CHECK(peer.plain.find("secret") == std::string::npos);
    }
}

TEST_CASE("outbound connection: close() is silent and graceful") {
    TestLoop test_loop;
    uv_loop_t& loop = test_loop.loop;
    {
        Peer peer(&loop);
        Owner owner(&loop);
        owner.on_connected = [](Owner& o) {
            CHECK(o.write("QUIT\r\n"));
            o.conn->close();
        };
        owner.connect(peer.port);
        owner.conn->set_deadline(uv_now(&loop) + 5);
        while (!peer.eof)
            uv_run(&loop, UV_RUN_ONCE);
        CHECK(peer.plain == "QUIT\r\n");  // queued bytes flushed before the close
        CHECK_FALSE(owner.failure);       // neither the EOF nor the deadline is reported
        CHECK(owner.conn->ended());
    }
}
