// Table tests for daemon/smtp/mime_downgrade.h: 8-bit messages made 7-bit for servers
// without 8BITMIME, and the cases that must be refused (5.6.3) instead.
#include <catch2/catch.hpp>

#include <string>

#include "daemon/smtp/mime_downgrade.h"

using namespace esad::smtp;

namespace {

bool seven_bit_short_lines(const std::string& s) {
    if (has_8bit(s)) return false;
    std::size_t start = 0;
    while (start < s.size()) {
        std::size_t end = s.find("\r\n", start);
        if (end == std::string::npos) end = s.size();
        if (end - start > 998) return false;
        start = end + 2;
    }
    return true;
}

// Decodes quoted-printable (for round-trip checks).
std::string qp_decode(const std::string& s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '=' && i + 2 < s.size() && s[i + 1] == '\r' && s[i + 2] == '\n') {
            i += 2;
        } else if (s[i] == '=' && i + 2 < s.size()) {
            out.push_back(static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16)));
            i += 2;
        } else {
            out.push_back(s[i]);
        }
    }
    return out;
}

}  // namespace

TEST_CASE("quoted-printable: 8-bit, '=', trailing blanks, 76-octet lines", "[mime]") {
    CHECK(quoted_printable("caf\xc3\xa9 = ok\r\n") == "caf=C3=A9 =3D ok\r\n");
    CHECK(quoted_printable("end \r\ntab\t\r\n") == "end=20\r\ntab=09\r\n");
    CHECK(quoted_printable("no final line end") == "no final line end");
    const std::string long_line(200, '\xe9');
    const std::string qp = quoted_printable(long_line + "\r\n");
    std::size_t start = 0;
    while (start < qp.size()) {
        const std::size_t end = qp.find("\r\n", start);
        REQUIRE(end != std::string::npos);
        CHECK(end - start <= 76);
        start = end + 2;
    }
    CHECK(qp_decode(qp) == long_line + "\r\n");
}

TEST_CASE("base64 lines", "[mime]") {
    CHECK(base64_lines("") == "");
    CHECK(base64_lines("M") == "TQ==\r\n");
    CHECK(base64_lines("Ma") == "TWE=\r\n");
    CHECK(base64_lines("Man") == "TWFu\r\n");
    const std::string b = base64_lines(std::string(100, '\xff'));
    CHECK(b.find("\r\n") == 76);
}

TEST_CASE("7-bit messages are left alone", "[mime]") {
    const std::string m = "Subject: x\r\n\r\nplain ascii\r\n";
    CHECK(downgrade_to_7bit(m).status == DowngradeStatus::kUnchanged);
}

TEST_CASE("a plain 8-bit message becomes MIME quoted-printable", "[mime]") {
    const std::string m =
        "Subject: x\r\n\r\nGr\xc3\xbc\xc3\x9f"
        "e\r\n.dot line\r\n";
    const DowngradeResult r = downgrade_to_7bit(m);
    REQUIRE(r.status == DowngradeStatus::kConverted);
    CHECK(seven_bit_short_lines(r.content));
    CHECK(r.content.find("MIME-Version: 1.0\r\n") != std::string::npos);
    CHECK(r.content.find("Content-Type: text/plain; charset=utf-8\r\n") != std::string::npos);
    CHECK(r.content.find("Content-Transfer-Encoding: quoted-printable\r\n") != std::string::npos);
    const std::size_t body = r.content.find("\r\n\r\n");
    REQUIRE(body != std::string::npos);
    CHECK(qp_decode(r.content.substr(body + 4)) ==
          "Gr\xc3\xbc\xc3\x9f"
          "e\r\n.dot line\r\n");
    // Not UTF-8: labelled unknown-8bit (RFC 1428).
    const DowngradeResult latin = downgrade_to_7bit("Subject: x\r\n\r\ncaf\xe9\r\n");
    REQUIRE(latin.status == DowngradeStatus::kConverted);
    CHECK(latin.content.find("charset=unknown-8bit") != std::string::npos);
}

TEST_CASE("an 8bit text part replaces its Content-Transfer-Encoding", "[mime]") {
    const std::string m =
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\nSubject: s\r\n\r\n\xc3\xa9t\xc3\xa9\r\n";
    const DowngradeResult r = downgrade_to_7bit(m);
    REQUIRE(r.status == DowngradeStatus::kConverted);
    CHECK(r.content.find("8bit") == std::string::npos);
    CHECK(r.content ==
          "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nSubject: s\r\n"
          "Content-Transfer-Encoding: quoted-printable\r\n\r\n=C3=A9t=C3=A9\r\n");
}

TEST_CASE("multipart: only the 8-bit parts are re-encoded; delimiters survive", "[mime]") {
    const std::string m =
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
        "preamble\r\n"
        "--b1\r\nContent-Type: text/plain\r\n\r\nascii part\r\n"
        "--b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        "\r\n<p>\xc3\xa9</p>\r\n"
        "--b1\r\nContent-Type: application/octet-stream\r\n\r\n\x01\xff\xfe\r\n"
        "--b1--\r\nepilogue\r\n";
    const DowngradeResult r = downgrade_to_7bit(m);
    REQUIRE(r.status == DowngradeStatus::kConverted);
    INFO(r.content);
    CHECK(seven_bit_short_lines(r.content));
    CHECK(r.content.find("--b1\r\nContent-Type: text/plain\r\n\r\nascii part\r\n--b1\r\n") !=
          std::string::npos);
    CHECK(r.content.find("Content-Transfer-Encoding: quoted-printable\r\n\r\n<p>=C3=A9</p>\r\n"
                         "--b1\r\n") != std::string::npos);
    CHECK(r.content.find("Content-Transfer-Encoding: base64\r\n\r\nAf/+\r\n\r\n--b1--") !=
          std::string::npos);
    CHECK(r.content.find("--b1--\r\nepilogue\r\n") != std::string::npos);
}

TEST_CASE("message/rfc822 is converted as the message it holds", "[mime]") {
    const std::string m =
        "MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n"
        "\r\nSubject: inner\r\n\r\n\xc3\xa9\r\n";
    const DowngradeResult r = downgrade_to_7bit(m);
    REQUIRE(r.status == DowngradeStatus::kConverted);
    CHECK(seven_bit_short_lines(r.content));
    CHECK(r.content.find("Content-Transfer-Encoding: 7bit\r\n") != std::string::npos);
    CHECK(r.content.find("Subject: inner\r\n") != std::string::npos);
    CHECK(r.content.find("=C3=A9") != std::string::npos);
}

TEST_CASE("what cannot be converted is refused", "[mime]") {
    struct Case {
        std::string content;
        std::string reason;
    };
    const Case cases[] = {
        {"Subject: caf\xc3\xa9\r\n\r\nbody\r\n", "header"},
        {"MIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n"
         "\r\n\xff\xfe\r\n",
         "base64"},
        {"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n"
         "pre\xc3\xa9\r\n--x\r\n\r\na\r\n--x--\r\n",
         "preamble"},
        {"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n"
         "--x\r\nSubject: \xc3\xa9\r\n\r\na\r\n--x--\r\n",
         "header"},
        {"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\nno delimiter "
         "\xc3\xa9\r\n",
         "boundary"},
    };
    for (const auto& c : cases) {
        INFO(c.content);
        const DowngradeResult r = downgrade_to_7bit(c.content);
        CHECK(r.status == DowngradeStatus::kImpossible);
        CHECK(r.reason.find(c.reason) != std::string::npos);
    }
}

TEST_CASE("deep nesting is bounded", "[mime]") {
    std::string m = "MIME-Version: 1.0\r\n";
    for (int i = 0; i < 30; ++i)
        m += "Content-Type: message/rfc822\r\n\r\n";
    m += "Subject: x\r\n\r\n\xc3\xa9\r\n";
    const DowngradeResult r = downgrade_to_7bit(m);
    CHECK(r.status == DowngradeStatus::kImpossible);
    CHECK(r.reason.find("deep") != std::string::npos);
}
