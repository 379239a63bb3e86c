// See clock.h.
#include "common/clock.h"

#include <chrono>
#include <cstdint>

namespace esad {

namespace {
bool sentinel(std::int64_t t) {
    return t == 0 || t == INT64_MAX;
}
}  // namespace

std::int64_t Clock::monotonic_ms() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

std::int64_t Clock::wall_ms() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::int64_t Clock::to_wall(std::int64_t monotonic) const {
    if (sentinel(monotonic)) return monotonic;
    return monotonic + (wall_ms() - monotonic_ms());
}

std::int64_t Clock::to_monotonic(std::int64_t wall) const {
    if (sentinel(wall)) return wall;
    return wall - (wall_ms() - monotonic_ms());
}

const Clock& Clock::system() {
    static const Clock clock;
    return clock;
}

}  // namespace esad
