// Handle wrappers on a real loop: callbacks, close ordering, and a clean uv_loop_close().
#include <sched.h>
#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <utility>

#include "daemon/loop/graveyard.h"
#include "daemon/loop/handle.h"
#include "daemon/loop/work.h"
#include "tests/support/run_until.h"

using namespace esad::loop;

namespace {

// Two Pipe streams on `loop`, connected to each other (a Unix socket pair).
std::pair<HandlePtr<Pipe>, HandlePtr<Pipe>> connected_pipes(uv_loop_t* loop) {
    int fds[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    auto a = Pipe::create(loop);
    auto b = Pipe::create(loop);
    REQUIRE(uv_pipe_open(reinterpret_cast<uv_pipe_t*>(a->stream()), fds[0]) == 0);
    REQUIRE(uv_pipe_open(reinterpret_cast<uv_pipe_t*>(b->stream()), fds[1]) == 0);
    return {std::move(a), std::move(b)};
}

}  // namespace

TEST_CASE("a timer fires and the loop closes cleanly after its owner is gone") {
    uv_loop_t loop;
    uv_loop_init(&loop);
    long before = HandleBase::live_count();
    int fired = 0;
    {
        auto t = Timer::create(&loop, [&] { ++fired; });
        t->start(1);
        uv_run(&loop, UV_RUN_DEFAULT);
        CHECK(fired == 1);
        CHECK(HandleBase::live_count() == before + 1);
    }
    // The HandlePtr is gone: the handle is closing, memory freed in the close callback.
    CHECK(HandleBase::live_count() == before + 1);
    CHECK(drain_and_close(&loop) == 0);
    CHECK(HandleBase::live_count() == before);
}

TEST_CASE("closing a timer from its own callback is safe and stops further firing") {
    uv_loop_t loop;
    uv_loop_init(&loop);
    int fired = 0;
    HandlePtr<Timer> t;
    t = Timer::create(&loop, [&] {
        ++fired;
        t.reset();  // destroys the owner on the callback's stack: deferred free
    });
    t->start(1, 1);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(fired == 1);
    CHECK(drain_and_close(&loop) == 0);
}

TEST_CASE("a live handle makes uv_loop_close fail, closing it fixes that") {
    uv_loop_t loop;
    uv_loop_init(&loop);
    auto t = Timer::create(&loop, [] {});
    CHECK(uv_loop_close(&loop) == UV_EBUSY);
    t.reset();
    CHECK(drain_and_close(&loop) == 0);
}

TEST_CASE("a pipe pair echoes and closes with pending writes") {
    uv_loop_t loop;
    uv_loop_init(&loop);
    auto pipes = connected_pipes(&loop);
    auto& a = pipes.first;
    auto& b = pipes.second;
    std::string got;
    b->read_start([&](const char* data, ssize_t n) {
        if (n > 0) got.append(data, static_cast<size_t>(n));
        if (got.size() >= 5) b.reset();
    });
    a->write("hello");
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(got == "hello");
    a.reset();
    CHECK(drain_and_close(&loop) == 0);
}

TEST_CASE("a write with nothing queued goes to the kernel at once, the rest keeps its order") {
    uv_loop_t loop;
    uv_loop_init(&loop);
    auto pipes = connected_pipes(&loop);
    auto& a = pipes.first;
    auto& b = pipes.second;
    // Taken whole, no request queued.
    CHECK(a->write("one") == 0);
    CHECK(a->write_queue_size() == 0);
    // More than the socket buffer holds: the kernel takes a part, the rest is queued.
    std::string big(8u << 20, 'b');
    for (size_t i = 0; i < big.size(); i += 4096)
        big[i] = static_cast<char>('a' + (i / 4096) % 26);
    CHECK(a->write(big) == 0);
    CHECK(a->write_queue_size() > 0);
    CHECK(a->write_queue_size() < big.size());
    // Behind a queue every write queues, in order; `done` never runs inside write().
    bool done = false;
    CHECK(a->write("tail", [&] { done = true; }) == 0);
    CHECK(a->write("x") == 0);
    CHECK_FALSE(done);
    const std::string want = "one" + big + "tail" + "x";
    std::string got;
    b->read_start([&](const char* data, ssize_t n) {
        if (n > 0) got.append(data, static_cast<size_t>(n));
        if (got.size() >= want.size()) b->read_stop();
    });
    REQUIRE(esad::test::run_until(
        &loop, [&] { return got.size() >= want.size() && a->write_queue_size() == 0; }));
    CHECK((got == want));
    CHECK(done);
    // Drained: the next write is taken at once again.
    CHECK(a->write("again") == 0);
    CHECK(a->write_queue_size() == 0);
    a.reset();
    b.reset();
    CHECK(drain_and_close(&loop) == 0);
}

TEST_CASE("a signal that libuv cannot watch is an error for the caller, not an exception") {
    uv_loop_t loop;
    REQUIRE(uv_loop_init(&loop) == 0);
    long before = HandleBase::live_count();
    std::string error;
    auto s = Signal::create(
        &loop, 100000, [](int) {}, &error);
    CHECK(s == nullptr);
    CHECK(error.find("cannot watch signal 100000") != std::string::npos);
    CHECK(drain_and_close(&loop) == 0);
    CHECK(HandleBase::live_count() == before);
}

TEST_CASE("the graveyard destroys what its owner buried on a later loop turn, never at once") {
    uv_loop_t loop;
    REQUIRE(uv_loop_init(&loop) == 0);
    struct Tracked {
        int* destroyed;
        ~Tracked() { ++*destroyed; }
    };
    int destroyed = 0;
    {
        Graveyard graveyard(&loop);
        auto owner = Timer::create(&loop, [] {});
        std::unique_ptr<Tracked> child(new Tracked{&destroyed});
        // Buried from a callback (the child's own, in real use): still alive after bury().
        auto t = Timer::create(&loop, [&] {
            graveyard.bury(std::move(child));
            graveyard.bury(std::shared_ptr<Tracked>(new Tracked{&destroyed}));
            graveyard.bury(std::unique_ptr<Tracked>());  // null: ignored
            CHECK(destroyed == 0);
            CHECK(graveyard.size() == 2);
        });
        t->start(0);
        uv_run(&loop, UV_RUN_DEFAULT);
        CHECK(destroyed == 2);  // the graveyard's own timer ran on a later iteration
        CHECK(graveyard.size() == 0);
        // What is still buried when the owner stops goes with clear() / the destructor.
        graveyard.bury(std::unique_ptr<Tracked>(new Tracked{&destroyed}));
        CHECK(destroyed == 2);
    }
    CHECK(destroyed == 3);
    CHECK(drain_and_close(&loop) == 0);
}

TEST_CASE("thread-pool work runs as background (SCHED_BATCH), the loop thread keeps its policy") {
    uv_loop_t loop;
    REQUIRE(uv_loop_init(&loop) == 0);
    const int loop_policy = sched_getscheduler(0);
    int work_policy = -1;
    int after_policy = -1;
    queue_work(
        &loop, [&] { work_policy = sched_getscheduler(0); },
        [&] { after_policy = sched_getscheduler(0); });
    REQUIRE(esad::test::run_until(&loop, [&] { return after_policy != -1; }));
    CHECK(work_policy == SCHED_BATCH);
    CHECK(after_policy == loop_policy);
    CHECK(loop_policy != SCHED_BATCH);
    CHECK(drain_and_close(&loop) == 0);
}
