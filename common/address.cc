// See address.h for the contract. Grammar references are RFC 5321 §4.1.2 and RFC 6531 §3.3.
#include "common/address.h"

#include "common/idna.h"
#include "common/utf8.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include "common/escape.h"

namespace esad {

namespace {

// Longest peer-supplied fragment echoed back in an error reply.
constexpr std::size_t kMaxEcho = 64;

SmtpError err(int code, std::string_view enhanced, std::string text) {
    return SmtpError{code, std::string(enhanced), std::move(text)};
}

char ascii_lower(char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
    }
    return true;
}

bool is_alpha(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_digit(unsigned char c) {
    return c >= '0' && c <= '9';
}
bool is_8bit(unsigned char c) {
    return c >= 0x80;
}

// atext (RFC 5322 §3.2.3), extended with UTF8-non-ascii by RFC 6531.
bool is_atext(unsigned char c) {
    if (is_alpha(c) || is_digit(c) || is_8bit(c)) return true;
    return std::strchr("!#$%&'*+-/=?^_`{|}~", c) != nullptr && c != '\0';
}

// Let-dig, extended with UTF-8 octets for U-labels (RFC 6531 sub-domain).
bool is_let_dig(unsigned char c) {
    return is_alpha(c) || is_digit(c) || is_8bit(c);
}

// Domain = sub-domain *("." sub-domain); sub-domain = Let-dig [Ldh-str].
bool valid_domain(std::string_view d) {
    if (d.empty() || d.size() > kMaxDomain) return false;
    std::size_t start = 0;
    while (true) {
        const std::size_t dot = d.find('.', start);
        const std::string_view label =
            d.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
        if (label.empty() || label.size() > 63) return false;
        if (!is_let_dig(static_cast<unsigned char>(label.front())) ||
            !is_let_dig(static_cast<unsigned char>(label.back()))) {
            return false;
        }
        for (char c : label) {
            if (!is_let_dig(static_cast<unsigned char>(c)) && c != '-') return false;
        }
        if (dot == std::string_view::npos) return true;
        start = dot + 1;
    }
}

bool inet_ok(int family, std::string_view text) {
    char buf[64];
    // inet_pton stops at a NUL: "1.2.3.4\0x" must not pass as 1.2.3.4.
    if (text.empty() || text.size() >= sizeof buf || text.find('\0') != text.npos) return false;
    std::memcpy(buf, text.data(), text.size());
    buf[text.size()] = '\0';
    unsigned char out[16];
    return inet_pton(family, buf, out) == 1;
}

// "[1.2.3.4]" or "[IPv6:...]" -> normalised literal; nullopt when not acceptable.
std::optional<std::string> normalise_literal(std::string_view lit) {
    if (lit.size() < 3 || lit.front() != '[' || lit.back() != ']') return std::nullopt;
    const std::string_view inner = lit.substr(1, lit.size() - 2);
    if (inner.size() > 5 && iequals(inner.substr(0, 5), "IPv6:")) {
        const std::string_view v6 = inner.substr(5);
        if (!inet_ok(AF_INET6, v6)) return std::nullopt;
        std::string out = "[IPv6:";
        for (char c : v6)
            out += ascii_lower(c);
        out += ']';
        return out;
    }
    if (!inet_ok(AF_INET, inner)) return std::nullopt;
    return std::string(lit);
}

// Dot-string = Atom *("." Atom)
bool valid_dot_string(std::string_view s) {
    if (s.empty() || s.front() == '.' || s.back() == '.') return false;
    char prev = '\0';
    for (char c : s) {
        if (c == '.') {
            if (prev == '.') return false;
        } else if (!is_atext(static_cast<unsigned char>(c))) {
            return false;
        }
        prev = c;
    }
    return true;
}

// Quoted-string = DQUOTE *QcontentSMTP DQUOTE; returns the length consumed, 0 on error.
std::size_t scan_quoted(std::string_view s) {
    if (s.empty() || s.front() != '"') return 0;
    for (std::size_t i = 1; i < s.size(); ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c == '"') return i + 1;
        if (c == '\\') {
            if (i + 1 >= s.size()) return 0;
            const auto n = static_cast<unsigned char>(s[i + 1]);
            if (n < 32 || n > 126) return 0;  // quoted-pairSMTP = %d92 %d32-126
            ++i;
            continue;
        }
        // qtextSMTP = %d32-33 / %d35-91 / %d93-126, plus UTF8-non-ascii
        if (!((c >= 32 && c <= 126) || is_8bit(c))) return 0;
    }
    return 0;
}

// A-d-l = At-domain *( "," At-domain ); At-domain = "@" Domain. `s` excludes the ':'.
bool valid_adl(std::string_view s) {
    std::size_t start = 0;
    while (true) {
        const std::size_t comma = s.find(',', start);
        const std::string_view at = s.substr(
            start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
        if (at.size() < 2 || at.front() != '@') return false;
        const std::string_view dom = at.substr(1);
        if (!valid_domain(dom) && !normalise_literal(dom)) return false;
        if (comma == std::string_view::npos) return true;
        start = comma + 1;
    }
}

}  // namespace

std::string SmtpError::wire() const {
    return std::to_string(code) + " " + enhanced + " " + text + "\r\n";
}

std::string Mailbox::address() const {
    if (is_null) return {};
    return local + "@" + domain;
}

std::string Mailbox::path() const {
    // Built by appending: `"<" + std::string&&` trips a GCC 12 -Wrestrict false positive at -O3.
    std::string out;
    out.reserve(local.size() + domain.size() + 3);
    out.push_back('<');
    out += address();
    out.push_back('>');
    return out;
}

bool is_valid_utf8(std::string_view s) {
    return esad::valid_utf8(s);
}

PathResult parse_path(std::string_view text, const PathOptions& options) {
    const bool sender = options.role == PathRole::kSender;
    const std::string_view syn = sender ? "5.1.7" : "5.1.3";
    const std::string what = sender ? "sender" : "recipient";
    PathResult r;
    auto fail = [&](int code, std::string_view enhanced, std::string msg) {
        r.error = err(code, enhanced, std::move(msg));
        return r;
    };

    if (text.size() > kMaxPath) return fail(501, syn, "Path too long");
    if (text.size() < 2 || text.front() != '<' || text.back() != '>') {
        return fail(501, syn, "Bad " + what + " address syntax");
    }
    std::string_view inner = text.substr(1, text.size() - 2);
    if (inner.empty()) {
        if (!sender) return fail(501, syn, "Null recipient address not allowed");
        Mailbox m;
        m.is_null = true;
        r.mailbox = m;
        return r;
    }

    // Non-ASCII: only with SMTPUTF8, and then only well-formed UTF-8.
    bool utf8 = false;
    for (char c : inner) {
        if (is_8bit(static_cast<unsigned char>(c))) utf8 = true;
    }
    if (utf8 && !options.smtputf8) {
        return fail(553, "5.6.7", "Non-ASCII address requires SMTPUTF8");
    }
    if (utf8 && !is_valid_utf8(inner)) {
        return fail(501, syn, "Bad " + what + " address syntax (invalid UTF-8)");
    }

    // Source route: checked, then ignored.
    if (inner.front() == '@') {
        const std::size_t colon = inner.find(':');
        if (colon == std::string_view::npos || !valid_adl(inner.substr(0, colon))) {
            return fail(501, syn, "Bad " + what + " address syntax (source route)");
        }
        inner.remove_prefix(colon + 1);
    }

    // Local part.
    std::size_t local_len;
    if (!inner.empty() && inner.front() == '"') {
        local_len = scan_quoted(inner);
        if (local_len == 0) return fail(501, syn, "Bad " + what + " address syntax");
    } else {
        local_len = inner.find('@');
        if (local_len == std::string_view::npos) {
            return fail(501, syn, "Bad " + what + " address syntax (domain required)");
        }
        if (!valid_dot_string(inner.substr(0, local_len))) {
            return fail(501, syn, "Bad " + what + " address syntax");
        }
    }
    if (local_len >= inner.size() || inner[local_len] != '@') {
        return fail(501, syn, "Bad " + what + " address syntax (domain required)");
    }
    const std::string_view local = inner.substr(0, local_len);
    if (local.size() > kMaxLocalPart) return fail(501, syn, "Local part too long");

    // Domain or address literal.
    const std::string_view domain = inner.substr(local_len + 1);
    Mailbox m;
    m.local = std::string(local);
    // The flag describes the mailbox; a source route is ignored, so is its UTF-8.
    m.utf8 = std::any_of(inner.begin(), inner.end(),
                         [](char c) { return is_8bit(static_cast<unsigned char>(c)); });
    if (!domain.empty() && domain.front() == '[') {
        auto lit = normalise_literal(domain);
        if (!lit) return fail(501, syn, "Bad " + what + " address syntax (address literal)");
        m.domain = std::move(*lit);
        m.domain_is_literal = true;
    } else {
        if (domain.size() > kMaxDomain) return fail(501, syn, "Domain too long");
        if (!valid_domain(domain)) return fail(501, syn, "Bad " + what + " address syntax");
        if (utf8 && !to_a_label(domain)) {
            // A U-label domain must have an A-label form: DNS only knows that one.
            return fail(501, syn,
                        "Bad " + what + " address syntax (invalid internationalized domain name)");
        }
        m.domain.reserve(domain.size());
        for (char c : domain)
            m.domain += ascii_lower(c);
    }
    r.mailbox = std::move(m);
    return r;
}

std::optional<PathAndParams> split_path_and_params(std::string_view text) {
    auto skip_blanks = [](std::string_view s) {
        while (!s.empty() && s.front() == ' ')
            s.remove_prefix(1);
        return s;
    };
    text = skip_blanks(text);
    if (text.empty()) return std::nullopt;
    std::size_t end;
    if (text.front() == '<') {
        bool quoted = false;
        end = std::string_view::npos;
        for (std::size_t i = 1; i < text.size(); ++i) {
            const char c = text[i];
            if (quoted && c == '\\') {
                ++i;
            } else if (c == '"') {
                quoted = !quoted;
            } else if (!quoted && c == '>') {
                end = i + 1;
                break;
            }
        }
        if (end == std::string_view::npos) return std::nullopt;
    } else {
        end = text.find(' ');
        if (end == std::string_view::npos) end = text.size();
    }
    PathAndParams out;
    out.path = text.substr(0, end);
    out.params = skip_blanks(text.substr(end));
    // A path must be followed by a blank or nothing: "<a@b>x" is a syntax error.
    if (end < text.size() && text[end] != ' ') return std::nullopt;
    return out;
}

std::string_view to_string(BodyType type) {
    switch (type) {
        case BodyType::kUnspecified:
            return "unspecified";
        case BodyType::k7Bit:
            return "7BIT";
        case BodyType::k8BitMime:
            return "8BITMIME";
    }
    return "?";
}

MailParamsResult parse_mail_params(std::string_view text) {
    MailParamsResult r;
    MailParams p;
    bool seen_size = false, seen_body = false, seen_utf8 = false;
    auto fail = [&](int code, std::string msg) {
        r.error = err(code, "5.5.4", std::move(msg));
        return r;
    };
    std::size_t pos = 0;
    while (pos < text.size()) {
        if (text[pos] == ' ') {
            ++pos;
            continue;
        }
        std::size_t end = text.find(' ', pos);
        if (end == std::string_view::npos) end = text.size();
        const std::string_view param = text.substr(pos, end - pos);
        pos = end;
        const std::size_t eq = param.find('=');
        const std::string_view name = param.substr(0, eq);
        const std::optional<std::string_view> value =
            eq == std::string_view::npos ? std::nullopt
                                         : std::optional<std::string_view>(param.substr(eq + 1));
        if (iequals(name, "SIZE")) {
            if (seen_size) return fail(501, "Duplicate SIZE parameter");
            seen_size = true;
            if (!value || value->empty() || value->size() > 20) {
                return fail(501, "Bad SIZE parameter syntax");
            }
            std::uint64_t n = 0;
            for (char c : *value) {
                if (!is_digit(static_cast<unsigned char>(c))) {
                    return fail(501, "Bad SIZE parameter syntax");
                }
                const auto d = static_cast<std::uint64_t>(c - '0');
                if (n > (UINT64_MAX - d) / 10) return fail(501, "Bad SIZE parameter syntax");
                n = n * 10 + d;
            }
            p.size = n;
        } else if (iequals(name, "BODY")) {
            if (seen_body) return fail(501, "Duplicate BODY parameter");
            seen_body = true;
            if (value && iequals(*value, "7BIT")) {
                p.body = BodyType::k7Bit;
            } else if (value && iequals(*value, "8BITMIME")) {
                p.body = BodyType::k8BitMime;
            } else {
                return fail(501, "Bad BODY parameter (7BIT or 8BITMIME)");
            }
        } else if (iequals(name, "SMTPUTF8")) {
            if (seen_utf8) return fail(501, "Duplicate SMTPUTF8 parameter");
            seen_utf8 = true;
            if (value) return fail(501, "SMTPUTF8 takes no value");
            p.smtputf8 = true;
        } else {
            return fail(555, "Unsupported option: " + escape_for_log(name, kMaxEcho));
        }
    }
    r.params = p;
    return r;
}

std::optional<SmtpError> check_rcpt_params(std::string_view text) {
    std::size_t pos = 0;
    while (pos < text.size() && text[pos] == ' ')
        ++pos;
    if (pos == text.size()) return std::nullopt;
    std::size_t end = text.find_first_of(" =", pos);
    if (end == std::string_view::npos) end = text.size();
    return err(555, "5.5.4",
               "Unsupported option: " + escape_for_log(text.substr(pos, end - pos), kMaxEcho));
}

}  // namespace esad
