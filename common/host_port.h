// host_port — the one parser of "host:port" text in esad: configuration addresses, the
// listener, the metrics and web servers, systemd's sockets, and the operator tools' targets.
// Ports are checked with std::from_chars (digits only, 0..65535): no atoi, no exceptions.
// Pure: no sockets; turning the result into a sockaddr is loop/sockaddr.h's job.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace esad {

struct HostPort {
    std::string host;                   // without the brackets of "[v6]"
    std::optional<std::uint16_t> port;  // none only with PortRule::kOptional
    bool bracketed = false;             // written as "[...]"
};

enum class PortRule : std::uint8_t { kRequired, kOptional };

// A decimal port: 1..5 digits, value <= 65535 and >= min_port.
std::optional<std::uint16_t> parse_port(std::string_view text, std::uint16_t min_port = 0);

// "host:port", "[v6]:port"; with kOptional also "host", "[v6]" and a bare IPv6 literal
// ("::1", more than one colon and no brackets). The host must not be empty.
std::optional<HostPort> parse_host_port(std::string_view text, PortRule rule = PortRule::kRequired);

}  // namespace esad
