// routes — see routes.h. IP literals are validated with inet_pton (no sockets).
#include "daemon/dns/routes.h"

#include <arpa/inet.h>

#include <charconv>

namespace esad::dns {
namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
}

bool iequals(std::string_view a, std::string_view b) {
    return lower(a) == lower(b);
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
        s.remove_suffix(1);
    }
    return s;
}

bool is_ipv4(std::string_view s) {
    in_addr a{};
    return inet_pton(AF_INET, std::string(s).c_str(), &a) == 1;
}

bool is_ipv6(std::string_view s) {
    in6_addr a{};
    return inet_pton(AF_INET6, std::string(s).c_str(), &a) == 1;
}

// A host name: dot-separated labels of letters, digits, '-' and '_', 1..63 bytes each,
// total ≤ 253; a trailing dot is allowed (and dropped by the caller).
bool valid_hostname(std::string_view s) {
    if (s.empty() || s.size() > 253) return false;
    std::size_t label = 0;
    for (char c : s) {
        if (c == '.') {
            if (label == 0) return false;
            label = 0;
            continue;
        }
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '-' || c == '_';
        if (!ok || ++label > 63) return false;
    }
    return label != 0;
}

template <class T>
bool parse_number(std::string_view s, T max, T& out) {
    if (s.empty()) return false;
    std::uint64_t v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || ptr != s.data() + s.size() || v > max) return false;
    out = static_cast<T>(v);
    return true;
}

}  // namespace

std::string RouteDest::to_string() const {
    std::string out;
    switch (kind) {
        case Kind::kUseDns:
            return "USEDNS";
        case Kind::kDiscard:
            return "/dev/null";
        case Kind::kHost:
            out = a_only ? "[" + host + "]" : host;
            break;
        case Kind::kAddress:
            out = ipv6 ? "[IPv6:" + host + "]" : "[" + host + "]";
            break;
    }
    // Appended piece by piece: GCC 12 -O3 warns (-Wrestrict, a false positive, GCC bug
    // 105329) about "literal" + std::string temporaries.
    if (port != 0) out.append(":").append(std::to_string(port));
    if (priority != 0) out.append("/pri=").append(std::to_string(priority));
    return out;
}

std::string RouteError::to_string() const {
    return "line " + std::to_string(line) + ": " + message;
}

bool parse_route_dest(std::string_view token, RouteDest& out, std::string& error) {
    out = RouteDest{};
    token = trim(token);
    if (token.empty()) {
        error = "empty destination";
        return false;
    }
    if (iequals(token, "USEDNS")) {
        out.kind = RouteDest::Kind::kUseDns;
        return true;
    }
    if (token == "/dev/null") {
        out.kind = RouteDest::Kind::kDiscard;
        return true;
    }
    // inet_pton and the resolver stop at a NUL; nothing after one may pass unseen.
    for (unsigned char c : token) {
        if (c < 0x20 || c == 0x7f) {
            error = "control character in destination";
            return false;
        }
    }
    // Optional "/pri=N" suffix.
    if (auto slash = token.rfind('/'); slash != std::string_view::npos) {
        std::string_view opt = token.substr(slash + 1);
        if (opt.size() < 4 || !iequals(opt.substr(0, 4), "pri=") ||
            !parse_number<std::uint32_t>(opt.substr(4), 65535, out.priority)) {
            error = "bad destination option '" + std::string(opt) + "' (expected /pri=N, 0-65535)";
            return false;
        }
        token = token.substr(0, slash);
    }
    std::string_view host;
    std::string_view port_text;
    bool bracketed = false;
    if (!token.empty() && token.front() == '[') {
        auto close = token.find(']');
        if (close == std::string_view::npos) {
            error = "missing ']' in '" + std::string(token) + "'";
            return false;
        }
        host = token.substr(1, close - 1);
        std::string_view rest = token.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') {
                error = "unexpected text after ']' in '" + std::string(token) + "'";
                return false;
            }
            port_text = rest.substr(1);
            if (port_text.empty()) {
                error = "missing port after ':' in '" + std::string(token) + "'";
                return false;
            }
        }
        bracketed = true;
    } else {
        auto colon = token.find(':');
        if (colon != std::string_view::npos &&
            token.find(':', colon + 1) != std::string_view::npos) {
            error = "IPv6 address must be written [IPv6:addr] in '" + std::string(token) + "'";
            return false;
        }
        host = token.substr(0, colon);
        if (colon != std::string_view::npos) {
            port_text = token.substr(colon + 1);
            if (port_text.empty()) {
                error = "missing port after ':' in '" + std::string(token) + "'";
                return false;
            }
        }
    }
    if (!port_text.empty() &&
        (!parse_number<std::uint16_t>(port_text, 65535, out.port) || out.port == 0)) {
        error = "bad port '" + std::string(port_text) + "' (1-65535)";
        return false;
    }
    if (bracketed && host.size() > 5 && iequals(host.substr(0, 5), "IPv6:")) {
        std::string_view ip = host.substr(5);
        if (!is_ipv6(ip)) {
            error = "bad IPv6 address '" + std::string(ip) + "'";
            return false;
        }
        out.kind = RouteDest::Kind::kAddress;
        out.ipv6 = true;
        out.host = lower(ip);
        return true;
    }
    if (is_ipv4(host)) {
        out.kind = RouteDest::Kind::kAddress;
        out.host = std::string(host);
        return true;
    }
    if (!host.empty() && host.back() == '.') host.remove_suffix(1);
    // "192.0.2.1." and "usedns." would become a host name that reads back as an address
    // or as USEDNS: refuse them so every destination survives to_string() and back.
    if (!valid_hostname(host) || is_ipv4(host) || iequals(host, "USEDNS")) {
        error = "bad host name '" + std::string(host) + "'";
        return false;
    }
    out.kind = RouteDest::Kind::kHost;
    out.host = lower(host);
    out.a_only = bracketed;
    return true;
}

struct RoutesParser {
    static void add(RoutesParseResult& r, Route route) {
        RouteTable& t = r.table;
        const std::size_t index = t.routes_.size();
        if (route.pattern == "ALL") {
            if (t.default_ != SIZE_MAX) {
                r.errors.push_back({route.line, "There is already a default route set."});
                return;
            }
            t.default_ = index;
        } else {
            auto& map = route.pattern.front() == '.' ? t.suffix_ : t.exact_;
            if (!map.emplace(route.pattern, index).second) {
                r.errors.push_back({route.line, "The value " + route.pattern +
                                                    " is already in the routing table."});
                return;
            }
        }
        t.routes_.push_back(std::move(route));
    }
};

RoutesParseResult parse_routes(std::string_view text) {
    RoutesParseResult result;
    std::uint32_t line_no = 0;
    while (!text.empty() || line_no == 0) {
        ++line_no;
        auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        if (auto hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
        line = trim(line);
        if (line.empty()) {
            if (text.empty()) break;
            continue;
        }
        auto err = [&](std::string message) {
            result.errors.push_back({line_no, std::move(message)});
        };
        auto sp = line.find_first_of(" \t");
        if (sp == std::string_view::npos) {
            err("route for '" + std::string(line) + "' has no destination");
            continue;
        }
        std::string_view domain = line.substr(0, sp);
        std::string_view rest = trim(line.substr(sp));
        Route route;
        route.line = line_no;
        if (iequals(domain, "ALL")) {
            route.pattern = "ALL";
        } else {
            std::string_view name = domain;
            const bool partial = name.front() == '.';
            if (partial) name.remove_prefix(1);
            if (!name.empty() && name.back() == '.') name.remove_suffix(1);
            if (!valid_hostname(name)) {
                err("bad domain '" + std::string(domain) + "'");
                continue;
            }
            std::string pattern = lower(name);
            route.pattern = partial ? "." + pattern : std::move(pattern);
        }
        bool bad = false;
        std::size_t start = 0;
        while (start <= rest.size()) {
            auto comma = rest.find(',', start);
            std::string_view token =
                rest.substr(start, comma == std::string_view::npos ? rest.npos : comma - start);
            RouteDest dest;
            std::string error;
            if (!parse_route_dest(token, dest, error)) {
                err(error);
                bad = true;
                break;
            }
            route.dests.push_back(std::move(dest));
            if (comma == std::string_view::npos) break;
            start = comma + 1;
        }
        if (bad) continue;
        bool special = false;
        for (const auto& d : route.dests) {
            special = special || d.kind == RouteDest::Kind::kUseDns ||
                      d.kind == RouteDest::Kind::kDiscard;
        }
        if (special && route.dests.size() > 1) {
            err("USEDNS and /dev/null must be the only destination of a route");
            continue;
        }
        if (route.dests.size() > kMaxDestinations) {
            err("Routes may not contain more than " + std::to_string(kMaxDestinations) +
                " destinations.");
            continue;
        }
        if (result.table.routes().size() >= kMaxRoutes) {
            err("There is a maximum of " + std::to_string(kMaxRoutes) + " routes.");
            continue;
        }
        RoutesParser::add(result, std::move(route));
    }
    return result;
}

const Route* RouteTable::lookup(std::string_view domain) const {
    if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
    const std::string name = lower(domain);
    if (auto it = exact_.find(name); it != exact_.end()) return &routes_[it->second];
    // Longest suffix first: for a.b.example.com try .b.example.com, .example.com, .com.
    for (std::size_t dot = name.find('.'); dot != std::string::npos;
         dot = name.find('.', dot + 1)) {
        if (auto it = suffix_.find(name.substr(dot)); it != suffix_.end()) {
            return &routes_[it->second];
        }
    }
    return default_ == SIZE_MAX ? nullptr : &routes_[default_];
}

}  // namespace esad::dns
