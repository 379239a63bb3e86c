// crc32c — see crc32c.h.
#include "daemon/spool/crc32c.h"

#include <array>

namespace esad::spool {
namespace {

constexpr std::uint32_t kPolynomial = 0x82F63B78u;

constexpr std::array<std::uint32_t, 256> make_table() {
    std::array<std::uint32_t, 256> table{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t c = i;
        for (int bit = 0; bit < 8; ++bit)
            c = (c & 1u) ? (c >> 1) ^ kPolynomial : c >> 1;
        table[i] = c;
    }
    return table;
}

constexpr std::array<std::uint32_t, 256> kTable = make_table();

}  // namespace

void Crc32c::update(std::string_view data) {
    std::uint32_t c = state_;
    for (unsigned char byte : data)
        c = kTable[(c ^ byte) & 0xFFu] ^ (c >> 8);
    state_ = c;
}

std::uint32_t crc32c(std::string_view data) {
    Crc32c crc;
    crc.update(data);
    return crc.value();
}

}  // namespace esad::spool
