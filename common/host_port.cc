// See host_port.h.
#include "common/host_port.h"

#include <algorithm>
#include <charconv>

namespace esad {

std::optional<std::uint16_t> parse_port(std::string_view text, std::uint16_t min_port) {
    if (text.empty() || text.size() > 5) return std::nullopt;
    unsigned value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || value > 65535 || value < min_port)
        return std::nullopt;
    return static_cast<std::uint16_t>(value);
}

std::optional<HostPort> parse_host_port(std::string_view text, PortRule rule) {
    HostPort out;
    std::string_view port_text;
    bool has_port = false;
    if (!text.empty() && text.front() == '[') {
        size_t close = text.find(']');
        if (close == std::string_view::npos) return std::nullopt;
        out.host = std::string(text.substr(1, close - 1));
        out.bracketed = true;
        std::string_view rest = text.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') return std::nullopt;
            port_text = rest.substr(1);
            has_port = true;
        }
    } else if (std::count(text.begin(), text.end(), ':') == 1) {
        size_t colon = text.find(':');
        out.host = std::string(text.substr(0, colon));
        port_text = text.substr(colon + 1);
        has_port = true;
    } else {
        out.host = std::string(text);  // a name, or a bare IPv6 literal
    }
    if (out.host.empty()) return std::nullopt;
    if (!has_port) {
        if (rule == PortRule::kRequired) return std::nullopt;
        return out;
    }
    auto port = parse_port(port_text);
    if (!port) return std::nullopt;
    out.port = *port;
    return out;
}

}  // namespace esad
