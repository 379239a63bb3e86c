// The injection glue on a real loop: inject::Listener + InjectSession + Committer with a
// real spool in a temporary directory, and a scripted client on 127.0.0.1 (InjectRig).
// The client closes at every stage: a message is either committed and handed to the queue
// (on_queued), or not committed - never acknowledged and lost, no file left half-way.
// STARTTLS failures (handshake refused, garbage after 220, close mid-handshake), size and
// line limits, stage deadlines with short timeouts, relay_from, and commit failures
// (451 4.3.0 / 452 4.3.1 and no file) in both spool layouts.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cerrno>
#include <string>

#include "tests/support/inject_rig.h"
#include "tests/support/test_pki.h"

using namespace esad;
using test::InjectOptions;
using test::InjectRig;
using test::SmtpScript;

namespace {

const std::string kMessage =
    "Subject: hello\r\nMessage-ID: <1@client.test>\r\n\r\nbody line\r\n..dot line\r\n";

bool starts_with(const std::string& s, std::string_view prefix) {
    return s.compare(0, prefix.size(), prefix) == 0;
}

// Greeting, EHLO, MAIL, RCPT answered as they should be.
void open_transaction(SmtpScript& c) {
    REQUIRE(starts_with(c.reply(), "220 "));
    REQUIRE(starts_with(c.command("EHLO client.test\r\n"), "250"));
    REQUIRE(starts_with(c.command("MAIL FROM:<s@client.test>\r\n"), "250 "));
    REQUIRE(starts_with(c.command("RCPT TO:<r@example.test>\r\n"), "250 "));
}

enum class Stage { kBeforeEhlo, kAfterMail, kAfterRcpt, kMidData, kAfterDot };

const char* name(Stage s) {
    switch (s) {
        case Stage::kBeforeEhlo:
            return "before EHLO";
        case Stage::kAfterMail:
            return "after MAIL";
        case Stage::kAfterRcpt:
            return "after RCPT";
        case Stage::kMidData:
            return "mid-DATA";
        case Stage::kAfterDot:
            return "after the final dot, before the reply";
    }
    return "?";
}

struct Pki {
    test::TempDir dir{"inject_tls"};
    std::string key = dir.path + "/k.pem";
    std::string cert = dir.path + "/c.pem";
    std::string other_key = dir.path + "/ok.pem";
    std::string other_cert = dir.path + "/oc.pem";
    Pki() {
        REQUIRE(test::write_self_signed("mx.test", key, cert));
        REQUIRE(test::write_self_signed("other.test", other_key, other_cert));
    }
    std::shared_ptr<tls::ServerContext> server() const {
        std::string error;
        auto ctx = tls::make_server_context(cert, key, &error);
        INFO(error);
        REQUIRE(ctx);
        return ctx;
    }
    // Trusts `ca` only, verifying: a server with another certificate fails the handshake.
    static std::shared_ptr<tls::ClientContext> client(const std::string& ca) {
        std::string error;
        tls::ClientOptions options;
        options.verify = true;
        options.ca_file = ca;
        auto ctx = tls::make_client_context(options, &error);
        INFO(error);
        REQUIRE(ctx);
        return ctx;
    }
};

// Connects, says EHLO and STARTTLS, and returns the client ready to start its handshake.
void to_starttls(SmtpScript& c) {
    REQUIRE(starts_with(c.reply(), "220 "));
    REQUIRE_THAT(c.command("EHLO client.test\r\n"), Catch::Contains("STARTTLS"));
    REQUIRE(starts_with(c.command("STARTTLS\r\n"), "220 "));
}

// After to_starttls: the handshake with a client that trusts `pki`, and EHLO again inside TLS.
void to_ehlo_over_tls(SmtpScript& c, const Pki& pki) {
    c.start_tls(*Pki::client(pki.cert));
    REQUIRE(c.handshake_done());
    REQUIRE(starts_with(c.command("EHLO client.test\r\n"), "250"));
}

}  // namespace

TEST_CASE("inject: a message is committed, handed to the queue, answered 250") {
    InjectRig rig;
    SmtpScript c(rig.loop, rig.port);
    open_transaction(c);
    REQUIRE(starts_with(c.command("DATA\r\n"), "354 "));
    std::string queued = c.command(kMessage + ".\r\n");
    CHECK(starts_with(queued, "250 2.0.0 Ok: queued as "));
    CHECK(starts_with(c.command("QUIT\r\n"), "221 "));
    CHECK(c.wait_closed());
    REQUIRE(rig.settle());
    REQUIRE(rig.queued.size() == 1);
    CHECK(queued.find(std::to_string(rig.queued[0].mid)) != std::string::npos);
    CHECK(rig.queued[0].recipients.size() == 1);
    CHECK(rig.spool_files() == 1);
    CHECK(rig.state.inbound_connections == 0);
}

TEST_CASE("inject: the client closes at each stage; nothing acknowledged is lost") {
    for (Stage stage : {Stage::kBeforeEhlo, Stage::kAfterMail, Stage::kAfterRcpt, Stage::kMidData,
                        Stage::kAfterDot}) {
        INFO(name(stage));
        InjectRig rig;
        {
            SmtpScript c(rig.loop, rig.port);
            if (stage == Stage::kBeforeEhlo) {
                REQUIRE(starts_with(c.reply(), "220 "));
            } else if (stage == Stage::kAfterMail) {
                REQUIRE(starts_with(c.reply(), "220 "));
                REQUIRE(starts_with(c.command("EHLO client.test\r\n"), "250"));
                REQUIRE(starts_with(c.command("MAIL FROM:<s@client.test>\r\n"), "250 "));
            } else {
                open_transaction(c);
            }
            if (stage == Stage::kMidData) {
                REQUIRE(starts_with(c.command("DATA\r\n"), "354 "));
                c.send("Subject: cut\r\n\r\nhalf a li");
            }
            if (stage == Stage::kAfterDot) c.send("DATA\r\n" + kMessage + ".\r\n");
            c.close_after_writes();
            REQUIRE(rig.settle());
        }
        if (stage == Stage::kAfterDot) {
            // The whole message arrived before the FIN: committed and queued, its 250 lost
            // with the connection (the client will send it again: a duplicate, not a loss).
            CHECK(rig.queued.size() == 1);
            CHECK(rig.spool_files() == 1);
        } else {
            CHECK(rig.queued.empty());
            CHECK(rig.spool_files() == 0);
        }
        CHECK(rig.state.inbound_connections == 0);
        CHECK(rig.committer->pending_messages() == 0);
    }
}

TEST_CASE("inject: a failed commit answers 4xx and leaves no file, in both layouts") {
    struct Case {
        spool::FaultPoint point;
        int err;
        const char* reply;
    };
    for (spool::Layout layout : {spool::Layout::kHashed, spool::Layout::kFlat}) {
        for (Case k : {Case{spool::FaultPoint::kCreate, EACCES, "451 4.3.0"},
                       Case{spool::FaultPoint::kWrite, EIO, "451 4.3.0"},
                       Case{spool::FaultPoint::kFileFsync, EIO, "451 4.3.0"},
                       Case{spool::FaultPoint::kRename, EIO, "451 4.3.0"},
                       Case{spool::FaultPoint::kDirFsync, EIO, "451 4.3.0"},
                       Case{spool::FaultPoint::kWrite, ENOSPC, "452 4.3.1"}}) {
            INFO("layout " << spool::to_string(layout) << " fault point "
                           << static_cast<int>(k.point) << " errno " << k.err);
            InjectOptions options;
            options.layout = layout;
            InjectRig rig(options);
            rig.fail(k.point, k.err);
            SmtpScript c(rig.loop, rig.port);
            open_transaction(c);
            REQUIRE(starts_with(c.command("DATA\r\n"), "354 "));
            CHECK(starts_with(c.command(kMessage + ".\r\n"), k.reply));
            // The session goes on: the client may retry later (or at once, here refused).
            CHECK(starts_with(c.command("QUIT\r\n"), "221 "));
            REQUIRE(rig.settle());
            CHECK(rig.queued.empty());
            CHECK(rig.spool_files() == 0);
        }
    }
}

TEST_CASE("inject: after an fsync failure new clients get 421 4.3.2 until a probe succeeds") {
    InjectRig rig;
    rig.fail(spool::FaultPoint::kFileFsync, EIO);
    {
        SmtpScript c(rig.loop, rig.port);
        open_transaction(c);
        REQUIRE(starts_with(c.command("DATA\r\n"), "354 "));
        REQUIRE(starts_with(c.command(kMessage + ".\r\n"), "451 4.3.0"));
    }
    REQUIRE_FALSE(rig.committer->healthy());
    {
        SmtpScript c(rig.loop, rig.port);
        CHECK(starts_with(c.reply(), "421 4.3.2"));
        CHECK(c.wait_closed());
    }
    rig.fail_none();
    REQUIRE(test::run_until(rig.loop, [&] { return rig.committer->healthy(); }));
    SmtpScript c(rig.loop, rig.port);
    open_transaction(c);
    REQUIRE(starts_with(c.command("DATA\r\n"), "354 "));
    CHECK(starts_with(c.command(kMessage + ".\r\n"), "250 "));
    CHECK(starts_with(c.command("QUIT\r\n"), "221 "));
    REQUIRE(rig.settle());
    CHECK(rig.queued.size() == 1);
    CHECK(rig.spool_files() == 1);
}

TEST_CASE("inject: size and line limits get their reply codes, the session goes on") {
    InjectOptions options;
    options.limits.max_message_size = 2000;
    options.limits.max_data_line = 100;
    InjectRig rig(options);
    SmtpScript c(rig.loop, rig.port);
    REQUIRE(starts_with(c.reply(), "220 "));
    REQUIRE(starts_with(c.command("EHLO client.test\r\n"), "250"));
    SECTION("command line over 1000 octets") {
        CHECK(starts_with(c.command("NOOP " + std::string(2000, 'x') + "\r\n"), "500 5.5.6"));
        CHECK(starts_with(c.command("NOOP\r\n"), "250 "));
    }
    SECTION("declared SIZE over the limit") {
        CHECK(starts_with(c.command("MAIL FROM:<s@client.test> SIZE=5000\r\n"), "552 5.3.4"));
    }
    SECTION("a DATA line over max_data_line") {
        REQUIRE(starts_with(c.command("MAIL FROM:<s@client.test>\r\n"), "250 "));
        REQUIRE(starts_with(c.command("RCPT TO:<r@example.test>\r\n"), "250 "));
        REQUIRE(starts_with(c.command("DATA\r\n"), "354 "));
        CHECK(starts_with(c.command("Subject: x\r\n\r\n" + std::string(150, 'y') + "\r\n.\r\n"),
                          "554 5.6.0"));
    }
    SECTION("content over max_message_size") {
        REQUIRE(starts_with(c.command("MAIL FROM:<s@client.test>\r\n"), "250 "));
        REQUIRE(starts_with(c.command("RCPT TO:<r@example.test>\r\n"), "250 "));
        REQUIRE(starts_with(c.command("DATA\r\n"), "354 "));
        std::string body = "Subject: x\r\n\r\n";
        for (int i = 0; i < 60; ++i)
            body += std::string(60, 'z') + "\r\n";
        CHECK(starts_with(c.command(body + ".\r\n"), "552 5.3.4"));
    }
    CHECK(starts_with(c.command("QUIT\r\n"), "221 "));
    REQUIRE(rig.settle());
    CHECK(rig.queued.empty());
    CHECK(rig.spool_files() == 0);
}

TEST_CASE("inject: stage deadlines end the session with 421 4.4.2") {
    const bool in_data = GENERATE(false, true);
    INFO((in_data ? "in DATA" : "waiting for a command"));
    InjectOptions options;
    options.limits.command_timeout = smtp::Millis(in_data ? 60 * 1000 : 300);
    options.limits.data_block_timeout = smtp::Millis(300);
    InjectRig rig(options);
    SmtpScript c(rig.loop, rig.port);
    if (in_data) {
        open_transaction(c);
        REQUIRE(starts_with(c.command("DATA\r\n"), "354 "));
        c.send("Subject: slow\r\n");
    } else {
        REQUIRE(starts_with(c.reply(), "220 "));
    }
    CHECK(starts_with(c.reply(), "421 4.4.2"));
    CHECK(c.wait_closed());
    REQUIRE(rig.settle());
    CHECK(rig.queued.empty());
    CHECK(rig.spool_files() == 0);
}

TEST_CASE("inject: a client outside relay_from may not relay") {
    InjectOptions options;
    options.relay_from = {"192.0.2.0/24"};
    InjectRig rig(options);
    SmtpScript c(rig.loop, rig.port);
    REQUIRE(starts_with(c.reply(), "220 "));
    REQUIRE(starts_with(c.command("EHLO client.test\r\n"), "250"));
    REQUIRE(starts_with(c.command("MAIL FROM:<s@client.test>\r\n"), "250 "));
    CHECK(starts_with(c.command("RCPT TO:<r@example.test>\r\n"), "554 5.7.1"));
    CHECK(starts_with(c.command("DATA\r\n"), "554 "));
    CHECK(starts_with(c.command("QUIT\r\n"), "221 "));
    REQUIRE(rig.settle());
    CHECK(rig.queued.empty());
    CHECK(rig.state.counters.uptime(Counter::kRejectedRecipients) == 1);
}

TEST_CASE("inject: STARTTLS, and TLS failing or the client closing at each stage") {
    Pki pki;
    InjectOptions options;
    options.tls = pki.server();
    options.limits.tls_handshake_timeout = smtp::Millis(60 * 1000);
    InjectRig rig(options);
    SmtpScript c(rig.loop, rig.port);
    to_starttls(c);
    SECTION("a message over TLS is committed") {
        to_ehlo_over_tls(c, pki);
        REQUIRE(starts_with(c.command("MAIL FROM:<s@client.test>\r\n"), "250 "));
        REQUIRE(starts_with(c.command("RCPT TO:<r@example.test>\r\n"), "250 "));
        REQUIRE(starts_with(c.command("DATA\r\n"), "354 "));
        CHECK(starts_with(c.command(kMessage + ".\r\n"), "250 2.0.0"));
        CHECK(starts_with(c.command("QUIT\r\n"), "221 "));
        REQUIRE(rig.settle());
        CHECK(rig.queued.size() == 1);
        CHECK(rig.spool_files() == 1);
        return;
    }
    SECTION("the handshake fails (the client does not trust the certificate)") {
        c.start_tls(*Pki::client(pki.other_cert));
        CHECK_FALSE(c.handshake_done());
    }
    SECTION("garbage instead of a ClientHello") {
        c.send("EHLO client.test\r\nMAIL FROM:<s@client.test>\r\n");
    }
    SECTION("the client closes mid-handshake") {
        c.start_tls(*Pki::client(pki.cert));
        c.close_after_writes();
    }
    SECTION("the client closes after MAIL inside TLS") {
        to_ehlo_over_tls(c, pki);
        REQUIRE(starts_with(c.command("MAIL FROM:<s@client.test>\r\n"), "250 "));
        c.close_after_writes();
    }
    if (c.tcp) CHECK(c.wait_closed());
    REQUIRE(rig.settle());
    CHECK(rig.queued.empty());
    CHECK(rig.spool_files() == 0);
    CHECK(rig.state.inbound_connections == 0);
}

TEST_CASE("inject: after the client's close_notify nothing goes out in cleartext") {
    Pki pki;
    InjectOptions options;
    options.tls = pki.server();
    options.limits.command_timeout = smtp::Millis(300);
    InjectRig rig(options);
    SmtpScript c(rig.loop, rig.port);
    to_starttls(c);
    to_ehlo_over_tls(c, pki);
    const size_t before = c.raw.size();
    // close_notify, but the TCP connection stays open: a session that went on would meet its
    // command deadline and write "421 4.4.2" in cleartext.
    c.tls->shutdown();
    c.flush_tls();
    CHECK(c.wait_closed());
    CHECK(c.raw.find("421", before) == std::string::npos);
    CHECK(c.raw.find("4.4.2", before) == std::string::npos);
    REQUIRE(rig.settle());
    CHECK(rig.state.inbound_connections == 0);
}

TEST_CASE("inject: a TLS handshake that never ends meets its deadline") {
    Pki pki;
    InjectOptions options;
    options.tls = pki.server();
    options.limits.tls_handshake_timeout = smtp::Millis(300);
    InjectRig rig(options);
    SmtpScript c(rig.loop, rig.port);
    to_starttls(c);
    // Nothing more: no ClientHello. The server closes without a reply (mid-handshake).
    CHECK(c.wait_closed());
    REQUIRE(rig.settle());
    CHECK(rig.state.inbound_connections == 0);
}

TEST_CASE("inject: a client that stops reading its replies is served again once it reads") {
    const bool over_tls = GENERATE(false, true);
    INFO((over_tls ? "over TLS" : "plaintext"));
    Pki pki;
    InjectOptions options;
    options.limits.max_recipients = 100000;
    if (over_tls) options.tls = pki.server();
    InjectRig rig(options);
    SmtpScript c(rig.loop, rig.port);
    if (over_tls) {
        to_starttls(c);
        c.start_tls(*Pki::client(pki.cert));
        REQUIRE(c.handshake_done());
    } else {
        REQUIRE(starts_with(c.reply(), "220 "));
    }
    REQUIRE(starts_with(c.command("EHLO client.test\r\n"), "250"));
    // Pipelined transactions whose replies (some 3 MB) are more than every socket buffer
    // between us holds: the session's own write queue passes kMaxUnsentReplyBytes and it
    // stops reading until the client has taken its replies.
    constexpr size_t kCycles = 10, kRcpts = 20000;
    std::string cycle = "MAIL FROM:<s@client.test>\r\n";
    for (size_t i = 0; i < kRcpts; ++i)
        cycle += "RCPT TO:<r@example.test>\r\n";
    cycle += "RSET\r\n";
    c.stop_reading();
    for (size_t i = 0; i < kCycles; ++i)
        c.send(cycle);
    c.send("QUIT\r\n");
    c.read_again();
    const size_t replies = kCycles * (kRcpts + 2) + 1;
    auto lines = [&] {
        return static_cast<size_t>(std::count(
            c.received.begin() + static_cast<std::ptrdiff_t>(c.consumed), c.received.end(), '\n'));
    };
    const bool all = test::run_until(rig.loop, [&] { return lines() >= replies || c.eof; });
    INFO("replies " << lines() << " of " << replies << ", client has "
                    << (c.tcp ? c.tcp->write_queue_size() : 0) << " bytes unsent, TLS "
                    << (c.tls ? tls::to_string(c.tls->state()) : "-") << " "
                    << (c.tls ? c.tls->error() : ""));
    REQUIRE(all);
    CHECK(lines() == replies);
    CHECK(c.received.find("221 ", c.received.size() - 200) != std::string::npos);
    CHECK(c.wait_closed());
    REQUIRE(rig.settle());
}
