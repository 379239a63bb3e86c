// See sockaddr.h.
#include "daemon/loop/sockaddr.h"

#include <uv.h>

#include <cstring>

#include "common/host_port.h"

namespace esad::loop {

bool parse_sockaddr(std::string_view text, sockaddr_storage* out) {
    std::optional<HostPort> hp = parse_host_port(text);
    if (!hp) return false;
    std::memset(out, 0, sizeof *out);
    if (hp->bracketed)
        return uv_ip6_addr(hp->host.c_str(), *hp->port, reinterpret_cast<sockaddr_in6*>(out)) == 0;
    return uv_ip4_addr(hp->host.c_str(), *hp->port, reinterpret_cast<sockaddr_in*>(out)) == 0;
}

}  // namespace esad::loop
