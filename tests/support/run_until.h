// Waiting on an event in loop-tier tests: runs the loop until a condition holds, with a guard
// timer as the only wall-clock bound (generous: the machine is busy).
//   REQUIRE(esad::test::run_until(loop, [&] { return client.eof; }));
#pragma once

#include <functional>

#include "daemon/loop/handle.h"

namespace esad::test {

inline constexpr uint64_t kRunGuardMs = 120 * 1000;

// Runs `loop` until `done()` holds or the guard passes; false on the guard.
inline bool run_until(uv_loop_t* loop, const std::function<bool()>& done,
                      uint64_t guard_ms = kRunGuardMs) {
    bool timed_out = false;
    auto guard = loop::Timer::create(loop, [&] { timed_out = true; });
    guard->start(guard_ms);
    while (!done() && !timed_out)
        uv_run(loop, UV_RUN_ONCE);
    return !timed_out;
}

}  // namespace esad::test
