// See idna.h for the contract.
#include "common/idna.h"

#include <idn2.h>

#include <cstdlib>
#include <memory>

namespace esad {

namespace {
struct FreeIdn {
    void operator()(char* p) const { idn2_free(p); }
};
using IdnString = std::unique_ptr<char, FreeIdn>;

char ascii_lower(char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}
}  // namespace

std::optional<std::string> to_a_label(std::string_view domain, std::string* error) {
    bool ascii = true;
    for (char c : domain)
        ascii &= static_cast<unsigned char>(c) < 0x80;
    if (ascii) {
        std::string out(domain);
        for (char& c : out)
            c = ascii_lower(c);
        return out;
    }
    const std::string in(domain);
    char* raw = nullptr;
    const int rc =
        idn2_lookup_u8(reinterpret_cast<const uint8_t*>(in.c_str()),
                       reinterpret_cast<uint8_t**>(&raw), IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
    IdnString out(raw);
    if (rc != IDN2_OK || !out) {
        if (error) *error = idn2_strerror(rc);
        return std::nullopt;
    }
    std::string result(out.get());
    for (char& c : result)
        c = ascii_lower(c);
    return result;
}

std::string to_u_label(std::string_view domain) {
    if (domain.find("xn--") == std::string_view::npos) return std::string(domain);
    const std::string in(domain);
    char* raw = nullptr;
    const int rc = idn2_to_unicode_8z8z(in.c_str(), &raw, 0);
    IdnString out(raw);
    if (rc != IDN2_OK || !out) return in;
    return std::string(out.get());
}

}  // namespace esad
