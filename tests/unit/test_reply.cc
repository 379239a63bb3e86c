// Table tests for daemon/smtp/reply.h: assembly, validation, caps, enhanced codes,
// classification, EHLO keywords, bounded summaries.
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "daemon/smtp/reply.h"

using namespace esad::smtp;

namespace {

struct Fed {
    std::vector<Response> replies;
    ReplyError error = ReplyError::kNone;
};

// Feeds `input` in pieces of `step` octets (0 = all at once), collecting every reply.
Fed feed_all(const std::string& input, std::size_t step, ReplyLimits limits = {}) {
    ReplyParser parser(limits);
    Fed out;
    std::size_t pos = 0;
    while (pos < input.size()) {
        const std::size_t len = step == 0 ? input.size() - pos : std::min(step, input.size() - pos);
        std::string_view piece = std::string_view(input).substr(pos, len);
        pos += len;
        while (!piece.empty()) {
            const std::size_t n = parser.feed(piece);
            piece.remove_prefix(n);
            if (parser.has_reply()) out.replies.push_back(parser.take_reply());
            if (parser.failed()) {
                out.error = parser.error();
                return out;
            }
            if (n == 0) break;
        }
    }
    return out;
}

}  // namespace

TEST_CASE("reply assembly table, whole and byte by byte", "[reply]") {
    struct Case {
        std::string in;
        ReplyError error;
        std::vector<int> codes;                     // complete replies found, in order
        std::vector<std::string> last_reply_lines;  // lines of the last complete reply
    };
    const std::string long_ok = "250 " + std::string(kMaxReplyLine - 4, 'a') + "\r\n";
    const std::string too_long = "250 " + std::string(kMaxReplyLine - 3, 'a') + "\r\n";
    std::string many;
    for (std::size_t i = 0; i < kMaxReplyLines; ++i)
        many += "250-x\r\n";
    const std::string ok_many = many.substr(7) + "250 y\r\n";  // exactly kMaxReplyLines
    const std::string too_many = many + "250 y\r\n";
    const std::vector<Case> cases = {
        {"250 ok\r\n", ReplyError::kNone, {250}, {"ok"}},
        {"250-a\r\n250 b\r\n", ReplyError::kNone, {250}, {"a", "b"}},
        {"250\r\n", ReplyError::kNone, {250}, {""}},  // missing SP accepted (REQ-5321-25)
        {"250-\r\n250 x\r\n", ReplyError::kNone, {250}, {"", "x"}},
        {"250 ok\n", ReplyError::kNone, {250}, {"ok"}},  // bare LF tolerated
        {"250-a\n250 b\r\n", ReplyError::kNone, {250}, {"a", "b"}},
        {"250 a\rb\r\n", ReplyError::kNone, {250}, {"a\rb"}},  // bare CR is not a line end
        {"250 a\r\r\n", ReplyError::kNone, {250}, {"a\r"}},
        {"220 x\r\n250 y\r\n", ReplyError::kNone, {220, 250}, {"y"}},
        {"250-a\r\n250 b", ReplyError::kNone, {}, {}},  // incomplete
        {"550 5.1.1 no\r\n", ReplyError::kNone, {550}, {"5.1.1 no"}},
        {long_ok, ReplyError::kNone, {250}, {std::string(kMaxReplyLine - 4, 'a')}},
        {ok_many, ReplyError::kNone, {250}, {}},
        {"250-a\r\n550 b\r\n", ReplyError::kInconsistentCode, {}, {}},
        {"250-a\r\n251 b\r\n", ReplyError::kInconsistentCode, {}, {}},
        {"\r\n", ReplyError::kEmptyLine, {}, {}},
        {"\n", ReplyError::kEmptyLine, {}, {}},
        {"25\r\n", ReplyError::kBadCode, {}, {}},
        {"600 x\r\n", ReplyError::kBadCode, {}, {}},
        {"199 x\r\n", ReplyError::kBadCode, {}, {}},
        {"2x0 x\r\n", ReplyError::kBadCode, {}, {}},
        {"hello\r\n", ReplyError::kBadCode, {}, {}},
        {"\x01\x02\x03\r\n", ReplyError::kBadCode, {}, {}},
        {"250_x\r\n", ReplyError::kBadSeparator, {}, {}},
        {"2500 x\r\n", ReplyError::kBadSeparator, {}, {}},
        {"250 ok\r\n25", ReplyError::kNone, {250}, {"ok"}},
        {"250 ok\r\nxyz\r\n", ReplyError::kBadCode, {250}, {"ok"}},
        {too_long, ReplyError::kLineTooLong, {}, {}},
        {too_many, ReplyError::kTooManyLines, {}, {}},
    };
    for (const auto& c : cases) {
        for (std::size_t step : {std::size_t{0}, std::size_t{1}, std::size_t{2}, std::size_t{7}}) {
            INFO("input: " << sanitize_text(c.in, 80) << " step " << step);
            const Fed fed = feed_all(c.in, step);
            CHECK(fed.error == c.error);
            REQUIRE(fed.replies.size() == c.codes.size());
            for (std::size_t i = 0; i < c.codes.size(); ++i)
                CHECK(fed.replies[i].code == c.codes[i]);
            if (!c.last_reply_lines.empty()) CHECK(fed.replies.back().lines == c.last_reply_lines);
        }
    }
}

TEST_CASE("parser consumes exactly one reply per feed", "[reply]") {
    ReplyParser p;
    const std::string in = "220 a\r\n250-b\r\n250 c\r\nextra";
    std::string_view rest(in);
    std::size_t n = p.feed(rest);
    CHECK(n == 7);
    REQUIRE(p.has_reply());
    CHECK(p.feed(rest.substr(n)) == 0);  // a reply waits to be taken
    CHECK(p.take_reply().code == 220);
    rest.remove_prefix(n);
    n = p.feed(rest);
    CHECK(n == 14);
    REQUIRE(p.has_reply());
    CHECK(p.take_reply().lines == std::vector<std::string>{"b", "c"});
    rest.remove_prefix(n);
    CHECK(p.feed(rest) == 5);
    CHECK_FALSE(p.has_reply());
    CHECK_FALSE(p.idle());
    p.reset();
    CHECK(p.idle());
    CHECK(p.feed("221 bye\r\n") == 9);
    CHECK(p.take_reply().code == 221);
}

TEST_CASE("over-long line is refused before its end arrives", "[reply]") {
    ReplyParser p;
    const std::string huge(10 * 1024 * 1024, 'A');
    const std::size_t n = p.feed("220 " + huge);
    CHECK(p.failed());
    CHECK(p.error() == ReplyError::kLineTooLong);
    CHECK(n <= kMaxReplyLine + 2);
    CHECK(p.feed("\r\n") == 0);  // sticky
    p.reset();
    CHECK_FALSE(p.failed());
}

TEST_CASE("endless multi-line reply hits the line cap", "[reply]") {
    ReplyParser p;
    std::size_t fed = 0;
    while (!p.failed() && fed < 100000)
        fed += p.feed("220-AAAA\r\n");
    CHECK(p.error() == ReplyError::kTooManyLines);
}

TEST_CASE("total size cap", "[reply]") {
    ReplyLimits limits;
    limits.max_total = 20;
    const Fed fed = feed_all("250-aaaaaaaaaa\r\n250 bbbbbbbb\r\n", 0, limits);
    CHECK(fed.error == ReplyError::kTooLarge);
    const Fed ok = feed_all("250-aaaa\r\n250 bbb\r\n", 0, limits);
    CHECK(ok.error == ReplyError::kNone);
    CHECK(ok.replies.size() == 1);
}

TEST_CASE("parse_reply one-shot", "[reply]") {
    auto r = parse_reply("354 go ahead\r\n250 later\r\n");
    REQUIRE(r.reply);
    CHECK(r.reply->code == 354);
    CHECK(r.consumed == 14);
    CHECK_FALSE(parse_reply("250 no end").reply);
    CHECK(parse_reply("999 x\r\n").error == ReplyError::kBadCode);
}

TEST_CASE("enhanced status codes are sanitized", "[reply]") {
    struct Case {
        std::string text;
        bool ok;
        std::string code;
    };
    const std::vector<Case> cases = {
        {"5.1.1 user unknown", true, "5.1.1"},
        {"2.0.0", true, "2.0.0"},
        {"4.5.3\ttoo many", true, "4.5.3"},
        {"5.7.27 null", true, "5.7.27"},
        {"5.123.999 x", true, "5.123.999"},
        {"5.1.10 null MX", true, "5.1.10"},
        {"5.1.1x user", false, ""},
        {"5.1.1: user", false, ""},
        {"3.1.1 x", false, ""},
        {"1.0.0 x", false, ""},
        {"5.1 x", false, ""},
        {"5..1 x", false, ""},
        {"5.1. x", false, ""},
        {"5.1234.1 x", false, ""},
        {"5.1.1234 x", false, ""},
        {"X.1.1 x", false, ""},
        {" 5.1.1 x", false, ""},
        {"", false, ""},
        {"5", false, ""},
        {"5.1.1.1 x", false, ""},
        {"5.-1.1 x", false, ""},
    };
    for (const auto& c : cases) {
        INFO(c.text);
        const auto e = parse_enhanced_code(c.text);
        REQUIRE(e.has_value() == c.ok);
        if (c.ok) CHECK(e->to_string() == c.code);
    }
    // Only the first line counts, and the class must match the reply code.
    auto r = parse_reply("550-5.1.1 no such user\r\n550 5.1.1 really\r\n").reply;
    REQUIRE(r);
    REQUIRE(r->enhanced);
    CHECK(r->enhanced->to_string() == "5.1.1");
    r = parse_reply("250 5.1.1 mismatched class\r\n").reply;
    REQUIRE(r);
    CHECK_FALSE(r->enhanced);
    r = parse_reply("550 no code here\r\n").reply;
    REQUIRE(r);
    CHECK_FALSE(r->enhanced);
}

TEST_CASE("classification table", "[reply]") {
    using O = ReplyOutcome;
    using S = ReplyScope;
    using St = ReplyStage;
    struct Case {
        std::string reply;
        ReplyStage stage;
        ReplyOutcome outcome;
        ReplyScope scope;
        bool too_many;
    };
    const std::vector<Case> cases = {
        {"220 hi\r\n", St::kGreeting, O::kSuccess, S::kSite, false},
        {"554 go away\r\n", St::kGreeting, O::kPermanent, S::kSite, false},
        {"450 busy\r\n", St::kGreeting, O::kTransient, S::kSite, false},
        {"421 4.3.2 later\r\n", St::kGreeting, O::kTransient, S::kSession, false},
        {"354 weird\r\n", St::kGreeting, O::kProtocolError, S::kSite, false},
        {"250 ok\r\n", St::kEhlo, O::kSuccess, S::kSession, false},
        {"502 5.5.1 no\r\n", St::kEhlo, O::kPermanent, S::kSession, false},
        {"554 no\r\n", St::kHelo, O::kPermanent, S::kSession, false},
        {"220 go\r\n", St::kStartTls, O::kSuccess, S::kSession, false},
        {"454 4.7.0 no tls\r\n", St::kStartTls, O::kTransient, S::kSession, false},
        {"250 ok\r\n", St::kMail, O::kSuccess, S::kMessage, false},
        {"451 4.3.0 later\r\n", St::kMail, O::kTransient, S::kMessage, false},
        {"553 5.7.1 sender\r\n", St::kMail, O::kPermanent, S::kMessage, false},
        {"421 4.4.2 bye\r\n", St::kMail, O::kTransient, S::kSession, false},
        {"354 go\r\n", St::kMail, O::kProtocolError, S::kMessage, false},
        {"250 ok\r\n", St::kRcpt, O::kSuccess, S::kRecipient, false},
        {"550 5.1.1 unknown\r\n", St::kRcpt, O::kPermanent, S::kRecipient, false},
        {"450 4.2.1 busy\r\n", St::kRcpt, O::kTransient, S::kRecipient, false},
        {"452 4.5.3 too many recipients\r\n", St::kRcpt, O::kTransient, S::kRecipient, true},
        {"452 too many\r\n", St::kRcpt, O::kTransient, S::kRecipient, true},
        {"452 4.2.2 mailbox full\r\n", St::kRcpt, O::kTransient, S::kRecipient, false},
        {"552 5.5.3 too many recipients\r\n", St::kRcpt, O::kTransient, S::kRecipient, true},
        {"552 Too many recipients\r\n", St::kRcpt, O::kTransient, S::kRecipient, true},
        {"552 mailbox full\r\n", St::kRcpt, O::kPermanent, S::kRecipient, false},
        {"421 4.7.0 bye\r\n", St::kRcpt, O::kTransient, S::kSession, false},
        {"354 go\r\n", St::kData, O::kSuccess, S::kMessage, false},
        {"250 ok\r\n", St::kData, O::kProtocolError, S::kMessage, false},
        {"554 5.5.1 no valid recipients\r\n", St::kData, O::kPermanent, S::kMessage, false},
        {"452 4.5.3 too many\r\n", St::kData, O::kTransient, S::kMessage, false},
        {"250 2.0.0 queued\r\n", St::kDataEnd, O::kSuccess, S::kMessage, false},
        {"451 4.3.0 later\r\n", St::kDataEnd, O::kTransient, S::kMessage, false},
        {"554 5.7.1 spam\r\n", St::kDataEnd, O::kPermanent, S::kMessage, false},
        {"354 again\r\n", St::kDataEnd, O::kProtocolError, S::kMessage, false},
        {"250 ok\r\n", St::kRset, O::kSuccess, S::kSession, false},
        {"221 bye\r\n", St::kQuit, O::kSuccess, S::kSession, false},
    };
    for (const auto& c : cases) {
        INFO(c.reply << " at " << to_string(c.stage));
        const auto r = parse_reply(c.reply).reply;
        REQUIRE(r);
        const ReplyClass cls = classify(*r, c.stage);
        CHECK(to_string(cls.outcome) == to_string(c.outcome));
        CHECK(to_string(cls.scope) == to_string(c.scope));
        CHECK(cls.too_many_recipients == c.too_many);
    }
}

TEST_CASE("EHLO keywords", "[reply]") {
    auto r = parse_reply(
                 "250-mx.example.org Hello PIPELINING\r\n"  // first line is not a keyword
                 "250-pipelining\r\n"
                 "250-SIZE 10240000\r\n"
                 "250-StartTLS\r\n"
                 "250-ENHANCEDSTATUSCODES\r\n"
                 "250-8BITMIME\r\n"
                 "250-AUTH PLAIN LOGIN\r\n"
                 "250-DSN\r\n"
                 "250-CHUNKING\r\n"
                 "250 SMTPUTF8\r\n")
                 .reply;
    REQUIRE(r);
    EhloCapabilities caps = parse_ehlo(*r);
    CHECK(caps.pipelining);
    CHECK(caps.starttls);
    CHECK(caps.size_advertised);
    CHECK(caps.size_limit == 10240000);
    CHECK(caps.enhanced_status_codes);
    CHECK(caps.eight_bit_mime);
    CHECK(caps.dsn);
    CHECK(caps.chunking);
    CHECK(caps.smtputf8);

    r = parse_reply("250-mx PIPELINING STARTTLS\r\n250 HELP\r\n").reply;
    REQUIRE(r);
    caps = parse_ehlo(*r);
    CHECK_FALSE(caps.pipelining);
    CHECK_FALSE(caps.starttls);
    CHECK_FALSE(caps.size_advertised);

    struct SizeCase {
        std::string line;
        std::uint64_t limit;
    };
    for (const auto& c : std::vector<SizeCase>{{"SIZE", 0},
                                               {"SIZE 0", 0},
                                               {"size 1000 ", 1000},
                                               {"SIZE abc", 0},
                                               {"SIZE 12x", 0},
                                               {"SIZE 99999999999999999999999", 0},
                                               {"SIZE\t52428800", 52428800}}) {
        INFO(c.line);
        r = parse_reply("250-mx\r\n250 " + c.line + "\r\n").reply;
        REQUIRE(r);
        caps = parse_ehlo(*r);
        CHECK(caps.size_advertised);
        CHECK(caps.size_limit == c.limit);
    }
    r = parse_reply("250-mx\r\n250 SIZEX 10\r\n").reply;
    REQUIRE(r);
    CHECK_FALSE(parse_ehlo(*r).size_advertised);
}

TEST_CASE("summaries are printable and bounded", "[reply]") {
    std::string in;
    for (int i = 0; i < 20; ++i)
        in += "550-" + std::string(1000, 'x') + "\r\n";
    in += "550 5.1.1 last\x01\x7f\xff\r\n";
    auto r = parse_reply(in).reply;
    REQUIRE(r);
    CHECK(r->lines.size() == 21);
    const ReplySummary s = summarize(*r);
    CHECK(s.code == 550);
    CHECK(s.enhanced == "5.0.0");  // the first line has no enhanced code
    REQUIRE(s.lines.size() == kMaxReportLines);
    for (const auto& line : s.lines) {
        CHECK(line.size() == kMaxReportLine);
        CHECK(line.substr(line.size() - 3) == "...");
    }
    // Controls become '?'; well-formed UTF-8 (a server's RFC 6531 reply) is kept as is.
    CHECK(sanitize_text("a\r\nb\x1b[31m\xc3\xa9", 100) == "a??b?[31m\xc3\xa9");
    CHECK(sanitize_text("550 Benutzer unbekannt: m\xc3\xbcller", 100) ==
          "550 Benutzer unbekannt: m\xc3\xbcller");
    // Broken sequences, overlongs, surrogates and C1 controls are not characters to show.
    CHECK(sanitize_text("x\xc3(\xc0\xaf\xed\xa0\x80\xc2\x85", 100) == "x?(???????");
    // A cut never splits a character.
    CHECK(sanitize_text("ab\xc3\xa9\xc3\xa9\xc3\xa9", 7) == "ab\xc3\xa9...");
    CHECK(sanitize_text("ab\xc3\xa9\xc3\xa9\xc3\xa9", 6) == "ab...");
    CHECK(sanitize_text("ab\xc3\xa9\xc3\xa9\xc3\xa9", 8) == "ab\xc3\xa9\xc3\xa9\xc3\xa9");
    CHECK(sanitize_text("abcdef", 5) == "ab...");
    CHECK(sanitize_text("abcde", 5) == "abcde");
    const ReplySummary local = local_summary("4.4.2", "timeout\n");
    CHECK(local.code == 0);
    CHECK(local.enhanced == "4.4.2");
    CHECK(local.lines == std::vector<std::string>{"timeout?"});
    r = parse_reply("550 5.1.1 <a@b>: unknown\r\n").reply;
    REQUIRE(r);
    CHECK(summarize(*r) == ReplySummary{550, "5.1.1", {"5.1.1 <a@b>: unknown"}});
}
