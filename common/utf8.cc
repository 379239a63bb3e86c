// See utf8.h for the contract.
#include "common/utf8.h"

namespace esad {

std::size_t utf8_sequence(std::string_view s, std::size_t i, std::uint32_t* cp_out) {
    if (i >= s.size()) return 0;
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t len;
    std::uint32_t cp;
    if (c < 0x80) {
        len = 1;
        cp = c;
    } else if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;  // continuation octet, overlong lead (c0/c1) or past f4
    }
    if (len > s.size() - i) return 0;
    for (std::size_t k = 1; k < len; ++k) {
        const auto cc = static_cast<unsigned char>(s[i + k]);
        if ((cc & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (cc & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    if (cp_out) *cp_out = cp;
    return len;
}

bool valid_utf8(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        const std::size_t n = utf8_sequence(s, i);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

std::string printable_utf8(std::string_view s, std::size_t max) {
    std::string out;
    std::size_t cut = 0;  // out.size() at the last character boundary that leaves room for "..."
    const std::size_t room = max >= 3 ? max - 3 : max;
    for (std::size_t i = 0; i < s.size();) {
        std::uint32_t cp = 0;
        const std::size_t n = utf8_sequence(s, i, &cp);
        const bool keep = n > 0 && ((cp >= 0x20 && cp < 0x7f) || cp >= 0xa0);
        if (keep) {
            out.append(s.substr(i, n));
            i += n;
        } else {
            out.push_back('?');
            ++i;
        }
        if (out.size() <= room) cut = out.size();
        if (out.size() > max) {
            out.resize(cut);
            if (max >= 3) out += "...";
            return out;
        }
    }
    return out;
}

}  // namespace esad
