// Blocking work on the libuv thread pool with the result delivered back on the loop.
//
//   loop::queue_work(loop, [&] { blocking_call(); }, [] { on_loop_thread(); });
//
// The work function runs on a pool thread and must touch only what it owns or what is
// documented as thread-safe; `after` runs on the loop thread. A queued request keeps the
// loop alive until it finished, so shutdown waits for disk work instead of abandoning it.
#pragma once

#include <uv.h>

#include <functional>

namespace esad::loop {

void queue_work(uv_loop_t* loop, std::function<void()> work, std::function<void()> after);
// Work items queued and not yet completed, in this process (loop thread only).
long pending_work();

}  // namespace esad::loop
