// crc32c — CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven.
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

}  // namespace esad::spool
