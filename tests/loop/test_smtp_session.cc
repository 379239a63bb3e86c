// SmtpSession on a real loop against a scripted SMTP server on 127.0.0.1 (same loop): the
// server closes at each stage, resets the connection under a pending write, and the source
// address cannot be bound. Every failure must reach the owner at once: the stage timeouts
// are set to ten minutes, so an outcome that arrives within the test's bound came from the
// failure itself, not from a timer.
#include <sys/socket.h>
#include <catch2/catch.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "daemon/delivery/smtp_session.h"
#include "daemon/loop/tcp_connect.h"
#include "tests/support/loopback_listener.h"

using namespace esad;

namespace {

constexpr smtp::Millis kLong{10 * 60 * 1000};
constexpr uint64_t kGuardMs = 60 * 1000;  // generous: the outcome is expected at once

enum class Stage { kGreeting, kEhlo, kStartTls, kTlsHandshake, kMail, kRcpt, kData, kDot, kNone };

const char* name(Stage s) {
    switch (s) {
        case Stage::kGreeting:
            return "greeting";
        case Stage::kEhlo:
            return "EHLO";
        case Stage::kStartTls:
            return "STARTTLS";
        case Stage::kTlsHandshake:
            return "TLS handshake";
        case Stage::kMail:
            return "MAIL";
        case Stage::kRcpt:
            return "RCPT";
        case Stage::kData:
            return "DATA";
        case Stage::kDot:
            return "final dot";
        case Stage::kNone:
            return "nowhere";
    }
    return "?";
}

// A one-connection SMTP server. `at` is where it stops: it closes (or, with `reset`, sends
// its reply and resets the connection) instead of going on.
struct ScriptedServer {
    uv_loop_t* loop;
    Stage at;
    loop::HandlePtr<loop::Tcp> listener;
    loop::HandlePtr<loop::Tcp> conn;
    uint16_t port = 0;
    int accepted = 0;
    int delivered = 0;  // final dots received
    std::string received;
    bool in_data = false;

    ScriptedServer(uv_loop_t* l, Stage stage) : loop(l), at(stage) {
        listener = test::listen_loopback(loop, &port, [this](int status) { on_accept(status); });
    }

    void on_accept(int status) {
        if (status != 0) return;
        ++accepted;
        conn = loop::Tcp::create(loop);
        REQUIRE(uv_accept(listener->stream(), conn->stream()) == 0);
        if (at == Stage::kGreeting) return stop();
        conn->write("220 scripted ESMTP\r\n");
        conn->read_start([this](const char* data, ssize_t n) {
            if (n < 0) return stop();
            received.append(data, static_cast<size_t>(n));
            for (size_t eol; conn && (eol = received.find("\r\n")) != std::string::npos;) {
                std::string line = received.substr(0, eol);
                received.erase(0, eol + 2);
                on_line(line);
            }
        });
    }

    // `reply` is what the server says when it goes on; at its stage it stops instead.
    void step(Stage stage, const std::string& reply) {
        if (!conn) return;
        if (stage != at) {
            conn->write(reply);
            return;
        }
        stop();
    }

    // Resets the connection now (SO_LINGER 0: an RST, no FIN), closing the socket at once.
    void reset_now() {
        linger l{1, 0};
        setsockopt(conn->fileno(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
        conn.release()->close();
        listener.reset();
    }

    void on_line(const std::string& line) {
        if (in_data) {
            if (line == ".") {
                in_data = false;
                ++delivered;
                step(Stage::kDot, "250 2.0.0 queued\r\n");
            }
            return;
        }
        std::string verb = line.substr(0, 4);
        const bool tls = at == Stage::kStartTls || at == Stage::kTlsHandshake;
        if (verb == "EHLO")
            step(Stage::kEhlo, tls ? "250-scripted\r\n250 STARTTLS\r\n" : "250 scripted\r\n");
        else if (verb == "STAR") {
            step(Stage::kStartTls, "220 2.0.0 go ahead\r\n");
            step(Stage::kTlsHandshake, "");  // closes instead of sending a ServerHello
        } else if (verb == "MAIL")
            step(Stage::kMail, "250 2.1.0 ok\r\n");
        else if (verb == "RCPT")
            step(Stage::kRcpt, "250 2.1.5 ok\r\n");
        else if (verb == "DATA") {
            in_data = true;
            step(Stage::kData, "354 go ahead\r\n");
        } else if (verb == "QUIT") {
            conn->write("221 bye\r\n");
            stop();
        } else
            conn->write("502 5.5.2 what\r\n");
    }

    void stop() {
        if (!conn) return;
        loop::Tcp* raw = conn.release();
        raw->close_after_writes();
        listener.reset();
    }
};

struct Outcome {
    std::optional<smtp::TransactionReport> report;  // the last one
    int reports = 0;
    bool closed = false;
    bool timed_out = false;
};

smtp::Transaction transaction(uint64_t mid) {
    smtp::Transaction tx;
    tx.mid = mid;
    tx.sender = "sender@client.test";
    tx.recipients.push_back({0, "rcpt@example.test"});
    tx.content = std::make_shared<const std::string>("Subject: t\r\n\r\nhello\r\n");
    return tx;
}

// Runs one session for one message to 127.0.0.1:port until it closed (or the guard fired).
// `on_idle` runs each time the connection is ready for another transaction.
Outcome run_session(uv_loop_t* loop, uint16_t port, smtp::TlsPolicy policy,
                    const std::string& source = "",
                    std::function<void(delivery::SmtpSession&)> on_idle = nullptr) {
    DaemonState state;
    auto mail_log = logs::MailLog::disabled();
    delivery::SessionEnv env;
    env.loop = loop;
    env.state = &state;
    env.mail_log = mail_log.get();
    std::string error;
    env.tls_plain = tls::make_client_context({}, &error);
    env.tls_verify = env.tls_plain;
    REQUIRE(env.tls_plain);
    env.helo_name = "client.test";
    env.source_address = source;
    env.timeouts = {kLong, kLong, kLong, kLong, kLong, kLong,
                    kLong, kLong, kLong, kLong, kLong, kLong};

    Outcome out;
    delivery::SmtpSession::Callbacks cb;
    cb.on_report = [&](delivery::SmtpSession&, const smtp::TransactionReport& r) {
        out.report = r;
        ++out.reports;
    };
    cb.on_idle = [&](delivery::SmtpSession& s) {
        if (on_idle)
            on_idle(s);
        else
            s.quit();
    };
    cb.on_closed = [&](delivery::SmtpSession&) { out.closed = true; };
    auto session = std::make_shared<delivery::SmtpSession>(
        env, "example.test", std::vector<delivery::Candidate>{{"127.0.0.1", port, "127.0.0.1"}},
        policy, cb);
    auto guard = loop::Timer::create(loop, [&] {
        out.timed_out = true;
        session->abort();
    });
    guard->start(kGuardMs);
    session->start(transaction(7));
    while (!out.closed)
        uv_run(loop, UV_RUN_ONCE);
    guard.reset();
    session.reset();
    return out;
}

}  // namespace

TEST_CASE("smtp session: the server closing at each stage is reported at once") {
    uv_loop_t loop;
    uv_loop_init(&loop);
    for (Stage stage : {Stage::kGreeting, Stage::kEhlo, Stage::kStartTls, Stage::kTlsHandshake,
                        Stage::kMail, Stage::kRcpt, Stage::kData, Stage::kDot}) {
        INFO("the server closes at " << name(stage));
        ScriptedServer server(&loop, stage);
        // Required TLS for the TLS stages: no second, plaintext attempt to script.
        const bool tls = stage == Stage::kStartTls || stage == Stage::kTlsHandshake;
        Outcome out = run_session(&loop, server.port,
                                  tls ? smtp::TlsPolicy::kRequired : smtp::TlsPolicy::kNone);
        CHECK_FALSE(out.timed_out);
        REQUIRE(out.report);
        CHECK(out.report->outcome == smtp::MessageOutcome::kSoft);
        REQUIRE(out.report->recipients.size() == 1);
        CHECK(out.report->recipients[0].outcome == smtp::RecipientOutcome::kSoft);
        // After the final dot was sent, a lost reply means the message may have arrived.
        CHECK(out.report->possible_duplicate == (stage == Stage::kDot));
        CHECK(server.accepted == 1);
    }
    CHECK(loop::drain_and_close(&loop) == 0);
}

TEST_CASE("smtp session: a write failing under a reset reaches the session at once") {
    // The first message is delivered and the connection waits for the next. The server resets
    // it; the next transaction starts from a timer, before the loop polls the socket again, so
    // the first to see the reset is the write of MAIL FROM. Its failure is the only news.
    uv_loop_t loop;
    uv_loop_init(&loop);
    {
        ScriptedServer server(&loop, Stage::kNone);
        loop::HandlePtr<loop::Timer> next;
        bool second = false;
        Outcome out = run_session(&loop, server.port, smtp::TlsPolicy::kNone, "",
                                  [&](delivery::SmtpSession& s) {
                                      if (second) return s.quit();
                                      second = true;
                                      server.reset_now();
                                      auto weak = s.weak_from_this();
                                      next = loop::Timer::create(&loop, [weak] {
                                          if (auto self = weak.lock())
                                              CHECK(self->submit(transaction(8)));
                                      });
                                      next->start(0);
                                  });
        next.reset();
        CHECK_FALSE(out.timed_out);
        REQUIRE(out.reports == 2);
        CHECK(out.report->mid == 8);
        CHECK(out.report->outcome == smtp::MessageOutcome::kSoft);
        CHECK(server.delivered == 1);
    }
    CHECK(loop::drain_and_close(&loop) == 0);
}

TEST_CASE("smtp session: a source address that cannot be bound fails the attempt") {
    // 192.0.2.1 (TEST-NET-1) is on no interface here: bind() fails with EADDRNOTAVAIL. The
    // message must not leave from another address instead.
    uv_loop_t loop;
    uv_loop_init(&loop);
    {
        ScriptedServer server(&loop, Stage::kDot);
        Outcome out = run_session(&loop, server.port, smtp::TlsPolicy::kNone, "192.0.2.1");
        CHECK_FALSE(out.timed_out);
        REQUIRE(out.report);
        CHECK(out.report->outcome == smtp::MessageOutcome::kSoft);
        CHECK(out.report->host == smtp::HostOutcome::kNotReached);
        REQUIRE_FALSE(out.report->reply.lines.empty());
        CHECK_THAT(out.report->reply.lines[0],
                   Catch::Contains("cannot bind source address 192.0.2.1"));
        CHECK(server.accepted == 0);
    }
    CHECK(loop::drain_and_close(&loop) == 0);
}
