// loop_load — how busy the event loop is: the share of wall time the single loop thread
// spends running callbacks rather than waiting in the poll. esad has one loop; when this
// fraction nears 1 the loop is the bottleneck and more work only adds latency (README,
// "Performance": what a bigger machine needs).
//
// LoadWindow is the pure part: fed one (elapsed, idle) sample per interval, it answers the
// busy fraction over the last N samples. LoopLoad is the glue: it turns on libuv's idle-time
// accounting (UV_METRICS_IDLE_TIME, before the loop first runs) and samples
// uv_metrics_idle_time() once a second on an unreferenced timer.
#pragma once

#include <uv.h>

#include <array>
#include <cstdint>

#include "daemon/loop/handle.h"

namespace esad::loop {

class LoadWindow {
  public:
    static constexpr std::size_t kSlots = 60;
    // One interval: `elapsed_ns` of wall time of which `idle_ns` were spent waiting.
    void add(std::uint64_t elapsed_ns, std::uint64_t idle_ns);
    // Busy share of the last `n` intervals (1..kSlots), 0 when nothing was sampled yet.
    double busy(std::size_t n) const;
    std::size_t samples() const { return count_; }

  private:
    struct Slot {
        std::uint64_t elapsed_ns = 0;
        std::uint64_t idle_ns = 0;
    };
    std::array<Slot, kSlots> slots_{};
    std::size_t next_ = 0;
    std::size_t count_ = 0;
};

class LoopLoad {
  public:
    // Call before the loop first runs: libuv only counts idle time from then on. Returns
    // libuv's error (0 on success); without it busy() stays 0.
    static int enable(uv_loop_t* loop);

    explicit LoopLoad(uv_loop_t* loop, std::uint64_t interval_ms = 1000);
    const LoadWindow& window() const { return window_; }

  private:
    void sample();
    uv_loop_t* loop_;
    HandlePtr<Timer> timer_;
    std::uint64_t last_time_ns_;
    std::uint64_t last_idle_ns_;
    LoadWindow window_;
};

}  // namespace esad::loop
