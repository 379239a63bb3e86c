// graveyard — esad's one deferred-delete mechanism. An owner that must let go of an object
// while that object's own callback is on the stack (a session that reported its end, a
// client that closed) buries it here; the graveyard destroys it on a later loop iteration,
// from a zero timer of its own, so no object is ever destroyed under its own callback.
// The owner calls clear() (or destroys the graveyard) when it stops: everything buried goes
// at once. Loop thread only.
//
//   loop::Graveyard graveyard_{loop};
//   graveyard_.bury(std::move(sessions_[id]));  sessions_.erase(id);
#pragma once

#include <uv.h>

#include <memory>
#include <vector>

#include "daemon/loop/handle.h"

namespace esad::loop {

class Graveyard {
  public:
    explicit Graveyard(uv_loop_t* loop) : loop_(loop) {}
    Graveyard(const Graveyard&) = delete;
    Graveyard& operator=(const Graveyard&) = delete;
    ~Graveyard() { clear(); }

    // Takes any owning pointer (unique_ptr or shared_ptr); null is ignored.
    template <typename Ptr>
    void bury(Ptr object) {
        if (!object) return;
        dead_.push_back(std::shared_ptr<void>(std::move(object)));
        arm();
    }
    void clear();
    std::size_t size() const { return dead_.size(); }

  private:
    void arm();

    uv_loop_t* loop_;
    std::vector<std::shared_ptr<void>> dead_;
    HandlePtr<Timer> timer_;  // created at the first burial
};

}  // namespace esad::loop
