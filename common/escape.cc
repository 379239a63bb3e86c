// See escape.h for the contract.
#include "common/escape.h"

namespace esad {

namespace {

// Length of the escaped form of one byte.
std::size_t escaped_len(unsigned char c) {
    if (c == '\\') return 2;
    if (c >= 0x20 && c <= 0x7e) return 1;
    return 4;
}

void append_escaped(std::string& out, unsigned char c) {
    static constexpr char kHex[] = "0123456789abcdef";
    if (c == '\\') {
        out += "\\\\";
    } else if (c >= 0x20 && c <= 0x7e) {
        out += static_cast<char>(c);
    } else {
        out += "\\x";
        out += kHex[c >> 4];
        out += kHex[c & 0x0f];
    }
}

}  // namespace

std::string escape_for_log(std::string_view text, std::size_t max) {
    std::size_t full = 0;
    for (char c : text)
        full += escaped_len(static_cast<unsigned char>(c));
    const bool truncate = full > max;
    // Room for escaped text; the rest is the "..." marker. Never cut an escape in half.
    const std::size_t marker = truncate ? (max >= 3 ? 3 : max) : 0;
    const std::size_t budget = truncate ? max - marker : full;
    std::string out;
    out.reserve(budget + marker);
    for (char ch : text) {
        const auto c = static_cast<unsigned char>(ch);
        if (out.size() + escaped_len(c) > budget) break;
        append_escaped(out, c);
    }
    out.append(marker, '.');
    return out;
}

}  // namespace esad
