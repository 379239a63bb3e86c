// Control payloads of status, version, resetcounters and reload (README "Control protocol";
// the machinery is in fields.h).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/payloads/fields.h"

namespace esad::payloads {

struct StatusArgs {
    using PayloadTag = void;
    static constexpr bool kArgs = true;
    bool detail = false;  // adds `rates`
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("detail", x.detail);
    }
};

// One counter's three views (common/counters.h).
struct CounterValues {
    using PayloadTag = void;
    uint64_t reset = 0, uptime = 0, lifetime = 0;
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("reset", x.reset);
        v("uptime", x.uptime);
        v("lifetime", x.lifetime);
    }
};

// Events per hour over 1, 5 and 15 minutes (common/rate_tracker.h).
struct RateValues {
    using PayloadTag = void;
    uint64_t per_1m = 0, per_5m = 0, per_15m = 0;
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("1m", x.per_1m);
        v("5m", x.per_5m);
        v("15m", x.per_15m);
    }
};

struct CurrentIds {
    using PayloadTag = void;
    uint64_t mid = 0, icid = 0, dcid = 0;
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("mid", x.mid);
        v("icid", x.icid);
        v("dcid", x.dcid);
    }
};

struct EventLoopBusy {
    using PayloadTag = void;
    double busy_1s = 0, busy_10s = 0, busy_60s = 0;
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("busy_1s", x.busy_1s);
        v("busy_10s", x.busy_10s);
        v("busy_60s", x.busy_60s);
    }
};

struct DeliveryContent {
    using PayloadTag = void;
    uint64_t budget_bytes = 0, in_use_bytes = 0, peak_bytes = 0, sessions_waiting = 0;
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("budget_bytes", x.budget_bytes);
        v("in_use_bytes", x.in_use_bytes);
        v("peak_bytes", x.peak_bytes);
        v("sessions_waiting", x.sessions_waiting);
    }
};

struct SpoolStatus {
    using PayloadTag = void;
    uint64_t commit_batches = 0, messages_committed = 0, largest_batch = 0, file_fsyncs = 0,
             dir_fsyncs = 0, journal_flushes = 0;
    bool healthy = true, below_free_space_floor = false, mids_available = true;
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("commit_batches", x.commit_batches);
        v("messages_committed", x.messages_committed);
        v("largest_batch", x.largest_batch);
        v("file_fsyncs", x.file_fsyncs);
        v("dir_fsyncs", x.dir_fsyncs);
        v("journal_flushes", x.journal_flushes);
        v("healthy", x.healthy);
        v("below_free_space_floor", x.below_free_space_floor);
        v("mids_available", x.mids_available);
    }
};

struct StatusGauges {
    using PayloadTag = void;
    uint64_t current_inbound_connections = 0, current_outbound_connections = 0,
             active_recipients = 0, unattempted_recipients = 0, attempted_recipients = 0,
             destinations_in_memory = 0, kilobytes_used = 0, kilobytes_free = 0;
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("current_inbound_connections", x.current_inbound_connections);
        v("current_outbound_connections", x.current_outbound_connections);
        v("active_recipients", x.active_recipients);
        v("unattempted_recipients", x.unattempted_recipients);
        v("attempted_recipients", x.attempted_recipients);
        v("destinations_in_memory", x.destinations_in_memory);
        v("kilobytes_used", x.kilobytes_used);
        v("kilobytes_free", x.kilobytes_free);
    }
};

struct StatusReply {
    using PayloadTag = void;
    std::string version{}, hostname{};
    int64_t status_as_of = 0, up_since = 0, uptime_seconds = 0;
    std::optional<int64_t> last_counter_reset{};  // null: never
    std::string system_status{};
    std::map<std::string, CounterValues> counters{};  // by CounterInfo::key
    CurrentIds current_ids{};
    std::optional<int64_t> oldest_message_age{};  // seconds; null: no messages
    std::string listener{};
    uint64_t corrupt_files = 0;
    EventLoopBusy event_loop{};
    uint64_t log_lines_dropped = 0;
    DeliveryContent delivery_content{};
    SpoolStatus spool{};
    StatusGauges gauges{};
    std::optional<std::map<std::string, RateValues>> rates{};  // with `detail` only
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("version", x.version);
        v("hostname", x.hostname);
        v("status_as_of", x.status_as_of);
        v("up_since", x.up_since);
        v("uptime_seconds", x.uptime_seconds);
        v("last_counter_reset", x.last_counter_reset);
        v("system_status", x.system_status);
        v("counters", x.counters);
        v("current_ids", x.current_ids);
        v("oldest_message_age", x.oldest_message_age);
        v("listener", x.listener);
        v("corrupt_files", x.corrupt_files);
        v("event_loop", x.event_loop);
        v("log_lines_dropped", x.log_lines_dropped);
        v("delivery_content", x.delivery_content);
        v("spool", x.spool);
        v("gauges", x.gauges);
        v.omit_empty("rates", x.rates);
    }
};

struct VersionReply {
    using PayloadTag = void;
    std::string version{}, hostname{};
    int64_t protocol = 0;
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("version", x.version);
        v("hostname", x.hostname);
        v("protocol", x.protocol);
    }
};

struct ResetCountersReply {
    using PayloadTag = void;
    int64_t reset_at = 0;
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("reset_at", x.reset_at);
    }
};

// reload: the file read and the changed keys that wait for a restart. A configuration that
// does not load is an error reply (bad_config), not this.
struct ReloadReply {
    using PayloadTag = void;
    std::string config{};
    std::vector<std::string> restart_required{};
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("config", x.config);
        v("restart_required", x.restart_required);
    }
};

}  // namespace esad::payloads
