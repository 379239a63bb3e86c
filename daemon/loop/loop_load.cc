// See loop_load.h.
#include "daemon/loop/loop_load.h"

#include <algorithm>

namespace esad::loop {

void LoadWindow::add(std::uint64_t elapsed_ns, std::uint64_t idle_ns) {
    slots_[next_] = {elapsed_ns, std::min(idle_ns, elapsed_ns)};
    next_ = (next_ + 1) % kSlots;
    count_ = std::min(count_ + 1, kSlots);
}

double LoadWindow::busy(std::size_t n) const {
    n = std::clamp<std::size_t>(n, 1, count_);
    std::uint64_t elapsed = 0, idle = 0;
    for (std::size_t i = 1; i <= n && i <= count_; ++i) {
        const Slot& s = slots_[(next_ + kSlots - i) % kSlots];
        elapsed += s.elapsed_ns;
        idle += s.idle_ns;
    }
    if (elapsed == 0) return 0.0;
    return static_cast<double>(elapsed - idle) / static_cast<double>(elapsed);
}

int LoopLoad::enable(uv_loop_t* loop) {
    return uv_loop_configure(loop, UV_METRICS_IDLE_TIME);
}

LoopLoad::LoopLoad(uv_loop_t* loop, std::uint64_t interval_ms)
    : loop_(loop), last_time_ns_(uv_hrtime()), last_idle_ns_(uv_metrics_idle_time(loop)) {
    timer_ = Timer::create(loop, [this] { sample(); });
    timer_->start(interval_ms, interval_ms);
    timer_->unref();
}

void LoopLoad::sample() {
    std::uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(loop_);
    window_.add(now - last_time_ns_, idle - last_idle_ns_);
    last_time_ns_ = now;
    last_idle_ns_ = idle;
}

}  // namespace esad::loop
