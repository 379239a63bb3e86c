// RFC 5321 paths and MAIL/RCPT parameters, as received by the injection listener.
//
// API:
//   parse_path("<Local@Example.COM>", {role, smtputf8}) -> PathResult
//       Path = "<" [A-d-l ":"] Mailbox ">" (RFC 5321 §4.1.2). Source routes are checked
//       for syntax and ignored (§C / §4.1.1.3: "MUST ... ignore"). "<>" is the null
//       sender; a null recipient is an error. The local part is kept exactly as sent
//       (case and quoting preserved, REQ-5321-30); the domain is ASCII lower-cased.
//       Address literals [1.2.3.4] and [IPv6:...] are validated with inet_pton and
//       normalised ("[IPv6:" + lower-case text); general literals ("[tag:...]") are refused.
//       Limits: local part 64, domain 255, whole path 256 octets (§4.5.3.1).
//       Non-ASCII octets are allowed only when smtputf8 is true (RFC 6531) and must be
//       well-formed UTF-8; IDNA conversion of U-label domains is left to the delivery side.
//   split_path_and_params("<a@b> SIZE=10") -> {"<a@b>", "SIZE=10"}  (quote-aware)
//   parse_mail_params("SIZE=10 BODY=8BITMIME SMTPUTF8") -> MailParamsResult
//   check_rcpt_params("") -> std::nullopt (no RCPT parameters are supported)
//
// Errors carry a complete reply: code, enhanced status (RFC 3463) and text:
//   501 5.1.7 / 501 5.1.3   bad sender / recipient address syntax, too long
//   553 5.6.7               non-ASCII address without SMTPUTF8
//   501 5.5.4               bad parameter value, duplicate parameter
//   555 5.5.4               unknown / unsupported parameter (RFC 5321 §4.1.1.11)
// Peer text echoed in error texts is escaped and bounded (escape_for_log). Pure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace esad {

inline constexpr std::size_t kMaxLocalPart = 64;
inline constexpr std::size_t kMaxDomain = 255;
inline constexpr std::size_t kMaxPath = 256;

// A ready-to-send negative reply.
struct SmtpError {
    int code = 0;
    std::string enhanced;  // "5.1.3"
    std::string text;      // without code and enhanced status; printable ASCII only
    // "501 5.1.3 Bad recipient address syntax\r\n"
    std::string wire() const;
};

struct Mailbox {
    std::string local;   // as sent (quotes, case and UTF-8 preserved); empty for null
    std::string domain;  // lower-cased, or a normalised address literal; empty for null
    bool is_null = false;
    bool domain_is_literal = false;
    bool utf8 = false;  // contains non-ASCII octets (needs SMTPUTF8 downstream)

    // "local@domain", or "" for the null path.
    std::string address() const;
    // "<local@domain>" or "<>".
    std::string path() const;
    bool operator==(const Mailbox&) const = default;
};

enum class PathRole { kSender, kRecipient };

struct PathOptions {
    PathRole role = PathRole::kRecipient;
    bool smtputf8 = false;
};

struct PathResult {
    std::optional<Mailbox> mailbox;
    SmtpError error;  // meaningful only when !ok()
    bool ok() const { return mailbox.has_value(); }
};

PathResult parse_path(std::string_view text, const PathOptions& options = {});

struct PathAndParams {
    std::string_view path;    // "<...>" including brackets (or the first word if no '<')
    std::string_view params;  // the rest, leading blanks removed
};
// Splits "<path> params" at the '>' that closes the path (a '>' inside a quoted local
// part does not count). Returns nullopt when the text is empty or a '<' is never closed.
std::optional<PathAndParams> split_path_and_params(std::string_view text);

enum class BodyType { kUnspecified, k7Bit, k8BitMime };
std::string_view to_string(BodyType type);

struct MailParams {
    std::optional<std::uint64_t> size;  // SIZE=
    BodyType body = BodyType::kUnspecified;
    bool smtputf8 = false;
    bool operator==(const MailParams&) const = default;
};

struct MailParamsResult {
    std::optional<MailParams> params;
    SmtpError error;
    bool ok() const { return params.has_value(); }
};

// Parameters are separated by one or more spaces; names are case-insensitive.
MailParamsResult parse_mail_params(std::string_view text);
// RCPT TO takes no parameters here (DSN is not advertised): any parameter is 555 5.5.4.
std::optional<SmtpError> check_rcpt_params(std::string_view text);

// True when `s` is well-formed UTF-8 (no overlongs, surrogates or code points > U+10FFFF).
bool is_valid_utf8(std::string_view s);

}  // namespace esad
