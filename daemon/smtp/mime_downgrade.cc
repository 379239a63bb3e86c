// See mime_downgrade.h for the contract.
#include "daemon/smtp/mime_downgrade.h"

#include <algorithm>
#include <optional>
#include <vector>

#include "common/ascii.h"
#include "common/header_fields.h"
#include "common/utf8.h"

namespace esad::smtp {

namespace {

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() &&
           (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
        s.remove_suffix(1);
    return s;
}

// `headers` without any field called `name`, plus "name: value" at the end.
std::string set_header(std::string_view headers, std::string_view name, std::string_view value) {
    std::string out;
    for_each_field(headers, [&](const HeaderField& f) {
        if (!iequals(f.name, name)) out.append(f.raw);
        return true;
    });
    if (!out.empty() && out.size() >= 2 && out.compare(out.size() - 2, 2, "\r\n") != 0)
        out += "\r\n";
    out.append(name);
    out += ": ";
    out.append(value);
    out += "\r\n";
    return out;
}

std::string lower_token(std::string_view s) {
    std::string out;
    for (char c : trim(s))
        out.push_back(ascii_lower(c));
    return out;
}

// "multipart/mixed; boundary="x"" -> type "multipart/mixed", boundary "x".
struct ContentType {
    std::string type;
    std::string boundary;
};

ContentType parse_content_type(std::string_view value) {
    ContentType ct;
    const std::size_t semi = value.find(';');
    ct.type = lower_token(value.substr(0, semi));
    std::string_view params = semi == std::string_view::npos ? "" : value.substr(semi + 1);
    while (!params.empty()) {
        const std::size_t eq = params.find('=');
        if (eq == std::string_view::npos) break;
        const std::string name = lower_token(params.substr(0, eq));
        std::string_view rest = params.substr(eq + 1);
        while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t'))
            rest.remove_prefix(1);
        std::string val;
        if (!rest.empty() && rest.front() == '"') {
            std::size_t i = 1;
            for (; i < rest.size() && rest[i] != '"'; ++i) {
                if (rest[i] == '\\' && i + 1 < rest.size()) ++i;
                val.push_back(rest[i]);
            }
            rest.remove_prefix(std::min(rest.size(), i + 1));
        } else {
            const std::size_t end = rest.find(';');
            val = std::string(trim(rest.substr(0, end)));
            rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
        }
        if (name == "boundary") ct.boundary = val;
        const std::size_t next = rest.find(';');
        params = next == std::string_view::npos ? "" : rest.substr(next + 1);
    }
    return ct;
}

class Converter {
  public:
    // Appends the 7-bit form of the entity (`headers` without its blank line, `body`).
    bool entity(std::string_view headers, std::string_view body, bool top, std::size_t depth,
                std::string& out) {
        if (depth > kMaxMimeDepth) return fail("MIME nesting too deep");
        if (has_8bit(headers)) return fail("8-bit octets in a header section");
        if (!has_8bit(body)) {
            out.append(headers);
            out += "\r\n";
            out.append(body);
            return true;
        }
        std::string h(headers);
        const auto ct_value = first_field(headers, "Content-Type");
        if (top && !first_field(headers, "MIME-Version")) h = set_header(h, "MIME-Version", "1.0");
        if (!ct_value) {
            h = set_header(h, "Content-Type",
                           valid_utf8(body) ? "text/plain; charset=utf-8"
                                            : "text/plain; charset=unknown-8bit");
        }
        const ContentType ct = parse_content_type(ct_value.value_or("text/plain"));
        const std::string cte =
            lower_token(first_field(headers, "Content-Transfer-Encoding").value_or(std::string()));
        if (ct.type.rfind("multipart/", 0) == 0 && !ct.boundary.empty()) {
            if (cte == "8bit" || cte == "binary")
                h = set_header(h, "Content-Transfer-Encoding", "7bit");
            out.append(h);
            out += "\r\n";
            return multipart(body, ct.boundary, depth, out);
        }
        if (ct.type == "message/rfc822" || ct.type == "message/global") {
            if (ct.type == "message/global") return fail("message/global needs 8-bit transport");
            if (cte == "8bit" || cte == "binary")
                h = set_header(h, "Content-Transfer-Encoding", "7bit");
            out.append(h);
            out += "\r\n";
            const std::size_t split = find_body(body);
            return entity(body.substr(0, split), body.substr(std::min(body.size(), split + 2)),
                          false, depth + 1, out);
        }
        if (cte == "base64" || cte == "quoted-printable")
            return fail("8-bit octets inside a " + cte + " body");
        const bool text = ct.type.rfind("text/", 0) == 0 || !ct_value;
        h = set_header(h, "Content-Transfer-Encoding", text ? "quoted-printable" : "base64");
        out.append(h);
        out += "\r\n";
        out += text ? quoted_printable(body) : base64_lines(body);
        return true;
    }

    const std::string& reason() const { return reason_; }

  private:
    bool fail(std::string why) {
        reason_ = std::move(why);
        return false;
    }

    // Offset of the CRLF that ends the header section of `s` (its blank line follows).
    static std::size_t find_body(std::string_view s) { return header_section(s).size(); }

    bool multipart(std::string_view body, const std::string& boundary, std::size_t depth,
                   std::string& out) {
        const std::string delim = "--" + boundary;
        // Split into lines, each with its CRLF; find the delimiter lines.
        std::size_t pos = 0;
        std::size_t part_start = 0;  // just after the last delimiter line
        bool seen_first = false, closed = false;
        while (pos < body.size()) {
            const std::size_t eol = body.find("\r\n", pos);
            const std::size_t next = eol == std::string_view::npos ? body.size() : eol + 2;
            std::string_view line =
                body.substr(pos, (eol == std::string_view::npos ? next : eol) - pos);
            std::string_view after =
                line.rfind(delim, 0) == 0 ? line.substr(delim.size()) : std::string_view("x");
            const bool last = after.rfind("--", 0) == 0;
            if (last) after.remove_prefix(2);
            const bool is_delim = !closed && trim(after).empty();
            if (is_delim) {
                // The CRLF before a delimiter belongs to the delimiter.
                const std::size_t content_end = pos >= 2 ? pos - 2 : pos;
                if (!seen_first) {
                    std::string_view preamble = body.substr(0, content_end);
                    if (has_8bit(preamble)) return fail("8-bit octets in a multipart preamble");
                    out.append(body.substr(0, pos));
                } else {
                    std::string_view part = body.substr(
                        part_start, content_end > part_start ? content_end - part_start : 0);
                    const std::size_t split = find_body(part);
                    if (!entity(part.substr(0, split),
                                part.substr(std::min(part.size(), split + 2)), false, depth + 1,
                                out))
                        return false;
                    if (content_end > part_start) out += "\r\n";
                }
                out.append(body.substr(pos, next - pos));
                seen_first = true;
                part_start = next;
                if (last) {
                    closed = true;
                    std::string_view epilogue = body.substr(next);
                    if (has_8bit(epilogue)) return fail("8-bit octets in a multipart epilogue");
                    out.append(epilogue);
                    return true;
                }
            }
            pos = next;
        }
        if (!seen_first) {
            // No delimiter at all: treat the body as one text leaf would be wrong; refuse.
            return fail("multipart body without its boundary");
        }
        // Unterminated last part: convert what is there.
        std::string_view part = body.substr(part_start);
        const std::size_t split = find_body(part);
        return entity(part.substr(0, split), part.substr(std::min(part.size(), split + 2)), false,
                      depth + 1, out);
    }

    std::string reason_;
};

}  // namespace

bool has_8bit(std::string_view bytes) {
    return std::any_of(bytes.begin(), bytes.end(),
                       [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}

std::string quoted_printable(std::string_view body) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(body.size() + body.size() / 4);
    std::size_t pos = 0;
    while (pos <= body.size()) {
        const std::size_t eol = body.find("\r\n", pos);
        const std::size_t end = eol == std::string_view::npos ? body.size() : eol;
        std::string_view line = body.substr(pos, end - pos);
        std::size_t col = 0;
        for (std::size_t i = 0; i < line.size(); ++i) {
            const auto c = static_cast<unsigned char>(line[i]);
            const bool last = i + 1 == line.size();
            const bool literal =
                (c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !last);
            const std::size_t width = literal ? 1 : 3;
            // Keep every encoded line at most 76 octets, the soft break "=" included.
            if (col + width > (last ? 76 : 75)) {
                out += "=\r\n";
                col = 0;
            }
            if (literal) {
                out.push_back(static_cast<char>(c));
            } else {
                out.push_back('=');
                out.push_back(kHex[c >> 4]);
                out.push_back(kHex[c & 15]);
            }
            col += width;
        }
        if (eol == std::string_view::npos) break;
        out += "\r\n";
        pos = eol + 2;
    }
    return out;
}

std::string base64_lines(std::string_view body) {
    static constexpr char kAlphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve(body.size() * 4 / 3 + body.size() / 38 + 4);
    std::size_t col = 0;
    for (std::size_t i = 0; i < body.size(); i += 3) {
        const std::size_t n = std::min<std::size_t>(3, body.size() - i);
        std::uint32_t v = 0;
        for (std::size_t k = 0; k < 3; ++k)
            v = (v << 8) | (k < n ? static_cast<unsigned char>(body[i + k]) : 0u);
        out.push_back(kAlphabet[(v >> 18) & 63]);
        out.push_back(kAlphabet[(v >> 12) & 63]);
        out.push_back(n > 1 ? kAlphabet[(v >> 6) & 63] : '=');
        out.push_back(n > 2 ? kAlphabet[v & 63] : '=');
        col += 4;
        if (col >= 76) {
            out += "\r\n";
            col = 0;
        }
    }
    if (col != 0) out += "\r\n";
    return out;
}

DowngradeResult downgrade_to_7bit(std::string_view content) {
    DowngradeResult r;
    if (!has_8bit(content)) return r;
    const std::size_t split = header_section(content).size();
    std::string_view headers = content.substr(0, split);
    std::string_view body = content.substr(std::min(content.size(), split + 2));
    Converter conv;
    std::string out;
    out.reserve(content.size() + content.size() / 3);
    if (!conv.entity(headers, body, true, 0, out)) {
        r.status = DowngradeStatus::kImpossible;
        r.reason = conv.reason();
        return r;
    }
    r.status = DowngradeStatus::kConverted;
    r.content = std::move(out);
    return r;
}

}  // namespace esad::smtp
