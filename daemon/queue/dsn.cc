// dsn — RFC 3464 DSN builder and the bounce-loop guard (contract in dsn.h). Pure.
#include "daemon/queue/dsn.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <utility>

#include "common/ascii.h"
#include "common/header_fields.h"
#include "common/utf8.h"
#include "daemon/smtp/mime_downgrade.h"

namespace esad::queue {

namespace {

constexpr std::string_view kCrlf = "\r\n";
constexpr std::size_t kMaxLineOctets = 998;

bool is_printable(unsigned char c) {
    return c >= 0x20 && c <= 0x7e;
}

std::string_view trim(std::string_view s) {
    const auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
    while (!s.empty() && ws(s.front()))
        s.remove_prefix(1);
    while (!s.empty() && ws(s.back()))
        s.remove_suffix(1);
    return s;
}

std::string hex64(std::uint64_t v) {
    std::array<char, 17> buf{};
    std::snprintf(buf.data(), buf.size(), "%016llx", static_cast<unsigned long long>(v));
    return std::string(buf.data());
}

std::uint64_t splitmix64(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

// Printable ASCII only, bounded, cut at an escape boundary (see the contract in dsn.h).
std::string sanitize(std::string_view in, std::size_t max, bool keep_utf8 = false) {
    std::string out;
    bool truncated = false;
    bool last_space = false;
    for (std::size_t i = 0; i < in.size(); ++i) {
        const char ch = in[i];
        const auto c = static_cast<unsigned char>(ch);
        // A view, not a string: the piece is the input itself, a literal or `hex`.
        std::array<char, 5> hex{};
        std::string_view piece;
        std::uint32_t cp = 0;
        std::size_t n = 0;
        if (keep_utf8 && c >= 0x80 && (n = utf8_sequence(in, i, &cp)) > 0 && cp >= 0xa0) {
            piece = in.substr(i, n);  // RFC 6533: a UTF-8 address stays itself
            i += n - 1;
        } else if (c == '\r' || c == '\n' || c == '\t') {
            if (last_space) continue;  // a folded line break collapses to one space
            piece = " ";
        } else if (c == '\\') {
            piece = "\\\\";
        } else if (is_printable(c)) {
            piece = in.substr(i, 1);
        } else {
            std::snprintf(hex.data(), hex.size(), "\\x%02x", c);
            piece = std::string_view(hex.data(), 4);
        }
        last_space = piece == " ";
        if (out.size() + piece.size() > max) {
            truncated = true;
            break;
        }
        out.append(piece);
    }
    if (truncated) {
        const std::size_t keep = max >= 3 ? max - 3 : 0;
        // Drop whole pieces only: walk back over a partial "\xNN" or "\\".
        std::size_t cut = out.size() > keep ? keep : out.size();
        for (std::size_t i = 0; i < cut;) {
            std::size_t len =
                out[i] != '\\' ? 1 : (i + 1 < out.size() && out[i + 1] == 'x' ? 4 : 2);
            if (static_cast<unsigned char>(out[i]) >= 0x80)
                len = std::max<std::size_t>(1, utf8_sequence(out, i));
            if (i + len > cut) {
                cut = i;
                break;
            }
            i += len;
        }
        out.resize(cut);
        out += std::string_view("...").substr(0, max - cut);
    }
    // Leading/trailing spaces in a field value are noise (and a trailing one looks folded).
    const std::string_view t = trim(out);
    return std::string(t);
}

// A host name for From:/Message-ID: only [A-Za-z0-9.-], never empty.
std::string sanitize_host(std::string_view in, std::string_view fallback) {
    std::string out;
    for (const char ch : trim(in)) {
        if (out.size() >= kMaxHostOctets) break;
        const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                        (ch >= '0' && ch <= '9') || ch == '.' || ch == '-';
        out += ok ? ch : '-';
    }
    return out.empty() ? std::string(fallback) : out;
}

std::string_view strip_brackets(std::string_view addr) {
    addr = trim(addr);
    if (addr.size() >= 2 && addr.front() == '<' && addr.back() == '>') {
        addr = addr.substr(1, addr.size() - 2);
    }
    return addr;
}

std::string sanitize_address(std::string_view addr, bool utf8) {
    return sanitize(strip_brackets(addr), kMaxAddressOctets, utf8);
}

bool is_ascii(std::string_view s) {
    for (const char c : s)
        if (static_cast<unsigned char>(c) >= 0x80) return false;
    return true;
}

bool is_status_code(std::string_view s) {
    // class "." subject "." detail; class 2/4/5, subject and detail 1..3 digits.
    if (s.size() < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.') return false;
    std::size_t i = 2;
    for (int part = 0; part < 2; ++part) {
        std::size_t digits = 0;
        while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
            ++i;
            ++digits;
        }
        if (digits < 1 || digits > 3) return false;
        if (part == 0) {
            if (i >= s.size() || s[i] != '.') return false;
            ++i;
        }
    }
    return i == s.size();
}

std::string normalize_action(std::string_view action) {
    const std::string a = ascii_lowercase(trim(action));
    if (a == "failed" || a == "delayed" || a == "delivered" || a == "relayed" || a == "expanded") {
        return a;
    }
    return "failed";
}

std::string normalize_status(std::string_view status, std::string_view action) {
    const std::string_view s = trim(status);
    if (is_status_code(s)) return std::string(s);
    if (action == "delayed") return "4.0.0";
    if (action == "failed") return "5.0.0";
    return "2.0.0";
}

// "type; text" for Diagnostic-Code / "addr-type; addr" for Original-Recipient.
bool has_type_prefix(std::string_view s) {
    const std::size_t semi = s.find(';');
    if (semi == std::string_view::npos || semi == 0) return false;
    for (std::size_t i = 0; i < semi; ++i) {
        const char c = s[i];
        const bool ok =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
        if (!ok) return false;
    }
    return true;
}

std::string diagnostic_field(std::string_view diagnostic, bool utf8) {
    std::string text = sanitize(diagnostic, kMaxDiagnosticOctets, utf8);
    if (text.empty() || has_type_prefix(text)) return text;
    const bool smtp = text.size() >= 3 && text[0] >= '2' && text[0] <= '5' && text[1] >= '0' &&
                      text[1] <= '9' && text[2] >= '0' && text[2] <= '9';
    return (smtp ? "smtp; " : "X-Esad; ") + text;
}

std::string diagnostic_text(std::string_view field) {
    // The human part shows the diagnostic without its "type;" prefix.
    if (!has_type_prefix(field)) return std::string(field);
    return std::string(trim(field.substr(field.find(';') + 1)));
}

std::string original_recipient_field(std::string_view orcpt) {
    std::string text = sanitize(orcpt, kMaxAddressOctets);
    if (text.empty() || has_type_prefix(text)) return text;
    return "rfc822; " + text;
}

void add_line(std::string& out, std::string_view line) {
    out += line;
    out += kCrlf;
}

void add_field(std::string& out, std::string_view name, std::string_view value) {
    out += name;
    out += ": ";
    out += value;
    out += kCrlf;
}

// ---- the original header section ----------------------------------------------------------

struct HeaderSection {
    std::vector<std::string_view> lines;  // without line ends
    bool truncated = false;
};

// The section's lines (without line ends), cut at a field boundary to the size limit; a first
// field longer than the limit keeps the lines that fit, or the head of its first line.
HeaderSection header_section(std::string_view text) {
    HeaderSection section;
    std::size_t total = 0;
    for_each_field(text, [&](const HeaderField& f) {
        std::vector<std::string_view> lines;
        std::size_t size = 0;
        for (std::size_t pos = 0; pos < f.raw.size();) {
            std::size_t end = f.raw.find('\n', pos);
            end = end == std::string_view::npos ? f.raw.size() : end + 1;
            std::string_view line = f.raw.substr(pos, end - pos);
            while (!line.empty() && (line.back() == '\n' || line.back() == '\r'))
                line.remove_suffix(1);
            lines.push_back(line);
            size += line.size() + kCrlf.size();
            pos = end;
        }
        if (total + size <= kMaxOriginalHeaderOctets) {
            section.lines.insert(section.lines.end(), lines.begin(), lines.end());
            total += size;
            return true;
        }
        section.truncated = true;
        if (section.lines.empty()) {
            for (std::string_view line : lines) {
                if (total + line.size() + kCrlf.size() > kMaxOriginalHeaderOctets) break;
                section.lines.push_back(line);
                total += line.size() + kCrlf.size();
            }
            if (section.lines.empty())
                section.lines.push_back(
                    lines.front().substr(0, kMaxOriginalHeaderOctets - kCrlf.size()));
        }
        return false;
    });
    return section;
}

bool needs_qp(const HeaderSection& section) {
    for (const std::string_view line : section.lines) {
        if (line.size() > kMaxLineOctets) return true;
        for (const char ch : line) {
            const auto c = static_cast<unsigned char>(ch);
            if (!is_printable(c) && c != '\t') return true;
        }
    }
    return false;
}

// RFC 2045 §6.7 quoted-printable (mime_downgrade.h), each input line a hard line break.
std::string quoted_printable(const HeaderSection& section) {
    std::string text;
    for (const std::string_view line : section.lines) {
        text += line;
        text += kCrlf;
    }
    return smtp::quoted_printable(text);
}

// ---- the parts ----------------------------------------------------------------------------

struct Recipient {
    std::string address;
    std::string action;
    std::string status;
    std::string remote_mta;
    std::string diagnostic;  // the Diagnostic-Code value
    std::string original_recipient;
    std::optional<std::time_t> last_attempt;
    std::optional<std::time_t> will_retry_until;
};

Recipient clean(const DsnRecipient& r, bool utf8) {
    Recipient c;
    c.address = sanitize_address(r.address, utf8);
    c.action = normalize_action(r.action);
    c.status = normalize_status(r.status, c.action);
    c.remote_mta = sanitize(r.remote_mta, kMaxHostOctets);
    c.diagnostic = diagnostic_field(r.diagnostic, utf8);
    c.original_recipient = original_recipient_field(r.original_recipient);
    c.last_attempt = r.last_attempt;
    if (c.action == "delayed") c.will_retry_until = r.will_retry_until;
    return c;
}

std::string human_part(const DsnInput& in, std::string_view host,
                       const std::vector<Recipient>& rcpts, bool headers_truncated) {
    bool ascii = true;
    for (const Recipient& r : rcpts)
        ascii = ascii && is_ascii(r.address);
    std::string out;
    add_line(out, ascii ? "Content-Type: text/plain; charset=us-ascii"
                        : "Content-Type: text/plain; charset=utf-8");
    add_line(out, "Content-Description: Notification");
    add_line(out, ascii ? "Content-Transfer-Encoding: 7bit" : "Content-Transfer-Encoding: 8bit");
    add_line(out, "");
    add_line(out, "This is the mail system at host " + std::string(host) + ".");
    add_line(out, "");
    if (in.delay_warning) {
        add_line(out, "####################################################################");
        add_line(out, "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #");
        add_line(out, "####################################################################");
        add_line(out, "");
        add_line(out, "Your message could not be delivered yet to one or more recipients.");
        add_line(out, "The mail system will keep trying; you will be notified if delivery");
        add_line(out, "finally fails.");
    } else {
        add_line(out, "I'm sorry to have to inform you that your message could not be");
        add_line(out, "delivered to one or more recipients. The details are below.");
    }
    add_line(out, "");
    add_line(out, "Message ID (MID): " + std::to_string(in.original_mid));
    add_line(out, "Arrival date:     " + rfc5322_date(in.arrival));
    add_line(out, "");
    for (const Recipient& r : rcpts) {
        add_line(out, "<" + r.address + ">: " + r.action + " (status " + r.status + ")");
        if (!r.remote_mta.empty()) add_line(out, "    Remote host: " + r.remote_mta);
        if (!r.diagnostic.empty()) {
            add_line(out, "    Diagnostic:  " + diagnostic_text(r.diagnostic));
        }
        if (r.will_retry_until) {
            add_line(out, "    Will retry until: " + rfc5322_date(*r.will_retry_until));
        }
        add_line(out, "");
    }
    add_line(out, "The header section of your message is attached; the body is not.");
    if (headers_truncated) {
        add_line(out, "The header section was too long and has been truncated.");
    }
    return out;
}

std::string status_part(const DsnInput& in, std::string_view host,
                        const std::vector<Recipient>& rcpts) {
    std::string out;
    // RFC 6533: a message received with SMTPUTF8 gets the global (UTF-8) report types.
    add_line(out, in.utf8 ? "Content-Type: message/global-delivery-status"
                          : "Content-Type: message/delivery-status");
    add_line(out, "Content-Description: Delivery report");
    add_line(out, "");
    add_field(out, "Reporting-MTA", "dns; " + std::string(host));
    add_field(out, "X-Esad-MID", std::to_string(in.original_mid));
    const std::string envid = sanitize(in.original_envelope_id, kMaxAddressOctets);
    if (!envid.empty()) add_field(out, "Original-Envelope-Id", envid);
    add_field(out, "Arrival-Date", rfc5322_date(in.arrival));
    for (const Recipient& r : rcpts) {
        add_line(out, "");
        if (!r.original_recipient.empty()) {
            add_field(out, "Original-Recipient", r.original_recipient);
        }
        add_field(out, "Final-Recipient",
                  (is_ascii(r.address) ? "rfc822; " : "utf-8; ") + r.address);
        add_field(out, "Action", r.action);
        add_field(out, "Status", r.status);
        if (!r.remote_mta.empty()) add_field(out, "Remote-MTA", "dns; " + r.remote_mta);
        if (!r.diagnostic.empty()) add_field(out, "Diagnostic-Code", r.diagnostic);
        if (r.last_attempt) add_field(out, "Last-Attempt-Date", rfc5322_date(*r.last_attempt));
        if (r.will_retry_until) {
            add_field(out, "Will-Retry-Until", rfc5322_date(*r.will_retry_until));
        }
    }
    return out;
}

std::string headers_part(const HeaderSection& section, bool utf8) {
    std::string out;
    add_line(out,
             utf8 ? "Content-Type: message/global-headers" : "Content-Type: text/rfc822-headers");
    add_line(out, "Content-Description: Undelivered message headers");
    if (needs_qp(section)) {
        add_line(out, "Content-Transfer-Encoding: quoted-printable");
        add_line(out, "");
        out += quoted_printable(section);
    } else {
        add_line(out, "Content-Transfer-Encoding: 7bit");
        add_line(out, "");
        for (const std::string_view line : section.lines)
            add_line(out, line);
    }
    return out;
}

// ---- should_send_dsn helpers --------------------------------------------------------------

// Removes RFC 5322 comments "(...)" (nested, with quoted-pairs) outside quoted strings.
std::string strip_comments(std::string_view v) {
    std::string out;
    int depth = 0;
    bool quoted = false;
    for (std::size_t i = 0; i < v.size(); ++i) {
        const char c = v[i];
        if (c == '\\' && i + 1 < v.size()) {
            if (depth == 0) {
                out += c;
                out += v[i + 1];
            }
            ++i;
            continue;
        }
        if (quoted) {
            out += c;
            if (c == '"') quoted = false;
        } else if (c == '(') {
            ++depth;
        } else if (c == ')' && depth > 0) {
            --depth;
        } else if (depth == 0) {
            if (c == '"') quoted = true;
            out += c;
        }
    }
    return out;
}

bool is_delivery_status_report(std::string_view content_type) {
    const std::string v = strip_comments(content_type);
    std::string_view rest = v;
    std::size_t semi = rest.find(';');
    if (!iequals(trim(rest.substr(0, semi)), "multipart/report")) return false;
    while (semi != std::string_view::npos) {
        rest = rest.substr(semi + 1);
        semi = rest.find(';');
        const std::string_view param = trim(rest.substr(0, semi));
        const std::size_t eq = param.find('=');
        if (eq == std::string_view::npos) continue;
        if (!iequals(trim(param.substr(0, eq)), "report-type")) continue;
        std::string_view value = trim(param.substr(eq + 1));
        if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
            value = value.substr(1, value.size() - 2);
        }
        return iequals(trim(value), "delivery-status");
    }
    return false;
}

}  // namespace

std::string rfc5322_date(std::time_t t) {
    static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    // RFC 5322 years have four digits here: clamp to 0001..9999 so the year never
    // overflows int (arrival/retry times come from spool files and arithmetic on them).
    constexpr std::time_t kFirst = -62135596800;  // 0001-01-01T00:00:00Z
    constexpr std::time_t kLast = 253402300799;   // 9999-12-31T23:59:59Z
    t = std::clamp(t, kFirst, kLast);
    std::tm tm{};
    if (gmtime_r(&t, &tm) == nullptr || tm.tm_wday < 0 || tm.tm_wday > 6 || tm.tm_mon < 0 ||
        tm.tm_mon > 11) {
        const std::time_t epoch = 0;
        gmtime_r(&epoch, &tm);
    }
    std::array<char, 64> buf{};
    std::snprintf(buf.data(), buf.size(), "%s, %02d %s %04d %02d:%02d:%02d +0000",
                  kDays[tm.tm_wday], tm.tm_mday, kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
                  tm.tm_min, tm.tm_sec);
    return std::string(buf.data());
}

std::string build_dsn(const DsnInput& in) {
    const std::string host = sanitize_host(in.reporting_mta, "localhost");
    const std::string id_domain = sanitize_host(
        in.dsn_message_id_domain.empty() ? in.reporting_mta : in.dsn_message_id_domain, host);

    std::vector<Recipient> rcpts;
    rcpts.reserve(in.recipients.size());
    for (const DsnRecipient& r : in.recipients)
        rcpts.push_back(clean(r, in.utf8));

    const HeaderSection section = header_section(in.original_headers);
    const std::array<std::string, 3> parts = {
        human_part(in, host, rcpts, section.truncated),
        status_part(in, host, rcpts),
        headers_part(section, in.utf8),
    };

    // Distinct counters give distinct candidates (splitmix64 is a bijection), and the
    // content can hold fewer distinct substrings than it has octets, so this terminates.
    const std::uint64_t seed = splitmix64(in.boundary_seed ^ splitmix64(in.original_mid));
    std::string boundary;
    for (std::uint64_t k = 0;; ++k) {
        boundary = "=_esad_" + hex64(splitmix64(seed + k)) + "_" + hex64(in.original_mid);
        bool clash = false;
        for (const std::string& part : parts) {
            if (part.find(boundary) != std::string::npos) clash = true;
        }
        if (!clash) break;
    }

    const std::string to = sanitize_address(in.original_sender, in.utf8);
    std::string out;
    add_field(out, "Date", rfc5322_date(in.now));
    add_field(out, "From", "Mail Delivery System <MAILER-DAEMON@" + host + ">");
    add_field(out, "To", "<" + to + ">");
    add_field(out, "Subject",
              in.delay_warning ? "Delayed Mail (still being retried)"
                               : "Undelivered Mail Returned to Sender");
    add_field(out, "Message-ID",
              "<" + std::to_string(static_cast<long long>(in.now)) + "." + hex64(in.original_mid) +
                  "." + hex64(splitmix64(in.boundary_seed)) + "@" + id_domain + ">");
    add_field(out, "Auto-Submitted", "auto-replied");
    add_field(out, "MIME-Version", "1.0");
    add_field(out, "Content-Type",
              "multipart/report; report-type=delivery-status;\r\n\tboundary=\"" + boundary + "\"");
    add_line(out, "");
    add_line(out, "This is a MIME-encapsulated message.");
    add_line(out, "");
    for (const std::string& part : parts) {
        add_line(out, "--" + boundary);
        out += part;
        add_line(out, "");
    }
    add_line(out, "--" + boundary + "--");
    return out;
}

bool should_send_dsn(std::string_view original_sender, std::string_view original_headers) {
    if (strip_brackets(original_sender).empty()) return false;  // null reverse-path
    bool send = true;
    // A line that is not a field is skipped: the section ends only at the empty line.
    for_each_field(original_headers, [&](const HeaderField& f) {
        if (iequals(f.name, "Content-Type") && is_delivery_status_report(unfold(f.value)))
            send = false;
        if (iequals(f.name, "Auto-Submitted")) {
            std::string v = strip_comments(unfold(f.value));
            const std::string_view token = trim(std::string_view(v).substr(0, v.find(';')));
            if (!iequals(token, "no")) send = false;
        }
        return send;
    });
    return send;
}

}  // namespace esad::queue
