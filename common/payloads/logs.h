// Control payloads of the log commands rate, hostrate, tail, findevent and domaindebug
// (daemon/control/cmd_logs.cc fills them, ctl/cmd_logs.cc renders them; the machinery is in
// fields.h). rate, hostrate, tail and findevent reply with a stream: one struct per frame.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/payloads/fields.h"

namespace esad::payloads {

// rate: one row every `interval` seconds. A delta is 0 in the first row.
struct RateRow {
    using PayloadTag = void;
    int64_t time = 0;
    uint64_t connections_in = 0, connections_out = 0, recipients_received = 0;
    int64_t recipients_received_delta = 0;
    uint64_t recipients_completed = 0;
    int64_t recipients_completed_delta = 0;
    uint64_t kilobytes_used = 0;
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("time", x.time);
        v("connections_in", x.connections_in);
        v("connections_out", x.connections_out);
        v("recipients_received", x.recipients_received);
        v("recipients_received_delta", x.recipients_received_delta);
        v("recipients_completed", x.recipients_completed);
        v("recipients_completed_delta", x.recipients_completed_delta);
        v("kilobytes_used", x.kilobytes_used);
    }
};

// hostrate: one destination's row every `interval` seconds ("unknown" before it is known).
struct HostRateRow {
    using PayloadTag = void;
    int64_t time = 0;
    std::string host{}, host_status{};
    uint64_t current_outbound_connections = 0, active_recipients = 0;
    int64_t active_recipients_delta = 0;
    uint64_t delivered_recipients = 0;
    int64_t delivered_recipients_delta = 0;
    uint64_t hard_bounced_recipients = 0;
    int64_t hard_bounced_recipients_delta = 0;
    uint64_t soft_bounced_events = 0;
    int64_t soft_bounced_events_delta = 0;
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("time", x.time);
        v("host", x.host);
        v("host_status", x.host_status);
        v("current_outbound_connections", x.current_outbound_connections);
        v("active_recipients", x.active_recipients);
        v("active_recipients_delta", x.active_recipients_delta);
        v("delivered_recipients", x.delivered_recipients);
        v("delivered_recipients_delta", x.delivered_recipients_delta);
        v("hard_bounced_recipients", x.hard_bounced_recipients);
        v("hard_bounced_recipients_delta", x.hard_bounced_recipients_delta);
        v("soft_bounced_events", x.soft_bounced_events);
        v("soft_bounced_events_delta", x.soft_bounced_events_delta);
    }
};

// tail: the first frame names the log and its file; every frame carries complete lines
// (escaped by the daemon).
struct TailFrame {
    using PayloadTag = void;
    std::optional<std::string> log{}, path{};  // first frame only
    std::vector<std::string> lines{};
    template <class V, class S>
    static void fields(V& v, S& x) {
        v.omit_empty("log", x.log);
        v.omit_empty("path", x.path);
        v("lines", x.lines);
    }
};

// findevent: this summary first, then one FindEventMessage frame per message shown.
struct FindEventSummary {
    using PayloadTag = void;
    uint64_t matches = 0, shown = 0;
    bool truncated = false;            // matches > shown
    std::vector<std::string> files{};  // base names of the logs searched
    uint64_t lines_scanned = 0;
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("matches", x.matches);
        v("shown", x.shown);
        v("truncated", x.truncated);
        v("files", x.files);
        v("lines_scanned", x.lines_scanned);
    }
};

struct FindEventMessage {
    using PayloadTag = void;
    uint64_t mid = 0;
    std::vector<std::string> lines{};
    bool truncated = false;  // more lines than shown
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("mid", x.mid);
        v("lines", x.lines);
        v("truncated", x.truncated);
    }
};

struct DomainDebugEntry {
    using PayloadTag = void;
    std::string domain{};
    uint64_t sessions_limit = 0;  // 0: every session
    uint64_t sessions = 0, lines = 0;
    std::string source{};  // "config" or "esactl"
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("domain", x.domain);
        v("sessions_limit", x.sessions_limit);
        v("sessions", x.sessions);
        v("lines", x.lines);
        v("source", x.source);
    }
};

// domaindebug list
struct DomainDebugList {
    using PayloadTag = void;
    std::string path{};
    std::vector<DomainDebugEntry> domains{};
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("path", x.path);
        v("domains", x.domains);
    }
};

// domaindebug add
struct DomainDebugAdded {
    using PayloadTag = void;
    std::string domain{};
    uint64_t sessions_limit = 0;
    std::string path{};
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("domain", x.domain);
        v("sessions_limit", x.sessions_limit);
        v("path", x.path);
    }
};

// domaindebug remove
struct DomainDebugRemoved {
    using PayloadTag = void;
    std::string domain{};
    bool removed = true;
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("domain", x.domain);
        v("removed", x.removed);
    }
};

}  // namespace esad::payloads
