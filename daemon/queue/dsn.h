// dsn — builds RFC 3464 delivery status notifications (bounces and delay warnings) and
// decides whether one may be sent at all. Pure: no I/O, no clock, no randomness, no logging;
// the same input always yields the same bytes (time and the boundary seed are inputs).
//
// API
//   build_dsn(input) -> std::string   the complete RFC 5322 message (header section, blank
//                                     line, multipart/report body), CRLF line endings only,
//                                     every line <= 998 octets, 7-bit ASCII only unless
//                                     input.utf8 (RFC 6533, see DsnInput::utf8).
//   should_send_dsn(sender, headers)  false for the null sender ("<>" or ""), for messages
//                                     that are themselves DSNs (Content-Type multipart/report
//                                     with report-type=delivery-status) and for automatic
//                                     messages (Auto-Submitted present and not "no"): never
//                                     answer an error with an error (RFC 5321 §4.5.4, §6.1;
//                                     RFC 3834 §2; reliability.md DSN-04, DSN-05).
//   rfc5322_date(t) -> "Mon, 01 Jan 2024 10:00:00 +0000" (UTC)
//
// The message (RFC 3464, RFC 6522):
//   From: Mail Delivery System <MAILER-DAEMON@reporting_mta>; To: <original sender>;
//   Subject: "Undelivered Mail Returned to Sender" or, for delay warnings,
//   "Delayed Mail (still being retried)"; Auto-Submitted: auto-replied; Date (now);
//   Message-ID from (now, original_mid, boundary_seed); MIME-Version: 1.0;
//   Content-Type: multipart/report; report-type=delivery-status; boundary="...".
//   Part 1 text/plain: a human explanation listing each recipient with its diagnostic.
//   Part 2 message/delivery-status: Reporting-MTA, X-Esad-MID, Original-Envelope-Id (only
//     when the sender gave ENVID), Arrival-Date; then per recipient Original-Recipient (only
//     with ORCPT), Final-Recipient, Action, Status, Remote-MTA, Diagnostic-Code,
//     Last-Attempt-Date and, for "delayed", Will-Retry-Until.
//   Part 3 text/rfc822-headers: the original header section only — never the body (privacy
//     and size). Anything after the first empty line of original_headers is ignored, and
//     the section is cut at a line boundary (at a field boundary when possible) to
//     kMaxOriginalHeaderOctets. It is sent as 7bit when it is printable ASCII with short
//     lines, otherwise quoted-printable, so the DSN stays 7-bit and line-limited.
//   The boundary is derived from boundary_seed and is re-derived until it occurs nowhere in
//   the content of any part.
//
// Peer-originated text (addresses, remote MTA names, diagnostics, ENVID, ORCPT) is
// sanitized like escape_for_log: CR, LF and HTAB become a space (runs collapse to one), a
// backslash becomes "\\", every other byte outside 0x20..0x7e becomes "\xNN"; the result is
// bounded (kMaxAddressOctets, kMaxHostOctets, kMaxDiagnosticOctets) and cut at an escape
// boundary with "...". So no input can add a header line, a MIME boundary or 8-bit data.
// With DsnInput::utf8 the one exception is the well-formed UTF-8 characters (U+00A0 and up)
// of addresses and diagnostics, which stay as they are (RFC 6533) instead of "\xNN" text.
// Host names in From/Message-ID keep only [A-Za-z0-9.-] (others become "-").
// An action other than failed/delayed/delivered/relayed/expanded is reported as "failed";
// a status that is not an RFC 3463 code becomes 5.0.0 (failed) or 4.0.0 (delayed). A
// diagnostic without a "type;" prefix gets "smtp; " when it starts with a reply code and
// "X-Esad; " otherwise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace esad::queue {

inline constexpr std::size_t kMaxAddressOctets = 512;
inline constexpr std::size_t kMaxHostOctets = 255;
inline constexpr std::size_t kMaxDiagnosticOctets = 512;
inline constexpr std::size_t kMaxOriginalHeaderOctets = 64 * 1024;

struct DsnRecipient {
    std::string address;             // final recipient, with or without <>
    std::string action;              // "failed" | "delayed" (RFC 3464 action-value)
    std::string status;              // RFC 3463 code, e.g. "5.1.1"
    std::string remote_mta;          // MX host name; empty: no Remote-MTA field
    std::string diagnostic;          // e.g. "smtp; 550 5.1.1 user unknown"; empty: none
    std::string original_recipient;  // ORCPT as given ("rfc822;a@b"); empty: no field
    std::optional<std::time_t> last_attempt;
    std::optional<std::time_t> will_retry_until;  // used for "delayed" only
};

struct DsnInput {
    std::string reporting_mta;  // our host name
    std::uint64_t original_mid = 0;
    std::string original_sender;       // envelope sender of the original, the DSN's To:
    std::string original_envelope_id;  // ENVID (xtext-decoded); empty: no field
    std::time_t arrival = 0;
    std::string original_headers;  // header section of the original message
    std::vector<DsnRecipient> recipients;
    bool delay_warning = false;
    std::string dsn_message_id_domain;  // empty: reporting_mta
    std::time_t now = 0;
    std::uint64_t boundary_seed = 0;
    // RFC 6533: the original was received with SMTPUTF8. Addresses stay UTF-8 (To:,
    // Final-Recipient "utf-8;" type, the human part in charset=utf-8 8bit) and the report
    // parts are message/global-delivery-status and message/global-headers. The DSN must
    // then be sent with SMTPUTF8 (the caller marks its envelope).
    bool utf8 = false;
};

std::string build_dsn(const DsnInput& input);

bool should_send_dsn(std::string_view original_sender, std::string_view original_headers);

std::string rfc5322_date(std::time_t t);

}  // namespace esad::queue
