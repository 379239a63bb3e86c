// mime_downgrade — turns a message with 8-bit content into 7-bit MIME for a server that does
// not offer 8BITMIME (RFC 6152 §3: convert, or bounce with 5.6.3; never send raw 8-bit).
//
//   has_8bit(bytes) -> any octet >= 0x80
//   downgrade_to_7bit(content) -> {status, content, reason}
//     kUnchanged   no 8-bit octet anywhere: send `content` as it is (result content empty)
//     kConverted   `content` holds the 7-bit form
//     kImpossible  it cannot be converted faithfully; `reason` says why (the caller bounces
//                  with 5.6.3): 8-bit octets in a header section (RFC 6532 needs SMTPUTF8),
//                  in a multipart preamble or epilogue, inside a body that claims base64 or
//                  quoted-printable, or MIME nesting deeper than kMaxMimeDepth
//   quoted_printable(body) / base64_lines(body) -> the encodings used (RFC 2045 §6.7, §6.8:
//                  lines of at most 76 octets, CRLF)
//
// How (as Postfix's 8-bit to 7-bit conversion): the MIME tree is walked. A leaf with 8-bit
// octets is re-encoded — text/* (and a part without Content-Type) as quoted-printable, any
// other type as base64 — and its Content-Transfer-Encoding field is replaced. multipart/*
// parts are converted one by one between their delimiters; message/rfc822 is converted as
// the message it holds; a composite entity labelled "8bit" is relabelled "7bit". A message
// without MIME-Version gets "MIME-Version: 1.0" and, without Content-Type, "text/plain;
// charset=utf-8" (or "unknown-8bit" when the body is not UTF-8, RFC 1428). Input content is
// CRLF lines as stored by the spool. Pure.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace esad::smtp {

inline constexpr std::size_t kMaxMimeDepth = 20;

enum class DowngradeStatus { kUnchanged, kConverted, kImpossible };

struct DowngradeResult {
    DowngradeStatus status = DowngradeStatus::kUnchanged;
    std::string content;
    std::string reason;
};

bool has_8bit(std::string_view bytes);
DowngradeResult downgrade_to_7bit(std::string_view content);
std::string quoted_printable(std::string_view body);
std::string base64_lines(std::string_view body);

}  // namespace esad::smtp
