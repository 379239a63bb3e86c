// The event loop's busy fraction: the window arithmetic, and libuv's idle-time accounting
// on a real loop (a callback that spins shows up as busy time; waiting in the poll does not).
#include <catch2/catch.hpp>

#include "daemon/loop/loop_load.h"

using namespace esad::loop;

TEST_CASE("load window: busy share over the last n intervals") {
    LoadWindow w;
    CHECK(w.busy(10) == 0.0);  // nothing sampled
    w.add(1000, 1000);         // idle second
    w.add(1000, 250);          // 75 % busy
    CHECK(w.samples() == 2);
    CHECK(w.busy(1) == Approx(0.75));
    CHECK(w.busy(2) == Approx(0.375));
    CHECK(w.busy(60) == Approx(0.375));  // fewer samples than asked: all of them
    w.add(1000, 5000);                   // idle reported above elapsed (clock skew): 0 busy
    CHECK(w.busy(1) == 0.0);
    for (int i = 0; i < 100; ++i)
        w.add(1000, 0);  // the ring keeps the last 60
    CHECK(w.samples() == LoadWindow::kSlots);
    CHECK(w.busy(60) == 1.0);
}

TEST_CASE("loop load: spinning callbacks are busy time, waiting is not") {
    uv_loop_t loop;
    uv_loop_init(&loop);
    REQUIRE(LoopLoad::enable(&loop) == 0);
    {
        LoopLoad load(&loop, 100);
        // Phase 1: the loop only waits (a timer that fires after 350 ms).
        auto idle = Timer::create(&loop, [] {});
        idle->start(350);
        uv_run(&loop, UV_RUN_DEFAULT);
        REQUIRE(load.window().samples() >= 2);
        double waiting = load.window().busy(2);
        // Phase 2: a timer callback that spins ~80 ms of every ~100 ms.
        int rounds = 0;
        HandlePtr<Timer> spin;
        spin = Timer::create(&loop, [&] {
            uint64_t until = uv_hrtime() + 80'000'000;
            while (uv_hrtime() < until) {
            }
            if (++rounds == 6) spin->stop();
        });
        spin->start(0, 20);
        uv_run(&loop, UV_RUN_DEFAULT);
        double spinning = load.window().busy(3);
        INFO("waiting " << waiting << " spinning " << spinning);
        CHECK(waiting < 0.5);
        CHECK(spinning > 0.5);
        CHECK(spinning > waiting);
    }
    CHECK(drain_and_close(&loop) == 0);
}
