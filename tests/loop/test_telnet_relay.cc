// TelnetRelay on a real loop against a scripted peer on 127.0.0.1 (same loop): lines both
// ways, refused connect, the line/size/idle bounds, and a clean uv_loop_close().
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "daemon/delivery/telnet_relay.h"
#include "daemon/loop/tcp_connect.h"
#include "tests/support/loopback_listener.h"

using namespace esad;

namespace {

// Listens on 127.0.0.1:0; the accepted connection is handed to `on_accept`.
struct Peer {
    uv_loop_t* loop;
    loop::HandlePtr<loop::Tcp> listener;
    loop::HandlePtr<loop::Tcp> conn;
    uint16_t port = 0;
    std::string received;

    Peer(uv_loop_t* l, std::function<void(Peer&)> on_accept) : loop(l) {
        listener = test::listen_loopback(loop, &port, [this, on_accept](int status) {
            if (status != 0) return;
            conn = loop::Tcp::create(loop);
            uv_accept(listener->stream(), conn->stream());
            on_accept(*this);
        });
    }
};

struct Events {
    std::vector<std::string> log;
    std::string closed;
    delivery::TelnetRelay::Callbacks callbacks() {
        delivery::TelnetRelay::Callbacks cb;
        cb.on_trying = [this](const std::string& ip) { log.push_back("trying " + ip); };
        cb.on_connect_failed = [this](const std::string& ip, const std::string& e) {
            log.push_back("failed " + ip + ": " + e);
        };
        cb.on_connected = [this](const std::string& ip, const std::string& local) {
            log.push_back("connected " + ip + " from " + local);
        };
        cb.on_line = [this](std::string_view line) { log.push_back("line " + std::string(line)); };
        cb.on_closed = [this](const std::string& reason) { closed = reason; };
        return cb;
    }
};

}  // namespace

TEST_CASE("telnet relay: banner, a line sent with CRLF, the peer's close") {
    uv_loop_t loop;
    uv_loop_init(&loop);
    Events ev;
    {
        std::shared_ptr<delivery::TelnetRelay> relay;
        Peer peer(&loop, [](Peer& p) {
            p.conn->write("220 scripted ESMTP\r\n");
            p.conn->read_start([&p](const char* data, ssize_t n) {
                if (n < 0) return;
                p.received.append(data, static_cast<size_t>(n));
                if (p.received.find("\r\n") != std::string::npos) {
                    p.conn->write("221 bye\r\npartial");
                    p.conn->close_after_writes();
                    p.conn.release();
                    p.listener.reset();
                }
            });
        });
        auto cb = ev.callbacks();
        cb.on_line = [&](std::string_view line) {
            ev.log.push_back("line " + std::string(line));
            std::string err;
            if (line.rfind("220", 0) == 0) CHECK(relay->send_line("QUIT", &err));
        };
        relay = std::make_shared<delivery::TelnetRelay>(
            &loop, std::vector<std::string>{"127.0.0.1"}, peer.port, "127.0.0.1",
            delivery::TelnetLimits{}, cb);
        relay->start();
        uv_run(&loop, UV_RUN_DEFAULT);
        CHECK(peer.received == "QUIT\r\n");
        std::string err;
        CHECK_FALSE(relay->send_line("late", &err));
        CHECK(err == "not connected");
    }
    REQUIRE(ev.log.size() == 5);
    CHECK(ev.log[0] == "trying 127.0.0.1");
    CHECK(ev.log[1] == "connected 127.0.0.1 from 127.0.0.1");
    CHECK(ev.log[2] == "line 220 scripted ESMTP");
    CHECK(ev.log[3] == "line 221 bye");
    CHECK(ev.log[4] == "line partial");  // the unterminated rest, at the close
    CHECK(ev.closed == "Connection closed by foreign host.");
    CHECK(loop::drain_and_close(&loop) == 0);
}

TEST_CASE("telnet relay: every address refused, then one clear reason") {
    uv_loop_t loop;
    uv_loop_init(&loop);
    Events ev;
    uint16_t port;
    {
        Peer probe(&loop, [](Peer&) {});
        port = probe.port;
    }  // closed: nothing listens on `port` any more
    uv_run(&loop, UV_RUN_DEFAULT);
    {
        auto relay = std::make_shared<delivery::TelnetRelay>(
            &loop, std::vector<std::string>{"127.0.0.1", "not-an-ip"}, port, "",
            delivery::TelnetLimits{}, ev.callbacks());
        relay->start();
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    REQUIRE(ev.log.size() == 4);
    CHECK(ev.log[1] == "failed 127.0.0.1: Connection refused");
    CHECK(ev.log[3] == "failed not-an-ip: Bad address not-an-ip");
    CHECK(ev.closed == "Unable to connect to remote host: Bad address not-an-ip");
    CHECK(loop::drain_and_close(&loop) == 0);
}

TEST_CASE("telnet relay: long lines are cut, and size and idle limits close the session") {
    uv_loop_t loop;
    uv_loop_init(&loop);
    SECTION("line cut and size limit") {
        Events ev;
        {
            Peer peer(&loop, [](Peer& p) {
                p.conn->write(std::string(25, 'x') + "\r\n" + std::string(100, 'y'));
            });
            delivery::TelnetLimits limits;
            limits.max_line = 10;
            limits.max_received = 60;
            auto relay = std::make_shared<delivery::TelnetRelay>(
                &loop, std::vector<std::string>{"127.0.0.1"}, peer.port, "", limits,
                ev.callbacks());
            relay->start();
            while (ev.closed.empty())
                uv_run(&loop, UV_RUN_ONCE);
        }
        CHECK(ev.closed == "Connection closed: more than 60 octets received");
        CHECK(ev.log[2] == "line xxxxxxxxxx");
        CHECK(ev.log[4] == "line xxxxx");
    }
    SECTION("idle") {
        Events ev;
        {
            Peer peer(&loop, [](Peer&) {});
            delivery::TelnetLimits limits;
            limits.idle_ms = 50;
            auto relay = std::make_shared<delivery::TelnetRelay>(
                &loop, std::vector<std::string>{"127.0.0.1"}, peer.port, "", limits,
                ev.callbacks());
            relay->start();
            while (ev.closed.empty())
                uv_run(&loop, UV_RUN_ONCE);
        }
        CHECK(ev.closed == "Connection closed: idle for 0 s");
    }
    CHECK(loop::drain_and_close(&loop) == 0);
}
