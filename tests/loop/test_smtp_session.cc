// SmtpSession on a real loop against a scripted SMTP server on 127.0.0.1 (same loop): the
// server closes at each stage (mid-content included), resets the connection under a pending
// write, TLS breaks at each stage (handshake, before the EHLO inside TLS, mid-content), and
// the source address cannot be bound. The report the session gives its owner must say what
// happened: outcome, host reached or not, MAIL sent or not, possible duplicate. Every failure must
// reach the owner at once: the stage timeouts are set to ten minutes, so an outcome that arrives
// within the test's bound came from the failure itself, not from a timer.
#include <sys/socket.h>
#include <catch2/catch.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "daemon/delivery/smtp_session.h"
#include "daemon/loop/tcp_connect.h"
#include "tests/support/loopback_listener.h"
#include "tests/support/scripted_peer.h"

using namespace esad;

namespace {

constexpr smtp::Millis kLong{10 * 60 * 1000};
constexpr uint64_t kGuardMs = 60 * 1000;  // generous: the outcome is expected at once

enum class Stage {
    kGreeting,
    kEhlo,
    kStartTls,
    kTlsHandshake,
    kMail,
    kRcpt,
    kData,
    kContent,
    kDot,
    kNone
};

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
        case Stage::kContent:
            return "mid-content";
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
            if (at == Stage::kContent) return stop();  // at the first line of content
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

// `body_lines` lines of 64 octets after the header: 0 for a small message; enough for the
// content to outlast the socket buffers when the server must see it mid-way.
smtp::Transaction transaction(uint64_t mid, size_t body_lines = 0) {
    smtp::Transaction tx;
    tx.mid = mid;
    tx.sender = "sender@client.test";
    tx.recipients.push_back({0, "rcpt@example.test"});
    std::string content = "Subject: t\r\n\r\nhello\r\n";
    for (size_t i = 0; i < body_lines; ++i)
        content += std::string(62, 'c') + "\r\n";
    tx.content = std::make_shared<const std::string>(std::move(content));
    return tx;
}

// Big enough (16 MiB) that the client is still sending when the server reacts mid-content.
constexpr size_t kBigBody = 16 * 1024 * 1024 / 64;

// Runs one session for one message to 127.0.0.1:port until it closed (or the guard fired).
// `on_idle` runs each time the connection is ready for another transaction.
Outcome run_session(uv_loop_t* loop, uint16_t port, smtp::TlsPolicy policy,
                    const std::string& source = "",
                    std::function<void(delivery::SmtpSession&)> on_idle = nullptr,
                    size_t body_lines = 0) {
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
    session->start(transaction(7, body_lines));
    while (!out.closed)
        uv_run(loop, UV_RUN_ONCE);
    guard.reset();
    session.reset();
    return out;
}

// The one report of a session that failed: soft for the message and its recipient, with
// `enhanced` as the reason, at once (not from the guard).
const smtp::TransactionReport& soft_report(const Outcome& out, const char* enhanced) {
    CHECK_FALSE(out.timed_out);
    REQUIRE(out.reports == 1);
    const smtp::TransactionReport& r = *out.report;
    CHECK(r.outcome == smtp::MessageOutcome::kSoft);
    REQUIRE(r.recipients.size() == 1);
    CHECK(r.recipients[0].outcome == smtp::RecipientOutcome::kSoft);
    CHECK(r.reply.enhanced == enhanced);
    return r;
}

}  // namespace

TEST_CASE("smtp session: the server closing at each stage is reported at once") {
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct Expect {
        Stage stage;
        const char* enhanced;
        bool reached;  // the host outcome: greeted (and TLS negotiated when required)
        bool started;  // MAIL FROM was sent
    };
    for (const Expect& e :
         {Expect{Stage::kGreeting, "4.4.2", false, false},
          Expect{Stage::kEhlo, "4.4.2", true, false},
          Expect{Stage::kStartTls, "4.4.2", true, false},
          Expect{Stage::kTlsHandshake, "4.7.5", false, false},
          Expect{Stage::kMail, "4.4.2", true, true}, Expect{Stage::kRcpt, "4.4.2", true, true},
          Expect{Stage::kData, "4.4.2", true, true}, Expect{Stage::kContent, "4.4.2", true, true},
          Expect{Stage::kDot, "4.4.2", true, true}}) {
        INFO("the server closes at " << name(e.stage));
        ScriptedServer server(&loop, e.stage);
        // Required TLS for the TLS stages: no second, plaintext attempt to script.
        const bool tls = e.stage == Stage::kStartTls || e.stage == Stage::kTlsHandshake;
        Outcome out = run_session(&loop, server.port,
                                  tls ? smtp::TlsPolicy::kRequired : smtp::TlsPolicy::kNone, "",
                                  nullptr, e.stage == Stage::kContent ? kBigBody : 0);
        const smtp::TransactionReport& r = soft_report(out, e.enhanced);
        CHECK((r.host == smtp::HostOutcome::kReached) == e.reached);
        CHECK(r.started == e.started);
        // After the final dot was sent, a lost reply means the message may have arrived.
        CHECK(r.possible_duplicate == (e.stage == Stage::kDot));
        CHECK(server.accepted == 1);
        CHECK(server.delivered == (e.stage == Stage::kDot ? 1 : 0));
    }
    CHECK(loop::drain_and_close(&loop) == 0);
}

namespace {

// Where TLS breaks: the server's answer to the ClientHello is plaintext; the server ends the
// TLS session (close_notify) right after the handshake, before the EHLO inside TLS is
// answered; the server sends a bad record while the content comes in.
enum class TlsBreak { kHandshake, kBeforeEhlo, kMidContent };

// An SMTP server with STARTTLS over a ScriptedPeer.
struct TlsSmtpServer {
    test::ScriptedPeer peer;
    TlsBreak at;
    size_t consumed = 0;       // of peer.plain
    size_t raw_at_switch = 0;  // raw octets received up to the STARTTLS line
    size_t content_seen = 0;
    bool in_data = false;
    bool handshake_started = false;
    bool broken = false;

    TlsSmtpServer(uv_loop_t* loop, TlsBreak where) : peer(loop), at(where) {
        if (at != TlsBreak::kHandshake) peer.tls_ctx = test::test_server_context();
        peer.on_accepted = [](test::ScriptedPeer& p) { p.send("220 scripted ESMTP\r\n"); };
        peer.on_plain = [this](test::ScriptedPeer& p) { on_plain(p); };
        peer.on_secure = [this](test::ScriptedPeer& p) {
            if (at != TlsBreak::kBeforeEhlo) return;
            broken = true;
            p.tls->shutdown();
            p.flush();
        };
    }

    void on_plain(test::ScriptedPeer& p) {
        if (handshake_started && !broken) {
            broken = true;  // the ClientHello: answered in plaintext
            p.conn->write("250 this is plaintext where a ServerHello belongs\r\n");
            return;
        }
        for (size_t eol; p.conn && (eol = p.plain.find("\r\n", consumed)) != std::string::npos;) {
            std::string line = p.plain.substr(consumed, eol - consumed);
            consumed = eol + 2;
            if (in_data) {
                content_seen += line.size() + 2;
                if (at == TlsBreak::kMidContent && !broken && content_seen > 64 * 1024) {
                    broken = true;
                    p.conn->write(std::string(64, '\x17'));  // not a TLS record
                }
                continue;
            }
            std::string verb = line.substr(0, 4);
            if (verb == "EHLO") {
                p.send(p.tls ? "250-scripted\r\n250 SIZE\r\n" : "250-scripted\r\n250 STARTTLS\r\n");
            } else if (verb == "STAR") {
                raw_at_switch = p.raw.size();
                if (at == TlsBreak::kHandshake) {
                    p.send("220 2.0.0 go ahead\r\n");
                    handshake_started = true;
                }  // else the peer answered it and runs the handshake
            } else if (verb == "MAIL" || verb == "RCPT") {
                p.send("250 ok\r\n");
            } else if (verb == "DATA") {
                in_data = true;
                p.send("354 go ahead\r\n");
            } else {
                p.send("502 5.5.2 what\r\n");
            }
        }
    }
};

}  // namespace

TEST_CASE("smtp session: TLS failing at each stage is reported at once, nothing in cleartext") {
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct Expect {
        TlsBreak at;
        const char* name;
        const char* enhanced;
        const char* detail;  // in the report's reply
        bool started;
    };
    for (const Expect& e :
         {Expect{TlsBreak::kHandshake, "handshake", "4.7.5", "TLS", false},
          Expect{TlsBreak::kBeforeEhlo, "after the handshake, before EHLO", "4.4.2",
                 "TLS session closed by the peer", false},
          Expect{TlsBreak::kMidContent, "mid-content", "4.4.2", "TLS session", true}}) {
        INFO("TLS breaks " << e.name);
        TlsSmtpServer server(&loop, e.at);
        Outcome out = run_session(&loop, server.peer.port, smtp::TlsPolicy::kRequired, "", nullptr,
                                  e.at == TlsBreak::kMidContent ? kBigBody : 0);
        CHECK(server.broken);
        const smtp::TransactionReport& r = soft_report(out, e.enhanced);
        REQUIRE_FALSE(r.reply.lines.empty());
        CHECK_THAT(r.reply.lines[0], Catch::Contains(e.detail));
        CHECK(r.started == e.started);
        CHECK_FALSE(r.possible_duplicate);
        // Let the rest of what the client sent arrive: nothing after STARTTLS was in the clear.
        while (server.peer.conn)
            uv_run(&loop, UV_RUN_ONCE);
        REQUIRE(server.raw_at_switch > 0);
        const std::string after = server.peer.raw.substr(server.raw_at_switch);
        for (const char* clear : {"EHLO", "MAIL", "RCPT", "DATA", "QUIT", "cccccccc"})
            CHECK(after.find(clear) == std::string::npos);
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
