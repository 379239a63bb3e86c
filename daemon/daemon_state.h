// State the control commands read: identity, start time, counters, current ids, gauges.
// Owned by the Daemon (loop thread only); components update it as they work.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>

#include "common/counters.h"

namespace esad {

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
    bool delivery_suspended = false;
    bool listener_suspended = false;
};

}  // namespace esad
