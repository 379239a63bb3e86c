// Scripted conversations for daemon/smtp/client_fsm.h: the test plays the server and the
// glue (fake clock, no sockets) and checks every command, report and deadline.
#include <catch2/catch.hpp>

#include <algorithm>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "daemon/smtp/client_fsm.h"
#include "daemon/smtp/dot_codec.h"
#include "daemon/smtp/mime_downgrade.h"

using namespace esad::smtp;
using std::chrono::minutes;
using std::chrono::seconds;

namespace {

template <class... Ts>
struct Overloaded : Ts... {
    using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

const std::string kContent = "Subject: t\r\n\r\nhello\r\n.dot line\r\nbye\r\n";

Transaction make_tx(std::uint64_t mid, std::vector<std::string> rcpts,
                    const std::string& content = kContent) {
    Transaction tx;
    tx.mid = mid;
    tx.sender = "s@a.test";
    std::uint32_t rid = 0;
    for (auto& r : rcpts)
        tx.recipients.push_back({rid++, std::move(r)});
    tx.content = std::make_shared<const std::string>(content);
    return tx;
}

ClientConfig make_config(TlsPolicy tls = TlsPolicy::kNone) {
    ClientConfig c;
    c.helo_name = "client.test";
    c.mx_name = "mx.b.test";
    c.tls = tls;
    return c;
}

const std::string kEhloPlain = "250-mx.b.test\r\n250-SIZE 1000000\r\n250 8BITMIME\r\n";
const std::string kEhloPipe = "250-mx.b.test\r\n250-PIPELINING\r\n250 SIZE 1000000\r\n";
const std::string kEhloTls = "250-mx.b.test\r\n250-STARTTLS\r\n250 SIZE 1000000\r\n";

// The fake glue: executes actions, remembers what was written.
struct Script {
    explicit Script(ClientConfig config = make_config()) : s(std::move(config)) {}

    ClientSession s;
    Millis now{0};
    std::string sent;                  // SendCommands bytes not yet checked
    std::string content;               // SendContent bytes
    std::vector<std::string> batches;  // every SendCommands, in order
    std::vector<TransactionReport> reports;
    std::vector<TransactionStarted> started;
    std::vector<TlsFailed> tls_failed;
    std::vector<StartTlsHandshake> handshakes;
    std::vector<NeedContent> needs;  // pulled content asked for
    std::vector<std::string> trace;
    std::vector<CommandSent> commands;
    std::vector<ReplyReceived> replies;
    int closes = 0;
    bool write_pending = false;  // a SendContent waits for on_content_sent
    bool last_chunk = false;
    int chunks = 0;

    void pump() {
        for (auto& a : s.take_actions()) {
            REQUIRE(closes == 0);  // nothing may follow CloseConnection
            std::visit(Overloaded{
                           [&](SendCommands& c) {
                               sent += c.bytes;
                               batches.push_back(c.bytes);
                           },
                           [&](SendContent& c) {
                               REQUIRE_FALSE(write_pending);
                               content += c.bytes;
                               write_pending = true;
                               last_chunk = c.last;
                               ++chunks;
                           },
                           [&](NeedContent& n) {
                               REQUIRE_FALSE(write_pending);
                               needs.push_back(n);
                           },
                           [&](StartTlsHandshake& h) { handshakes.push_back(h); },
                           [&](CloseConnection&) { ++closes; },
                           [&](TransactionStarted& t) { started.push_back(t); },
                           [&](TransactionReport& r) { reports.push_back(r); },
                           [&](TlsFailed& f) { tls_failed.push_back(f); },
                           [&](ClientTrace& t) {
                               REQUIRE(t.line.size() <= kMaxReportLine + 64);
                               trace.push_back(t.line);
                           },
                           [&](CommandSent& c) { commands.push_back(c); },
                           [&](ReplyReceived& r) { replies.push_back(r); },
                       },
                       a);
        }
    }
    std::string take_sent() {
        std::string out;
        out.swap(sent);
        return out;
    }
    void server(const std::string& bytes) {
        s.on_bytes(bytes, now);
        pump();
    }
    // Completes content writes until the final dot went out.
    void flush_content() {
        while (write_pending) {
            write_pending = false;
            s.on_content_sent(now);
            pump();
        }
    }
    void submit(Transaction tx) {
        REQUIRE(s.submit(std::move(tx), now));
        pump();
    }
    void connect() {
        s.start(now);
        s.on_connected(now);
        pump();
    }
    // Connect, greet, EHLO with `ehlo`; leaves the session after the EHLO reply.
    void greet(const std::string& ehlo = kEhloPlain) {
        connect();
        server("220 mx.b.test ESMTP\r\n");
        REQUIRE(take_sent() == "EHLO client.test\r\n");
        server(ehlo);
    }
    bool on_timeout() {
        const bool fired = s.on_timeout(now);
        pump();
        return fired;
    }
    bool traced(const std::string& needle) const {
        for (const auto& t : trace) {
            if (t.find(needle) != std::string::npos) return true;
        }
        return false;
    }
};

const RecipientResult& rcpt(const TransactionReport& r, std::size_t i) {
    REQUIRE(i < r.recipients.size());
    return r.recipients[i];
}

}  // namespace

TEST_CASE("happy path without PIPELINING", "[client_fsm]") {
    Script t;
    t.submit(make_tx(7, {"r1@b.test", "r2@b.test"}));
    t.connect();
    CHECK(t.take_sent().empty());
    CHECK(t.s.state() == ClientState::kBanner);
    t.server("220 mx.b.test ESMTP\r\n");
    CHECK(t.s.greeting_received());
    CHECK(t.take_sent() == "EHLO client.test\r\n");
    t.server(kEhloPlain);
    CHECK(t.take_sent() == "MAIL FROM:<s@a.test> SIZE=" + std::to_string(kContent.size()) + "\r\n");
    REQUIRE(t.started.size() == 1);
    CHECK(t.started[0].mid == 7);
    CHECK(t.started[0].rids == std::vector<std::uint32_t>{0, 1});
    t.server("250 2.1.0 ok\r\n");
    CHECK(t.take_sent() == "RCPT TO:<r1@b.test>\r\n");
    t.server("250 2.1.5 ok\r\n");
    CHECK(t.take_sent() == "RCPT TO:<r2@b.test>\r\n");
    t.server("250 2.1.5 ok\r\n");
    CHECK(t.take_sent() == "DATA\r\n");
    CHECK(t.content.empty());
    t.server("354 go ahead\r\n");
    CHECK(t.s.state() == ClientState::kDataBody);
    t.flush_content();
    CHECK(t.content == dot_encode(kContent));
    CHECK(t.s.state() == ClientState::kDataDone);
    CHECK(t.reports.empty());
    t.server("250 2.0.0 Ok: queued as X\r\n");
    REQUIRE(t.reports.size() == 1);
    const auto& r = t.reports[0];
    CHECK(r.mid == 7);
    CHECK(r.outcome == MessageOutcome::kDelivered);
    CHECK(r.started);
    CHECK_FALSE(r.possible_duplicate);
    CHECK(r.host == HostOutcome::kReached);
    CHECK_FALSE(r.tls);
    CHECK(r.reply == ReplySummary{250, "2.0.0", {"2.0.0 Ok: queued as X"}});
    CHECK(rcpt(r, 0).outcome == RecipientOutcome::kDelivered);
    CHECK(rcpt(r, 1).outcome == RecipientOutcome::kDelivered);
    CHECK(rcpt(r, 1).rid == 1);
    CHECK(t.s.state() == ClientState::kReady);
    CHECK(t.s.idle());
    CHECK_FALSE(t.s.next_deadline());
    t.s.quit(t.now);
    t.pump();
    CHECK(t.take_sent() == "QUIT\r\n");
    t.server("221 bye\r\n");
    CHECK(t.closes == 1);
    CHECK(t.s.closed());
    t.s.on_disconnected(t.now);
    t.pump();
    CHECK(t.closes == 1);
    CHECK(t.reports.size() == 1);
    CHECK(t.traced("state Banner -> Ehlo"));
    CHECK(t.traced("> MAIL FROM:<s@a.test>"));
    CHECK(t.traced("< 250 2.0.0 Ok: queued as X"));
}

TEST_CASE("happy path with PIPELINING: MAIL, RCPTs and DATA in one write", "[client_fsm]") {
    Script t;
    t.submit(make_tx(8, {"r1@b.test", "r2@b.test"}));
    t.greet(kEhloPipe);
    REQUIRE(t.batches.size() == 2);  // EHLO, then the transaction
    CHECK(t.batches[1] == "MAIL FROM:<s@a.test> SIZE=" + std::to_string(kContent.size()) +
                              "\r\nRCPT TO:<r1@b.test>\r\nRCPT TO:<r2@b.test>\r\nDATA\r\n");
    t.take_sent();
    // Replies split at awkward places.
    t.server("250 ok\r\n25");
    t.server("0 ok\r\n250 ok\r");
    CHECK(t.content.empty());
    t.server("\n354 go\r\n");
    CHECK(t.take_sent().empty());
    t.flush_content();
    CHECK(t.content == dot_encode(kContent));
    t.server("250 2.0.0 queued\r\n");
    REQUIRE(t.reports.size() == 1);
    CHECK(t.reports[0].outcome == MessageOutcome::kDelivered);
    CHECK(rcpt(t.reports[0], 0).outcome == RecipientOutcome::kDelivered);
    CHECK(rcpt(t.reports[0], 1).outcome == RecipientOutcome::kDelivered);
}

TEST_CASE("command and reply events: each reply names the command it answers", "[client_fsm]") {
    // smtpping shows the dialogue by stage from these events, not from the trace text.
    for (bool pipelining : {false, true}) {
        INFO("pipelining " << pipelining);
        Script t;
        t.submit(make_tx(3, {"a@b.test", "bad@b.test"}));
        t.greet(pipelining ? kEhloPipe : "250-mx.b.test\r\n250-one\r\n250 two\r\n");
        if (pipelining) {
            t.server("250 ok\r\n550 5.1.1 unknown\r\n250 ok\r\n354 go\r\n");
        } else {
            t.server("250 ok\r\n");
            t.server("550 5.1.1 unknown\r\n");
            t.server("250 ok\r\n");
            t.server("354 go\r\n");
        }
        t.flush_content();
        t.server("250 2.0.0 queued\r\n");
        std::vector<std::string> verbs;
        for (const auto& c : t.commands)
            verbs.push_back(c.verb);
        CHECK(verbs == std::vector<std::string>{"EHLO", "MAIL", "RCPT", "RCPT", "DATA", "."});
        CHECK(t.commands[2].text == "RCPT TO:<a@b.test>");
        CHECK(t.commands[5].text.find("final dot]") != std::string::npos);
        REQUIRE(t.replies.size() == 7);
        CHECK(t.replies[0].greeting);
        CHECK(t.replies[0].answers.empty());
        CHECK(t.replies[0].lines == std::vector<std::string>{"220 mx.b.test ESMTP"});
        std::vector<std::string> answers;
        for (size_t i = 1; i < t.replies.size(); ++i) {
            CHECK_FALSE(t.replies[i].greeting);
            answers.push_back(t.replies[i].answers);
        }
        CHECK(answers == std::vector<std::string>{"EHLO", "MAIL", "RCPT", "RCPT", "DATA", "."});
        CHECK(t.replies[3].code == 550);
        CHECK(t.replies[3].lines == std::vector<std::string>{"550 5.1.1 unknown"});
        if (!pipelining)
            CHECK(t.replies[1].lines ==
                  std::vector<std::string>{"250-mx.b.test", "250-one", "250 two"});
    }
}

TEST_CASE("reply events after STARTTLS: the 220 answers STARTTLS, EHLO follows inside TLS",
          "[client_fsm][tls]") {
    Script t(make_config(TlsPolicy::kRequired));
    t.greet("250-mx.b.test\r\n250 STARTTLS\r\n");
    t.server("220 2.0.0 go ahead\r\n");
    t.s.on_tls_established(t.now);
    t.pump();
    t.server("250 mx.b.test\r\n");
    REQUIRE(t.replies.size() == 4);
    CHECK(t.replies[2].answers == "STARTTLS");
    CHECK(t.replies[3].answers == "EHLO");
}

TEST_CASE("EHLO refused: HELO fallback without extensions", "[client_fsm]") {
    Script t(make_config(TlsPolicy::kPreferred));
    Transaction tx = make_tx(9, {"r@b.test"});
    tx.eight_bit = true;
    t.submit(std::move(tx));
    t.connect();
    t.server("220 old.b.test\r\n");
    CHECK(t.take_sent() == "EHLO client.test\r\n");
    t.server("500 5.5.2 what?\r\n");
    CHECK(t.s.state() == ClientState::kHelo);
    CHECK(t.take_sent() == "HELO client.test\r\n");
    t.server("250 old.b.test\r\n");
    // No STARTTLS (preferred, nothing offered), no SIZE, no BODY=, no pipelining.
    CHECK_FALSE(t.s.esmtp());
    CHECK(t.take_sent() == "MAIL FROM:<s@a.test>\r\n");
    t.server("250 ok\r\n");
    CHECK(t.take_sent() == "RCPT TO:<r@b.test>\r\n");
    t.server("250 ok\r\n");
    CHECK(t.take_sent() == "DATA\r\n");
    t.server("354 go\r\n");
    t.flush_content();
    t.server("250 ok\r\n");
    REQUIRE(t.reports.size() == 1);
    CHECK(t.reports[0].outcome == MessageOutcome::kDelivered);
    CHECK(t.tls_failed.empty());
}

TEST_CASE("HELO refused too: session over", "[client_fsm]") {
    Script t;
    t.submit(make_tx(1, {"r@b.test"}));
    t.connect();
    t.server("220 x\r\n");
    t.server("502 no\r\n");
    t.take_sent();
    t.server("550 go away\r\n");
    REQUIRE(t.reports.size() == 1);
    CHECK(t.reports[0].outcome == MessageOutcome::kSoft);
    CHECK(t.reports[0].scope == ReplyScope::kSession);
    CHECK(t.reports[0].reply.code == 550);
    CHECK(t.reports[0].host == HostOutcome::kReached);
    CHECK(t.take_sent() == "QUIT\r\n");
    CHECK(t.closes == 1);
}

TEST_CASE("STARTTLS under each policy", "[client_fsm][tls]") {
    SECTION("preferred, offered: handshake, EHLO again, deliver inside TLS") {
        Script t(make_config(TlsPolicy::kPreferred));
        t.submit(make_tx(1, {"r@b.test"}));
        t.greet(kEhloTls);
        CHECK(t.take_sent() == "STARTTLS\r\n");
        t.server("220 2.0.0 go ahead\r\n");
        CHECK(t.s.state() == ClientState::kTlsHandshake);
        REQUIRE(t.handshakes.size() == 1);
        CHECK(t.handshakes[0].sni == "mx.b.test");
        CHECK_FALSE(t.handshakes[0].verify);
        CHECK(t.take_sent().empty());
        t.s.on_tls_established(t.now, false);
        t.pump();
        CHECK(t.s.tls_active());
        CHECK(t.take_sent() == "EHLO client.test\r\n");
        t.server("250-mx.b.test\r\n250 SIZE 1000000\r\n");  // no STARTTLS offered again
        CHECK(t.take_sent().rfind("MAIL FROM:", 0) == 0);
        t.server("250 ok\r\n");
        t.server("250 ok\r\n");
        t.server("354 go\r\n");
        t.flush_content();
        t.server("250 ok\r\n");
        REQUIRE(t.reports.size() == 1);
        CHECK(t.reports[0].outcome == MessageOutcome::kDelivered);
        CHECK(t.reports[0].tls);
        CHECK_FALSE(t.reports[0].tls_verified);
        CHECK(t.handshakes.size() == 1);  // never twice
    }
    SECTION("preferred, server offers STARTTLS again after TLS: not used twice") {
        Script t(make_config(TlsPolicy::kPreferred));
        t.submit(make_tx(1, {"r@b.test"}));
        t.greet(kEhloTls);
        t.take_sent();
        t.server("220 go\r\n");
        t.s.on_tls_established(t.now, true);
        t.pump();
        t.take_sent();
        t.server(kEhloTls);
        CHECK(t.take_sent().rfind("MAIL FROM:", 0) == 0);
        CHECK(t.handshakes.size() == 1);
    }
    SECTION("preferred, not offered: plaintext") {
        Script t(make_config(TlsPolicy::kPreferred));
        t.submit(make_tx(1, {"r@b.test"}));
        t.greet(kEhloPlain);
        CHECK(t.take_sent().rfind("MAIL FROM:", 0) == 0);
        CHECK(t.handshakes.empty());
        CHECK(t.tls_failed.empty());
    }
    SECTION("preferred, 454: plaintext on the same session") {
        Script t(make_config(TlsPolicy::kPreferred));
        t.submit(make_tx(1, {"r@b.test"}));
        t.greet(kEhloTls);
        CHECK(t.take_sent() == "STARTTLS\r\n");
        t.server("454 4.7.0 TLS not available\r\n");
        REQUIRE(t.tls_failed.size() == 1);
        CHECK_FALSE(t.tls_failed[0].required);
        CHECK(t.tls_failed[0].reason.find("STARTTLS unexpected response: 454") !=
              std::string::npos);
        CHECK(t.take_sent().rfind("MAIL FROM:<s@a.test> SIZE=", 0) == 0);
        CHECK(t.handshakes.empty());
    }
    SECTION("none: STARTTLS offered but not used") {
        Script t(make_config(TlsPolicy::kNone));
        t.submit(make_tx(1, {"r@b.test"}));
        t.greet(kEhloTls);
        CHECK(t.take_sent().rfind("MAIL FROM:", 0) == 0);
    }
    SECTION("required, not offered: every recipient soft, QUIT, host not reached") {
        Script t(make_config(TlsPolicy::kRequired));
        t.submit(make_tx(1, {"r1@b.test", "r2@b.test"}));
        t.greet(kEhloPlain);
        CHECK(t.take_sent() == "QUIT\r\n");
        CHECK(t.closes == 1);
        REQUIRE(t.reports.size() == 1);
        const auto& r = t.reports[0];
        CHECK(r.outcome == MessageOutcome::kSoft);
        CHECK_FALSE(r.started);
        CHECK(r.host == HostOutcome::kNotReached);
        CHECK(r.reply.code == 0);
        CHECK(r.reply.enhanced == "4.7.4");
        REQUIRE(r.reply.lines.size() == 1);
        CHECK(r.reply.lines[0].find("TLS was required but could not be successfully negotiated") !=
              std::string::npos);
        CHECK(rcpt(r, 0).outcome == RecipientOutcome::kSoft);
        CHECK(rcpt(r, 1).outcome == RecipientOutcome::kSoft);
        REQUIRE(t.tls_failed.size() == 1);
        CHECK(t.tls_failed[0].required);
        CHECK(t.s.host_outcome() == HostOutcome::kNotReached);
    }
    SECTION("required, 454: soft 4.7.5 and close") {
        Script t(make_config(TlsPolicy::kRequired));
        t.submit(make_tx(1, {"r@b.test"}));
        t.greet(kEhloTls);
        CHECK(t.take_sent() == "STARTTLS\r\n");
        t.server("454 4.7.0 TLS not available\r\n");
        CHECK(t.take_sent() == "QUIT\r\n");
        CHECK(t.closes == 1);
        REQUIRE(t.reports.size() == 1);
        CHECK(t.reports[0].outcome == MessageOutcome::kSoft);
        CHECK(t.reports[0].reply.enhanced == "4.7.5");
        CHECK(t.reports[0].host == HostOutcome::kNotReached);
        CHECK(rcpt(t.reports[0], 0).outcome == RecipientOutcome::kSoft);
    }
    SECTION("required, HELO fallback cannot do TLS") {
        Script t(make_config(TlsPolicy::kRequired));
        t.submit(make_tx(1, {"r@b.test"}));
        t.greet("502 no EHLO\r\n");
        CHECK(t.take_sent() == "HELO client.test\r\n");
        t.server("250 hi\r\n");
        CHECK(t.take_sent() == "QUIT\r\n");
        REQUIRE(t.reports.size() == 1);
        CHECK(t.reports[0].reply.enhanced == "4.7.4");
    }
    SECTION("required, handshake fails: soft 4.7.5, no QUIT") {
        Script t(make_config(TlsPolicy::kRequired));
        t.submit(make_tx(1, {"r@b.test"}));
        t.greet(kEhloTls);
        t.take_sent();
        t.server("220 go\r\n");
        t.s.on_tls_failed("wrong version number", t.now);
        t.pump();
        CHECK(t.take_sent().empty());
        CHECK(t.closes == 1);
        REQUIRE(t.reports.size() == 1);
        CHECK(t.reports[0].host == HostOutcome::kNotReached);
        CHECK(t.reports[0].reply.enhanced == "4.7.5");
        CHECK(t.reports[0].reply.lines[0].find("wrong version number") != std::string::npos);
    }
    SECTION("preferred, handshake fails: soft, flagged for a plaintext retry") {
        Script t(make_config(TlsPolicy::kPreferred));
        t.submit(make_tx(1, {"r@b.test"}));
        t.greet(kEhloTls);
        t.take_sent();
        t.server("220 go\r\n");
        t.s.on_tls_failed("handshake failure", t.now);
        t.pump();
        CHECK(t.closes == 1);
        REQUIRE(t.reports.size() == 1);
        CHECK(t.reports[0].tls_handshake_failed);
        CHECK(t.reports[0].host == HostOutcome::kReached);
        CHECK(t.reports[0].outcome == MessageOutcome::kSoft);
        REQUIRE(t.tls_failed.size() == 1);
        CHECK_FALSE(t.tls_failed[0].required);
    }
    SECTION("required-verify: unverified certificate refused") {
        Script t(make_config(TlsPolicy::kRequiredVerify));
        t.submit(make_tx(1, {"r@b.test"}));
        t.greet(kEhloTls);
        t.take_sent();
        t.server("220 go\r\n");
        REQUIRE(t.handshakes.size() == 1);
        CHECK(t.handshakes[0].verify);
        CHECK(t.handshakes[0].enforce);
        t.s.on_tls_established(t.now, false);
        t.pump();
        CHECK(t.take_sent() == "QUIT\r\n");
        REQUIRE(t.reports.size() == 1);
        CHECK(t.reports[0].host == HostOutcome::kNotReached);
        CHECK(t.reports[0].reply.lines[0].find("certificate verification failed") !=
              std::string::npos);
    }
    SECTION("required-verify: verified certificate accepted") {
        Script t(make_config(TlsPolicy::kRequiredVerify));
        t.submit(make_tx(1, {"r@b.test"}));
        t.greet(kEhloTls);
        t.take_sent();
        t.server("220 go\r\n");
        t.s.on_tls_established(t.now, true);
        t.pump();
        CHECK(t.take_sent() == "EHLO client.test\r\n");
    }
    SECTION("preferred-verify: unverified certificate still used") {
        Script t(make_config(TlsPolicy::kPreferredVerify));
        t.submit(make_tx(1, {"r@b.test"}));
        t.greet(kEhloTls);
        t.take_sent();
        t.server("220 go\r\n");
        REQUIRE(t.handshakes.size() == 1);
        CHECK(t.handshakes[0].verify);
        // A failed check must not fail the handshake (that would end in plaintext).
        CHECK_FALSE(t.handshakes[0].enforce);
        t.s.on_tls_established(t.now, false);
        t.pump();
        CHECK(t.take_sent() == "EHLO client.test\r\n");
        t.server("250 mx\r\n");
        CHECK(t.take_sent().rfind("MAIL FROM:", 0) == 0);
        t.server("250 ok\r\n");
        t.server("250 ok\r\n");
        t.server("354 go\r\n");
        t.flush_content();
        t.server("250 ok\r\n");
        REQUIRE(t.reports.size() == 1);
        CHECK(t.reports[0].tls);
        CHECK_FALSE(t.reports[0].tls_verified);
    }
}

TEST_CASE("plaintext injected after the STARTTLS 220 is discarded", "[client_fsm][tls]") {
    Script t(make_config(TlsPolicy::kPreferred));
    t.submit(make_tx(1, {"r@b.test"}));
    t.greet(kEhloTls);
    CHECK(t.take_sent() == "STARTTLS\r\n");
    // CVE-2021-38371 / TLS-05: one segment carries the 220 and a forged EHLO reply.
    t.server("220 2.0.0 go ahead\r\n250-injected\r\n250 PIPELINING\r\n");
    CHECK(t.traced("discarded"));
    // More plaintext before the handshake completes is dropped too.
    t.server("250 more injected\r\n");
    CHECK(t.take_sent().empty());
    t.s.on_tls_established(t.now, false);
    t.pump();
    CHECK(t.take_sent() == "EHLO client.test\r\n");
    // The real post-TLS EHLO reply has no PIPELINING: MAIL must go alone.
    t.server("250-mx.b.test\r\n250 8BITMIME\r\n");
    CHECK_FALSE(t.s.capabilities().pipelining);
    CHECK(t.take_sent() == "MAIL FROM:<s@a.test>\r\n");
}

TEST_CASE("a partial reply before the STARTTLS boundary is forgotten", "[client_fsm][tls]") {
    Script t(make_config(TlsPolicy::kPreferred));
    t.submit(make_tx(1, {"r@b.test"}));
    t.greet(kEhloTls);
    t.take_sent();
    t.server("220 go\r\n250-half");
    t.s.on_tls_established(t.now, false);
    t.pump();
    t.take_sent();
    t.server("250 mx\r\n");  // parsed fresh, not as the continuation of "250-half"
    CHECK(t.take_sent().rfind("MAIL FROM:", 0) == 0);
}

TEST_CASE("one of three RCPTs rejected", "[client_fsm]") {
    for (bool pipelining : {false, true}) {
        INFO("pipelining " << pipelining);
        Script t;
        t.submit(make_tx(3, {"a@b.test", "bad@b.test", "c@b.test"}));
        t.greet(pipelining ? kEhloPipe : kEhloPlain);
        if (pipelining) {
            t.server(
                "250 ok\r\n250 ok\r\n550 5.1.1 <bad@b.test>: user unknown\r\n250 ok\r\n354 go\r\n");
        } else {
            t.server("250 ok\r\n");
            t.server("250 ok\r\n");
            t.server("550 5.1.1 <bad@b.test>: user unknown\r\n");
            t.server("250 ok\r\n");
            CHECK(t.take_sent().find("DATA\r\n") != std::string::npos);
            t.server("354 go\r\n");
        }
        t.flush_content();
        t.server("250 2.0.0 queued\r\n");
        REQUIRE(t.reports.size() == 1);
        const auto& r = t.reports[0];
        CHECK(r.outcome == MessageOutcome::kDelivered);
        CHECK(rcpt(r, 0).outcome == RecipientOutcome::kDelivered);
        CHECK(rcpt(r, 1).outcome == RecipientOutcome::kHard);
        CHECK(rcpt(r, 1).reply == ReplySummary{550, "5.1.1", {"5.1.1 <bad@b.test>: user unknown"}});
        CHECK(rcpt(r, 2).outcome == RecipientOutcome::kDelivered);
        CHECK(rcpt(r, 2).reply.code == 250);
        CHECK(t.s.state() == ClientState::kReady);
    }
}

TEST_CASE("all RCPTs rejected: no DATA, RSET", "[client_fsm]") {
    SECTION("without pipelining") {
        Script t;
        t.submit(make_tx(4, {"a@b.test", "c@b.test"}));
        t.greet();
        t.take_sent();
        t.server("250 ok\r\n");
        t.server("550 5.1.1 no\r\n");
        t.server("450 4.2.1 later\r\n");
        CHECK(t.take_sent() == "RCPT TO:<a@b.test>\r\nRCPT TO:<c@b.test>\r\nRSET\r\n");
        CHECK(t.content.empty());
        REQUIRE(t.reports.size() == 1);
        CHECK(t.reports[0].outcome == MessageOutcome::kNoRecipients);
        CHECK(rcpt(t.reports[0], 0).outcome == RecipientOutcome::kHard);
        CHECK(rcpt(t.reports[0], 1).outcome == RecipientOutcome::kSoft);
        CHECK(t.s.state() == ClientState::kRset);
        t.server("250 ok\r\n");
        CHECK(t.s.state() == ClientState::kReady);
    }
    SECTION("with pipelining, DATA refused") {
        Script t;
        t.submit(make_tx(4, {"a@b.test", "c@b.test"}));
        t.greet(kEhloPipe);
        t.take_sent();
        t.server("250 ok\r\n550 no\r\n550 no\r\n554 5.5.1 no valid recipients\r\n");
        CHECK(t.take_sent() == "RSET\r\n");
        CHECK(t.content.empty());
        REQUIRE(t.reports.size() == 1);
        CHECK(t.reports[0].outcome == MessageOutcome::kNoRecipients);
        CHECK(rcpt(t.reports[0], 0).reply.code == 550);
    }
    SECTION("with pipelining, 354 anyway: just the dot, then RSET (RFC 2920)") {
        Script t;
        t.submit(make_tx(4, {"a@b.test"}));
        t.greet(kEhloPipe);
        t.take_sent();
        t.server("250 ok\r\n550 no\r\n354 go\r\n");
        CHECK(t.take_sent() == ".\r\n");
        CHECK(t.content.empty());
        REQUIRE(t.reports.size() == 1);
        CHECK(t.reports[0].outcome == MessageOutcome::kNoRecipients);
        t.server("554 no message\r\n");
        CHECK(t.take_sent() == "RSET\r\n");
        CHECK(t.reports.size() == 1);
        CHECK_FALSE(t.reports[0].possible_duplicate);
    }
}

TEST_CASE("MAIL refused", "[client_fsm]") {
    SECTION("5xx without pipelining: hard, RSET, next message") {
        Script t;
        t.submit(make_tx(5, {"a@b.test", "c@b.test"}));
        t.greet();
        t.take_sent();
        t.server("553 5.7.1 sender rejected\r\n");
        CHECK(t.take_sent() == "RSET\r\n");
        REQUIRE(t.reports.size() == 1);
        CHECK(t.reports[0].outcome == MessageOutcome::kHard);
        CHECK(rcpt(t.reports[0], 0).outcome == RecipientOutcome::kHard);
        CHECK(rcpt(t.reports[0], 1).reply.enhanced == "5.7.1");
        t.submit(make_tx(6, {"a@b.test"}));  // waits for the RSET reply
        CHECK(t.take_sent().empty());
        t.server("250 ok\r\n");
        CHECK(t.take_sent().rfind("MAIL FROM:", 0) == 0);
    }
    SECTION("4xx with pipelining: the RCPT and DATA replies are drained") {
        Script t;
        t.submit(make_tx(5, {"a@b.test", "c@b.test"}));
        t.greet(kEhloPipe);
        t.take_sent();
        t.server("451 4.3.0 try later\r\n503 need MAIL\r\n");
        REQUIRE(t.reports.size() == 1);
        CHECK(t.reports[0].outcome == MessageOutcome::kSoft);
        CHECK(rcpt(t.reports[0], 0).outcome == RecipientOutcome::kSoft);
        CHECK(t.take_sent().empty());
        t.server("503 need MAIL\r\n503 need RCPT\r\n");
        CHECK(t.take_sent() == "RSET\r\n");
        CHECK(t.reports.size() == 1);
    }
}

TEST_CASE("452 4.5.3 too many recipients: deferred, not failed", "[client_fsm]") {
    SECTION("pipelined") {
        Script t;
        t.submit(make_tx(10, {"a@b.test", "c@b.test", "d@b.test"}));
        t.greet(kEhloPipe);
        t.server(
            "250 ok\r\n250 ok\r\n452 4.5.3 Too many recipients\r\n452 4.5.3 Too many "
            "recipients\r\n354 go\r\n");
        t.flush_content();
        t.server("250 ok\r\n");
        REQUIRE(t.reports.size() == 1);
        const auto& r = t.reports[0];
        CHECK(r.outcome == MessageOutcome::kDelivered);
        CHECK(rcpt(r, 0).outcome == RecipientOutcome::kDelivered);
        CHECK(rcpt(r, 1).outcome == RecipientOutcome::kDeferred);
        CHECK(rcpt(r, 1).reply.enhanced == "4.5.3");
        CHECK(rcpt(r, 2).outcome == RecipientOutcome::kDeferred);
    }
    SECTION("not pipelined: later recipients are not tried") {
        Script t;
        t.submit(make_tx(10, {"a@b.test", "c@b.test", "d@b.test"}));
        t.greet();
        t.take_sent();
        t.server("250 ok\r\n");
        t.server("250 ok\r\n");
        t.server("452 4.5.3 Too many recipients\r\n");
        CHECK(t.take_sent() == "RCPT TO:<a@b.test>\r\nRCPT TO:<c@b.test>\r\nDATA\r\n");
        t.server("354 go\r\n");
        t.flush_content();
        t.server("250 ok\r\n");
        REQUIRE(t.reports.size() == 1);
        const auto& r = t.reports[0];
        CHECK(rcpt(r, 0).outcome == RecipientOutcome::kDelivered);
        CHECK(rcpt(r, 1).outcome == RecipientOutcome::kDeferred);
        CHECK(rcpt(r, 2).outcome == RecipientOutcome::kDeferred);
        CHECK(rcpt(r, 2).reply.code == 0);
        CHECK(rcpt(r, 2).reply.lines[0].find("not attempted") != std::string::npos);
    }
    SECTION("the first RCPT already too many: no DATA") {
        Script t;
        t.submit(make_tx(10, {"a@b.test", "c@b.test"}));
        t.greet();
        t.take_sent();
        t.server("250 ok\r\n");
        t.server("452 4.5.3 Too many recipients\r\n");
        CHECK(t.take_sent() == "RCPT TO:<a@b.test>\r\nRSET\r\n");
        REQUIRE(t.reports.size() == 1);
        CHECK(t.reports[0].outcome == MessageOutcome::kNoRecipients);
        CHECK(rcpt(t.reports[0], 0).outcome == RecipientOutcome::kDeferred);
        CHECK(rcpt(t.reports[0], 1).outcome == RecipientOutcome::kDeferred);
    }
}

TEST_CASE("greeting refused", "[client_fsm]") {
    SECTION("421: session transient, host not reached") {
        Script t;
        t.submit(make_tx(11, {"a@b.test"}));
        t.connect();
        t.server("421 4.3.2 mx.b.test too busy\r\n");
        CHECK(t.take_sent() == "QUIT\r\n");
        CHECK(t.closes == 1);
        REQUIRE(t.reports.size() == 1);
        const auto& r = t.reports[0];
        CHECK(r.outcome == MessageOutcome::kSoft);
        CHECK(r.scope == ReplyScope::kSession);
        CHECK(r.host == HostOutcome::kNotReached);
        CHECK_FALSE(r.started);
        CHECK(r.reply == ReplySummary{421, "4.3.2", {"4.3.2 mx.b.test too busy"}});
        CHECK(rcpt(r, 0).outcome == RecipientOutcome::kSoft);
        CHECK_FALSE(t.s.greeting_received());
    }
    SECTION("554: site, host not reached") {
        Script t;
        t.submit(make_tx(12, {"a@b.test"}));
        t.connect();
        t.server("554 5.7.1 no mail from you\r\n");
        CHECK(t.take_sent() == "QUIT\r\n");
        REQUIRE(t.reports.size() == 1);
        CHECK(t.reports[0].scope == ReplyScope::kSite);
        CHECK(t.reports[0].host == HostOutcome::kNotReached);
        CHECK(rcpt(t.reports[0], 0).outcome == RecipientOutcome::kSoft);
        CHECK(t.closes == 1);
    }
    SECTION("connection refused") {
        Script t;
        t.submit(make_tx(13, {"a@b.test"}));
        t.s.start(t.now);
        t.s.on_disconnected(t.now, "Connection refused");
        t.pump();
        REQUIRE(t.reports.size() == 1);
        CHECK(t.reports[0].host == HostOutcome::kNotReached);
        CHECK(t.reports[0].reply.enhanced == "4.4.1");
        CHECK(t.reports[0].reply.lines[0] == "connection failed: Connection refused");
        CHECK(t.closes == 1);
    }
}

TEST_CASE("421 in the middle of RCPTs", "[client_fsm]") {
    Script t;
    t.submit(make_tx(14, {"a@b.test", "bad@b.test", "c@b.test"}));
    t.greet(kEhloPipe);
    t.server("250 ok\r\n250 ok\r\n550 5.1.1 unknown\r\n421 4.7.0 closing\r\n");
    CHECK(t.take_sent().find("QUIT\r\n") != std::string::npos);
    CHECK(t.closes == 1);
    REQUIRE(t.reports.size() == 1);
    const auto& r = t.reports[0];
    CHECK(r.outcome == MessageOutcome::kSoft);
    CHECK(r.scope == ReplyScope::kSession);
    CHECK(r.host == HostOutcome::kReached);
    CHECK(rcpt(r, 0).outcome == RecipientOutcome::kSoft);  // accepted but never delivered
    CHECK(rcpt(r, 0).reply.code == 421);
    CHECK(rcpt(r, 1).outcome == RecipientOutcome::kHard);  // its own answer stands
    CHECK(rcpt(r, 2).outcome == RecipientOutcome::kSoft);
    t.server("250 late\r\n");  // ignored after close
    CHECK(t.reports.size() == 1);
}

TEST_CASE("final dot answered", "[client_fsm]") {
    struct Case {
        std::string reply;
        MessageOutcome message;
        RecipientOutcome recipient;
    };
    for (const auto& c : std::vector<Case>{
             {"451 4.3.0 later\r\n", MessageOutcome::kSoft, RecipientOutcome::kSoft},
             {"554 5.7.1 spam\r\n", MessageOutcome::kHard, RecipientOutcome::kHard},
             {"250 ok\r\n", MessageOutcome::kDelivered, RecipientOutcome::kDelivered}}) {
        INFO(c.reply);
        Script t;
        t.submit(make_tx(15, {"a@b.test"}));
        t.greet(kEhloPipe);
        t.server("250 ok\r\n250 ok\r\n354 go\r\n");
        t.flush_content();
        t.take_sent();
        t.server(c.reply);
        REQUIRE(t.reports.size() == 1);
        CHECK(t.reports[0].outcome == c.message);
        CHECK(rcpt(t.reports[0], 0).outcome == c.recipient);
        CHECK_FALSE(t.reports[0].possible_duplicate);
        CHECK(t.s.state() == ClientState::kReady);  // no RSET after a final reply
        CHECK(t.take_sent().empty());
    }
}

TEST_CASE("connection lost", "[client_fsm]") {
    SECTION("after the final dot: possible duplicate") {
        Script t;
        t.submit(make_tx(16, {"a@b.test", "c@b.test"}));
        t.greet(kEhloPipe);
        t.server("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
        t.flush_content();
        t.s.on_disconnected(t.now, "EOF");
        t.pump();
        REQUIRE(t.reports.size() == 1);
        const auto& r = t.reports[0];
        CHECK(r.outcome == MessageOutcome::kSoft);
        CHECK(r.possible_duplicate);
        CHECK(rcpt(r, 0).outcome == RecipientOutcome::kSoft);
        CHECK(rcpt(r, 1).outcome == RecipientOutcome::kSoft);
        CHECK(r.reply.enhanced == "4.4.2");
        CHECK(t.closes == 1);
    }
    SECTION("final chunk handed to the socket, write not yet completed") {
        Script t;
        t.submit(make_tx(16, {"a@b.test"}));
        t.greet(kEhloPipe);
        t.server("250 ok\r\n250 ok\r\n354 go\r\n");
        REQUIRE(t.last_chunk);
        t.s.on_disconnected(t.now, "reset");
        t.pump();
        REQUIRE(t.reports.size() == 1);
        CHECK(t.reports[0].possible_duplicate);
    }
    SECTION("in the middle of the content: no duplicate doubt") {
        ClientConfig cfg = make_config();
        cfg.content_chunk = 8;
        Script t(cfg);
        t.submit(make_tx(16, {"a@b.test"}));
        t.greet(kEhloPipe);
        t.server("250 ok\r\n250 ok\r\n354 go\r\n");
        t.write_pending = false;
        t.s.on_content_sent(t.now);
        t.pump();
        REQUIRE_FALSE(t.last_chunk);
        t.s.on_disconnected(t.now, "reset");
        t.pump();
        REQUIRE(t.reports.size() == 1);
        CHECK_FALSE(t.reports[0].possible_duplicate);
        CHECK(t.reports[0].outcome == MessageOutcome::kSoft);
    }
    SECTION("garbage instead of the final reply: protocol error, possible duplicate") {
        Script t;
        t.submit(make_tx(16, {"a@b.test"}));
        t.greet(kEhloPipe);
        t.server("250 ok\r\n250 ok\r\n354 go\r\n");
        t.flush_content();
        t.take_sent();
        t.server("garbage\r\n250 ok\r\n");
        REQUIRE(t.reports.size() == 1);
        CHECK(t.reports[0].possible_duplicate);
        CHECK(t.reports[0].reply.enhanced == "4.5.0");
        CHECK(t.take_sent().empty());  // no QUIT into a confused stream
        CHECK(t.closes == 1);
    }
    SECTION("while idle: closed, nothing to report") {
        Script t;
        t.greet();
        CHECK(t.s.idle());
        t.s.on_disconnected(t.now);
        t.pump();
        CHECK(t.reports.empty());
        CHECK(t.closes == 1);
    }
}

TEST_CASE("content is sent in chunks with flow control", "[client_fsm]") {
    ClientConfig cfg = make_config();
    cfg.content_chunk = 5;
    cfg.timeouts.data_block = seconds(30);
    Script t(cfg);
    const std::string body = "a\n.b\r\nccc\rdddd.\r\n..e";
    t.submit(make_tx(17, {"a@b.test"}, body));
    t.greet(kEhloPipe);
    t.server("250 ok\r\n250 ok\r\n354 go\r\n");
    CHECK(t.chunks == 1);
    int rounds = 0;
    while (t.write_pending) {
        CHECK(t.s.state() == ClientState::kDataBody);
        t.now += seconds(20);  // each block within the data-block timeout
        CHECK_FALSE(t.on_timeout());
        CHECK(*t.s.next_deadline() == t.now + seconds(10));
        t.write_pending = false;
        t.s.on_content_sent(t.now);
        t.pump();
        ++rounds;
    }
    CHECK(t.chunks == static_cast<int>((body.size() + 4) / 5));
    CHECK(t.content == dot_encode(body));
    CHECK(t.s.state() == ClientState::kDataDone);
    t.server("250 ok\r\n");
    REQUIRE(t.reports.size() == 1);
    CHECK(t.reports[0].outcome == MessageOutcome::kDelivered);
}

TEST_CASE("per-stage deadlines", "[client_fsm][timeout]") {
    ClientConfig cfg = make_config();
    auto& to = cfg.timeouts;
    to.connect = seconds(11);
    to.greeting = seconds(12);
    to.helo = seconds(13);
    to.mail = seconds(14);
    to.rcpt = seconds(15);
    to.data_init = seconds(16);
    to.data_block = seconds(17);
    to.data_done = seconds(18);
    to.rset = seconds(19);
    to.quit = seconds(20);
    Script t(cfg);
    t.submit(make_tx(18, {"a@b.test"}));
    CHECK_FALSE(t.s.next_deadline());  // not started
    t.now = Millis(1000);
    t.s.start(t.now);
    CHECK(*t.s.next_deadline() == Millis(1000) + seconds(11));
    t.now += seconds(1);
    t.s.on_connected(t.now);
    CHECK(*t.s.next_deadline() == t.now + seconds(12));
    t.now += seconds(1);
    t.server("220 hi\r\n");
    CHECK(*t.s.next_deadline() == t.now + seconds(13));
    t.now += seconds(1);
    t.server(kEhloPlain);
    CHECK(t.s.state() == ClientState::kMailFrom);
    CHECK(*t.s.next_deadline() == t.now + seconds(14));
    t.now += seconds(1);
    t.server("250 ok\r\n");
    CHECK(*t.s.next_deadline() == t.now + seconds(15));
    t.now += seconds(1);
    t.server("250 ok\r\n");
    CHECK(t.s.state() == ClientState::kData);
    CHECK(*t.s.next_deadline() == t.now + seconds(16));
    t.now += seconds(1);
    t.server("354 go\r\n");
    CHECK(*t.s.next_deadline() == t.now + seconds(17));
    t.now += seconds(1);
    t.flush_content();
    CHECK(*t.s.next_deadline() == t.now + seconds(18));
    t.now += seconds(1);
    t.server("250 ok\r\n");
    CHECK_FALSE(t.s.next_deadline());  // Ready
    t.s.quit(t.now);
    t.pump();
    CHECK(*t.s.next_deadline() == t.now + seconds(20));
    CHECK(state_timeout(ClientState::kRset, to) == seconds(19));
    CHECK(state_timeout(ClientState::kStartTls, to) == to.starttls);
    CHECK(state_timeout(ClientState::kTlsHandshake, to) == to.tls_handshake);
    CHECK_FALSE(state_timeout(ClientState::kClosed, to));
    // Defaults are the RFC 5321 §4.5.3.2 minimums.
    const ClientTimeouts def;
    CHECK(def.greeting == minutes(5));
    CHECK(def.mail == minutes(5));
    CHECK(def.rcpt == minutes(5));
    CHECK(def.data_init == minutes(2));
    CHECK(def.data_block == minutes(3));
    CHECK(def.data_done == minutes(10));
}

TEST_CASE("drip-fed greeting does not extend the deadline", "[client_fsm][timeout]") {
    Script t;
    t.submit(make_tx(19, {"a@b.test"}));
    t.connect();
    const Millis deadline = *t.s.next_deadline();
    CHECK(deadline == minutes(5));
    for (char c : std::string("220 slow")) {
        t.now += seconds(20);
        t.server(std::string(1, c));
        CHECK(*t.s.next_deadline() == deadline);
        CHECK_FALSE(t.on_timeout());
    }
    t.now = deadline - Millis(1);
    CHECK_FALSE(t.on_timeout());
    t.now = deadline;
    CHECK(t.on_timeout());
    REQUIRE(t.reports.size() == 1);
    CHECK(t.reports[0].host == HostOutcome::kNotReached);
    CHECK(t.reports[0].reply.enhanced == "4.4.2");
    CHECK(t.reports[0].reply.code == 0);
    CHECK(t.reports[0].reply.lines[0] == "timeout waiting for the greeting");
    CHECK(t.take_sent().empty());
    CHECK(t.closes == 1);
    CHECK_FALSE(t.on_timeout());  // closed: no deadline
}

TEST_CASE("timeouts at each stage", "[client_fsm][timeout]") {
    SECTION("connect") {
        Script t;
        t.submit(make_tx(20, {"a@b.test"}));
        t.s.start(t.now);
        t.now += seconds(30);
        CHECK(t.on_timeout());
        REQUIRE(t.reports.size() == 1);
        CHECK(t.reports[0].reply.enhanced == "4.4.1");
        CHECK(t.reports[0].host == HostOutcome::kNotReached);
    }
    SECTION("RCPT reply dripped past its deadline") {
        Script t;
        t.submit(make_tx(20, {"a@b.test"}));
        t.greet();
        t.server("250 ok\r\n");
        const Millis deadline = *t.s.next_deadline();
        t.now += minutes(4);
        t.server("25");
        t.now += seconds(59);
        t.server("0");
        CHECK_FALSE(t.on_timeout());
        t.now = deadline;
        CHECK(t.on_timeout());
        REQUIRE(t.reports.size() == 1);
        CHECK(t.reports[0].outcome == MessageOutcome::kSoft);
        CHECK(t.reports[0].reply.lines[0] == "timeout waiting for the RCPT TO reply");
        CHECK_FALSE(t.reports[0].possible_duplicate);
        CHECK(t.reports[0].host == HostOutcome::kReached);
    }
    SECTION("DATA initiation: 2 minutes") {
        Script t;
        t.submit(make_tx(20, {"a@b.test"}));
        t.greet();
        t.server("250 ok\r\n");
        t.server("250 ok\r\n");
        t.now += minutes(2) - Millis(1);
        CHECK_FALSE(t.on_timeout());
        t.now += Millis(1);
        CHECK(t.on_timeout());
        REQUIRE(t.reports.size() == 1);
        CHECK(t.reports[0].reply.lines[0] == "timeout waiting for the DATA reply");
    }
    SECTION("data block: 3 minutes without write progress") {
        Script t;
        t.submit(make_tx(20, {"a@b.test"}));
        t.greet(kEhloPipe);
        t.server("250 ok\r\n250 ok\r\n354 go\r\n");
        t.now += minutes(3);
        CHECK(t.on_timeout());
        REQUIRE(t.reports.size() == 1);
        // The final chunk may have reached the server: a duplicate is possible.
        CHECK(t.reports[0].possible_duplicate);
    }
    SECTION("DATA termination: 10 minutes, possible duplicate") {
        Script t;
        t.submit(make_tx(20, {"a@b.test"}));
        t.greet(kEhloPipe);
        t.server("250 ok\r\n250 ok\r\n354 go\r\n");
        t.flush_content();
        t.now += minutes(9);
        t.server("250 2.0.0 q");  // half a reply
        CHECK_FALSE(t.on_timeout());
        t.now += minutes(1);
        CHECK(t.on_timeout());
        REQUIRE(t.reports.size() == 1);
        CHECK(t.reports[0].possible_duplicate);
        CHECK(t.reports[0].reply.lines[0] == "timeout waiting for the reply to the end of data");
    }
    SECTION("TLS handshake") {
        Script t(make_config(TlsPolicy::kPreferred));
        t.submit(make_tx(20, {"a@b.test"}));
        t.greet(kEhloTls);
        t.server("220 go\r\n");
        t.now += minutes(5);
        CHECK(t.on_timeout());
        REQUIRE(t.reports.size() == 1);
        CHECK(t.reports[0].tls_handshake_failed);
        CHECK(t.closes == 1);
    }
    SECTION("pipelined RCPT replies: deadline per reply") {
        ClientConfig cfg = make_config();
        cfg.timeouts.rcpt = seconds(10);
        Script t(cfg);
        t.submit(make_tx(20, {"a@b.test", "c@b.test", "d@b.test"}));
        t.greet(kEhloPipe);
        t.server("250 ok\r\n");
        for (int i = 0; i < 3; ++i) {
            t.now += seconds(9);
            CHECK_FALSE(t.on_timeout());
            t.server("250 ok\r\n");
        }
        CHECK(t.s.state() == ClientState::kData);
    }
}

TEST_CASE("two messages on one connection", "[client_fsm]") {
    Script t;
    t.submit(make_tx(21, {"a@b.test"}));
    CHECK_FALSE(t.s.submit(make_tx(22, {"c@b.test"}), t.now));  // 21 is already waiting
    t.greet(kEhloPipe);
    t.take_sent();
    CHECK(t.s.submit(make_tx(22, {"c@b.test"}), t.now));  // 21 in flight: one may wait
    CHECK_FALSE(t.s.submit(make_tx(23, {"d@b.test"}), t.now));
    t.pump();
    CHECK(t.take_sent().empty());
    t.server("250 ok\r\n250 ok\r\n354 go\r\n");
    t.flush_content();
    t.server("250 first\r\n");
    // No RSET after a normal end: the second MAIL follows directly.
    CHECK(t.take_sent() == "MAIL FROM:<s@a.test> SIZE=" + std::to_string(kContent.size()) +
                               "\r\nRCPT TO:<c@b.test>\r\nDATA\r\n");
    t.content.clear();
    t.server("250 ok\r\n250 ok\r\n354 go\r\n");
    t.flush_content();
    CHECK(t.content == dot_encode(kContent));
    t.server("250 second\r\n");
    REQUIRE(t.reports.size() == 2);
    CHECK(t.reports[0].mid == 21);
    CHECK(t.reports[1].mid == 22);
    CHECK(t.reports[1].reply.lines[0] == "second");
    CHECK(t.s.transactions_reported() == 2);
    CHECK(t.s.idle());
    // The third, now accepted, starts at once.
    t.submit(make_tx(23, {"d@b.test"}));
    CHECK(t.take_sent().rfind("MAIL FROM:", 0) == 0);
}

TEST_CASE("RSET only after an abnormal end, then the next message", "[client_fsm]") {
    Script t;
    t.submit(make_tx(24, {"a@b.test"}));
    t.greet();
    t.take_sent();
    t.server("250 ok\r\n");
    t.server("250 ok\r\n");
    t.server("451 4.3.0 no DATA now\r\n");
    CHECK(t.take_sent() == "RCPT TO:<a@b.test>\r\nDATA\r\nRSET\r\n");
    REQUIRE(t.reports.size() == 1);
    CHECK(t.reports[0].outcome == MessageOutcome::kSoft);
    t.submit(make_tx(25, {"a@b.test"}));
    t.server("250 reset\r\n");
    CHECK(t.take_sent().rfind("MAIL FROM:", 0) == 0);
    // RSET refused: the session ends, the waiting transaction is reported.
    Script u;
    u.submit(make_tx(26, {"a@b.test"}));
    u.greet();
    u.server("550 no\r\n");
    u.submit(make_tx(27, {"a@b.test"}));
    u.server("500 what RSET\r\n");
    REQUIRE(u.reports.size() == 2);
    CHECK(u.reports[1].mid == 27);
    CHECK_FALSE(u.reports[1].started);
    CHECK(u.reports[1].outcome == MessageOutcome::kSoft);
    CHECK(u.closes == 1);
}

TEST_CASE("refusals decided before MAIL", "[client_fsm]") {
    SECTION("message larger than the server's SIZE") {
        Script t;
        t.submit(make_tx(28, {"a@b.test"}, std::string(2000, 'x')));
        t.greet("250-mx\r\n250 SIZE 1000\r\n");
        CHECK(t.take_sent().empty());
        REQUIRE(t.reports.size() == 1);
        CHECK(t.reports[0].outcome == MessageOutcome::kHard);
        CHECK(t.reports[0].reply.enhanced == "5.3.4");
        CHECK_FALSE(t.reports[0].started);
        CHECK(rcpt(t.reports[0], 0).outcome == RecipientOutcome::kHard);
        CHECK(t.s.idle());
    }
    SECTION("SMTPUTF8 needed, not offered") {
        Script t;
        Transaction tx = make_tx(29, {"a@b.test"});
        tx.smtputf8 = true;
        t.submit(std::move(tx));
        t.greet();
        CHECK(t.take_sent().empty());
        REQUIRE(t.reports.size() == 1);
        CHECK(t.reports[0].reply.enhanced == "5.6.7");
    }
    SECTION("SMTPUTF8 and 8BITMIME declared when offered") {
        Script t;
        Transaction tx = make_tx(29, {"a@b.test"});
        tx.smtputf8 = true;
        tx.eight_bit = true;
        t.submit(std::move(tx));
        t.greet("250-mx\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n");
        CHECK(t.take_sent() == "MAIL FROM:<s@a.test> BODY=8BITMIME SMTPUTF8\r\n");
    }
    SECTION("8-bit content to a server without 8BITMIME is converted, never sent raw") {
        Script t;
        Transaction tx = make_tx(31, {"a@b.test"}, "Subject: t\r\n\r\ncaf\xc3\xa9\r\n");
        tx.eight_bit = true;
        t.submit(std::move(tx));
        t.greet("250-mx\r\n250 SIZE 1000000\r\n");
        const std::string mail = t.take_sent();
        CHECK(mail.find("BODY=8BITMIME") == std::string::npos);
        t.server("250 ok\r\n");
        t.take_sent();
        t.server("250 ok\r\n");
        CHECK(t.take_sent() == "DATA\r\n");
        t.server("354 go\r\n");
        t.flush_content();
        for (char c : t.content)
            CHECK(static_cast<unsigned char>(c) < 0x80);
        CHECK(t.content.find("caf=C3=A9") != std::string::npos);
        CHECK(t.content.find("Content-Transfer-Encoding: quoted-printable") != std::string::npos);
        // SIZE= announced the converted size.
        const std::size_t size = std::stoul(mail.substr(mail.find("SIZE=") + 5));
        CHECK(size > std::string("Subject: t\r\n\r\ncaf\xc3\xa9\r\n").size());
        CHECK(t.traced("converted to 7-bit"));
    }
    SECTION("undeclared 8-bit content (no BODY=8BITMIME at injection) is converted too") {
        Script t;
        t.submit(make_tx(32, {"a@b.test"}, "Subject: t\r\n\r\n\xe9t\xe9\r\n"));
        t.greet("250-mx\r\n250-PIPELINING\r\n250 SIZE 1000000\r\n");
        t.take_sent();
        t.server("250 ok\r\n250 ok\r\n354 go\r\n");
        t.flush_content();
        for (char c : t.content)
            CHECK(static_cast<unsigned char>(c) < 0x80);
    }
    SECTION("8-bit content that cannot be converted bounces 5.6.3 before MAIL") {
        Script t;
        Transaction tx = make_tx(33, {"a@b.test"}, "Subject: caf\xc3\xa9\r\n\r\nx\r\n");
        tx.eight_bit = true;
        t.submit(std::move(tx));
        t.greet("250-mx\r\n250 SIZE 1000000\r\n");
        CHECK(t.take_sent().empty());
        REQUIRE(t.reports.size() == 1);
        CHECK(t.reports[0].outcome == MessageOutcome::kHard);
        CHECK(t.reports[0].reply.enhanced == "5.6.3");
        CHECK(t.s.idle());
    }
    SECTION("8BITMIME offered: the content goes as it is") {
        Script t;
        Transaction tx = make_tx(34, {"a@b.test"}, "Subject: t\r\n\r\ncaf\xc3\xa9\r\n");
        tx.eight_bit = true;
        t.submit(std::move(tx));
        t.greet();
        CHECK(t.take_sent().find("BODY=8BITMIME") != std::string::npos);
        t.server("250 ok\r\n");
        t.server("250 ok\r\n");
        t.server("354 go\r\n");
        t.flush_content();
        CHECK(t.content == "Subject: t\r\n\r\ncaf\xc3\xa9\r\n.\r\n");
    }
    SECTION("addresses that could inject commands are never sent") {
        Script t;
        Transaction tx = make_tx(30, {"a@b.test", "x@b.test>\r\nRSET", "c@b.test"});
        t.submit(std::move(tx));
        t.greet();
        t.server("250 ok\r\n");
        t.server("250 ok\r\n");
        t.server("250 ok\r\n");
        const std::string sent = t.take_sent();
        CHECK(sent.find("RSET") == std::string::npos);
        CHECK(sent.find("RCPT TO:<c@b.test>") != std::string::npos);
        REQUIRE(t.started.size() == 1);
        CHECK(t.started[0].rids == std::vector<std::uint32_t>{0, 2});
        t.server("354 go\r\n");
        t.flush_content();
        t.server("250 ok\r\n");
        REQUIRE(t.reports.size() == 1);
        CHECK(rcpt(t.reports[0], 1).outcome == RecipientOutcome::kHard);
        CHECK(rcpt(t.reports[0], 1).reply.enhanced == "5.1.3");
        CHECK(rcpt(t.reports[0], 2).outcome == RecipientOutcome::kDelivered);

        Script u;
        Transaction bad = make_tx(31, {"a@b.test"});
        bad.sender = "s@a\nMAIL FROM:<x>";
        u.submit(std::move(bad));
        u.greet();
        CHECK(u.take_sent().empty());
        REQUIRE(u.reports.size() == 1);
        CHECK(u.reports[0].reply.enhanced == "5.1.7");
    }
    SECTION("null sender") {
        Script t;
        Transaction tx = make_tx(32, {"a@b.test"});
        tx.sender.clear();
        t.submit(std::move(tx));
        t.greet();
        CHECK(t.take_sent().rfind("MAIL FROM:<> SIZE=", 0) == 0);
    }
}

TEST_CASE("peer text in reports and traces is bounded", "[client_fsm]") {
    Script t;
    t.submit(make_tx(33, {"a@b.test"}));
    t.greet();
    t.server("250 ok\r\n");
    std::string big;
    for (int i = 0; i < 30; ++i)
        big += "550-5.1.1 " + std::string(2000, '\x01') + "\r\n";
    big += "550 5.1.1 end\r\n";
    t.server(big);
    REQUIRE(t.reports.size() == 1);
    const auto& reply = rcpt(t.reports[0], 0).reply;
    CHECK(reply.code == 550);
    CHECK(reply.lines.size() == kMaxReportLines);
    for (const auto& line : reply.lines) {
        CHECK(line.size() <= kMaxReportLine);
        for (char c : line)
            CHECK((c >= 0x20 && c < 0x7f));
    }
    CHECK(t.traced("(21 more lines)"));
}

TEST_CASE("malformed and unexpected replies", "[client_fsm]") {
    SECTION("reply code out of range at MAIL") {
        Script t;
        t.submit(make_tx(34, {"a@b.test"}));
        t.greet();
        t.take_sent();
        t.server("600 what\r\n");
        REQUIRE(t.reports.size() == 1);
        CHECK(t.reports[0].reply.enhanced == "4.5.0");
        CHECK(t.reports[0].outcome == MessageOutcome::kSoft);
        CHECK(t.take_sent().empty());
        CHECK(t.closes == 1);
    }
    SECTION("mismatched multi-line codes") {
        Script t;
        t.submit(make_tx(35, {"a@b.test"}));
        t.connect();
        t.server("220-hi\r\n554 no\r\n");
        REQUIRE(t.reports.size() == 1);
        CHECK(t.reports[0].reply.lines[0].find("inconsistent") != std::string::npos);
        CHECK(t.reports[0].host == HostOutcome::kNotReached);
    }
    SECTION("unsolicited reply while idle") {
        Script t;
        t.greet();
        t.server("250 surprise\r\n");
        CHECK(t.closes == 1);
        CHECK(t.reports.empty());
    }
    SECTION("421 while idle: server closing") {
        Script t;
        t.greet();
        t.server("421 4.4.2 idle timeout\r\n");
        CHECK(t.closes == 1);
        CHECK(t.s.submit(make_tx(36, {"a@b.test"}), t.now) == false);
    }
}

TEST_CASE("quit before the greeting closes at once", "[client_fsm]") {
    Script t;
    t.connect();
    t.s.quit(t.now);
    t.pump();
    CHECK(t.closes == 1);
    CHECK(t.take_sent().empty());
    CHECK(t.s.closed());
}

TEST_CASE("quit with a transaction in flight waits for it", "[client_fsm]") {
    Script t;
    t.submit(make_tx(37, {"a@b.test"}));
    t.connect();
    t.s.quit(t.now);
    t.pump();
    CHECK(t.closes == 0);
    t.server("220 hi\r\n");
    t.take_sent();
    t.server(kEhloPipe);
    t.take_sent();
    t.server("250 ok\r\n250 ok\r\n354 go\r\n");
    t.flush_content();
    t.server("250 ok\r\n");
    CHECK(t.take_sent() == "QUIT\r\n");
    t.s.on_disconnected(t.now);  // the server closes without 221
    t.pump();
    CHECK(t.closes == 1);
    REQUIRE(t.reports.size() == 1);
    CHECK(t.reports[0].outcome == MessageOutcome::kDelivered);
}

TEST_CASE("names", "[client_fsm]") {
    CHECK(to_string(ClientState::kDataDone) == "DataDone");
    CHECK(to_string(TlsPolicy::kRequiredVerify) == "required-verify");
    CHECK(parse_tls_policy("preferred-verify") == TlsPolicy::kPreferredVerify);
    CHECK_FALSE(parse_tls_policy("yes"));
    CHECK(to_string(RecipientOutcome::kDeferred) == "deferred");
    CHECK(to_string(MessageOutcome::kNoRecipients) == "no-recipients");
    CHECK(to_string(HostOutcome::kNotReached) == "not-reached");
}

// Fuzz finding (tests/fuzz/fuzz_client_fsm): a pipelining server answered the final dot
// before esad's write of the last chunk completed; that late completion was credited to the
// next transaction, which then sent its second chunk before its first was written.
TEST_CASE("a late write completion belongs to the transaction that issued it", "[client_fsm]") {
    ClientConfig cfg = make_config();
    cfg.content_chunk = 4;
    Script t(cfg);
    t.submit(make_tx(31, {"a@b.test"}, "one\r\n"));
    t.greet(kEhloPipe);
    t.take_sent();
    CHECK(t.s.submit(make_tx(32, {"c@b.test"}, "0123456789abcdef\r\n"), t.now));
    t.server("250 ok\r\n250 ok\r\n354 go\r\n");
    // First transaction: complete writes until only the final chunk is outstanding.
    while (!t.last_chunk) {
        t.write_pending = false;
        t.s.on_content_sent(t.now);
        t.pump();
    }
    REQUIRE(t.write_pending);   // the final chunk's write has not completed
    t.server("250 first\r\n");  // ... but the server already answered it
    REQUIRE(t.reports.size() == 1);
    t.write_pending = false;  // tracked by hand below: the old write is still queued
    t.server("250 ok\r\n250 ok\r\n354 go\r\n");
    REQUIRE(t.started.size() == 2);
    REQUIRE(t.write_pending);  // the second transaction's first chunk is in flight
    const int chunks_before = t.chunks;
    // Writes complete in order: the old one first. It must not release the second
    // transaction's next chunk (pump() would also fail on a chunk while one is pending).
    t.s.on_content_sent(t.now);
    t.pump();
    CHECK(t.chunks == chunks_before);
    t.flush_content();
    CHECK(t.s.state() == ClientState::kDataDone);
    t.server("250 second\r\n");
    REQUIRE(t.reports.size() == 2);
    CHECK(t.reports[1].outcome == MessageOutcome::kDelivered);
}

// ---- pulled content (Transaction::pull): the session asks for each piece ----------------

namespace {

Transaction make_pull_tx(std::uint64_t mid, const std::string& content) {
    Transaction tx = make_tx(mid, {"r@b.test"});
    tx.content.reset();
    tx.pull = true;
    tx.content_size = content.size();
    return tx;
}

// Answers every NeedContent from `content` and completes every write, until the final dot
// went out; returns how many pieces were asked for.
int serve_pieces(Script& t, const std::string& content) {
    int pieces = 0;
    for (;;) {
        if (t.write_pending) {
            if (t.last_chunk) break;
            t.write_pending = false;
            t.s.on_content_sent(t.now);
            t.pump();
            continue;
        }
        REQUIRE(t.needs.size() == 1);
        const NeedContent need = t.needs.front();
        t.needs.clear();
        REQUIRE_FALSE(need.whole);
        REQUIRE(need.offset <= content.size());
        const std::string piece = content.substr(need.offset, need.max);
        const bool last = need.offset + piece.size() == content.size();
        ++pieces;
        t.s.on_content(piece, last, t.now);
        t.pump();
    }
    t.write_pending = false;
    t.s.on_content_sent(t.now);
    t.pump();
    return pieces;
}

}  // namespace

TEST_CASE("pulled content: pieces split anywhere encode like the whole", "[client_fsm][pull]") {
    std::string long_line(2500, 'x');
    const std::vector<std::string> contents = {
        "Subject: t\r\n\r\n.a\r\n..b\r\nc\r\n.\r\nend\r\n",
        "bare\nlf\n.dot\rcr\r\n.\r\n",
        "Subject: long\r\n\r\n" + long_line + "\r\n." + long_line + "\r\n",
        "no final line end",
        "",
    };
    for (const std::string& content : contents) {
        for (std::size_t chunk : {1u, 2u, 3u, 5u, 7u, 997u, 998u, 999u, 65536u}) {
            CAPTURE(content.size(), chunk);
            ClientConfig config = make_config();
            config.content_chunk = chunk;
            Script t(config);
            t.greet();
            t.take_sent();
            t.submit(make_pull_tx(7, content));
            REQUIRE(t.take_sent().rfind(
                        "MAIL FROM:<s@a.test> SIZE=" + std::to_string(content.size()), 0) == 0);
            t.server("250 ok\r\n");
            t.take_sent();
            t.server("250 ok\r\n");
            REQUIRE(t.take_sent() == "DATA\r\n");
            t.server("354 go\r\n");
            const int pieces = serve_pieces(t, content);
            CHECK(pieces ==
                  static_cast<int>(std::max<std::size_t>(1, (content.size() + chunk - 1) / chunk)));
            CHECK(t.content == dot_encode(content));
            REQUIRE(t.s.state() == ClientState::kDataDone);
            t.server("250 queued\r\n");
            REQUIRE(t.reports.size() == 1);
            CHECK(t.reports[0].outcome == MessageOutcome::kDelivered);
        }
    }
}

TEST_CASE("pulled content: a failed piece never gets its final dot", "[client_fsm][pull]") {
    const std::string content = "Subject: t\r\n\r\n" + std::string(300, 'y') + "\r\n";
    ClientConfig config = make_config();
    config.content_chunk = 100;
    Script t(config);
    t.greet();
    t.take_sent();
    t.submit(make_pull_tx(9, content));
    t.server("250 ok\r\n");
    t.server("250 ok\r\n");
    t.server("354 go\r\n");
    t.take_sent();
    // Two pieces go out, then the reader finds the file corrupt (before the last piece).
    for (int i = 0; i < 2; ++i) {
        REQUIRE(t.needs.size() == 1);
        const NeedContent need = t.needs.front();
        t.needs.clear();
        CHECK(need.offset == static_cast<std::uint64_t>(i) * 100);
        t.s.on_content(content.substr(need.offset, need.max), false, t.now);
        t.pump();
        t.write_pending = false;
        t.s.on_content_sent(t.now);
        t.pump();
    }
    REQUIRE(t.needs.size() == 1);
    t.s.on_content_failed("bad_checksum: file checksum mismatch", t.now);
    t.pump();
    CHECK(t.closes == 1);
    CHECK(t.content.find("\r\n.\r\n") == std::string::npos);
    CHECK(t.take_sent().empty());  // no QUIT: it would be read as content
    REQUIRE(t.reports.size() == 1);
    CHECK(t.reports[0].outcome == MessageOutcome::kSoft);
    CHECK(t.reports[0].reply.enhanced == "4.3.0");
    CHECK_FALSE(t.reports[0].possible_duplicate);
    // A piece arriving after that is ignored.
    t.s.on_content("late", true, t.now);
    t.pump();
    CHECK(t.content.find("late") == std::string::npos);
}

TEST_CASE("pulled content: the data-block timer covers waiting for a piece", "[client_fsm][pull]") {
    Script t;
    t.greet();
    t.take_sent();
    t.submit(make_pull_tx(3, "hello\r\n"));
    t.server("250 ok\r\n");
    t.server("250 ok\r\n");
    t.now = Millis(1000);
    t.server("354 go\r\n");
    REQUIRE(t.needs.size() == 1);
    REQUIRE(t.s.next_deadline() == Millis(1000) + ClientTimeouts{}.data_block);
    t.now = *t.s.next_deadline();
    CHECK(t.on_timeout());
    CHECK(t.closes == 1);
    REQUIRE(t.reports.size() == 1);
    CHECK(t.reports[0].outcome == MessageOutcome::kSoft);
}

TEST_CASE("pulled content to a server without 8BITMIME: whole content first",
          "[client_fsm][pull]") {
    const std::string content = "Subject: t\r\n\r\nCaf\xc3\xa9\r\n";
    const std::string ehlo_7bit = "250-mx.b.test\r\n250 SIZE 1000000\r\n";
    SECTION("converted, then sent from memory") {
        Script t;
        t.greet(ehlo_7bit);
        t.take_sent();
        Transaction tx = make_pull_tx(5, content);
        tx.eight_bit = true;
        t.submit(std::move(tx));
        REQUIRE(t.needs.size() == 1);
        CHECK(t.needs[0].whole);
        CHECK(t.take_sent().empty());  // no MAIL FROM before the content is in
        CHECK_FALSE(t.s.idle());
        t.needs.clear();
        t.s.on_whole_content(std::make_shared<const std::string>(content), t.now);
        t.pump();
        CHECK(t.take_sent().rfind("MAIL FROM:<s@a.test>", 0) == 0);
        t.server("250 ok\r\n");
        t.server("250 ok\r\n");
        t.server("354 go\r\n");
        t.flush_content();
        CHECK(t.needs.empty());
        CHECK_FALSE(has_8bit(t.content));
        CHECK(t.content.find("Content-Transfer-Encoding: quoted-printable") != std::string::npos);
    }
    SECTION("unreadable: soft, and the connection stays usable") {
        Script t;
        t.greet(ehlo_7bit);
        t.take_sent();
        t.submit(make_pull_tx(5, content));
        REQUIRE(t.needs.size() == 1);
        t.s.on_content_failed("corrupt", t.now);
        t.pump();
        REQUIRE(t.reports.size() == 1);
        CHECK(t.reports[0].outcome == MessageOutcome::kSoft);
        CHECK_FALSE(t.reports[0].started);
        CHECK(t.closes == 0);
        CHECK(t.s.idle());
    }
}
