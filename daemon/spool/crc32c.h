// crc32c — CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): the SSE 4.2 crc32
// instruction where the CPU has it (checked once at startup), else a byte table.
//
// Used by the spool record codec, the recipient journal, the MID reservation file and the
// counters file to detect torn or flipped bytes. Pure; no I/O; no logging.
//
// API: crc32c(data) for one buffer; Crc32c for incremental use (update() over pieces gives
// the same value as one call over the concatenation).
#pragma once

#include <cstdint>
#include <string_view>

namespace esad::spool {

class Crc32c {
  public:
    void update(std::string_view data);
    std::uint32_t value() const { return ~state_; }

  private:
    std::uint32_t state_ = 0xFFFFFFFFu;
};

std::uint32_t crc32c(std::string_view data);

// The table step alone (no inversion), whatever the CPU: for tests that hold the fast path
// to it.
std::uint32_t crc32c_update_portable(std::uint32_t state, std::string_view data);

}  // namespace esad::spool
