// utf8 — the one UTF-8 decoder: well-formed sequences only (RFC 3629: no overlong forms, no
// surrogates, nothing past U+10FFFF).
//
//   utf8_sequence(s, i, &cp) -> length (1..4) of the well-formed sequence at s[i], with its
//                               code point in *cp; 0 when s[i] does not start one
//   valid_utf8(s)            -> every octet belongs to a well-formed sequence
//   printable_utf8(s, max)   -> `s` for display in a reply summary, a DSN or a terminal:
//                               well-formed printable characters are kept (ASCII 0x20..0x7e
//                               and non-ASCII code points other than C1 controls), every
//                               other octet becomes '?'; at most `max` octets, cut on a
//                               character boundary with "..." when it was longer.
// Pure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace esad {

std::size_t utf8_sequence(std::string_view s, std::size_t i, std::uint32_t* cp = nullptr);
bool valid_utf8(std::string_view s);
std::string printable_utf8(std::string_view s, std::size_t max);

}  // namespace esad
