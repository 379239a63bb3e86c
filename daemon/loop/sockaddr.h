// sockaddr — "ip:port" / "[ipv6]:port" text to a socket address, for everything esad
// binds (the SMTP listener, the metrics server, systemd's sockets). Host names are not
// resolved here: a listening address is an IP literal. Parsing is common/host_port.h's.
#pragma once

#include <sys/socket.h>

#include <string_view>

namespace esad::loop {

// False unless `text` is an IP literal with a port (IPv6 in brackets).
bool parse_sockaddr(std::string_view text, sockaddr_storage* out);

}  // namespace esad::loop
