// See work.h.
#include "daemon/loop/work.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <cstring>

#include "common/thread_policy.h"

namespace esad::loop {

namespace {
struct WorkReq {
    uv_work_t req;
    std::function<void()> work;
    std::function<void()> after;
};
long g_pending = 0;

void run_work(uv_work_t* req) {
    // Pool threads are libuv's: each marks itself on its first job.
    thread_local const int refused = run_as_background_thread();
    static std::atomic<bool> told{false};
    if (refused != 0 && !told.exchange(true))
        spdlog::info("thread pool: SCHED_BATCH refused ({}); disk threads keep the default policy",
                     std::strerror(refused));
    static_cast<WorkReq*>(req->data)->work();
}

void run_after(uv_work_t* req, int status) {
    auto* w = static_cast<WorkReq*>(req->data);
    --g_pending;
    if (status != 0) spdlog::error("thread-pool work finished with {}", uv_strerror(status));
    if (w->after) w->after();
    delete w;
}
}  // namespace

void queue_work(uv_loop_t* loop, std::function<void()> work, std::function<void()> after) {
    auto* w = new WorkReq{{}, std::move(work), std::move(after)};
    w->req.data = w;
    ++g_pending;
    int rc = uv_queue_work(loop, &w->req, run_work, run_after);
    if (rc != 0) {
        // Only fails for invalid arguments: a programming error.
        spdlog::critical("uv_queue_work: {}", uv_strerror(rc));
        std::abort();
    }
}

long pending_work() {
    return g_pending;
}

}  // namespace esad::loop
