// header_fields — the one parser of a message's header section (RFC 5322 §2.2) in esad: the
// Subject the mail log shows, the Message-ID and Received: count at injection, the fields a
// DSN decision reads (Auto-Submitted, Content-Type) and the MIME fields the 7-bit downgrade
// rewrites all come from here. Pure: no I/O, no allocation beyond the returned strings.
//
// A header section is the message's lines up to the first empty line. A field is one line
// "name: value" plus the continuation lines after it (they start with SP or HTAB); its name is
// 1*(printable ASCII except ':'), optionally followed by WSP before the colon (the obsolete
// syntax). Lines end in CRLF (a bare LF is taken as a line end too, for text that never went
// through the SMTP server's strict framing).
//
//   header_section(message)            the section, ending with its last line end
//   for_each_field(message, fn)        fn(field) per logical line, in order, until the empty
//                                      line or until fn returns false; a logical line that is
//                                      not a field comes with an empty name (callers that see
//                                      it as the start of the body stop there)
//   unfold(value, max)                 CR and LF removed, SP/HTAB trimmed at both ends
//   first_field(message, name, max)    the unfolded value of the first field called `name`
//                                      (ASCII case-insensitive), at most `max` octets
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace esad {

struct HeaderField {
    std::string_view name;   // empty when the logical line is not a field
    std::string_view value;  // after the colon, folding and the last line end kept
    std::string_view raw;    // the whole logical line, line ends included
};

std::string_view header_section(std::string_view message);
void for_each_field(std::string_view message, const std::function<bool(const HeaderField&)>& fn);
std::string unfold(std::string_view value, std::size_t max = std::string::npos);
std::optional<std::string> first_field(std::string_view message, std::string_view name,
                                       std::size_t max = std::string::npos);

}  // namespace esad
