// Prometheus text exposition (format 0.0.4) of esad's counters and gauges (docs/metrics.md).
// Pure: a snapshot in, text out; no I/O, no clock, no libuv.
//
//   MetricsSnapshot s = ...;                      // filled on the loop by MetricsServer
//   std::string body = format_metrics(s, {.top_hosts = 20});
//
// Families (each with # HELP and # TYPE, names prefixed esad_):
//   esad_<counter>_total        every kCounterInfo counter ("messages_received" ...), Uptime
//                               view: zero at process start, so a restart is a counter reset
//                               Prometheus understands (the persisted Lifetime view can step
//                               back after a crash, which rate() would misread)
//   esad_* gauges               connections in/out, active/attempted recipients, destinations,
//                               hosts down, spool bytes, spool health and free-space floor,
//                               oldest message, recovering, ...
//   esad_host_*{host="..."}     per recipient host, for the top_hosts hosts with the most
//                               active recipients plus every host that is down (at most
//                               max_down_hosts of those): label cardinality stays bounded
// Label values are escaped (\\, \", \n); HELP texts escape \\ and \n.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/counters.h"

namespace esad::control {

// One recipient host (destination domain queue). `host` must outlive format_metrics().
struct HostSample {
    std::string_view host;
    bool down = false;
    std::uint64_t active_recipients = 0;
    std::uint32_t connections_out = 0;  // established and pending
    std::uint64_t delivered_recipients = 0;
    std::uint64_t soft_bounced_events = 0;
    std::uint64_t hard_bounced_recipients = 0;
};

struct MetricsSnapshot {
    std::string version;
    std::string hostname;
    std::int64_t start_time_seconds = 0;                  // Unix time the process started
    std::array<std::uint64_t, kCounterCount> counters{};  // CounterSet::uptime()
    std::uint64_t reloads = 0;
    bool recovering = false;  // spool recovery still running: no host data yet
    bool delivery_suspended = false;
    bool listener_suspended = false;
    bool spool_healthy = true;       // false: new connections get 421 4.3.2
    bool spool_below_floor = false;  // true: MAIL gets 452 4.3.1
    bool mids_available = true;      // false: no durable MID reservation, MAIL gets 4xx
    std::uint64_t connections_in = 0;
    std::uint64_t connections_out = 0;
    std::uint64_t active_recipients = 0;
    std::uint64_t attempted_recipients = 0;
    std::uint64_t destinations = 0;
    std::uint64_t spool_bytes = 0;
    std::uint64_t spool_free_bytes = 0;
    std::int64_t oldest_message_unix_ms = 0;  // 0: queue empty
    std::uint64_t corrupt_files = 0;
    double loop_busy_10s = 0;           // event loop busy fraction, last 10 s
    std::uint64_t content_budget = 0;   // [delivery] content_buffer_budget
    std::uint64_t content_in_use = 0;   // delivery content in memory now
    std::uint64_t content_waiting = 0;  // sessions waiting for budget
    std::uint64_t log_lines_dropped = 0;
    std::vector<HostSample> hosts;  // every host; format_metrics picks which to expose
};

struct MetricsOptions {
    std::size_t top_hosts = 20;
    std::size_t max_down_hosts = 1000;  // a safety cap on "every host that is down"
};

// The hosts that get per-host series, in output order: the top_hosts by active recipients
// (ties by name), then the down hosts not among them (by name, at most max_down_hosts).
std::vector<HostSample> select_hosts(std::vector<HostSample> hosts, const MetricsOptions& o);

// `value` as the inside of a quoted label value.
std::string escape_label_value(std::string_view value);

std::string format_metrics(const MetricsSnapshot& snapshot, const MetricsOptions& options);

}  // namespace esad::control
