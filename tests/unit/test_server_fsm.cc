// Tests for daemon/smtp/server_fsm.h and daemon/smtp/command.h: every command in every
// state, pipelining (whole batches and byte-by-byte), framing and smuggling, limits,
// STARTTLS, deadlines with a fake clock, the commit handshake and shutdown.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "common/ascii.h"
#include "daemon/smtp/command.h"
#include "daemon/smtp/server_fsm.h"

using namespace esad::smtp;
using esad::BodyType;
using std::chrono::minutes;
using std::chrono::seconds;

namespace {

ServerConfig test_config() {
    ServerConfig c;
    c.hostname = "mx.test";
    c.relay_allowed = true;
    c.tls_available = true;
    return c;
}

bool starts_with(const std::string& s, std::string_view p) {
    return s.rfind(p, 0) == 0;
}

// Every reply must be CRLF-framed without stray CR/LF; every 2xx/4xx/5xx reply except the
// greeting and HELO/EHLO carries an enhanced status code (RFC 2034).
void check_reply_shape(const std::string& r) {
    INFO("reply: " << r);
    REQUIRE(r.size() >= 5);
    REQUIRE(r.substr(r.size() - 2) == "\r\n");
    std::size_t pos = 0;
    while (pos < r.size()) {
        const auto eol = r.find("\r\n", pos);
        REQUIRE(eol != std::string::npos);
        const std::string line = r.substr(pos, eol - pos);
        CHECK(line.find_first_of("\r\n") == std::string::npos);
        REQUIRE(line.size() >= 4);
        CHECK((line[3] == ' ' || line[3] == '-'));
        pos = eol + 2;
    }
    const char cls = r[0];
    const bool exempt = starts_with(r, "220 mx.test ESMTP") || starts_with(r, "250-mx.test") ||
                        r == "250 mx.test\r\n" || cls == '3';
    if (!exempt && (cls == '2' || cls == '4' || cls == '5')) {
        const std::string enh = r.substr(4, r.find(' ', 4) - 4);
        CHECK(enh.size() >= 5);
        CHECK(enh[0] == cls);
        CHECK(enh[1] == '.');
    }
}

std::vector<std::string> replies_of(const std::vector<Action>& actions) {
    std::vector<std::string> out;
    for (const auto& a : actions) {
        if (const auto* r = std::get_if<Reply>(&a)) out.push_back(r->text);
    }
    return out;
}

template <typename T>
std::vector<T> all_of(const std::vector<Action>& actions) {
    std::vector<T> out;
    for (const auto& a : actions) {
        if (const auto* t = std::get_if<T>(&a)) out.push_back(*t);
    }
    return out;
}

template <typename T>
bool has(const std::vector<Action>& actions) {
    return !all_of<T>(actions).empty();
}

// Actions minus Transition, rendered as short tags, to check ordering.
std::vector<std::string> tags(const std::vector<Action>& actions) {
    std::vector<std::string> out;
    for (const auto& a : actions) {
        if (const auto* r = std::get_if<Reply>(&a))
            out.push_back(r->text.substr(0, 3));
        else if (std::holds_alternative<Close>(a))
            out.push_back("close");
        else if (std::holds_alternative<StartTls>(a))
            out.push_back("starttls");
        else if (std::holds_alternative<CommitMessage>(a))
            out.push_back("commit");
        else if (std::holds_alternative<MailFrom>(a))
            out.push_back("mail");
        else if (std::holds_alternative<RcptTo>(a))
            out.push_back("rcpt");
        else if (std::holds_alternative<DataStart>(a))
            out.push_back("data");
        else if (std::holds_alternative<MessageIdSeen>(a))
            out.push_back("msgid");
        else if (std::holds_alternative<Rset>(a))
            out.push_back("rset");
    }
    return out;
}

struct Run {
    ServerSession s;
    Millis now{1000};
    std::vector<Action> last;

    explicit Run(ServerConfig c = test_config(), Greeting g = Greeting::kReady) : s(std::move(c)) {
        s.start(now, g);
        collect();
    }
    std::vector<Action>& collect() {
        last = s.take_actions();
        for (const auto& r : replies_of(last))
            check_reply_shape(r);
        return last;
    }
    std::vector<std::string> feed(std::string_view bytes) {
        s.feed(bytes, now);
        return replies_of(collect());
    }
    // Feeds in chunks of `n` bytes, collecting all actions.
    std::vector<Action> feed_chunked(std::string_view bytes, std::size_t n) {
        std::vector<Action> all;
        for (std::size_t i = 0; i < bytes.size(); i += n) {
            s.feed(bytes.substr(i, n), now);
            auto& a = collect();
            all.insert(all.end(), a.begin(), a.end());
        }
        return all;
    }
    std::vector<std::string> commit(const CommitResult& r) {
        REQUIRE(s.on_commit_result(r, now));
        return replies_of(collect());
    }
    std::string one(std::string_view bytes) {
        auto r = feed(bytes);
        REQUIRE(r.size() == 1);
        return r[0];
    }
};

const std::string kEhlo = "EHLO client.test\r\n";
const std::string kMail = "MAIL FROM:<sender@a.test>\r\n";
const std::string kRcpt = "RCPT TO:<rcpt@b.test>\r\n";

}  // namespace

// ---- command parser ---------------------------------------------------------------------

TEST_CASE("parse_command", "[smtp][command]") {
    struct Case {
        std::string line;
        Verb verb;
        std::string arg;
    };
    const std::vector<Case> cases = {
        {"EHLO x", Verb::kEhlo, "x"},
        {"ehlo   x  ", Verb::kEhlo, "x"},
        {"HeLo x", Verb::kHelo, "x"},
        {"MAIL FROM:<a@b> SIZE=1", Verb::kMail, "FROM:<a@b> SIZE=1"},
        {"rcpt TO:<a@b>", Verb::kRcpt, "TO:<a@b>"},
        {"DATA", Verb::kData, ""},
        {"RSET", Verb::kRset, ""},
        {"NOOP hello", Verb::kNoop, "hello"},
        {"QUIT", Verb::kQuit, ""},
        {"VRFY bob", Verb::kVrfy, "bob"},
        {"HELP", Verb::kHelp, ""},
        {"StartTLS", Verb::kStartTls, ""},
        {"EXPN list", Verb::kNotImplemented, "list"},
        {"AUTH PLAIN", Verb::kNotImplemented, "PLAIN"},
        {"BDAT 100 LAST", Verb::kNotImplemented, "100 LAST"},
        {"ETRN x", Verb::kNotImplemented, "x"},
        {"MAILX", Verb::kUnknown, ""},
        {"", Verb::kUnknown, ""},
        {" EHLO x", Verb::kUnknown, "EHLO x"},
    };
    for (const auto& c : cases) {
        INFO(c.line);
        const auto cmd = parse_command(c.line);
        CHECK(cmd.verb == c.verb);
        CHECK(cmd.arg == c.arg);
    }
    CHECK(line_has_invalid_octets(std::string("a\0b", 3)));
    CHECK(line_has_invalid_octets("a\x1b"));
    CHECK(line_has_invalid_octets("a\x7f"));
    CHECK(line_has_invalid_octets("a\rb"));
    CHECK_FALSE(line_has_invalid_octets("a\tb \xc3\xa9"));
    CHECK(esad::istarts_with("from:<x>", "FROM:"));
    CHECK_FALSE(esad::istarts_with("FRO", "FROM:"));
}

// ---- greeting, EHLO ---------------------------------------------------------------------

TEST_CASE("greeting variants", "[smtp][fsm]") {
    {
        ServerSession s(test_config());
        CHECK(s.state() == State::kInit);
        CHECK_FALSE(s.deadline().has_value());
        s.start(Millis{0});
        auto a = s.take_actions();
        CHECK(replies_of(a) == std::vector<std::string>{"220 mx.test ESMTP esad\r\n"});
        CHECK(s.state() == State::kNeedHelo);
        CHECK(s.deadline() == Millis{0} + minutes(5));
    }
    {
        Run r(test_config(), Greeting::kSpoolUnavailable);
        CHECK(tags(r.last) == std::vector<std::string>{"421", "close"});
        CHECK(starts_with(replies_of(r.last)[0], "421 4.3.2 mx.test "));
        CHECK(r.s.closed());
        CHECK(r.feed("EHLO x\r\n").empty());
    }
    {
        Run r(test_config(), Greeting::kTooManyConnections);
        CHECK(tags(r.last) == std::vector<std::string>{"421", "close"});
        CHECK(starts_with(replies_of(r.last)[0], "421 4.7.0 mx.test "));
    }
}

TEST_CASE("EHLO advertises extensions; HELO does not", "[smtp][fsm]") {
    auto cfg = test_config();
    cfg.limits.max_message_size = 12345;
    Run r(cfg);
    CHECK(r.one(kEhlo) ==
          "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 12345\r\n250-STARTTLS\r\n"
          "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n");
    CHECK(r.s.helo() == "client.test");
    CHECK(r.s.state() == State::kReady);

    cfg.tls_available = false;
    Run no_tls(cfg);
    CHECK(no_tls.one(kEhlo).find("STARTTLS") == std::string::npos);

    cfg.tls_available = true;
    cfg.tls_active = true;
    Run already(cfg);
    CHECK(already.one(kEhlo).find("STARTTLS") == std::string::npos);

    Run h;
    CHECK(h.one("HELO client.test\r\n") == "250 mx.test\r\n");
    // No extensions after HELO: parameters are refused.
    CHECK(starts_with(h.one("MAIL FROM:<a@b.test> SIZE=10\r\n"), "555 5.5.4"));
    CHECK(starts_with(h.one("MAIL FROM:<a@b.test>\r\n"), "250 2.1.0"));
}

// ---- every command in every state -------------------------------------------------------

TEST_CASE("every command in every state", "[smtp][fsm]") {
    struct StateSetup {
        std::string name;
        std::string setup;
        State state;
    };
    const std::vector<StateSetup> states = {
        {"need_helo", "", State::kNeedHelo},
        {"ready", kEhlo, State::kReady},
        {"mail", kEhlo + kMail, State::kMail},
        {"rcpt", kEhlo + kMail + kRcpt, State::kRcpt},
    };
    struct Row {
        std::string cmd;
        // expected reply prefix and state afterwards, per state above
        std::array<std::string, 4> reply;
        std::array<State, 4> after;
    };
    const State N = State::kNeedHelo, R = State::kReady, M = State::kMail, P = State::kRcpt,
                D = State::kData, C = State::kClosed, T = State::kTlsHandshake;
    const std::vector<Row> rows = {
        {"EHLO x.test", {"250-mx.test", "250-mx.test", "250-mx.test", "250-mx.test"}, {R, R, R, R}},
        {"HELO x.test", {"250 mx.test", "250 mx.test", "250 mx.test", "250 mx.test"}, {R, R, R, R}},
        {"MAIL FROM:<s@a.test>",
         {"503 5.5.1", "250 2.1.0", "503 5.5.1", "503 5.5.1"},
         {N, M, M, P}},
        {"RCPT TO:<r@b.test>", {"503 5.5.1", "503 5.5.1", "250 2.1.5", "250 2.1.5"}, {N, R, P, P}},
        {"DATA", {"503 5.5.1", "503 5.5.1", "503 5.5.1", "354 "}, {N, R, M, D}},
        {"RSET", {"250 2.0.0", "250 2.0.0", "250 2.0.0", "250 2.0.0"}, {N, R, R, R}},
        {"NOOP", {"250 2.0.0", "250 2.0.0", "250 2.0.0", "250 2.0.0"}, {N, R, M, P}},
        {"VRFY bob", {"252 2.5.0", "252 2.5.0", "252 2.5.0", "252 2.5.0"}, {N, R, M, P}},
        {"HELP", {"214 2.0.0", "214 2.0.0", "214 2.0.0", "214 2.0.0"}, {N, R, M, P}},
        {"STARTTLS", {"503 5.5.1", "220 2.0.0", "503 5.5.1", "503 5.5.1"}, {N, T, M, P}},
        {"EXPN list", {"502 5.5.1", "502 5.5.1", "502 5.5.1", "502 5.5.1"}, {N, R, M, P}},
        {"AUTH PLAIN", {"502 5.5.1", "502 5.5.1", "502 5.5.1", "502 5.5.1"}, {N, R, M, P}},
        {"BDAT 10 LAST", {"502 5.5.1", "502 5.5.1", "502 5.5.1", "502 5.5.1"}, {N, R, M, P}},
        {"FROB", {"500 5.5.2", "500 5.5.2", "500 5.5.2", "500 5.5.2"}, {N, R, M, P}},
        {"QUIT", {"221 2.0.0", "221 2.0.0", "221 2.0.0", "221 2.0.0"}, {C, C, C, C}},
    };
    for (const auto& row : rows) {
        for (std::size_t i = 0; i < states.size(); ++i) {
            INFO(row.cmd << " in " << states[i].name);
            Run r;
            r.feed(states[i].setup);
            REQUIRE(r.s.state() == states[i].state);
            const auto rep = r.feed(row.cmd + "\r\n");
            REQUIRE(rep.size() == 1);
            CHECK(starts_with(rep[0], row.reply[i]));
            CHECK(r.s.state() == row.after[i]);
            if (row.after[i] == C) CHECK(has<Close>(r.last));
        }
    }
}

TEST_CASE("lower-case verbs and sequencing details", "[smtp][fsm]") {
    Run r;
    CHECK(starts_with(r.one("ehlo x.test\r\n"), "250-mx.test"));
    CHECK(starts_with(r.one("mail from:<s@a.test>\r\n"), "250 2.1.0"));
    CHECK(starts_with(r.one("MAIL FROM:<s@a.test>\r\n"), "503 5.5.1 Error: nested MAIL"));
    CHECK(starts_with(r.one("DATA\r\n"), "503 5.5.1 Error: need RCPT"));
    CHECK(starts_with(r.one("rcpt to:<R@B.TEST>\r\n"), "250 2.1.5"));
    auto rcpts = all_of<RcptTo>(r.last);
    REQUIRE(rcpts.size() == 1);
    CHECK(rcpts[0].rid == 0);
    CHECK(rcpts[0].address == "<R@b.test>");  // domain lower-cased, local part preserved
    // EHLO mid-transaction resets it (RFC 5321 §4.1.4).
    CHECK(starts_with(r.one(kEhlo), "250-mx.test"));
    auto rsets = all_of<Rset>(r.last);
    REQUIRE(rsets.size() == 1);
    CHECK(rsets[0].reason == "EHLO");
    CHECK(starts_with(r.one(kRcpt), "503 5.5.1"));
    // RSET without a transaction emits no Rset event.
    CHECK(starts_with(r.one("RSET\r\n"), "250 2.0.0"));
    CHECK_FALSE(has<Rset>(r.last));
    r.feed(kMail);
    CHECK(starts_with(r.one("RSET\r\n"), "250 2.0.0"));
    REQUIRE(all_of<Rset>(r.last).size() == 1);
    CHECK(all_of<Rset>(r.last)[0].reason == "RSET");
    // Commands after QUIT are ignored.
    auto q = r.feed("QUIT\r\nNOOP\r\n");
    REQUIRE(q.size() == 1);
    CHECK(q[0] == "221 2.0.0 mx.test closing connection\r\n");
    CHECK(r.feed("NOOP\r\n").empty());
}

TEST_CASE("argument syntax errors", "[smtp][fsm]") {
    struct Case {
        std::string setup;
        std::string cmd;
        std::string reply;
    };
    const std::string ready = kEhlo;
    const std::string mail = kEhlo + kMail;
    const std::vector<Case> cases = {
        {"", "EHLO", "501 5.5.4"},
        {"", "HELO", "501 5.5.4"},
        {"", "EHLO \xc3\xa9t\xc3\xa9", "501 5.5.2"},
        {"", "EHLO " + std::string(256, 'a'), "501 5.5.4"},
        {"",
         "EHLO a\x01"
         "b",
         "500 5.5.2"},
        {"", "VRFY", "501 5.5.4"},
        {"", "RSET now", "501 5.5.4"},
        {ready, "STARTTLS now", "501 5.5.4"},
        {ready, "MAIL", "501 5.5.4"},
        {ready, "MAIL FROM <s@a.test>", "501 5.5.4"},
        {ready, "MAIL TO:<s@a.test>", "501 5.5.4"},
        {ready, "MAIL FROM:s@a.test", "501 5.1.7"},
        {ready, "MAIL FROM:<s@a.test", "501 5.1.7"},
        {ready, "MAIL FROM:<s@a.test>junk", "501 5.1.7"},
        {ready, "MAIL FROM:<s@@a.test>", "501 5.1.7"},
        {ready, "MAIL FROM:<s@a.test> FOO=1", "555 5.5.4"},
        {ready, "MAIL FROM:<s@a.test> SIZE=abc", "501 5.5.4"},
        {ready, "MAIL FROM:<s@a.test> SIZE=-1", "501 5.5.4"},
        {ready, "MAIL FROM:<s@a.test> SIZE=99999999999999999999", "501 5.5.4"},
        {ready, "MAIL FROM:<s@a.test> BODY=BINARYMIME", "501 5.5.4"},
        {ready, "MAIL FROM:<s@a.test> SMTPUTF8=1", "501 5.5.4"},
        {ready, "MAIL FROM:<j\xc3\xb6rg@a.test>", "553 5.6.7"},
        {ready, "MAIL FROM:<s@a.test> SIZE=" + std::string(25, '9'), "501 5.5.4"},
        {ready, "MAIL FROM:<s@a.test> SIZE=" + std::string(10000, '9'), "500 5.5.6"},
        {ready, "MAIL FROM:<s@a.test> X" + std::string(900, 'Y'), "555 5.5.4"},
        {mail, "RCPT", "501 5.5.4"},
        {mail, "RCPT FROM:<r@b.test>", "501 5.5.4"},
        {mail, "RCPT TO:r@b.test", "501 5.1.3"},
        {mail, "RCPT TO:<>", "501 5.1.3"},
        {mail, "RCPT TO:<postmaster>", "501 5.1.3"},
        {mail, "RCPT TO:<r@b.test> NOTIFY=NEVER", "555 5.5.4"},
        {mail, "RCPT TO:<r@[127.0.0.1]>", "553 5.1.3"},
        {mail, "RCPT TO:<r@[IPv6:::1]>", "553 5.1.3"},
        {mail, "RCPT TO:<j\xc3\xb6rg@b.test>", "553 5.6.7"},
        {mail, "RCPT TO:<" + std::string(65, 'x') + "@b.test>", "501 5.1.3"},
        {kEhlo + kMail + kRcpt, "DATA now", "501 5.5.4"},
    };
    for (const auto& c : cases) {
        INFO(c.cmd.substr(0, 60));
        Run r;
        r.feed(c.setup);
        const auto before = r.s.state();
        const auto rep = r.one(c.cmd + "\r\n");
        CHECK(starts_with(rep, c.reply));
        CHECK(rep.size() < 300);  // echoes are bounded
        CHECK(r.s.state() == before);
    }
}

TEST_CASE("accepted MAIL variants", "[smtp][fsm]") {
    struct Case {
        std::string cmd;
        std::string event;
    };
    const std::vector<Case> cases = {
        {"MAIL FROM:<>", "<>"},
        {"MAIL FROM: <s@A.Test>", "<s@a.test>"},
        {"MAIL FROM:<@relay.test:s@a.test>", "<s@a.test>"},
        {"MAIL FROM:<s@a.test> SIZE=100 BODY=8BITMIME", "<s@a.test>"},
        {"MAIL FROM:<j\xc3\xb6rg@a.test> SMTPUTF8", "<j\xc3\xb6rg@a.test>"},
        {"MAIL FROM:<\"x y\"@a.test>", "<\"x y\"@a.test>"},
    };
    for (const auto& c : cases) {
        INFO(c.cmd);
        Run r;
        r.feed(kEhlo);
        CHECK(starts_with(r.one(c.cmd + "\r\n"), "250 2.1.0 Ok"));
        const auto m = all_of<MailFrom>(r.last);
        REQUIRE(m.size() == 1);
        CHECK(m[0].address == c.event);
    }
}

// ---- full transactions and the commit handshake -----------------------------------------

TEST_CASE("a transaction commits only after the glue says so", "[smtp][fsm]") {
    Run r;
    r.feed(kEhlo);
    CHECK(starts_with(r.one("MAIL FROM:<Sender@A.TEST> SIZE=100 BODY=8BITMIME SMTPUTF8\r\n"),
                      "250 2.1.0"));
    CHECK(starts_with(r.one("RCPT TO:<One@B.Test>\r\n"), "250 2.1.5"));
    CHECK(starts_with(r.one("RCPT TO:<two@c.test>\r\n"), "250 2.1.5"));
    CHECK(r.one("DATA\r\n") == "354 End data with <CR><LF>.<CR><LF>\r\n");
    CHECK(r.s.state() == State::kData);
    const auto rep =
        r.feed("Subject: hi\r\nMessage-ID:\r\n <abc@a.test>\r\n\r\nbody\r\n..dot\r\n.\r\n");
    CHECK(rep.empty());  // no 250 before the commit
    CHECK(tags(r.last) == std::vector<std::string>{"msgid", "commit"});
    CHECK(r.s.state() == State::kCommitting);
    CHECK_FALSE(r.s.deadline().has_value());
    const auto ids = all_of<MessageIdSeen>(r.last);
    REQUIRE(ids.size() == 1);
    CHECK(ids[0].message_id == "<abc@a.test>");
    const auto commits = all_of<CommitMessage>(r.last);
    REQUIRE(commits.size() == 1);
    const auto& c = commits[0];
    CHECK(c.content == "Subject: hi\r\nMessage-ID:\r\n <abc@a.test>\r\n\r\nbody\r\n.dot\r\n");
    CHECK(c.envelope.sender.local == "Sender");
    CHECK(c.envelope.sender.domain == "a.test");
    REQUIRE(c.envelope.recipients.size() == 2);
    CHECK(c.envelope.recipients[0].path() == "<One@b.test>");
    CHECK(c.envelope.recipients[1].path() == "<two@c.test>");
    CHECK(c.envelope.params.size == 100u);
    CHECK(c.envelope.params.body == BodyType::k8BitMime);
    CHECK(c.envelope.params.smtputf8);
    CHECK(c.envelope.helo == "client.test");
    CHECK(c.envelope.esmtp);
    CHECK_FALSE(c.envelope.tls);
    CHECK(received_protocol(c.envelope) == "UTF8SMTP");

    CHECK(r.commit(CommitResult::queued("42")) ==
          std::vector<std::string>{"250 2.0.0 Ok: queued as 42\r\n"});
    CHECK(r.s.state() == State::kReady);
    CHECK(r.s.messages_queued() == 1);
    CHECK_FALSE(r.s.on_commit_result(CommitResult::queued("43"), r.now));  // not committing
    // The next transaction starts clean.
    CHECK(starts_with(r.one(kRcpt), "503 5.5.1"));
    CHECK(starts_with(r.one(kMail), "250 2.1.0"));
}

TEST_CASE("commit failures are temporary, never 5xx", "[smtp][fsm]") {
    struct Case {
        CommitResult result;
        std::string reply;
    };
    const std::vector<Case> cases = {
        {CommitResult::no_space(), "452 4.3.1 Insufficient system storage\r\n"},
        {CommitResult::io_error(), "451 4.3.0 "},
    };
    for (const auto& c : cases) {
        Run r;
        r.feed(kEhlo + kMail + kRcpt + "DATA\r\nx\r\n.\r\n");
        REQUIRE(r.s.state() == State::kCommitting);
        const auto rep = r.commit(c.result);
        REQUIRE(rep.size() == 1);
        CHECK(starts_with(rep[0], c.reply));
        CHECK(rep[0][0] == '4');
        CHECK(r.s.state() == State::kReady);
        CHECK(r.s.messages_queued() == 0);
        // The client may retry on the same session.
        r.feed(kMail + kRcpt + "DATA\r\ny\r\n.\r\n");
        CHECK(r.s.state() == State::kCommitting);
        CHECK(r.commit(CommitResult::queued("7"))[0] == "250 2.0.0 Ok: queued as 7\r\n");
    }
}

TEST_CASE("pipelined input waits while committing", "[smtp][fsm]") {
    Run r;
    r.feed(kEhlo);
    const std::string batch = kMail + kRcpt + "DATA\r\n" + "one\r\n.\r\n" + kMail + kRcpt +
                              "DATA\r\n" + "two\r\n.\r\n" + "QUIT\r\n";
    auto rep = r.feed(batch);
    CHECK(tags(r.last) ==
          std::vector<std::string>{"mail", "250", "rcpt", "250", "354", "data", "commit"});
    CHECK(r.s.state() == State::kCommitting);
    // More input while committing is only buffered.
    CHECK(r.feed("NOOP\r\n").empty());
    CHECK(r.last.empty());

    rep = r.commit(CommitResult::queued("1"));
    CHECK(tags(r.last) ==
          std::vector<std::string>{"250", "mail", "250", "rcpt", "250", "354", "data", "commit"});
    CHECK(all_of<CommitMessage>(r.last)[0].content == "two\r\n");
    rep = r.commit(CommitResult::queued("2"));
    CHECK(rep == std::vector<std::string>{"250 2.0.0 Ok: queued as 2\r\n",
                                          "221 2.0.0 mx.test closing connection\r\n"});
    CHECK(has<Close>(r.last));
    CHECK(r.s.closed());
}

TEST_CASE("pipelined input while committing is bounded", "[smtp][fsm]") {
    auto cfg = test_config();
    cfg.limits.max_pending_input = 1024;
    Run r(cfg);
    r.feed(kEhlo + kMail + kRcpt + "DATA\r\nx\r\n.\r\n");
    REQUIRE(r.s.state() == State::kCommitting);
    for (int i = 0; i < 200; ++i)
        CHECK(r.feed("NOOP\r\n").empty());
    const auto rep = r.commit(CommitResult::queued("9"));
    REQUIRE(rep.size() == 2);
    CHECK(rep[0] == "250 2.0.0 Ok: queued as 9\r\n");  // the commit is still answered
    CHECK(starts_with(rep[1], "421 4.5.0 mx.test"));
    CHECK(r.s.closed());

    // The same when a single read already carried too much after the final dot.
    Run big(cfg);
    big.feed(kEhlo);
    std::string lots = kMail + kRcpt + "DATA\r\nx\r\n.\r\n";
    for (int i = 0; i < 300; ++i)
        lots += "NOOP\r\n";
    big.feed(lots);
    REQUIRE(big.s.state() == State::kCommitting);
    const auto rep2 = big.commit(CommitResult::queued("10"));
    REQUIRE(rep2.size() == 2);
    CHECK(starts_with(rep2[1], "421 4.5.0"));
}

TEST_CASE("pipelined group with some bad recipients (INJ-14)", "[smtp][fsm]") {
    auto cfg = test_config();
    Run r(cfg);
    r.feed(kEhlo);
    const std::string batch = kMail +
                              "RCPT TO:<a@b.test>\r\nRCPT TO:<bad>\r\nRCPT TO:<c@b.test>\r\n" +
                              "RCPT TO:<d@[10.0.0.1]>\r\nDATA\r\nhello\r\n.\r\nQUIT\r\n";
    const auto rep = r.feed(batch);
    std::vector<std::string> codes;
    for (const auto& x : rep)
        codes.push_back(x.substr(0, 3));
    CHECK(codes == std::vector<std::string>{"250", "250", "501", "250", "553", "354"});
    const auto commits = all_of<CommitMessage>(r.last);
    REQUIRE(commits.size() == 1);
    REQUIRE(commits[0].envelope.recipients.size() == 2);
    CHECK(commits[0].envelope.recipients[1].address() == "c@b.test");
    const auto rcpts = all_of<RcptTo>(r.last);
    REQUIRE(rcpts.size() == 2);
    CHECK(rcpts[1].rid == 1);
    const auto after = r.commit(CommitResult::queued("5"));
    CHECK(after.size() == 2);
    CHECK(r.s.closed());
}

TEST_CASE("byte-by-byte and chunked feeding give identical results", "[smtp][fsm]") {
    const std::string session = kEhlo + "MAIL FROM:<s@a.test> SIZE=20\r\n" + kRcpt +
                                "NOOP\r\nDATA\r\nSubject: x\r\n\r\n.a\r\n..\r\nline\r\n.\r\n";
    Run ref;
    ref.feed(session);
    const auto ref_tags = tags(ref.last);
    const auto ref_content = all_of<CommitMessage>(ref.last).at(0).content;
    CHECK(ref_content == "Subject: x\r\n\r\na\r\n.\r\nline\r\n");
    for (std::size_t n : {1u, 2u, 3u, 5u, 7u, 13u, 64u}) {
        INFO("chunk " << n);
        Run r;
        const auto all = r.feed_chunked(session, n);
        CHECK(tags(all) == ref_tags);
        const auto commits = all_of<CommitMessage>(all);
        REQUIRE(commits.size() == 1);
        CHECK(commits[0].content == ref_content);
        // and the tail after the commit, also byte by byte
        r.commit(CommitResult::queued("1"));
        const auto tail = r.feed_chunked("NOOP\r\nQUIT\r\n", n);
        CHECK(replies_of(tail) ==
              std::vector<std::string>{"250 2.0.0 Ok\r\n",
                                       "221 2.0.0 mx.test closing connection\r\n"});
    }
}

// ---- command-line framing ----------------------------------------------------------------

TEST_CASE("command framing: CRLF only", "[smtp][fsm][smuggling]") {
    Run r;
    CHECK(r.feed("EHLO x.test\n").empty());  // a bare LF does not end a line
    CHECK(r.feed("MAIL FROM:<a@b.test>").empty());
    const auto rep = r.feed("\r\n");
    REQUIRE(rep.size() == 1);  // the whole thing is one bad line
    CHECK(starts_with(rep[0], "500 5.5.2"));
    CHECK(r.s.state() == State::kNeedHelo);
    CHECK_FALSE(has<MailFrom>(r.last));

    struct Case {
        std::string line;
        std::string reply;
    };
    const std::vector<Case> cases = {
        {"NOOP\rx\r\n", "500 5.5.2"},      {"NOOP\r\r\n", "500 5.5.2"},
        {"\nNOOP\r\n", "500 5.5.2"},       {std::string("NO\0OP\r\n", 7), "500 5.5.2"},
        {"NOOP \x1b[2J\r\n", "500 5.5.2"}, {"\r\n", "500 5.5.2"},  // empty line: unknown command
    };
    for (const auto& c : cases) {
        Run s;
        CHECK(starts_with(s.one(c.line), c.reply));
        CHECK(starts_with(s.one("NOOP\r\n"), "250 2.0.0"));  // session survives
    }
}

TEST_CASE("command line length limit", "[smtp][fsm]") {
    // 998 octets + CRLF = 1000: accepted.
    const std::string ok = "NOOP " + std::string(993, 'x');
    REQUIRE(ok.size() == 998);
    {
        Run r;
        CHECK(starts_with(r.one(ok + "\r\n"), "250 2.0.0"));
    }
    {
        Run r;  // the same, split right between CR and LF
        CHECK(r.feed(ok + "\r").empty());
        CHECK(starts_with(r.one("\n"), "250 2.0.0"));
    }
    {
        Run r;  // 999 + CRLF in one piece
        CHECK(r.one(ok + "x\r\n") == "500 5.5.6 Error: line too long\r\n");
        CHECK(starts_with(r.one("NOOP\r\n"), "250 2.0.0"));
    }
    {
        Run r;  // detected before the CRLF arrives, tail discarded, one reply only
        CHECK(r.feed(ok).empty());
        CHECK(r.one("x") == "500 5.5.6 Error: line too long\r\n");
        CHECK(r.feed("MAIL FROM:<a@b> more junk\r").empty());
        CHECK(r.feed("\nNOOP\r").empty());
        CHECK(starts_with(r.one("\n"), "250 2.0.0"));
    }
    {
        Run r;  // 10 MB without CRLF, fed in 64 KiB reads: one reply, nothing else
        const std::string chunk(64 * 1024, 'A');
        std::size_t replies = 0;
        for (int i = 0; i < 160; ++i)
            replies += r.feed(chunk).size();
        CHECK(replies == 1);
        CHECK(r.s.state() == State::kNeedHelo);
        CHECK(starts_with(r.one("\r\nNOOP\r\n"), "250 2.0.0"));
    }
}

// ---- DATA -------------------------------------------------------------------------------

namespace {

// Runs a transaction with `body` as DATA content (must include the terminator) and
// returns the actions produced by the body.
std::vector<Action> run_body(Run& r, const std::string& body) {
    r.feed(kEhlo + kMail + kRcpt + "DATA\r\n");
    REQUIRE(r.s.state() == State::kData);
    r.feed(body);
    return r.last;
}

}  // namespace

TEST_CASE("dot-unstuffing and terminator", "[smtp][fsm][data]") {
    struct Case {
        std::string body;
        std::string content;
    };
    const std::vector<Case> cases = {
        {".\r\n", ""},  // empty message
        {"a\r\n.\r\n", "a\r\n"},
        {"..\r\n.\r\n", ".\r\n"},
        {"...\r\n.\r\n", "..\r\n"},
        {".a\r\n.\r\n", "a\r\n"},
        {"..a\r\n.\r\n", ".a\r\n"},
        {" .\r\n.\r\n", " .\r\n"},
        {"a.\r\n.\r\n", "a.\r\n"},
        {"\r\n\r\n.\r\n", "\r\n\r\n"},
        {"x\r\n.\r\nNOOP\r\n", "x\r\n"},  // the rest is a command (after the commit)
        {"8bit \xc3\xa9\r\n.\r\n", "8bit \xc3\xa9\r\n"},
        {"tab\there\r\n.\r\n", "tab\there\r\n"},
    };
    for (const auto& c : cases) {
        INFO(c.body);
        Run r;
        const auto a = run_body(r, c.body);
        const auto commits = all_of<CommitMessage>(a);
        REQUIRE(commits.size() == 1);
        CHECK(commits[0].content == c.content);
    }
}

TEST_CASE("SMTP smuggling: only CRLF.CRLF ends DATA", "[smtp][fsm][smuggling]") {
    const std::string smuggled =
        "MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@y.test>\r\nDATA\r\nevil\r\n";
    const std::vector<std::string> variants = {
        "\n.\n", "\n.\r\n", "\r.\r", "\r.\r\n", "\r\n.\r", "\r\n.\n", ".\n", "\r\n.\r\r\n",
    };
    for (const auto& v : variants) {
        for (std::size_t chunk : {std::size_t(1), std::size_t(100000)}) {
            INFO("variant " << v.size() << " chunk " << chunk);
            Run r;
            r.feed(kEhlo + kMail + kRcpt + "DATA\r\n");
            const std::string body = "hello\r\n" + std::string("x") + v + smuggled;
            auto a = r.feed_chunked(body, chunk);
            // Still inside DATA: nothing was answered, nothing smuggled ran.
            CHECK(replies_of(a).empty());
            CHECK(r.s.state() == State::kData);
            a = r.feed_chunked(".\r\n", chunk);
            // (".\r\n" follows "evil\r\n": this is the real terminator.)
            CHECK(replies_of(a) ==
                  std::vector<std::string>{"554 5.6.11 Bare CR or LF not permitted\r\n"});
            CHECK_FALSE(has<CommitMessage>(a));
            CHECK_FALSE(has<MailFrom>(a));
            CHECK(all_of<Rset>(a).size() == 1);
            CHECK(r.s.state() == State::kReady);
            // The session goes on normally.
            CHECK(starts_with(r.one(kMail), "250 2.1.0"));
        }
    }
    // The terminator straight after a smuggle attempt at the start of a line.
    Run r;
    auto a = run_body(r, "a\n.\r\n.\r\n");
    CHECK(replies_of(a) == std::vector<std::string>{"554 5.6.11 Bare CR or LF not permitted\r\n"});
}

TEST_CASE("DATA content refusals, read to the end first", "[smtp][fsm][data]") {
    auto cfg = test_config();
    cfg.limits.max_message_size = 100;
    cfg.limits.max_hops = 3;
    const std::string l998(998, 'x');
    struct Case {
        std::string body;
        std::string reply;  // empty: accepted
    };
    const std::vector<Case> cases = {
        {std::string("a\0b\r\n.\r\n", 8), "554 5.6.0 NUL"},
        {l998 + "\r\n.\r\n", "552 5.3.4"},                  // also over the 100-octet size limit
        {std::string(98, 'y') + "\r\n.\r\n", ""},           // exactly 100 octets
        {std::string(99, 'y') + "\r\n.\r\n", "552 5.3.4"},  // 101 octets
        {"Received: a\r\nReceived: b\r\nReceived: c\r\n\r\nx\r\n.\r\n", ""},
        {"Received: a\r\nReceived: b\r\nReceived: c\r\nReceived: d\r\n\r\n.\r\n", "554 5.4.6"},
        {"received : a\r\nRECEIVED: b\r\nReceived:c\r\nReceived :\r\n d\r\n\r\n.\r\n", "554 5.4.6"},
        {"Received: a\r\n b\r\n c\r\n d\r\n\r\nx\r\n.\r\n", ""},  // folded: one header
        {"Subject: x\r\n\r\nReceived: a\r\nReceived: b\r\nReceived: c\r\nReceived: d\r\n.\r\n",
         ""},  // body lines are not headers
    };
    for (const auto& c : cases) {
        INFO(c.body.substr(0, 60));
        Run r(cfg);
        const auto a = run_body(r, c.body);
        if (c.reply.empty()) {
            CHECK(replies_of(a).empty());
            CHECK(has<CommitMessage>(a));
        } else {
            const auto rep = replies_of(a);
            REQUIRE(rep.size() == 1);
            CHECK(starts_with(rep[0], c.reply));
            CHECK_FALSE(has<CommitMessage>(a));
            CHECK(r.s.state() == State::kReady);
        }
    }
}

TEST_CASE("DATA line length limit", "[smtp][fsm][data]") {
    const std::string l998(998, 'x');
    auto strict = test_config();
    strict.limits.max_data_line = 998;  // the RFC 5321 limit, to test the boundary
    {
        Run r(strict);
        auto a = run_body(r, l998 + "\r\n.\r\n");
        CHECK(has<CommitMessage>(a));
    }
    {
        // "." + 997 x 'd' is a 998-octet line, 999 on the wire once dot-stuffed: the
        // transparency dot does not count (RFC 5321 §4.5.3.1.6). Postfix sends exactly this
        // when it folds a long line that starts with a dot.
        Run r(strict);
        auto a = run_body(r, ".." + std::string(997, 'd') + "\r\n.\r\n");
        REQUIRE(has<CommitMessage>(a));
        CHECK(all_of<CommitMessage>(a).at(0).content == "." + std::string(997, 'd') + "\r\n");
    }
    {
        Run r(strict);
        auto a = run_body(r, "." + l998 + "\r\n.\r\n");  // 998 content octets, stuffed
        CHECK(has<CommitMessage>(a));
    }
    {
        Run r(strict);
        auto a = run_body(r, l998 + "x\r\n.\r\n");
        CHECK(starts_with(replies_of(a).at(0), "554 5.6.0 Message line too long (max 998"));
    }
    {
        Run r(strict);
        auto a = run_body(r, ".." + l998 + "\r\n.\r\n");  // 999 content octets
        CHECK(starts_with(replies_of(a).at(0), "554 5.6.0 Message line too long"));
    }
    {
        Run r(strict);  // 998 split across feeds
        r.feed(kEhlo + kMail + kRcpt + "DATA\r\n");
        auto a = r.feed_chunked(l998 + "\r\n" + l998 + "\r\n.\r\n", 333);
        CHECK(has<CommitMessage>(a));
    }
    {
        // Default policy: long lines (minified CSS, 1,560 octets) are accepted, as Postfix
        // and Exim accept them; the delivery side folds them.
        Run r;
        const std::string css = ".c{color:red}" + std::string(1547, 'z');
        auto a = run_body(r, "." + css + "\r\n.\r\n");
        REQUIRE(has<CommitMessage>(a));
        CHECK(all_of<CommitMessage>(a).at(0).content == css + "\r\n");
    }
    {
        Run r;  // over the configurable bound (default 65536)
        auto a = run_body(r, std::string(65537, 'q') + "\r\n.\r\n");
        CHECK(starts_with(replies_of(a).at(0), "554 5.6.0 Message line too long (max 65536"));
    }
}

TEST_CASE("message size: SIZE at MAIL and actual content", "[smtp][fsm][data]") {
    auto cfg = test_config();
    cfg.limits.max_message_size = 1000;
    Run r(cfg);
    r.feed(kEhlo);
    CHECK(starts_with(r.one("MAIL FROM:<a@b.test> SIZE=1001\r\n"), "552 5.3.4"));
    CHECK(r.s.state() == State::kReady);
    CHECK(starts_with(r.one("MAIL FROM:<a@b.test> SIZE=1000\r\n"), "250 2.1.0"));
    r.feed(kRcpt + "DATA\r\n");
    // Undeclared oversize: keep reading (even 1 MB) to the dot, then 552.
    std::string big;
    for (int i = 0; i < 10000; ++i)
        big += std::string(98, 'z') + "\r\n";
    auto a = r.feed_chunked(big, 4096);
    CHECK(replies_of(a).empty());
    CHECK(r.s.state() == State::kData);
    auto rep = r.feed(".\r\n");
    REQUIRE(rep.size() == 1);
    CHECK(starts_with(rep[0], "552 5.3.4"));
    CHECK_FALSE(has<CommitMessage>(r.last));
    CHECK(r.s.state() == State::kReady);
}

TEST_CASE("recipient limit, relay control and null sender", "[smtp][fsm]") {
    auto cfg = test_config();
    cfg.limits.max_recipients = 3;
    Run r(cfg);
    r.feed(kEhlo);
    CHECK(starts_with(r.one("MAIL FROM:<>\r\n"), "250 2.1.0"));
    CHECK(all_of<MailFrom>(r.last).at(0).address == "<>");
    for (int i = 0; i < 3; ++i)
        CHECK(starts_with(r.one(kRcpt), "250 2.1.5"));
    CHECK(r.one(kRcpt) == "452 4.5.3 Too many recipients\r\n");
    CHECK(r.one(kRcpt) == "452 4.5.3 Too many recipients\r\n");
    r.feed("DATA\r\nx\r\n.\r\n");
    const auto c = all_of<CommitMessage>(r.last);
    REQUIRE(c.size() == 1);
    CHECK(c[0].envelope.sender.is_null);
    CHECK(c[0].envelope.recipients.size() == 3);

    cfg.relay_allowed = false;
    Run denied(cfg);
    denied.feed(kEhlo + kMail);
    CHECK(denied.one(kRcpt) == "554 5.7.1 Relaying denied\r\n");
    CHECK_FALSE(has<RcptTo>(denied.last));
    CHECK(denied.one("DATA\r\n") == "554 5.5.1 Error: no valid recipients\r\n");

    cfg.relay_allowed = true;
    cfg.limits.allow_literal_recipients = true;
    Run lit(cfg);
    lit.feed(kEhlo + kMail);
    CHECK(starts_with(lit.one("RCPT TO:<a@[192.0.2.1]>\r\n"), "250 2.1.5"));
}

TEST_CASE("UTF-8 addresses only with SMTPUTF8", "[smtp][fsm]") {
    Run r;
    r.feed(kEhlo);
    CHECK(starts_with(r.one("MAIL FROM:<a@b.test>\r\n"), "250"));
    CHECK(starts_with(r.one("RCPT TO:<j\xc3\xb6rg@b.test>\r\n"), "553 5.6.7"));
    r.feed("RSET\r\n");
    CHECK(starts_with(r.one("MAIL FROM:<a@b.test> SMTPUTF8\r\n"), "250"));
    CHECK(starts_with(r.one("RCPT TO:<j\xc3\xb6rg@B\xc3\xbc.TEST>\r\n"), "250 2.1.5"));
    CHECK(all_of<RcptTo>(r.last).at(0).address == "<j\xc3\xb6rg@b\xc3\xbc.test>");
}

TEST_CASE("Message-ID extraction", "[smtp][fsm][headers]") {
    struct Case {
        std::string content;
        std::optional<std::string> id;
    };
    const std::vector<Case> cases = {
        {"Message-ID: <a@b>\r\n\r\n", "<a@b>"},
        {"message-id:<a@b>  \r\n", "<a@b>"},
        {"Subject: s\r\nMessage-Id:\r\n\t<folded@b>\r\nTo: x\r\n\r\n", "<folded@b>"},
        {"Message-ID: <first@b>\r\nMessage-ID: <second@b>\r\n", "<first@b>"},
        {"Subject: s\r\n\r\nMessage-ID: <in-body@b>\r\n", std::nullopt},
        {"not a header\r\nMessage-ID: <x@b>\r\n", std::nullopt},
        {"Message-ID : <obs@b>\r\n", "<obs@b>"},
        {"", std::nullopt},
    };
    for (const auto& c : cases) {
        INFO(c.content);
        CHECK(find_message_id(c.content) == c.id);
    }
    const std::string huge = "Message-ID: <" + std::string(5000, 'a') + "@b>\r\n\r\n";
    CHECK(find_message_id(huge)->size() == 256);

    // Not emitted when there is no Message-ID.
    Run r;
    auto a = run_body(r, "Subject: none\r\n\r\nx\r\n.\r\n");
    CHECK_FALSE(has<MessageIdSeen>(a));
    CHECK(has<CommitMessage>(a));
}

TEST_CASE("count_received_headers", "[smtp][fsm][headers]") {
    CHECK(count_received_headers("") == 0);
    CHECK(count_received_headers("Received: a\r\n") == 1);
    CHECK(count_received_headers("Received: a\r\n b\r\nReceived: c\r\n\r\nReceived: d\r\n") == 2);
    CHECK(count_received_headers("X-Received: a\r\nReceivedX: b\r\n") == 0);
    CHECK(count_received_headers("Received\t: a\r\n") == 1);
    CHECK(count_received_headers(" Received: a\r\n") == 0);  // starts with a continuation
}

// ---- STARTTLS ----------------------------------------------------------------------------

TEST_CASE("STARTTLS discards pipelined plaintext and requires a new EHLO", "[smtp][fsm][tls]") {
    Run r;
    r.feed(kEhlo);
    // CVE-2011-0411: the MAIL/RCPT after STARTTLS in the same segment must never run.
    const auto rep = r.feed("STARTTLS\r\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<v@y.test>\r\n");
    CHECK(rep == std::vector<std::string>{"220 2.0.0 Ready to start TLS\r\n"});
    CHECK(tags(r.last) == std::vector<std::string>{"220", "starttls"});
    CHECK(r.s.state() == State::kTlsHandshake);
    // Anything fed during the handshake is ignored as well.
    CHECK(r.feed("NOOP\r\n").empty());
    CHECK(r.last.empty());

    r.s.on_tls_established(r.now);
    r.collect();
    CHECK(replies_of(r.last).empty());  // nothing replays
    CHECK(r.s.state() == State::kNeedHelo);
    CHECK(r.s.tls_active());
    CHECK(r.s.helo().empty());
    CHECK(starts_with(r.one(kMail), "503 5.5.1"));
    const auto ehlo = r.one(kEhlo);
    CHECK(ehlo.find("STARTTLS") == std::string::npos);
    CHECK(r.one("STARTTLS\r\n") == "503 5.5.1 Error: TLS already active\r\n");
    r.feed(kMail + kRcpt + "DATA\r\nx\r\n.\r\n");
    const auto c = all_of<CommitMessage>(r.last);
    REQUIRE(c.size() == 1);
    CHECK(c[0].envelope.tls);
    CHECK(received_protocol(c[0].envelope) == "ESMTPS");
}

TEST_CASE("STARTTLS split byte by byte still discards the tail", "[smtp][fsm][tls]") {
    Run r;
    r.feed(kEhlo);
    auto a = r.feed_chunked("STARTTLS\r\nNOOP\r\n", 1);
    CHECK(replies_of(a) == std::vector<std::string>{"220 2.0.0 Ready to start TLS\r\n"});
    r.s.on_tls_established(r.now);
    r.collect();
    CHECK(r.feed("").empty());
}

TEST_CASE("STARTTLS unavailable, failure and handshake timeout", "[smtp][fsm][tls]") {
    auto cfg = test_config();
    cfg.tls_available = false;
    Run r(cfg);
    r.feed(kEhlo);
    CHECK(starts_with(r.one("STARTTLS\r\n"), "502 5.5.1"));
    CHECK(r.s.state() == State::kReady);

    Run f;
    f.feed(kEhlo + "STARTTLS\r\n");
    f.s.on_tls_failed();
    f.collect();
    CHECK(tags(f.last) == std::vector<std::string>{"close"});
    CHECK(f.s.closed());

    Run t;
    t.feed(kEhlo + "STARTTLS\r\n");
    REQUIRE(t.s.deadline().has_value());
    CHECK(*t.s.deadline() == t.now + minutes(5));
    CHECK_FALSE(t.s.on_timeout(t.now + minutes(4)));
    CHECK(t.s.on_timeout(t.now + minutes(5)));
    t.collect();
    CHECK(tags(t.last) == std::vector<std::string>{"close"});  // no plaintext reply
}

// ---- deadlines ----------------------------------------------------------------------------

TEST_CASE("command deadline is not extended by drip-feeding", "[smtp][fsm][timeout]") {
    Run r;
    const Millis start = r.now;
    CHECK(r.s.deadline() == start + minutes(5));
    // One byte a minute: the partial line never moves the deadline.
    for (const char* b : {"N", "O", "O", "P"}) {
        r.now += minutes(1);
        CHECK(r.feed(b).empty());
        CHECK(r.s.deadline() == start + minutes(5));
    }
    CHECK_FALSE(r.s.on_timeout(start + minutes(5) - Millis(1)));
    CHECK(r.s.on_timeout(start + minutes(5)));
    r.collect();
    CHECK(replies_of(r.last) ==
          std::vector<std::string>{"421 4.4.2 mx.test Error: timeout exceeded\r\n"});
    CHECK(has<Close>(r.last));
    CHECK(r.s.closed());
    CHECK_FALSE(r.s.deadline().has_value());
}

TEST_CASE("a complete command restarts the command deadline", "[smtp][fsm][timeout]") {
    Run r;
    r.now += minutes(4);
    r.feed(kEhlo);
    CHECK(r.s.deadline() == r.now + minutes(5));
    r.now += minutes(4);
    r.feed(kMail);
    CHECK(r.s.deadline() == r.now + minutes(5));
    CHECK_FALSE(r.s.on_timeout(r.now + minutes(1)));
}

TEST_CASE("DATA deadlines: per block and total", "[smtp][fsm][timeout]") {
    auto cfg = test_config();
    Run r(cfg);
    r.feed(kEhlo + kMail + kRcpt + "DATA\r\n");
    const Millis start = r.now;
    CHECK(r.s.deadline() == start + minutes(3));
    // Bytes without a complete line do not help.
    r.now += minutes(2);
    r.feed("partial");
    CHECK(r.s.deadline() == start + minutes(3));
    // A complete line does, but never beyond the total DATA deadline.
    r.feed(" line\r\n");
    CHECK(r.s.deadline() == r.now + minutes(3));
    for (int i = 0; i < 4; ++i) {
        r.now += minutes(2);
        r.feed("l\r\n");
    }
    CHECK(r.now == start + minutes(10));
    CHECK(r.s.deadline() == start + minutes(10));
    CHECK(r.s.on_timeout(r.now));
    r.collect();
    CHECK(starts_with(replies_of(r.last).at(0), "421 4.4.2 mx.test"));
    CHECK_FALSE(has<CommitMessage>(r.last));

    Run b(cfg);
    b.feed(kEhlo + kMail + kRcpt + "DATA\r\nline\r\n");
    CHECK_FALSE(b.s.on_timeout(b.now + minutes(3) - Millis(1)));
    CHECK(b.s.on_timeout(b.now + minutes(3)));
}

TEST_CASE("configurable timeouts", "[smtp][fsm][timeout]") {
    auto cfg = test_config();
    cfg.limits.command_timeout = seconds(10);
    cfg.limits.data_block_timeout = seconds(2);
    cfg.limits.data_total_timeout = seconds(5);
    Run r(cfg);
    CHECK(r.s.deadline() == r.now + seconds(10));
    r.feed(kEhlo + kMail + kRcpt + "DATA\r\n");
    CHECK(r.s.deadline() == r.now + seconds(2));
    r.feed("x\r\n.\r\n");
    CHECK_FALSE(r.s.deadline().has_value());  // committing: the glue owns the clock
    r.commit(CommitResult::queued("1"));
    CHECK(r.s.deadline() == r.now + seconds(10));
}

// ---- error limits, junk, shutdown, spool admission ---------------------------------------

TEST_CASE("too many errors closes with 421", "[smtp][fsm]") {
    Run r;
    for (int i = 0; i < 9; ++i)
        CHECK(starts_with(r.one("FROB\r\n"), "500 5.5.2"));
    const auto rep = r.feed("FROB\r\nNOOP\r\n");
    REQUIRE(rep.size() == 2);
    CHECK(starts_with(rep[0], "500 5.5.2"));
    CHECK(starts_with(rep[1], "421 4.7.0 mx.test"));
    CHECK(has<Close>(r.last));
    CHECK(r.s.closed());
}

TEST_CASE("too many junk commands closes with 421", "[smtp][fsm]") {
    auto cfg = test_config();
    cfg.limits.max_junk_commands = 5;
    Run r(cfg);
    for (int i = 0; i < 5; ++i)
        CHECK(starts_with(r.one("NOOP\r\n"), "250"));
    const auto rep = r.feed("NOOP\r\n");
    REQUIRE(rep.size() == 2);
    CHECK(starts_with(rep[1], "421 4.7.0"));
    CHECK(r.s.closed());
}

TEST_CASE("max messages per session", "[smtp][fsm]") {
    auto cfg = test_config();
    cfg.limits.max_messages = 1;
    Run r(cfg);
    r.feed(kEhlo + kMail + kRcpt + "DATA\r\nx\r\n.\r\n");
    r.commit(CommitResult::queued("1"));
    CHECK(starts_with(r.one(kMail), "421 4.7.0"));
    CHECK(r.s.closed());
}

TEST_CASE("shutdown", "[smtp][fsm]") {
    {
        Run r;  // idle
        r.feed(kEhlo);
        r.s.shutdown(r.now);
        r.collect();
        CHECK(replies_of(r.last) ==
              std::vector<std::string>{"421 4.3.2 mx.test Service shutting down\r\n"});
        CHECK(has<Close>(r.last));
        CHECK(r.feed(kMail).empty());
    }
    {
        Run r;  // envelope given, no content yet: nothing to finish
        r.feed(kEhlo + kMail + kRcpt);
        r.s.shutdown(r.now);
        r.collect();
        CHECK(tags(r.last) == std::vector<std::string>{"421", "close"});
    }
    {
        // Defect (issue #13): mid-DATA sessions were cut with 421 and the message dropped.
        // Now the content is read to its end, committed and answered 250, then 421.
        Run r;
        r.feed(kEhlo + kMail + kRcpt + "DATA\r\npartial\r\n");
        r.s.shutdown(r.now);
        r.collect();
        CHECK(r.last.empty());
        CHECK_FALSE(r.s.closed());
        r.feed("rest\r\n.\r\nMAIL FROM:<late@b.test>\r\n");
        CHECK(has<CommitMessage>(r.last));
        const auto rep = r.commit(CommitResult::queued("78"));
        CHECK(rep == std::vector<std::string>{"250 2.0.0 Ok: queued as 78\r\n",
                                              "421 4.3.2 mx.test Service shutting down\r\n"});
        CHECK(r.s.closed());
    }
    {
        Run r;  // mid-DATA, and the message is refused at its end: the refusal, then 421
        r.feed(kEhlo + kMail + kRcpt + "DATA\r\nbare\nLF\r\n");
        r.s.shutdown(r.now);
        r.collect();
        CHECK(r.last.empty());
        r.feed(".\r\n");
        CHECK(tags(r.last) == std::vector<std::string>{"554", "rset", "421", "close"});
        CHECK(r.s.closed());
    }
    {
        Run r;  // committing: the commit is answered first
        r.feed(kEhlo + kMail + kRcpt + "DATA\r\nx\r\n.\r\nNOOP\r\n");
        r.s.shutdown(r.now);
        r.collect();
        CHECK(r.last.empty());
        const auto rep = r.commit(CommitResult::queued("77"));
        CHECK(rep == std::vector<std::string>{"250 2.0.0 Ok: queued as 77\r\n",
                                              "421 4.3.2 mx.test Service shutting down\r\n"});
        CHECK(r.s.closed());
    }
}

TEST_CASE("spool admission at MAIL", "[smtp][fsm]") {
    std::vector<std::uint64_t> asked;
    SpoolAdmit answer = SpoolAdmit::kOk;
    auto cfg = test_config();
    cfg.spool_admit = [&](std::uint64_t n) {
        asked.push_back(n);
        return answer;
    };
    Run r(cfg);
    r.feed(kEhlo);
    CHECK(starts_with(r.one("MAIL FROM:<a@b.test> SIZE=500\r\n"), "250 2.1.0"));
    r.feed("RSET\r\n");
    answer = SpoolAdmit::kInsufficientStorage;
    CHECK(r.one(kMail) == "452 4.3.1 Insufficient system storage\r\n");
    CHECK(r.s.state() == State::kReady);
    CHECK_FALSE(has<MailFrom>(r.last));
    answer = SpoolAdmit::kTemporaryFailure;  // e.g. no MID reservation
    CHECK(r.one(kMail) == "451 4.3.0 Error: queue not available, try again later\r\n");
    CHECK_FALSE(has<MailFrom>(r.last));
    answer = SpoolAdmit::kUnavailable;
    CHECK(starts_with(r.one(kMail), "421 4.3.2 mx.test"));
    CHECK(r.s.closed());
    CHECK(asked == std::vector<std::uint64_t>{500, 0, 0, 0});
}

TEST_CASE("unauthorised pipelining can be refused", "[smtp][fsm]") {
    auto cfg = test_config();
    cfg.limits.reject_unauth_pipelining = true;
    {
        Run r(cfg);  // pipelining before EHLO
        const auto rep = r.feed("EHLO x.test\r\nMAIL FROM:<a@b.test>\r\n");
        REQUIRE(rep.size() == 1);
        CHECK(starts_with(rep[0], "554 5.5.0"));
        CHECK(r.s.closed());
    }
    {
        Run r(cfg);  // after EHLO, a legal group is fine; DATA must end it
        r.feed(kEhlo);
        const auto rep = r.feed(kMail + kRcpt + "DATA\r\n");
        CHECK(rep.size() == 3);
        CHECK(r.s.state() == State::kData);
    }
    {
        Run r(cfg);
        r.feed(kEhlo);
        const auto rep = r.feed(kMail + kRcpt + "DATA\r\nbody\r\n.\r\n");
        REQUIRE(rep.size() == 3);
        CHECK(starts_with(rep[2], "554 5.5.0"));
    }
    {
        Run r;  // off by default
        CHECK(r.feed("EHLO x.test\r\nMAIL FROM:<a@b.test>\r\n").size() == 2);
    }
}

TEST_CASE("early talker input is handled after the greeting", "[smtp][fsm]") {
    ServerSession s(test_config());
    s.feed("EHLO x.test\r\n", Millis{0});
    CHECK(s.take_actions().empty());
    s.start(Millis{0});
    const auto rep = replies_of(s.take_actions());
    REQUIRE(rep.size() == 2);
    CHECK(starts_with(rep[0], "220 "));
    CHECK(starts_with(rep[1], "250-mx.test"));
}

TEST_CASE("state names", "[smtp][fsm]") {
    CHECK(to_string(State::kInit) == "init");
    CHECK(to_string(State::kNeedHelo) == "need_helo");
    CHECK(to_string(State::kCommitting) == "committing");
    CHECK(to_string(State::kTlsHandshake) == "tls_handshake");
    Run r;
    r.feed(kEhlo);
    const auto t = all_of<Transition>(r.last);
    REQUIRE(t.size() == 1);
    CHECK(t[0].from == State::kNeedHelo);
    CHECK(t[0].to == State::kReady);
}

// ---- Received: header ---------------------------------------------------------------------

TEST_CASE("make_received_header", "[smtp][received]") {
    ReceivedFields f;
    f.client_helo = "client.test";
    f.client_ip = "192.0.2.1";
    f.client_rdns = "host.client.test";
    f.by_host = "mx.test";
    f.with = "ESMTPS";
    f.id = "12345";
    f.for_path = "<r@b.test>";
    f.date = "Mon, 1 Jan 2024 10:00:00 +0000";
    CHECK(make_received_header(f) ==
          "Received: from client.test (host.client.test [192.0.2.1])\r\n"
          "\tby mx.test (esad) with ESMTPS id 12345\r\n"
          "\tfor <r@b.test>; Mon, 1 Jan 2024 10:00:00 +0000\r\n");

    // Hostile HELO: no header injection, no line over 998.
    const std::string evil = "x\r\nBcc: victim@x\r\n(" + std::string(5000, 'a') + ")";
    f.client_helo = evil;
    f.client_rdns = "";
    f.for_path = "";
    const std::string h = make_received_header(f);
    std::size_t pos = 0, lines = 0;
    while (pos < h.size()) {
        const auto eol = h.find("\r\n", pos);
        REQUIRE(eol != std::string::npos);
        CHECK(eol - pos < 998);
        CHECK(h.substr(pos, eol - pos).find_first_of("\r\n") == std::string::npos);
        ++lines;
        pos = eol + 2;
    }
    CHECK(lines == 3);
    CHECK(h.find("\r\nBcc:") == std::string::npos);
    CHECK(h.find("(unknown [192.0.2.1])") != std::string::npos);
    CHECK(h.find("\t; Mon, 1 Jan 2024") != std::string::npos);

    Envelope e;
    CHECK(received_protocol(e) == "SMTP");
    e.esmtp = true;
    CHECK(received_protocol(e) == "ESMTP");
    e.tls = true;
    CHECK(received_protocol(e) == "ESMTPS");
    e.params.smtputf8 = true;
    CHECK(received_protocol(e) == "UTF8SMTPS");
}

// Defect: relay-denied (554) and over-limit (452) RCPTs were not counted as errors, so a
// client could probe without limit. They count now (Postfix's smtpd_hard_error_limit).
TEST_CASE("refused recipients count toward max_errors", "[smtp][fsm]") {
    ServerConfig cfg = test_config();
    cfg.relay_allowed = false;
    cfg.limits.max_errors = 5;
    Run denied(cfg);
    denied.feed(kEhlo + kMail);
    for (int i = 0; i < 4; ++i)
        CHECK(denied.one(kRcpt) == "554 5.7.1 Relaying denied\r\n");
    auto last = denied.feed(kRcpt);
    REQUIRE(last.size() == 2);
    CHECK(last[0] == "554 5.7.1 Relaying denied\r\n");
    CHECK(starts_with(last[1], "421 4.7.0"));
    CHECK(has<Close>(denied.last));

    cfg.relay_allowed = true;
    cfg.limits.max_recipients = 1;
    cfg.limits.max_errors = 3;
    Run over(cfg);
    over.feed(kEhlo + kMail);
    CHECK(starts_with(over.one(kRcpt), "250"));
    CHECK(over.one(kRcpt) == "452 4.5.3 Too many recipients\r\n");
    CHECK(over.one(kRcpt) == "452 4.5.3 Too many recipients\r\n");
    auto r = over.feed(kRcpt);
    REQUIRE(r.size() == 2);
    CHECK(starts_with(r[1], "421 4.7.0"));
}
