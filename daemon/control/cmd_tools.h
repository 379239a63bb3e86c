// Control commands for the troubleshooting tools that talk to remote hosts (esa-reference
// §7.2, §7.3): telnet, telnet_send, telnet_close, smtpping. Schemas (protocol v1):
//
//   telnet       {host, port?}  → a stream of data lines, then end:
//                  {"event":"trying","ip"}                 one per address tried, in order
//                  {"event":"connect_failed","ip","message"}
//                  {"event":"connected","ip","port","host","source","session"}
//                  {"event":"line","text"}                 one per line from the peer, escaped
//                  {"event":"closed","reason","connected"} always the last data line
//                error not_found: "HOST: hostname nor servname provided, or not known"
//   telnet_send  {session, line}  → {"sent": octets}   line sent with CRLF appended
//   telnet_close {session}        → {}                  the stream then ends with "closed"
//   smtpping     {rcpt, from?, host?}  → a stream, then end:
//                  {"event":"start","rcpt","from","domain","route","tls_policy","message_id",
//                   "spooled":false}
//                  {"event":"stage","stage","ms","ok",...}  dns, connect, banner, ehlo,
//                   starttls, tls, mail, rcpt, data, final, rset, quit, note (smtp_probe.h)
//                  {"event":"result","delivered","outcome","code","enhanced","reply","tls",
//                   "ip","total_ms","spooled":false}
//                The smtpping data lines are typed in common/payloads/smtpping.h (shared with
//                esactl).
//
// The daemon connects from the delivery source address ([delivery] source_address); telnet's
// default port and smtpping's route are delivery's ([delivery] port, smtproutes, MX through
// the daemon's resolver) and smtpping obeys the destination's TLS policy
// ([destinations.X] tls). The smtpping message is generated, never spooled, counted or
// logged as a delivery: it is a probe. Bounds: at most kMaxTelnetSessions telnet sessions
// and kMaxProbes probes at a time; telnet lines, octets and idle time are bounded
// (delivery/telnet_relay.h). A session whose control client went away is closed within a
// second. Peer bytes are escaped (common/escape.h) before they go into JSON.
// Logs (daemon log, info): each telnet and smtpping started and how it ended.
#pragma once

#include <uv.h>

#include "common/config.h"
#include "daemon/control/control_server.h"
#include "daemon/daemon_state.h"
#include "daemon/delivery/router.h"
#include "daemon/dns/cares_resolver.h"

namespace esad::control {

inline constexpr size_t kMaxTelnetSessions = 16;
inline constexpr size_t kMaxProbes = 16;

struct ToolCommandsEnv {
    uv_loop_t* loop = nullptr;
    DaemonState* state = nullptr;
    // The running configuration, read at each request (reloads apply): daemon.hostname,
    // delivery.port / source_address / tls_ca_file (at registration), destinations.
    const Config* config = nullptr;
    dns::Resolver* resolver = nullptr;
    delivery::Router* router = nullptr;
};

void register_tool_commands(ControlServer& server, ToolCommandsEnv env);

}  // namespace esad::control
