// ascii — the one ASCII case-insensitive comparison in esad (SMTP verbs, ESMTP keywords,
// header names, MIME parameters, domains, sender selectors). Locale-independent: only A-Z
// fold; bytes >= 0x80 compare as they are.
#pragma once

#include <string>
#include <string_view>

namespace esad {

constexpr char ascii_lower(char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

constexpr bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
    return true;
}

constexpr bool istarts_with(std::string_view text, std::string_view prefix) {
    return text.size() >= prefix.size() && iequals(text.substr(0, prefix.size()), prefix);
}

inline std::string ascii_lowercase(std::string_view text) {
    std::string out(text);
    for (char& c : out)
        c = ascii_lower(c);
    return out;
}

}  // namespace esad
