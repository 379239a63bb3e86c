// Table tests for common/address.h (paths, MAIL/RCPT parameters, UTF-8) and
// common/escape.h (escape_for_log).
#include <catch2/catch.hpp>

#include <string>

#include "common/address.h"
#include "common/escape.h"

using esad::BodyType;
using esad::PathOptions;
using esad::PathRole;

namespace {

struct PathOk {
    std::string in;
    PathRole role;
    bool utf8;
    std::string local;
    std::string domain;
    bool is_null;
    bool literal;
};

struct PathBad {
    std::string in;
    PathRole role;
    bool utf8;
    int code;
    std::string enhanced;
};

}  // namespace

TEST_CASE("parse_path accepts valid paths", "[address]") {
    const std::string l64(64, 'a');
    const std::string label63(63, 'b');
    const std::vector<PathOk> cases = {
        {"<user@example.com>", PathRole::kRecipient, false, "user", "example.com", false, false},
        {"<Foo.Bar@EXAMPLE.Com>", PathRole::kRecipient, false, "Foo.Bar", "example.com", false,
         false},
        {"<>", PathRole::kSender, false, "", "", true, false},
        {"<@a.example,@b.example:u@d.example>", PathRole::kRecipient, false, "u", "d.example",
         false, false},
        {"<@[10.0.0.1]:u@d.example>", PathRole::kSender, false, "u", "d.example", false, false},
        {"<\"a b\"@x.example>", PathRole::kRecipient, false, "\"a b\"", "x.example", false, false},
        {"<\"a\\\"b@c\"@x.example>", PathRole::kRecipient, false, "\"a\\\"b@c\"", "x.example",
         false, false},
        {"<\"\"@x.example>", PathRole::kRecipient, false, "\"\"", "x.example", false, false},
        {"<a@[127.0.0.1]>", PathRole::kRecipient, false, "a", "[127.0.0.1]", false, true},
        {"<a@[IPv6:::1]>", PathRole::kRecipient, false, "a", "[IPv6:::1]", false, true},
        {"<a@[ipv6:2001:DB8::1]>", PathRole::kRecipient, false, "a", "[IPv6:2001:db8::1]", false,
         true},
        {"<a+tag!#$%&'*/=?^_`{|}~-@x-y.example>", PathRole::kRecipient, false,
         "a+tag!#$%&'*/=?^_`{|}~-", "x-y.example", false, false},
        {"<u@localhost>", PathRole::kRecipient, false, "u", "localhost", false, false},
        {"<u@1.example>", PathRole::kRecipient, false, "u", "1.example", false, false},
        {"<" + l64 + "@x.example>", PathRole::kRecipient, false, l64, "x.example", false, false},
        {"<u@" + label63 + ".example>", PathRole::kRecipient, false, "u", label63 + ".example",
         false, false},
        {"<j\xc3\xb6rg@b\xc3\xbc.example>", PathRole::kRecipient, true, "j\xc3\xb6rg",
         "b\xc3\xbc.example", false, false},
        {"<\"\xe2\x82\xac\"@x.example>", PathRole::kSender, true, "\"\xe2\x82\xac\"", "x.example",
         false, false},
    };
    for (const auto& c : cases) {
        INFO(c.in);
        const auto r = esad::parse_path(c.in, PathOptions{c.role, c.utf8});
        REQUIRE(r.ok());
        CHECK(r.mailbox->local == c.local);
        CHECK(r.mailbox->domain == c.domain);
        CHECK(r.mailbox->is_null == c.is_null);
        CHECK(r.mailbox->domain_is_literal == c.literal);
    }
}

TEST_CASE("parse_path rejects invalid paths with the right code", "[address]") {
    const std::string l65(65, 'a');
    const std::string label64(64, 'b');
    std::string long_domain;
    while (long_domain.size() < 250)
        long_domain += "abcdefghi.";
    long_domain += "example";  // > 255
    const std::vector<PathBad> cases = {
        {"user@example.com", PathRole::kRecipient, false, 501, "5.1.3"},
        {"user@example.com", PathRole::kSender, false, 501, "5.1.7"},
        {"<user@example.com", PathRole::kSender, false, 501, "5.1.7"},
        {"<>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<user>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<Postmaster>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<user@>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<@example.com>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<.user@example.com>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<user.@example.com>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<us..er@example.com>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<us er@example.com>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<us(er@example.com>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<u@example.com.>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<u@-example.com>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<u@example-.com>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<u@exa_mple.com>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<u@ex..com>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<u@a@b.com>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<\"unterminated@x.example>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<\"a\"b@x.example>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<\"a\x01\"@x.example>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<u\x7f@x.example>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<u@[1.2.3]>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<u@[1.2.3.256]>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<u@[IPv6:1.2.3.4]>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<u@[tag:content]>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<u@[1.2.3.4]x>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<@a.example:>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<@a.example u@d.example>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<a.example:u@d.example>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<@bad_domain:u@d.example>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<" + l65 + "@x.example>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<" + l65 + "@x.example>", PathRole::kSender, false, 501, "5.1.7"},
        {"<u@" + label64 + ".example>", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<u@" + long_domain + ">", PathRole::kRecipient, false, 501, "5.1.3"},
        {"<" + std::string(60, 'a') + "@" + std::string(200, 'b') + ">", PathRole::kRecipient,
         false, 501, "5.1.3"},
        // 8-bit without SMTPUTF8 is 553 5.6.7; malformed UTF-8 with it is a syntax error.
        {"<j\xc3\xb6rg@x.example>", PathRole::kRecipient, false, 553, "5.6.7"},
        {"<u@b\xc3\xbc.example>", PathRole::kSender, false, 553, "5.6.7"},
        {"<j\xc3rg@x.example>", PathRole::kRecipient, true, 501, "5.1.3"},
        {"<j\xc0\xafrg@x.example>", PathRole::kRecipient, true, 501, "5.1.3"},
        {"<j\xed\xa0\x80rg@x.example>", PathRole::kRecipient, true, 501, "5.1.3"},
    };
    for (const auto& c : cases) {
        INFO(c.in);
        const auto r = esad::parse_path(c.in, PathOptions{c.role, c.utf8});
        REQUIRE_FALSE(r.ok());
        CHECK(r.error.code == c.code);
        CHECK(r.error.enhanced == c.enhanced);
        CHECK_FALSE(r.error.text.empty());
        CHECK(r.error.wire().substr(r.error.wire().size() - 2) == "\r\n");
    }
}

TEST_CASE("Mailbox renders address and path", "[address]") {
    auto r = esad::parse_path("<A.b@Example.ORG>", {});
    REQUIRE(r.ok());
    CHECK(r.mailbox->address() == "A.b@example.org");
    CHECK(r.mailbox->path() == "<A.b@example.org>");
    r = esad::parse_path("<>", {PathRole::kSender, false});
    REQUIRE(r.ok());
    CHECK(r.mailbox->address().empty());
    CHECK(r.mailbox->path() == "<>");
}

TEST_CASE("split_path_and_params", "[address]") {
    struct Case {
        std::string in;
        bool ok;
        std::string path;
        std::string params;
    };
    const std::vector<Case> cases = {
        {"<a@b>", true, "<a@b>", ""},
        {"<a@b> SIZE=10", true, "<a@b>", "SIZE=10"},
        {" <a@b>   SIZE=10 BODY=8BITMIME", true, "<a@b>", "SIZE=10 BODY=8BITMIME"},
        {"<\"x>y\"@b> SMTPUTF8", true, "<\"x>y\"@b>", "SMTPUTF8"},
        {"<\"x\\\">y\"@b>", true, "<\"x\\\">y\"@b>", ""},
        {"<>", true, "<>", ""},
        {"a@b SIZE=1", true, "a@b", "SIZE=1"},
        {"<a@b", false, "", ""},
        {"<a@b>x", false, "", ""},
        {"", false, "", ""},
        {"   ", false, "", ""},
    };
    for (const auto& c : cases) {
        INFO(c.in);
        const auto r = esad::split_path_and_params(c.in);
        REQUIRE(r.has_value() == c.ok);
        if (!c.ok) continue;
        CHECK(r->path == c.path);
        CHECK(r->params == c.params);
    }
}

TEST_CASE("parse_mail_params", "[address]") {
    struct Ok {
        std::string in;
        std::optional<std::uint64_t> size;
        BodyType body;
        bool utf8;
    };
    const std::vector<Ok> good = {
        {"", std::nullopt, BodyType::kUnspecified, false},
        {"SIZE=0", 0, BodyType::kUnspecified, false},
        {"size=12345", 12345, BodyType::kUnspecified, false},
        {"SIZE=18446744073709551615", UINT64_MAX, BodyType::kUnspecified, false},
        {"BODY=7BIT", std::nullopt, BodyType::k7Bit, false},
        {"body=8bitmime", std::nullopt, BodyType::k8BitMime, false},
        {"SMTPUTF8", std::nullopt, BodyType::kUnspecified, true},
        {"SIZE=10  BODY=8BITMIME smtputf8", 10, BodyType::k8BitMime, true},
    };
    for (const auto& c : good) {
        INFO(c.in);
        const auto r = esad::parse_mail_params(c.in);
        REQUIRE(r.ok());
        CHECK(r.params->size == c.size);
        CHECK(r.params->body == c.body);
        CHECK(r.params->smtputf8 == c.utf8);
    }
    struct Bad {
        std::string in;
        int code;
    };
    const std::vector<Bad> bad = {
        {"SIZE=abc", 501},
        {"SIZE=-1", 501},
        {"SIZE=", 501},
        {"SIZE", 501},
        {"SIZE=99999999999999999999", 501},
        {"SIZE=18446744073709551616", 501},
        {"SIZE=1 SIZE=2", 501},
        {"BODY=BINARYMIME", 501},
        {"BODY", 501},
        {"BODY=7BIT BODY=7BIT", 501},
        {"SMTPUTF8=yes", 501},
        {"SMTPUTF8 SMTPUTF8", 501},
        {"AUTH=<>", 555},
        {"RET=FULL", 555},
        {"X" + std::string(10000, 'Y') + "=1", 555},
    };
    for (const auto& c : bad) {
        INFO(c.in.substr(0, 40));
        const auto r = esad::parse_mail_params(c.in);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error.code == c.code);
        CHECK(r.error.enhanced == "5.5.4");
        CHECK(r.error.text.size() < 200);  // peer text is bounded in the reply
    }
}

TEST_CASE("check_rcpt_params refuses every parameter", "[address]") {
    CHECK_FALSE(esad::check_rcpt_params("").has_value());
    CHECK_FALSE(esad::check_rcpt_params("   ").has_value());
    const auto e = esad::check_rcpt_params("NOTIFY=NEVER");
    REQUIRE(e.has_value());
    CHECK(e->code == 555);
    CHECK(e->enhanced == "5.5.4");
    CHECK(e->text == "Unsupported option: NOTIFY");
    const auto e2 = esad::check_rcpt_params("A\r\nB");
    REQUIRE(e2.has_value());
    CHECK(e2->text.find('\r') == std::string::npos);
}

TEST_CASE("is_valid_utf8", "[address]") {
    CHECK(esad::is_valid_utf8(""));
    CHECK(esad::is_valid_utf8("plain"));
    CHECK(esad::is_valid_utf8("\xc3\xa9"));
    CHECK(esad::is_valid_utf8("\xe2\x82\xac"));
    CHECK(esad::is_valid_utf8("\xf0\x9f\x98\x80"));
    CHECK_FALSE(esad::is_valid_utf8("\xc3"));
    CHECK_FALSE(esad::is_valid_utf8("\x80"));
    CHECK_FALSE(esad::is_valid_utf8("\xc0\x80"));          // overlong NUL
    CHECK_FALSE(esad::is_valid_utf8("\xe0\x80\xaf"));      // overlong
    CHECK_FALSE(esad::is_valid_utf8("\xed\xa0\x80"));      // surrogate
    CHECK_FALSE(esad::is_valid_utf8("\xf4\x90\x80\x80"));  // > U+10FFFF
    CHECK_FALSE(esad::is_valid_utf8("\xf5\x80\x80\x80"));
    CHECK_FALSE(esad::is_valid_utf8("\xe2\x82"));
}

TEST_CASE("escape_for_log", "[escape]") {
    struct Case {
        std::string in;
        std::size_t max;
        std::string out;
    };
    const std::vector<Case> cases = {
        {"hello", 100, "hello"},
        {"", 10, ""},
        {"a\r\nb", 100, "a\\x0d\\x0ab"},
        {std::string("a\0b", 3), 100, "a\\x00b"},
        {"back\\slash", 100, "back\\\\slash"},
        {"\x1b[31m", 100, "\\x1b[31m"},
        {"\xc3\xa9", 100, "\\xc3\\xa9"},
        {"\x7f", 100, "\\x7f"},
        {"abcdef", 6, "abcdef"},
        {"abcdefg", 6, "abc..."},
        {"abcdefg", 3, "..."},
        {"abcdefg", 2, ".."},
        {"abcdefg", 0, ""},
        // never cut an escape in half
        {"ab\x01xyz", 7, "ab..."},
        {"ab\x01xyz", 9, "ab\\x01xyz"},
        {"ab\x01xyzw", 9, "ab\\x01..."},
        {"ab\\cd", 5, "ab..."},
    };
    for (const auto& c : cases) {
        INFO(c.in << " max " << c.max);
        const auto out = esad::escape_for_log(c.in, c.max);
        CHECK(out == c.out);
        CHECK(out.size() <= std::max<std::size_t>(c.max, 0));
    }
    // A long hostile string stays bounded and printable.
    std::string hostile;
    for (int i = 0; i < 100000; ++i)
        hostile += static_cast<char>(i % 256);
    const auto out = esad::escape_for_log(hostile, 256);
    CHECK(out.size() <= 256);
    for (char c : out)
        CHECK((c >= 0x20 && c <= 0x7e));
}

// Fuzz findings (tests/fuzz/fuzz_address).
TEST_CASE("parse_path refuses a NUL inside an address literal", "[address]") {
    using namespace std::string_literals;
    for (const std::string& in :
         {"<a@[1.2.3.4\0x]>"s, "<a@[IPv6:::1\0]>"s, "<@[1.2.3.4\0]:a@b.c>"s}) {
        const auto r = esad::parse_path(in, PathOptions{PathRole::kRecipient, true});
        CHECK_FALSE(r.ok());
        CHECK(r.error.code == 501);
    }
}

TEST_CASE("the SMTPUTF8 flag comes from the mailbox, not from an ignored source route",
          "[address]") {
    const auto r = esad::parse_path("<@\xc3\xbc.b:x@y.z>", PathOptions{PathRole::kRecipient, true});
    REQUIRE(r.ok());
    CHECK(r.mailbox->address() == "x@y.z");
    CHECK_FALSE(r.mailbox->utf8);
    const auto u = esad::parse_path("<@a.b:\xc3\xbc@y.z>", PathOptions{PathRole::kRecipient, true});
    REQUIRE(u.ok());
    CHECK(u.mailbox->utf8);
}
