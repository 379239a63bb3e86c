// thread_policy — marks the calling thread as background work for the scheduler.
//
//   std::thread t([] { esad::run_as_background_thread(); work(); });
//
// esad's disk threads (the thread pool's commits and journal syncs, the segment maintainer,
// the log writers) are throughput work; the event loop thread answers every SMTP client.
// A background thread runs SCHED_BATCH: when it wakes (a job queued, an fsync completed) it
// does not preempt the thread running on that CPU, typically the loop, but waits for the
// next scheduler tick or for that thread to block. Its share of the CPU is unchanged. Needs
// no privilege (the systemd unit allows the call); on failure the thread keeps its policy
// and the error number is returned (0: done).
#pragma once

namespace esad {

int run_as_background_thread();

}  // namespace esad
