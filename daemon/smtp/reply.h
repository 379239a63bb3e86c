// SMTP replies as the delivery client receives them (RFC 5321 §4.2, RFC 2034, RFC 3463):
// incremental assembly, validation, enhanced status codes, classification, EHLO keywords.
// Pure: no I/O, no clock; nothing here logs.
//
// API:
//   ReplyParser p;                 // one per connection; limits from ReplyLimits
//   n = p.feed(bytes);             // consumes bytes up to the end of ONE complete reply
//                                  // (or up to an error, or all of them); returns the count
//   if (p.failed()) ...            // p.error(): sticky ReplyError, the session is unusable
//   if (p.has_reply()) r = p.take_reply();   // then feed the rest (bytes.substr(n))
//   p.reset();                     // forget partial input and errors (STARTTLS boundary)
//   parse_reply(text) -> ParsedReply    one-shot helper: exactly one reply in `text`
//   parse_enhanced_code("5.1.1 no such user") -> EnhancedCode{5,1,1}
//   classify(reply, ReplyStage::kRcpt) -> ReplyClass{outcome, scope, too_many_recipients}
//   parse_ehlo(reply) -> EhloCapabilities
//   summarize(reply) -> ReplySummary      sanitized and bounded, for reports, logs and DSNs
//   sanitize_text(text, max)              printable characters only (ASCII and well-formed
//                                         UTF-8, utf8.h), at most `max` octets
//
// Framing rules (what a remote server may send):
//   * A line ends with CRLF; a bare LF is tolerated as a line end (common in the wild);
//     a bare CR never ends a line (it stays in the text and is sanitized on output).
//   * "ddd-text" continues, "ddd text" or a bare "ddd" ends the reply (REQ-5321-25);
//     the first digit must be 2..5 (REQ-5321-24), all three must be digits; every line of
//     a reply must carry the same code (a mismatch is a protocol error: never guess which
//     line decides - DLV-17); an empty line is a protocol error (DLV-16).
//   * A line longer than max_line octets (without its line end), more than max_lines
//     lines or more than max_total octets in one reply is a protocol error (DLV-18); the
//     parser never buffers more than max_line + 2 octets of an unfinished line.
//
// Enhanced status codes (RFC 3463): "class.subject.detail" at the start of the first line,
// only digits and dots, class 2, 4 or 5 and equal to the reply's first digit, subject and
// detail 1..3 digits, followed by SP, HTAB or the end of the line; anything else is text.
//
// Classification (scope = what the reply says is broken):
//   421 anywhere                         -> transient, session
//   any other failure at the greeting    -> site (e.g. 554: this host refuses us)
//   failure to EHLO/HELO/STARTTLS/RSET/QUIT -> session
//   failure to MAIL, DATA, the final dot -> message
//   failure to RCPT                      -> recipient; "too many recipients" (x.5.3, a bare
//                                           452, or that text; also 552 per REQ-5321-06) is
//                                           transient with too_many_recipients = true
//   a positive reply of the wrong class (354 to MAIL, 250 to DATA) -> protocol error
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace esad::smtp {

// Parser caps (per reply). 4 KiB is eight times RFC 5321's 512-octet minimum.
inline constexpr std::size_t kMaxReplyLine = 4096;        // octets, without the line end
inline constexpr std::size_t kMaxReplyLines = 100;        // lines per reply
inline constexpr std::size_t kMaxReplyTotal = 64 * 1024;  // octets per reply, line ends included

// Caps on peer text that leaves the SMTP core (reports, traces, logs, DSNs).
inline constexpr std::size_t kMaxReportLine = 512;
inline constexpr std::size_t kMaxReportLines = 10;

struct ReplyLimits {
    std::size_t max_line = kMaxReplyLine;
    std::size_t max_lines = kMaxReplyLines;
    std::size_t max_total = kMaxReplyTotal;
};

struct EnhancedCode {
    int klass = 0;  // 2, 4 or 5
    int subject = 0;
    int detail = 0;
    std::string to_string() const;  // "5.1.1"
    bool operator==(const EnhancedCode&) const = default;
};

// A complete, validated reply.
struct Response {
    int code = 0;                          // 200..599
    std::vector<std::string> lines;        // text after "ddd-" / "ddd ", raw octets, no line end
    std::optional<EnhancedCode> enhanced;  // from the first line, when well-formed

    int klass() const { return code / 100; }
    bool positive() const { return code >= 200 && code < 400; }
};

enum class ReplyError {
    kNone,
    kEmptyLine,         // "\r\n"
    kBadCode,           // not three digits, or first digit outside 2..5
    kBadSeparator,      // fourth octet neither '-' nor ' '
    kInconsistentCode,  // "250-a" then "550 b"
    kLineTooLong,
    kTooManyLines,
    kTooLarge,
};
std::string_view to_string(ReplyError error);

class ReplyParser {
  public:
    explicit ReplyParser(ReplyLimits limits = {}) : limits_(limits) {}

    // Consumes octets of `bytes` until one reply is complete, an error is found, or the
    // input is exhausted; returns how many were consumed. Returns 0 while a completed reply
    // waits to be taken or after an error.
    std::size_t feed(std::string_view bytes);

    bool has_reply() const { return ready_.has_value(); }
    Response take_reply();  // precondition: has_reply()
    bool failed() const { return error_ != ReplyError::kNone; }
    ReplyError error() const { return error_; }
    // True when no octet of an unfinished reply is buffered.
    bool idle() const { return line_.empty() && !in_reply_ && !ready_; }
    void reset();

  private:
    void end_line();
    void fail(ReplyError error);

    ReplyLimits limits_;
    std::string line_;  // current line, without its LF
    bool in_reply_ = false;
    Response partial_;
    std::size_t total_ = 0;
    std::optional<Response> ready_;
    ReplyError error_ = ReplyError::kNone;
};

struct ParsedReply {
    std::optional<Response> reply;
    ReplyError error = ReplyError::kNone;
    std::size_t consumed = 0;  // octets of the input that belong to the reply
};
// Parses the first reply of `text` (tests, tools). reply is empty when `text` holds no
// complete reply or on error.
ParsedReply parse_reply(std::string_view text, ReplyLimits limits = {});

std::optional<EnhancedCode> parse_enhanced_code(std::string_view text);

enum class ReplyOutcome {
    kSuccess,        // 2xx (3xx where expected: 354 to DATA)
    kTransient,      // 4xx
    kPermanent,      // 5xx
    kProtocolError,  // positive reply of the wrong class
};
enum class ReplyScope { kRecipient, kMessage, kSession, kSite };
enum class ReplyStage {
    kGreeting,
    kEhlo,
    kHelo,
    kStartTls,
    kMail,
    kRcpt,
    kData,
    kDataEnd,
    kRset,
    kQuit
};

std::string_view to_string(ReplyOutcome outcome);
std::string_view to_string(ReplyScope scope);
std::string_view to_string(ReplyStage stage);

struct ReplyClass {
    ReplyOutcome outcome = ReplyOutcome::kProtocolError;
    ReplyScope scope = ReplyScope::kSession;
    bool too_many_recipients = false;  // RCPT only: retry those recipients in a new transaction
    bool operator==(const ReplyClass&) const = default;
};
ReplyClass classify(const Response& reply, ReplyStage stage);

// EHLO keywords we use (RFC 5321 §4.1.1.1: keywords are case-insensitive; the first line is
// the server's greeting, keywords follow).
struct EhloCapabilities {
    bool pipelining = false;             // RFC 2920
    bool starttls = false;               // RFC 3207
    bool eight_bit_mime = false;         // RFC 6152
    bool smtputf8 = false;               // RFC 6531
    bool enhanced_status_codes = false;  // RFC 2034
    bool dsn = false;                    // RFC 3461
    bool chunking = false;               // RFC 3030: noted, never used
    bool size_advertised = false;        // RFC 1870
    std::uint64_t size_limit = 0;        // SIZE n; 0 = no fixed limit (or unparsable)
};
EhloCapabilities parse_ehlo(const Response& reply);

// What a report may carry of a reply: bounded and printable. code 0 = no reply from the peer
// (local failure such as a timeout; ESA prints it as '000').
struct ReplySummary {
    int code = 0;
    std::string enhanced;            // "5.1.1": the peer's, else derived from the code ("5.0.0")
    std::vector<std::string> lines;  // <= kMaxReportLines lines of <= kMaxReportLine octets
    bool operator==(const ReplySummary&) const = default;
};
ReplySummary summarize(const Response& reply);
// A local failure: ReplySummary{0, enhanced, {sanitize_text(text)}}.
ReplySummary local_summary(std::string_view enhanced, std::string_view text);

// Printable ASCII (0x20..0x7e) kept, every other octet becomes '?'; longer than `max` is cut
// and ends in "..." (the result is never longer than max for max >= 3).
std::string sanitize_text(std::string_view text, std::size_t max = kMaxReportLine);

}  // namespace esad::smtp
