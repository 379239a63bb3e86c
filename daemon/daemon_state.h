// State the control commands read: identity, start time, counters, current ids, gauges.
// Owned by the Daemon (loop thread only); components update it as they work.
#pragma once

#include <cstdint>
#include <ctime>
#include <functional>
#include <string>

#include "common/counters.h"

namespace esad {

class RateTracker;

struct DaemonState {
    std::string hostname;
    std::time_t started = 0;
    std::time_t counters_reset = 0;  // 0: never
    CounterSet counters;
    // Last id handed out (ESA "Current IDs"); 0 until the first one.
    uint64_t current_mid = 0;
    uint64_t current_icid = 0;
    uint64_t current_dcid = 0;
    uint64_t inbound_connections = 0;
    uint64_t outbound_connections = 0;
    uint64_t reloads = 0;
    // Gauges below are refreshed by refresh_gauges() (set by the daemon) before each status.
    std::function<void()> refresh_gauges;
    const RateTracker* rates = nullptr;  // events per hour for `status detail`
    uint64_t destinations = 0;
    uint64_t active_recipients = 0;
    uint64_t attempted_recipients = 0;
    int64_t oldest_message_unix_ms = 0;  // 0: no messages
    uint64_t spool_bytes = 0;            // bytes of message files in the queue
    uint64_t spool_free_bytes = 0;
    std::string listener_address;
    // Group commit and journal (refreshed with the gauges).
    uint64_t commit_batches = 0;
    uint64_t commit_messages = 0;
    uint64_t commit_largest_batch = 0;
    uint64_t file_fsyncs = 0;
    uint64_t dir_fsyncs = 0;
    uint64_t journal_flushes = 0;  // as bound; empty until listening
    bool recovering = true;
    // Spool admission (refreshed with the gauges): false after an fsync failure until a probe
    // write succeeds (new sessions get 421 4.3.2); below the free-space floor MAIL gets
    // 452 4.3.1; without a MID reservation (not durable yet) MAIL gets 4xx.
    bool spool_healthy = true;
    bool spool_below_floor = false;
    bool mids_available = true;
    uint64_t corrupt_files = 0;  // quarantined by recovery (lifetime of the process)
    // Event loop busy fraction over the last 1 s, 10 s and 60 s (loop_load.h).
    double loop_busy[3] = {0, 0, 0};
    // Delivery content in memory ([delivery] content_buffer_budget, content_budget.h).
    uint64_t content_budget = 0;
    uint64_t content_in_use = 0;
    uint64_t content_peak = 0;
    uint64_t content_waiting = 0;  // sessions waiting for budget before their next read
    bool delivery_suspended = false;
    bool listener_suspended = false;
};

}  // namespace esad
