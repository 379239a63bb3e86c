// Making peer-supplied text safe to log.
//
// API: escape_for_log(text, max) returns printable ASCII only: bytes 0x20..0x7e are kept
// (a backslash becomes "\\"), every other byte becomes "\xNN" (lower-case hex). When the
// escaped text would be longer than `max` characters it is cut at an escape boundary and
// ends in "..." so the result is never longer than `max` (for max >= 3). Pure; no I/O.
//
// Why: everything a remote peer sends (EHLO names, addresses, header values) reaches mail
// logs and domain-debug logs; it must not be able to forge log lines (CR/LF), inject
// terminal escapes, or grow without bound (reliability.md §1 item 8).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace esad {

std::string escape_for_log(std::string_view text, std::size_t max);

}  // namespace esad
