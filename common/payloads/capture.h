// Control payload of packetcapture (docs/capture.md; the machinery is in fields.h), and the
// capture status file DIR/capture.status that esad-capture writes and esad reads back: one
// struct, so the helper, the daemon and esactl agree on every key.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/payloads/fields.h"

namespace esad::payloads {

struct PacketcaptureArgs {
    using PayloadTag = void;
    static constexpr bool kArgs = true;
    std::string action = "status";  // status | list
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("action", x.action);
    }
};

// DIR/capture.status: rewritten by esad-capture once a second and when it stops.
struct CaptureStatus {
    using PayloadTag = void;
    int64_t pid = 0;
    bool running = false;
    std::string file, path, interface, filter;
    int64_t started = 0;  // Unix time
    int64_t elapsed = 0;  // seconds
    uint64_t bytes = 0, packets = 0;
    uint64_t dropped = 0;  // by the kernel: the file has gaps
    uint64_t max_size = 0, duration = 0, min_free = 0;
    std::optional<int64_t> stopped;          // Unix time, once stopped
    std::optional<std::string> stop_reason;  // once stopped
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("pid", x.pid);
        v("running", x.running);
        v("file", x.file);
        v("path", x.path);
        v("interface", x.interface);
        v("filter", x.filter);
        v("started", x.started);
        v("elapsed", x.elapsed);
        v("bytes", x.bytes);
        v("packets", x.packets);
        v("dropped", x.dropped);
        v("max_size", x.max_size);
        v("duration", x.duration);
        v("min_free", x.min_free);
        v.omit_empty("stopped", x.stopped);
        v.omit_empty("stop_reason", x.stop_reason);
    }
};

struct CaptureFile {
    using PayloadTag = void;
    std::string file, path;
    uint64_t bytes = 0;
    int64_t modified = 0;  // Unix time
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("file", x.file);
        v("path", x.path);
        v("bytes", x.bytes);
        v("modified", x.modified);
    }
};

// The TLS key log of the domains under domaindebug.
struct KeylogInfo {
    using PayloadTag = void;
    bool enabled = false;
    std::vector<std::string> domains;
    std::string path;
    uint64_t bytes = 0;
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("enabled", x.enabled);
        v("domains", x.domains);
        v("path", x.path);
        v("bytes", x.bytes);
    }
};

struct PacketcaptureReply {
    using PayloadTag = void;
    std::string dir;
    std::string default_filter;
    std::vector<uint16_t> default_ports;
    uint64_t keep = 0, max_size = 0, duration = 0, min_free = 0;  // [capture] settings
    KeylogInfo keylog;
    std::optional<CaptureStatus> capture;              // null: no capture has run
    std::optional<std::vector<CaptureFile>> captures;  // action list only
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("dir", x.dir);
        v("default_filter", x.default_filter);
        v("default_ports", x.default_ports);
        v("keep", x.keep);
        v("max_size", x.max_size);
        v("duration", x.duration);
        v("min_free", x.min_free);
        v("keylog", x.keylog);
        v("capture", x.capture);
        v.omit_empty("captures", x.captures);
    }
};

}  // namespace esad::payloads
