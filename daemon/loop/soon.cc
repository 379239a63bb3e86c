// See soon.h.
#include "daemon/loop/soon.h"

namespace esad::loop {

void Soon::post(std::function<void()> fn) {
    queue_.push_back(std::move(fn));
    if (!timer_) timer_ = Timer::create(loop_, [this] { run(); });
    if (queue_.size() == 1) timer_->start(0);
}

void Soon::run() {
    std::vector<std::function<void()>> now;
    now.swap(queue_);
    for (auto& fn : now)
        fn();
}

}  // namespace esad::loop
