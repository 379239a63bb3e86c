// SMTP command lines as received by the injection listener (RFC 5321 §4.1).
//
// API:
//   parse_command("mail FROM:<a@b>") -> Command{Verb::kMail, "FROM:<a@b>"}
//       The verb is case-insensitive and ends at the first SP (or the end of the line);
//       the argument is the rest with leading and trailing SP/HTAB removed. The line is
//       given without its CRLF. Verbs we recognise but do not implement (EXPN, ETRN,
//       TURN, AUTH, BDAT, ...) are Verb::kNotImplemented; anything else is Verb::kUnknown.
//   line_has_invalid_octets(line) -> true for NUL, C0 controls other than HTAB, DEL, or a
//       stray CR/LF; such a line is refused before it is parsed (INJ-04, INJ-22).
//   to_string(Verb) -> "MAIL", ...
// Pure; no allocation.
#pragma once

#include <string_view>

namespace esad::smtp {

enum class Verb {
    kHelo,
    kEhlo,
    kMail,
    kRcpt,
    kData,
    kRset,
    kNoop,
    kQuit,
    kVrfy,
    kHelp,
    kStartTls,
    kNotImplemented,
    kUnknown,
};

std::string_view to_string(Verb verb);

struct Command {
    Verb verb = Verb::kUnknown;
    std::string_view name;  // the verb as sent
    std::string_view arg;   // trimmed argument, may be empty
};

Command parse_command(std::string_view line);

bool line_has_invalid_octets(std::string_view line);

}  // namespace esad::smtp
