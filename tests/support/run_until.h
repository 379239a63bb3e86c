// Waiting on an event in loop-tier tests: runs the loop until a condition holds, with a guard
// timer as the only wall-clock bound (generous: the machine is busy).
//   REQUIRE(esad::test::run_until(loop, [&] { return client.eof; }));
// A prepare handle checks the condition right before the loop would block in poll and stops
// the loop then, so an event delivered from a timer or a deferred callback (loop/soon.h) does
// not leave the iteration waiting in poll until the guard fires.
#pragma once

#include <uv.h>

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
    struct Check {
        uv_prepare_t prepare;
        std::function<bool()> stop;
    };
    auto* check = new Check{{}, [&] { return timed_out || done(); }};
    uv_prepare_init(loop, &check->prepare);
    check->prepare.data = check;
    uv_prepare_start(&check->prepare, [](uv_prepare_t* p) {
        if (static_cast<Check*>(p->data)->stop()) uv_stop(p->loop);
    });
    while (!done() && !timed_out)
        uv_run(loop, UV_RUN_ONCE);
    uv_close(reinterpret_cast<uv_handle_t*>(&check->prepare),
             [](uv_handle_t* h) { delete static_cast<Check*>(h->data); });
    return !timed_out;
}

}  // namespace esad::test
