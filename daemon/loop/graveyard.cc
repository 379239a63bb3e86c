// See graveyard.h.
#include "daemon/loop/graveyard.h"

namespace esad::loop {

void Graveyard::clear() {
    // Destroying one object may bury another (a session that ends its children): repeat.
    while (!dead_.empty()) {
        std::vector<std::shared_ptr<void>> now;
        now.swap(dead_);
    }
}

void Graveyard::arm() {
    if (!timer_) timer_ = Timer::create(loop_, [this] { clear(); });
    timer_->start(0);
}

}  // namespace esad::loop
