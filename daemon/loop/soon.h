// soon — runs callbacks on a later iteration of the loop, in the order they were posted,
// from one zero timer: for an answer that is ready at once but must not run inside the
// call that asked for it (the caller may be in the middle of its own callback). Loop
// thread only. Callbacks posted while the queue runs wait for the next iteration.
//
//   auto soon = std::make_shared<loop::Soon>(loop);
//   soon->post([self] { self->complete(); });
#pragma once

#include <uv.h>

#include <functional>
#include <vector>

#include "daemon/loop/handle.h"

namespace esad::loop {

class Soon {
  public:
    explicit Soon(uv_loop_t* loop) : loop_(loop) {}
    Soon(const Soon&) = delete;
    Soon& operator=(const Soon&) = delete;

    void post(std::function<void()> fn);
    std::size_t pending() const { return queue_.size(); }

  private:
    void run();

    uv_loop_t* loop_;
    std::vector<std::function<void()>> queue_;
    HandlePtr<Timer> timer_;  // created at the first post
};

}  // namespace esad::loop
