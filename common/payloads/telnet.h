// Control payloads of telnet, telnet_send and telnet_close (daemon/control/cmd_tools.h has
// the schema; the machinery is in fields.h), shared by esad and esactl. A telnet stream's
// data lines are one struct per event, each carrying its name in "event"; esactl reads the
// name and then the struct it names. Peer text is escaped by the daemon before it goes in.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/payloads/fields.h"

namespace esad::payloads {

struct TelnetArgs {
    using PayloadTag = void;
    static constexpr bool kArgs = true;
    std::string host;             // required
    std::optional<int64_t> port;  // 1-65535; the delivery port when absent
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("host", x.host);
        v.omit_empty("port", x.port);
    }
};

// One per address tried, in order.
struct TelnetTrying {
    using PayloadTag = void;
    std::string event = "trying";
    std::string ip;
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("event", x.event);
        v("ip", x.ip);
    }
};

struct TelnetConnectFailed {
    using PayloadTag = void;
    std::string event = "connect_failed";
    std::string ip, message;
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("event", x.event);
        v("ip", x.ip);
        v("message", x.message);
    }
};

struct TelnetConnected {
    using PayloadTag = void;
    std::string event = "connected";
    std::string ip;
    uint16_t port = 0;
    std::string host;
    std::string source;   // local address the daemon connected from
    std::string session;  // for telnet_send / telnet_close
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("event", x.event);
        v("ip", x.ip);
        v("port", x.port);
        v("host", x.host);
        v("source", x.source);
        v("session", x.session);
    }
};

// One per line from the peer.
struct TelnetLine {
    using PayloadTag = void;
    std::string event = "line";
    std::string text;
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("event", x.event);
        v("text", x.text);
    }
};

// Always the stream's last data line.
struct TelnetClosed {
    using PayloadTag = void;
    std::string event = "closed";
    std::string reason;
    bool connected = false;  // the session had connected (false: the telnet failed)
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("event", x.event);
        v("reason", x.reason);
        v("connected", x.connected);
    }
};

struct TelnetSendArgs {
    using PayloadTag = void;
    static constexpr bool kArgs = true;
    std::string session;
    std::optional<std::string> line;  // required; sent with CRLF appended
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("session", x.session);
        v.omit_empty("line", x.line);
    }
};

struct TelnetSendReply {
    using PayloadTag = void;
    uint64_t sent = 0;  // octets, CRLF included
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("sent", x.sent);
    }
};

struct TelnetCloseArgs {
    using PayloadTag = void;
    static constexpr bool kArgs = true;
    std::string session;
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("session", x.session);
    }
};

}  // namespace esad::payloads
