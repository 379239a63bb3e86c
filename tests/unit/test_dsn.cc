// Unit tests for daemon/queue/dsn: RFC 3464 structure, per-recipient fields, failed vs
// delayed, sanitizing of peer text, line limits, header-only original, truncation, the
// bounce-loop guard and determinism.
#include <catch2/catch.hpp>

#include <limits>

#include <string>
#include <string_view>
#include <vector>

#include "daemon/queue/dsn.h"

using namespace esad::queue;

namespace {

constexpr std::time_t kNow = 1700000000;  // Tue, 14 Nov 2023 22:13:20 +0000

DsnRecipient failed(std::string addr, std::string diag) {
    DsnRecipient r;
    r.address = std::move(addr);
    r.action = "failed";
    r.status = "5.1.1";
    r.remote_mta = "mx1.example.com";
    r.diagnostic = std::move(diag);
    r.last_attempt = kNow - 10;
    return r;
}

DsnInput base_input() {
    DsnInput in;
    in.reporting_mta = "mta.example.net";
    in.original_mid = 4242;
    in.original_sender = "<alice@example.org>";
    in.arrival = kNow - 3600;
    in.original_headers =
        "Received: from client.example.org by mta.example.net\r\n"
        "From: Alice <alice@example.org>\r\n"
        "To: bob@example.com\r\n"
        "Subject: hello\r\n"
        "Message-ID: <orig-1@example.org>\r\n";
    in.recipients.push_back(failed("<bob@example.com>", "smtp; 550 5.1.1 user unknown"));
    in.now = kNow;
    in.boundary_seed = 12345;
    return in;
}

struct Parsed {
    std::string headers;  // top-level header section (with CRLFs)
    std::string boundary;
    std::vector<std::string> parts;  // each part: its headers, blank line, content
};

std::string header_value(std::string_view headers, std::string_view name) {
    // Unfolded value of the first field `name` (exact case) in a CRLF header section.
    const std::string key = "\r\n" + std::string(name) + ": ";
    const std::string text = "\r\n" + std::string(headers);
    const std::size_t at = text.find(key);
    if (at == std::string::npos) return {};
    std::string value;
    std::size_t pos = at + key.size();
    while (true) {
        const std::size_t end = text.find("\r\n", pos);
        value += text.substr(pos, end - pos);
        if (end + 2 < text.size() && (text[end + 2] == ' ' || text[end + 2] == '\t')) {
            pos = end + 2;
            continue;
        }
        return value;
    }
}

Parsed parse(const std::string& msg) {
    Parsed p;
    const std::size_t split = msg.find("\r\n\r\n");
    REQUIRE(split != std::string::npos);
    p.headers = msg.substr(0, split + 2);
    const std::string ct = header_value(p.headers, "Content-Type");
    const std::size_t b = ct.find("boundary=\"");
    REQUIRE(b != std::string::npos);
    p.boundary = ct.substr(b + 10, ct.find('"', b + 10) - (b + 10));
    const std::string body = msg.substr(split + 4);
    const std::string delim = "\r\n--" + p.boundary;
    std::size_t pos = body.find(delim);
    REQUIRE(pos != std::string::npos);
    while (true) {
        pos += delim.size();
        if (body.compare(pos, 4, "--\r\n") == 0) {
            REQUIRE(pos + 4 == body.size());  // nothing after the close delimiter
            break;
        }
        REQUIRE(body.compare(pos, 2, "\r\n") == 0);
        pos += 2;
        const std::size_t next = body.find(delim, pos);
        REQUIRE(next != std::string::npos);
        p.parts.push_back(body.substr(pos, next - pos));
        pos = next;
    }
    return p;
}

std::size_t count(std::string_view hay, std::string_view needle) {
    std::size_t n = 0;
    for (std::size_t pos = hay.find(needle); pos != std::string_view::npos;
         pos = hay.find(needle, pos + 1)) {
        ++n;
    }
    return n;
}

// Every line ends in CRLF, no bare CR/LF, no NUL or 8-bit octet, no line over 998 octets.
// Returns the first violation ("" when none), so one assertion covers the whole message.
std::string wire_problem(const std::string& msg) {
    if (msg.size() < 2 || msg.compare(msg.size() - 2, 2, "\r\n") != 0) return "no final CRLF";
    std::size_t line = 0;
    for (std::size_t i = 0; i < msg.size(); ++i) {
        const auto c = static_cast<unsigned char>(msg[i]);
        const std::string at = " at offset " + std::to_string(i);
        if (c == 0) return "NUL" + at;
        if (c >= 0x80) return "8-bit octet" + at;
        if (c == '\n') return "bare LF" + at;
        if (c == '\r') {
            if (i + 1 >= msg.size() || msg[i + 1] != '\n') return "bare CR" + at;
            if (line > 998) return "line of " + std::to_string(line) + " octets" + at;
            line = 0;
            ++i;
        } else {
            ++line;
        }
    }
    return "";
}

void require_wire_safe(const std::string& msg) {
    REQUIRE(wire_problem(msg).empty());
}

std::vector<std::string> lines_of(std::string_view text) {
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (pos < text.size()) {
        const std::size_t end = text.find("\r\n", pos);
        if (end == std::string_view::npos) {
            out.emplace_back(text.substr(pos));
            break;
        }
        out.emplace_back(text.substr(pos, end - pos));
        pos = end + 2;
    }
    return out;
}

bool has_line(std::string_view text, std::string_view line) {
    for (const std::string& l : lines_of(text)) {
        if (l == line) return true;
    }
    return false;
}

bool has_line_starting(std::string_view text, std::string_view prefix) {
    for (const std::string& l : lines_of(text)) {
        if (l.rfind(prefix, 0) == 0) return true;
    }
    return false;
}

// RFC 2045 quoted-printable decoding (soft breaks removed, hard breaks kept as CRLF).
std::string qp_decode(std::string_view text) {
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '=') {
            out += text[i];
        } else if (text.compare(i + 1, 2, "\r\n") == 0) {
            i += 2;
        } else {
            out += static_cast<char>(std::stoi(std::string(text.substr(i + 1, 2)), nullptr, 16));
            i += 2;
        }
    }
    return out;
}

// Per-recipient blocks of a message/delivery-status part (after the per-message block).
std::vector<std::string> recipient_blocks(const std::string& part) {
    std::vector<std::string> blocks;
    const std::size_t content = part.find("\r\n\r\n") + 4;
    std::string_view rest = std::string_view(part).substr(content);
    bool first = true;
    while (!rest.empty()) {
        std::size_t end = rest.find("\r\n\r\n");
        const std::string_view block =
            rest.substr(0, end == std::string_view::npos ? end : end + 2);
        if (!first && !block.empty()) blocks.emplace_back(block);
        first = false;
        if (end == std::string_view::npos) break;
        rest = rest.substr(end + 4);
    }
    return blocks;
}

}  // namespace

TEST_CASE("rfc5322_date formats UTC", "[queue][dsn]") {
    CHECK(rfc5322_date(0) == "Thu, 01 Jan 1970 00:00:00 +0000");
    CHECK(rfc5322_date(kNow) == "Tue, 14 Nov 2023 22:13:20 +0000");
    CHECK(rfc5322_date(951782400) == "Tue, 29 Feb 2000 00:00:00 +0000");
}

TEST_CASE("a DSN is a three-part multipart/report with the right headers", "[queue][dsn]") {
    const std::string msg = build_dsn(base_input());
    require_wire_safe(msg);
    const Parsed p = parse(msg);

    CHECK(header_value(p.headers, "From") ==
          "Mail Delivery System <MAILER-DAEMON@mta.example.net>");
    CHECK(header_value(p.headers, "To") == "<alice@example.org>");
    CHECK(header_value(p.headers, "Subject") == "Undelivered Mail Returned to Sender");
    CHECK(header_value(p.headers, "Auto-Submitted") == "auto-replied");
    CHECK(header_value(p.headers, "Date") == "Tue, 14 Nov 2023 22:13:20 +0000");
    CHECK(header_value(p.headers, "MIME-Version") == "1.0");
    const std::string mid = header_value(p.headers, "Message-ID");
    CHECK(mid.front() == '<');
    CHECK(mid.back() == '>');
    CHECK(mid.find("@mta.example.net>") != std::string::npos);
    const std::string ct = header_value(p.headers, "Content-Type");
    CHECK(ct.rfind("multipart/report; report-type=delivery-status;", 0) == 0);

    // The boundary: RFC 2046 length and alphabet, only ever used as a delimiter.
    REQUIRE(!p.boundary.empty());
    CHECK(p.boundary.size() <= 70);
    CHECK(p.boundary.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                       "0123456789'()+_,-./:=? ") == std::string::npos);
    CHECK(count(msg, p.boundary) == 5);  // Content-Type + 3 delimiters + the close delimiter
    CHECK(count(msg, "\r\n--" + p.boundary + "\r\n") == 3);
    CHECK(count(msg, "\r\n--" + p.boundary + "--\r\n") == 1);

    REQUIRE(p.parts.size() == 3);
    CHECK(p.parts[0].rfind("Content-Type: text/plain; charset=us-ascii\r\n", 0) == 0);
    CHECK(p.parts[1].rfind("Content-Type: message/delivery-status\r\n", 0) == 0);
    CHECK(p.parts[2].rfind("Content-Type: text/rfc822-headers\r\n", 0) == 0);

    // Human part names the recipient and the diagnostic.
    CHECK(p.parts[0].find("<bob@example.com>") != std::string::npos);
    CHECK(p.parts[0].find("550 5.1.1 user unknown") != std::string::npos);

    // Per-message fields.
    CHECK(has_line(p.parts[1], "Reporting-MTA: dns; mta.example.net"));
    CHECK(has_line(p.parts[1], "X-Esad-MID: 4242"));
    CHECK(has_line(p.parts[1], "Arrival-Date: Tue, 14 Nov 2023 21:13:20 +0000"));
    CHECK_FALSE(has_line_starting(p.parts[1], "Original-Envelope-Id:"));
    CHECK_FALSE(has_line_starting(p.parts[1], "Original-Recipient:"));

    // The original header section, verbatim.
    CHECK(p.parts[2].find("Subject: hello\r\n") != std::string::npos);
    CHECK(p.parts[2].find("Message-ID: <orig-1@example.org>\r\n") != std::string::npos);
    CHECK(has_line(p.parts[2], "Content-Transfer-Encoding: 7bit"));
}

TEST_CASE("each recipient gets its own delivery-status block", "[queue][dsn]") {
    DsnInput in = base_input();
    in.recipients.clear();
    in.recipients.push_back(failed("a@example.com", "smtp; 550 5.1.1 no such user"));
    DsnRecipient b = failed("<b@example.com>", "552 5.2.2 mailbox full");
    b.status = "5.2.2";
    b.remote_mta = "mx2.example.com";
    b.original_recipient = "rfc822;B@Example.com";
    in.recipients.push_back(b);
    DsnRecipient c;
    c.address = "c@nullmx.test";
    c.action = "failed";
    c.status = "5.1.10";
    c.diagnostic = "null MX";  // no remote MTA, no reply code
    in.recipients.push_back(c);
    in.original_envelope_id = "ENV-77";

    const Parsed p = parse(build_dsn(in));
    REQUIRE(p.parts.size() == 3);
    CHECK(has_line(p.parts[1], "Original-Envelope-Id: ENV-77"));
    const auto blocks = recipient_blocks(p.parts[1]);
    REQUIRE(blocks.size() == 3);

    CHECK(has_line(blocks[0], "Final-Recipient: rfc822; a@example.com"));
    CHECK(has_line(blocks[0], "Action: failed"));
    CHECK(has_line(blocks[0], "Status: 5.1.1"));
    CHECK(has_line(blocks[0], "Remote-MTA: dns; mx1.example.com"));
    CHECK(has_line(blocks[0], "Diagnostic-Code: smtp; 550 5.1.1 no such user"));
    CHECK(has_line(blocks[0], "Last-Attempt-Date: Tue, 14 Nov 2023 22:13:10 +0000"));
    CHECK_FALSE(has_line_starting(blocks[0], "Will-Retry-Until:"));
    CHECK_FALSE(has_line_starting(blocks[0], "Original-Recipient:"));

    CHECK(has_line(blocks[1], "Original-Recipient: rfc822;B@Example.com"));
    CHECK(has_line(blocks[1], "Final-Recipient: rfc822; b@example.com"));
    CHECK(has_line(blocks[1], "Status: 5.2.2"));
    CHECK(has_line(blocks[1], "Remote-MTA: dns; mx2.example.com"));
    CHECK(has_line(blocks[1], "Diagnostic-Code: smtp; 552 5.2.2 mailbox full"));

    CHECK(has_line(blocks[2], "Final-Recipient: rfc822; c@nullmx.test"));
    CHECK(has_line(blocks[2], "Status: 5.1.10"));
    CHECK_FALSE(has_line_starting(blocks[2], "Remote-MTA:"));
    CHECK_FALSE(has_line_starting(blocks[2], "Last-Attempt-Date:"));
    CHECK(has_line(blocks[2], "Diagnostic-Code: X-Esad; null MX"));

    for (const char* addr : {"<a@example.com>", "<b@example.com>", "<c@nullmx.test>"}) {
        CHECK(p.parts[0].find(addr) != std::string::npos);
    }
}

TEST_CASE("delay warnings differ from bounces", "[queue][dsn]") {
    DsnInput in = base_input();
    in.delay_warning = true;
    in.recipients.clear();
    DsnRecipient r = failed("bob@example.com", "smtp; 451 4.3.0 try later");
    r.action = "delayed";
    r.status = "4.3.0";
    r.will_retry_until = kNow + 86400;
    in.recipients.push_back(r);

    const std::string msg = build_dsn(in);
    require_wire_safe(msg);
    const Parsed p = parse(msg);
    CHECK(header_value(p.headers, "Subject") == "Delayed Mail (still being retried)");
    CHECK(p.parts[0].find("WARNING ONLY") != std::string::npos);
    const auto blocks = recipient_blocks(p.parts[1]);
    REQUIRE(blocks.size() == 1);
    CHECK(has_line(blocks[0], "Action: delayed"));
    CHECK(has_line(blocks[0], "Status: 4.3.0"));
    CHECK(has_line(blocks[0], "Will-Retry-Until: Wed, 15 Nov 2023 22:13:20 +0000"));

    // A failed recipient never carries Will-Retry-Until, even if the caller set it.
    DsnInput f = base_input();
    f.recipients[0].will_retry_until = kNow + 86400;
    const Parsed q = parse(build_dsn(f));
    CHECK(header_value(q.headers, "Subject") == "Undelivered Mail Returned to Sender");
    CHECK(q.parts[0].find("WARNING ONLY") == std::string::npos);
    CHECK_FALSE(has_line_starting(q.parts[1], "Will-Retry-Until:"));
}

TEST_CASE("invalid action and status are normalised", "[queue][dsn]") {
    DsnInput in = base_input();
    in.recipients[0].action = "Exploded\r\nX: y";
    in.recipients[0].status = "550";
    DsnRecipient d = failed("d@example.com", "");
    d.action = "DELAYED";
    d.status = "4.4.1 timeout";
    in.recipients.push_back(d);
    const Parsed p = parse(build_dsn(in));
    const auto blocks = recipient_blocks(p.parts[1]);
    REQUIRE(blocks.size() == 2);
    CHECK(has_line(blocks[0], "Action: failed"));
    CHECK(has_line(blocks[0], "Status: 5.0.0"));
    CHECK(has_line(blocks[1], "Action: delayed"));
    CHECK(has_line(blocks[1], "Status: 4.0.0"));
    CHECK_FALSE(has_line_starting(blocks[1], "Diagnostic-Code:"));  // empty diagnostic
}

TEST_CASE("peer text cannot inject lines, NULs or 8-bit octets", "[queue][dsn]") {
    DsnInput in = base_input();
    in.original_sender = std::string("<alice@example.org>\r\nBcc: victim@example.com");
    in.reporting_mta = "mta.example.net\r\nX-Evil: 1";
    in.dsn_message_id_domain = "ids.example.net>\r\nX-Evil: 2";
    in.original_envelope_id = std::string("env\0\r\nX-Evil: 3", 15);
    in.recipients.clear();
    DsnRecipient r;
    r.address = "bob@example.com\r\nFinal-Recipient: rfc822; forged@example.com";
    r.action = "failed";
    r.status = "5.1.1";
    r.remote_mta = "mx.example.com\r\n\r\n--fake-boundary";
    r.diagnostic = std::string("smtp; 550 5.1.1 \xff\xfe unknown\r\nAction: delivered\0tail", 50);
    r.original_recipient = "rfc822;x@example.com\nStatus: 2.0.0";
    in.recipients.push_back(r);

    const std::string msg = build_dsn(in);
    require_wire_safe(msg);
    const Parsed p = parse(msg);
    REQUIRE(p.parts.size() == 3);
    for (const char* forged : {"Bcc:", "X-Evil:", "Action: delivered", "Status: 2.0.0",
                               "Final-Recipient: rfc822; forged", "--fake-boundary"}) {
        INFO(forged);
        CHECK_FALSE(has_line_starting(msg, forged));
    }
    // Content survives, escaped and on one line.
    CHECK(
        has_line(p.parts[1],
                 "Diagnostic-Code: smtp; 550 5.1.1 \\xff\\xfe unknown Action: delivered\\x00tail"));
    CHECK(has_line(p.parts[1], "Remote-MTA: dns; mx.example.com --fake-boundary"));
    CHECK(has_line(p.parts[1], "Original-Envelope-Id: env\\x00 X-Evil: 3"));
    CHECK(header_value(p.headers, "To") == "<<alice@example.org> Bcc: victim@example.com>");
    // Host names in From: and Message-ID keep only host-name characters.
    CHECK(header_value(p.headers, "From") ==
          "Mail Delivery System <MAILER-DAEMON@mta.example.net--X-Evil--1>");
    const std::string mid = header_value(p.headers, "Message-ID");
    CHECK(mid.find("@ids.example.net---X-Evil--2>") != std::string::npos);
    CHECK(count(mid, "<") == 1);
    CHECK(count(mid, ">") == 1);
}

TEST_CASE("every line stays within 998 octets and fields are bounded", "[queue][dsn]") {
    DsnInput in = base_input();
    in.original_sender = std::string(5000, 's') + "@example.org";
    in.original_envelope_id = std::string(3000, 'e');
    in.original_headers = "Subject: " + std::string(5000, 'x') + "\r\nX-Short: 1\r\n";
    in.recipients.clear();
    DsnRecipient r;
    r.address = std::string(4000, 'a') + "@example.com";
    r.action = "failed";
    r.status = "5.1.1";
    r.remote_mta = std::string(2000, 'm');
    r.diagnostic = "smtp; 550 " + std::string(100000, '\x01');
    in.recipients.push_back(r);

    const std::string msg = build_dsn(in);
    require_wire_safe(msg);
    const Parsed p = parse(msg);
    for (const std::string& line : lines_of(p.parts[1])) {
        if (line.rfind("Diagnostic-Code: ", 0) == 0) {
            const std::string value = line.substr(17);
            CHECK(value.size() <= kMaxDiagnosticOctets);
            CHECK(value.substr(value.size() - 3) == "...");
            CHECK(value.find("\\x01\\x01") != std::string::npos);
        }
        if (line.rfind("Remote-MTA: dns; ", 0) == 0) CHECK(line.size() <= 17 + kMaxHostOctets);
        if (line.rfind("Final-Recipient: rfc822; ", 0) == 0) {
            CHECK(line.size() <= 25 + kMaxAddressOctets);
        }
    }
    // A header line longer than 998 octets forces quoted-printable for part 3.
    CHECK(has_line(p.parts[2], "Content-Transfer-Encoding: quoted-printable"));
    const std::string encoded = p.parts[2].substr(p.parts[2].find("\r\n\r\n") + 4);
    for (const std::string& line : lines_of(encoded))
        CHECK(line.size() <= 76);
    CHECK(qp_decode(encoded) == in.original_headers);
}

TEST_CASE("8-bit original headers are sent quoted-printable", "[queue][dsn]") {
    DsnInput in = base_input();
    in.original_headers = std::string("Subject: caf\xc3\xa9 = ok \r\nX-Nul: a\0b\r\n", 34);
    const std::string msg = build_dsn(in);
    require_wire_safe(msg);
    const Parsed p = parse(msg);
    CHECK(has_line(p.parts[2], "Content-Transfer-Encoding: quoted-printable"));
    CHECK(has_line(p.parts[2], "Subject: caf=C3=A9 =3D ok=20"));
    CHECK(p.parts[2].find("X-Nul: a") != std::string::npos);
    CHECK(p.parts[2].find("=00") != std::string::npos);
    CHECK(qp_decode(p.parts[2].substr(p.parts[2].find("\r\n\r\n") + 4)) == in.original_headers);
}

TEST_CASE("the original body is never included", "[queue][dsn]") {
    for (const std::string sep : {"\r\n\r\n", "\n\n", "\r\n\n"}) {
        DsnInput in = base_input();
        in.original_headers =
            "Subject: private\r\nX-A: 1" + sep + "SECRET-BODY-LINE\r\nX-Not-A-Header: body\r\n";
        const std::string msg = build_dsn(in);
        require_wire_safe(msg);
        CHECK(msg.find("SECRET-BODY-LINE") == std::string::npos);
        CHECK(msg.find("X-Not-A-Header") == std::string::npos);
        const Parsed p = parse(msg);
        CHECK(has_line(p.parts[2], "Subject: private"));
        CHECK(has_line(p.parts[2], "X-A: 1"));
    }
}

TEST_CASE("huge header sections are truncated at a line boundary", "[queue][dsn]") {
    DsnInput in = base_input();
    std::string headers;
    for (int i = 0; headers.size() < 300 * 1024; ++i) {
        headers += "X-Filler-" + std::to_string(i) + ": " + std::string(100, 'f') + "\r\n";
        headers += "\tcontinued-" + std::to_string(i) + "\r\n";
    }
    in.original_headers = headers;
    const std::string msg = build_dsn(in);
    require_wire_safe(msg);
    CHECK(msg.size() < kMaxOriginalHeaderOctets + 8 * 1024);
    const Parsed p = parse(msg);
    CHECK(p.parts[0].find("truncated") != std::string::npos);
    const std::size_t content_at = p.parts[2].find("\r\n\r\n") + 4;
    const std::string content = p.parts[2].substr(content_at);
    CHECK(content.size() <= kMaxOriginalHeaderOctets + 2);
    CHECK(content.size() > kMaxOriginalHeaderOctets - 1024);
    // What remains is a prefix of the original that ends with a whole field.
    CHECK(headers.compare(0, content.size(), content) == 0);
    CHECK(content.substr(content.size() - 2) == "\r\n");
    const auto lines = lines_of(content);
    REQUIRE(!lines.empty());
    CHECK(lines.back().rfind("\tcontinued-", 0) == 0);
    CHECK(headers.compare(content.size(), 9, "X-Filler-") == 0);

    // Small header sections are not marked truncated.
    const Parsed small = parse(build_dsn(base_input()));
    CHECK(small.parts[0].find("truncated") == std::string::npos);

    // One single line longer than the limit: its head is kept, encoded.
    in.original_headers = "X-Huge: " + std::string(100 * 1024, 'h') + "\r\n";
    const std::string one = build_dsn(in);
    require_wire_safe(one);
    CHECK(one.size() < kMaxOriginalHeaderOctets + 8 * 1024);
    CHECK(parse(one).parts[0].find("truncated") != std::string::npos);
}

TEST_CASE("the boundary never occurs in the content", "[queue][dsn]") {
    DsnInput in = base_input();
    const std::string first = parse(build_dsn(in)).boundary;
    // Plant the boundary this seed would choose in the original headers.
    in.original_headers += "X-Trap: --" + first + "\r\n";
    const std::string msg = build_dsn(in);
    require_wire_safe(msg);
    const Parsed p = parse(msg);
    CHECK(p.boundary != first);
    CHECK(count(msg, p.boundary) == 5);
    CHECK(count(msg, first) == 1);
    REQUIRE(p.parts.size() == 3);
    CHECK(has_line(p.parts[2], "X-Trap: --" + first));
}

TEST_CASE("output is deterministic in time and seed", "[queue][dsn]") {
    const DsnInput in = base_input();
    CHECK(build_dsn(in) == build_dsn(in));

    DsnInput other = in;
    other.boundary_seed = 999;
    const Parsed a = parse(build_dsn(in));
    const Parsed b = parse(build_dsn(other));
    CHECK(a.boundary != b.boundary);
    CHECK(header_value(a.headers, "Message-ID") != header_value(b.headers, "Message-ID"));

    DsnInput next_mid = in;
    next_mid.original_mid = 4243;
    CHECK(header_value(parse(build_dsn(next_mid)).headers, "Message-ID") !=
          header_value(a.headers, "Message-ID"));

    DsnInput id_domain = in;
    id_domain.dsn_message_id_domain = "ids.example.net";
    CHECK(
        header_value(parse(build_dsn(id_domain)).headers, "Message-ID").find("@ids.example.net>") !=
        std::string::npos);
}

TEST_CASE("should_send_dsn avoids bounce loops", "[queue][dsn]") {
    const std::string plain = "From: a@example.org\r\nSubject: hi\r\n";
    struct Row {
        const char* sender;
        std::string headers;
        bool expected;
    };
    const Row rows[] = {
        {"<alice@example.org>", plain, true},
        {"alice@example.org", plain, true},
        {"<>", plain, false},
        {"", plain, false},
        {" <> ", plain, false},
        {"<a@x>",
         "Content-Type: multipart/report; report-type=delivery-status;\r\n"
         "\tboundary=\"b\"\r\n",
         false},
        {"<a@x>",
         "content-type: Multipart/Report;\r\n boundary=x;\r\n"
         " report-type=\"Delivery-Status\"\r\n",
         false},
        {"<a@x>", "Content-Type : multipart/report (dsn); report-type=delivery-status\r\n", false},
        {"<a@x>", "Content-Type: multipart/report; report-type=disposition-notification\r\n", true},
        {"<a@x>", "Content-Type: multipart/mixed; boundary=x\r\n", true},
        {"<a@x>",
         "Content-Type: text/plain\r\n\r\nContent-Type: multipart/report; "
         "report-type=delivery-status\r\n",
         true},  // in the body: not a header
        {"<a@x>", "Auto-Submitted: auto-replied\r\n", false},
        {"<a@x>", "Auto-Submitted: auto-generated\n", false},
        {"<a@x>", "AUTO-SUBMITTED: Auto-Notified; owner-email=x@y\r\n", false},
        {"<a@x>", "Auto-Submitted: no\r\n", true},
        {"<a@x>", "Auto-Submitted: No (a comment)\r\n", true},
        {"<a@x>", "Auto-Submitted:\r\n no\r\n", true},
        {"<a@x>", "Auto-Submitted: nope\r\n", false},
        {"<a@x>", "Subject: x\r\n\r\nAuto-Submitted: auto-replied\r\n", true},
    };
    for (const Row& row : rows) {
        INFO(row.sender << " | " << row.headers);
        CHECK(should_send_dsn(row.sender, row.headers) == row.expected);
    }

    // A DSN we built is itself recognised as one (no DSN of a DSN).
    const std::string dsn = build_dsn(base_input());
    const std::string dsn_headers = dsn.substr(0, dsn.find("\r\n\r\n") + 4);
    CHECK_FALSE(should_send_dsn("<other@example.org>", dsn_headers));
}

TEST_CASE("wire_problem catches what it should", "[queue][dsn]") {
    CHECK(wire_problem("a\r\n").empty());
    CHECK(!wire_problem("a\n").empty());
    CHECK(!wire_problem("a\rb\r\n").empty());
    CHECK(!wire_problem(std::string("a\0\r\n", 4)).empty());
    CHECK(!wire_problem("\xe9\r\n").empty());
    CHECK(wire_problem(std::string(998, 'x') + "\r\n").empty());
    CHECK(!wire_problem(std::string(999, 'x') + "\r\n").empty());
}

TEST_CASE("RFC 6533: a DSN for an SMTPUTF8 message keeps UTF-8 addresses", "[queue][dsn]") {
    DsnInput in = base_input();
    in.utf8 = true;
    in.original_sender =
        "<ok-s\xc3\xab"
        "nd\xc3\xa9r@example.org>";
    in.recipients.clear();
    in.recipients.push_back(failed("bad-\xc3\xbc@example.com", "smtp; 550 5.1.1 unknown"));
    in.recipients.push_back(failed("plain@example.com", "smtp; 550 5.1.1 unknown"));
    // A control octet or a broken sequence is still escaped, even here.
    in.recipients.push_back(failed("x\x1b\xc3@example.com", "smtp; 550 5.1.1 unknown"));
    const std::string msg = build_dsn(in);
    const Parsed p = parse(msg);
    REQUIRE(p.parts.size() == 3);
    CHECK(header_value(p.headers, "To") ==
          "<ok-s\xc3\xab"
          "nd\xc3\xa9r@example.org>");
    CHECK(has_line(p.parts[0], "Content-Type: text/plain; charset=utf-8"));
    CHECK(has_line(p.parts[1], "Content-Type: message/global-delivery-status"));
    CHECK(has_line(p.parts[1], "Final-Recipient: utf-8; bad-\xc3\xbc@example.com"));
    CHECK(has_line(p.parts[1], "Final-Recipient: rfc822; plain@example.com"));
    CHECK(has_line(p.parts[1], "Final-Recipient: rfc822; x\\x1b\\xc3@example.com"));
    CHECK(has_line(p.parts[2], "Content-Type: message/global-headers"));
    // Without utf8 (the classic 7-bit DSN) the same addresses are escaped text.
    in.utf8 = false;
    const std::string ascii = build_dsn(in);
    for (char c : ascii)
        CHECK(static_cast<unsigned char>(c) < 0x80);
    CHECK(ascii.find("Final-Recipient: rfc822; bad-\\xc3\\xbc@example.com") != std::string::npos);
}

// Fuzz finding (tests/fuzz/fuzz_dsn): far-future times overflowed the int year.
TEST_CASE("rfc5322_date clamps far-future and far-past times", "[queue][dsn]") {
    CHECK(rfc5322_date(std::numeric_limits<std::time_t>::max()) ==
          "Fri, 31 Dec 9999 23:59:59 +0000");
    CHECK(rfc5322_date(std::time_t{67767976233532799}) == "Fri, 31 Dec 9999 23:59:59 +0000");
    CHECK(rfc5322_date(std::numeric_limits<std::time_t>::min()) ==
          "Mon, 01 Jan 0001 00:00:00 +0000");
    CHECK(rfc5322_date(253402300799) == "Fri, 31 Dec 9999 23:59:59 +0000");
}
