// crc32c — see crc32c.h.
#include "daemon/spool/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define ESAD_CRC32C_SSE42 1
#endif

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

std::uint32_t update_table(std::uint32_t c, const unsigned char* p, std::size_t n) {
    for (; n > 0; --n, ++p)
        c = kTable[(c ^ *p) & 0xFFu] ^ (c >> 8);
    return c;
}

#ifdef ESAD_CRC32C_SSE42
// The SSE 4.2 crc32 instruction is this same reflected Castagnoli step, 8 bytes at a time.
__attribute__((target("sse4.2"))) std::uint32_t update_sse42(std::uint32_t c,
                                                             const unsigned char* p,
                                                             std::size_t n) {
    std::uint64_t c64 = c;
    for (; n >= 8; n -= 8, p += 8) {
        std::uint64_t v;
        std::memcpy(&v, p, sizeof v);
        c64 = _mm_crc32_u64(c64, v);
    }
    auto c32 = static_cast<std::uint32_t>(c64);
    for (; n > 0; --n, ++p)
        c32 = _mm_crc32_u8(c32, *p);
    return c32;
}

bool have_sse42() {
    static const bool yes = [] {
        __builtin_cpu_init();  // also safe when first called from a static constructor
        return __builtin_cpu_supports("sse4.2") != 0;
    }();
    return yes;
}
#endif

}  // namespace

std::uint32_t crc32c_update_portable(std::uint32_t state, std::string_view data) {
    return update_table(state, reinterpret_cast<const unsigned char*>(data.data()), data.size());
}

void Crc32c::update(std::string_view data) {
    const auto* p = reinterpret_cast<const unsigned char*>(data.data());
#ifdef ESAD_CRC32C_SSE42
    if (have_sse42()) {
        state_ = update_sse42(state_, p, data.size());
        return;
    }
#endif
    state_ = update_table(state_, p, data.size());
}

std::uint32_t crc32c(std::string_view data) {
    Crc32c crc;
    crc.update(data);
    return crc.value();
}

}  // namespace esad::spool
