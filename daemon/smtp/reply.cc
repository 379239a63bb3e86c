// See reply.h for the contract.
#include "daemon/smtp/reply.h"

#include "common/ascii.h"
#include "common/utf8.h"

#include <limits>
#include <utility>

namespace esad::smtp {

namespace {

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

bool contains_nocase(std::string_view text, std::string_view needle) {
    if (needle.size() > text.size()) return false;
    for (std::size_t i = 0; i + needle.size() <= text.size(); ++i) {
        if (iequals(text.substr(i, needle.size()), needle)) return true;
    }
    return false;
}

// 1..3 digits at the start of `text`; advances `pos`.
std::optional<int> take_number(std::string_view text, std::size_t& pos) {
    std::size_t start = pos;
    int value = 0;
    while (pos < text.size() && is_digit(text[pos]) && pos - start < 3) {
        value = value * 10 + (text[pos] - '0');
        ++pos;
    }
    if (pos == start) return std::nullopt;
    return value;
}

ReplyScope natural_scope(ReplyStage stage) {
    switch (stage) {
        case ReplyStage::kGreeting:
            return ReplyScope::kSite;
        case ReplyStage::kMail:
        case ReplyStage::kData:
        case ReplyStage::kDataEnd:
            return ReplyScope::kMessage;
        case ReplyStage::kRcpt:
            return ReplyScope::kRecipient;
        case ReplyStage::kEhlo:
        case ReplyStage::kHelo:
        case ReplyStage::kStartTls:
        case ReplyStage::kRset:
        case ReplyStage::kQuit:
            break;
    }
    return ReplyScope::kSession;
}

bool too_many_recipients(const Response& reply) {
    if (reply.klass() != 4 && reply.klass() != 5) return false;
    if (reply.enhanced) return reply.enhanced->subject == 5 && reply.enhanced->detail == 3;
    if (reply.code == 452) return true;  // RFC 5321 §4.5.3.1.10
    if (reply.code != 552) return false;
    for (const auto& line : reply.lines) {
        if (contains_nocase(line, "too many recipients")) return true;
    }
    return false;
}

}  // namespace

std::string EnhancedCode::to_string() const {
    return std::to_string(klass) + "." + std::to_string(subject) + "." + std::to_string(detail);
}

std::string_view to_string(ReplyError error) {
    switch (error) {
        case ReplyError::kNone:
            return "none";
        case ReplyError::kEmptyLine:
            return "empty reply line";
        case ReplyError::kBadCode:
            return "malformed reply code";
        case ReplyError::kBadSeparator:
            return "malformed reply separator";
        case ReplyError::kInconsistentCode:
            return "inconsistent codes in multi-line reply";
        case ReplyError::kLineTooLong:
            return "reply line too long";
        case ReplyError::kTooManyLines:
            return "too many reply lines";
        case ReplyError::kTooLarge:
            return "reply too large";
    }
    return "unknown";
}

std::size_t ReplyParser::feed(std::string_view bytes) {
    if (failed() || ready_) return 0;
    std::size_t i = 0;
    while (i < bytes.size()) {
        const char c = bytes[i++];
        if (c == '\n') {
            end_line();
            if (failed() || ready_) return i;
            continue;
        }
        line_.push_back(c);
        // max_line excludes the line end: one trailing CR may still be part of a CRLF.
        const std::size_t n = line_.size();
        if (n > limits_.max_line + 1 || (n == limits_.max_line + 1 && c != '\r')) {
            fail(ReplyError::kLineTooLong);
            return i;
        }
    }
    return i;
}

void ReplyParser::end_line() {
    total_ += line_.size() + 1;
    std::string_view l = line_;
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    if (l.empty()) return fail(ReplyError::kEmptyLine);
    if (l.size() < 3 || !is_digit(l[0]) || !is_digit(l[1]) || !is_digit(l[2]) || l[0] < '2' ||
        l[0] > '5') {
        return fail(ReplyError::kBadCode);
    }
    const int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
    bool last = true;
    std::string_view text;
    if (l.size() > 3) {
        if (l[3] == '-') {
            last = false;
        } else if (l[3] != ' ') {
            return fail(ReplyError::kBadSeparator);
        }
        text = l.substr(4);
    }
    if (in_reply_ && code != partial_.code) return fail(ReplyError::kInconsistentCode);
    if (partial_.lines.size() >= limits_.max_lines) return fail(ReplyError::kTooManyLines);
    if (total_ > limits_.max_total) return fail(ReplyError::kTooLarge);
    partial_.code = code;
    partial_.lines.emplace_back(text);
    in_reply_ = true;
    line_.clear();
    if (!last) return;
    if (auto e = parse_enhanced_code(partial_.lines.front()); e && e->klass == partial_.klass()) {
        partial_.enhanced = e;
    }
    ready_ = std::move(partial_);
    partial_ = Response{};
    in_reply_ = false;
    total_ = 0;
}

void ReplyParser::fail(ReplyError error) {
    error_ = error;
    line_.clear();
    line_.shrink_to_fit();
    partial_ = Response{};
    in_reply_ = false;
}

Response ReplyParser::take_reply() {
    Response r = std::move(*ready_);
    ready_.reset();
    return r;
}

void ReplyParser::reset() {
    line_.clear();
    in_reply_ = false;
    partial_ = Response{};
    total_ = 0;
    ready_.reset();
    error_ = ReplyError::kNone;
}

ParsedReply parse_reply(std::string_view text, ReplyLimits limits) {
    ReplyParser parser(limits);
    ParsedReply out;
    out.consumed = parser.feed(text);
    out.error = parser.error();
    if (parser.has_reply()) out.reply = parser.take_reply();
    return out;
}

std::optional<EnhancedCode> parse_enhanced_code(std::string_view text) {
    if (text.empty() || (text[0] != '2' && text[0] != '4' && text[0] != '5')) return std::nullopt;
    if (text.size() < 2 || text[1] != '.') return std::nullopt;
    EnhancedCode code;
    code.klass = text[0] - '0';
    std::size_t pos = 2;
    auto subject = take_number(text, pos);
    if (!subject || pos >= text.size() || text[pos] != '.') return std::nullopt;
    ++pos;
    auto detail = take_number(text, pos);
    if (!detail) return std::nullopt;
    if (pos < text.size() && text[pos] != ' ' && text[pos] != '\t') return std::nullopt;
    code.subject = *subject;
    code.detail = *detail;
    return code;
}

std::string_view to_string(ReplyOutcome outcome) {
    switch (outcome) {
        case ReplyOutcome::kSuccess:
            return "success";
        case ReplyOutcome::kTransient:
            return "transient";
        case ReplyOutcome::kPermanent:
            return "permanent";
        case ReplyOutcome::kProtocolError:
            return "protocol-error";
    }
    return "unknown";
}

std::string_view to_string(ReplyScope scope) {
    switch (scope) {
        case ReplyScope::kRecipient:
            return "recipient";
        case ReplyScope::kMessage:
            return "message";
        case ReplyScope::kSession:
            return "session";
        case ReplyScope::kSite:
            return "site";
    }
    return "unknown";
}

std::string_view to_string(ReplyStage stage) {
    switch (stage) {
        case ReplyStage::kGreeting:
            return "greeting";
        case ReplyStage::kEhlo:
            return "EHLO";
        case ReplyStage::kHelo:
            return "HELO";
        case ReplyStage::kStartTls:
            return "STARTTLS";
        case ReplyStage::kMail:
            return "MAIL";
        case ReplyStage::kRcpt:
            return "RCPT";
        case ReplyStage::kData:
            return "DATA";
        case ReplyStage::kDataEnd:
            return "end of data";
        case ReplyStage::kRset:
            return "RSET";
        case ReplyStage::kQuit:
            return "QUIT";
    }
    return "unknown";
}

ReplyClass classify(const Response& reply, ReplyStage stage) {
    ReplyClass out;
    out.scope = natural_scope(stage);
    const int expected = stage == ReplyStage::kData ? 3 : 2;
    if (reply.positive()) {
        out.outcome =
            reply.klass() == expected ? ReplyOutcome::kSuccess : ReplyOutcome::kProtocolError;
        return out;
    }
    if (reply.klass() != 4 && reply.klass() != 5) return out;  // not from ReplyParser
    out.outcome = reply.klass() == 4 ? ReplyOutcome::kTransient : ReplyOutcome::kPermanent;
    if (reply.code == 421) {
        out.outcome = ReplyOutcome::kTransient;
        out.scope = ReplyScope::kSession;
        return out;
    }
    if (stage == ReplyStage::kRcpt && too_many_recipients(reply)) {
        out.outcome = ReplyOutcome::kTransient;
        out.too_many_recipients = true;
    }
    return out;
}

EhloCapabilities parse_ehlo(const Response& reply) {
    EhloCapabilities caps;
    for (std::size_t i = 1; i < reply.lines.size(); ++i) {
        std::string_view line = reply.lines[i];
        std::size_t end = line.find_first_of(" \t");
        std::string_view keyword = line.substr(0, end);
        std::string_view param =
            end == std::string_view::npos ? std::string_view{} : line.substr(end + 1);
        if (iequals(keyword, "PIPELINING")) {
            caps.pipelining = true;
        } else if (iequals(keyword, "STARTTLS")) {
            caps.starttls = true;
        } else if (iequals(keyword, "8BITMIME")) {
            caps.eight_bit_mime = true;
        } else if (iequals(keyword, "SMTPUTF8")) {
            caps.smtputf8 = true;
        } else if (iequals(keyword, "ENHANCEDSTATUSCODES")) {
            caps.enhanced_status_codes = true;
        } else if (iequals(keyword, "DSN")) {
            caps.dsn = true;
        } else if (iequals(keyword, "CHUNKING")) {
            caps.chunking = true;
        } else if (iequals(keyword, "SIZE")) {
            caps.size_advertised = true;
            caps.size_limit = 0;
            while (!param.empty() && (param.front() == ' ' || param.front() == '\t')) {
                param.remove_prefix(1);
            }
            while (!param.empty() && (param.back() == ' ' || param.back() == '\t')) {
                param.remove_suffix(1);
            }
            std::uint64_t value = 0;
            bool ok = !param.empty();
            for (char c : param) {
                if (!is_digit(c) || value > (std::numeric_limits<std::uint64_t>::max() - 9) / 10) {
                    ok = false;
                    break;
                }
                value = value * 10 + static_cast<std::uint64_t>(c - '0');
            }
            if (ok) caps.size_limit = value;
        }
    }
    return caps;
}

std::string sanitize_text(std::string_view text, std::size_t max) {
    return printable_utf8(text, max);  // a server may answer in UTF-8 (RFC 6531 §3.7.4)
}

ReplySummary summarize(const Response& reply) {
    ReplySummary s;
    s.code = reply.code;
    s.enhanced =
        reply.enhanced ? reply.enhanced->to_string() : std::to_string(reply.klass()) + ".0.0";
    for (std::size_t i = 0; i < reply.lines.size() && i < kMaxReportLines; ++i) {
        s.lines.push_back(sanitize_text(reply.lines[i]));
    }
    return s;
}

ReplySummary local_summary(std::string_view enhanced, std::string_view text) {
    ReplySummary s;
    s.enhanced = sanitize_text(enhanced, 16);
    s.lines.push_back(sanitize_text(text));
    return s;
}

}  // namespace esad::smtp
