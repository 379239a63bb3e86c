// routes — the static route table (ESA `smtproutes`, esa-reference §6.4; DESIGN.md §8).
// Pure: parses text, answers lookups; no I/O, no logging, no exceptions.
//
// File syntax, one route per line:
//   domain dest[,dest...]
//   # comment            (also after a route: everything from '#' on is ignored)
// domain: `example.com` (exact), `.example.com` (every subdomain, not example.com itself)
// or `ALL` (default route). Case-insensitive; stored lower-cased.
// dest: `host`, `host:port`, `[host]` (A/AAAA only, ignore MX), `1.2.3.4`, `[1.2.3.4]:port`,
// `[IPv6:2001:db8::1]:port`, each optionally followed by `/pri=N` (lower is preferred,
// default 0); or `USEDNS` (normal MX resolution) or `/dev/null` (discard), each alone on
// the route. Destinations are separated by commas, blanks around them are allowed.
// Errors name the 1-based line; parsing continues so every error is reported (use the
// table only when ok()). Limits: kMaxRoutes routes, kMaxDestinations per route.
//
// API
//   RoutesParseResult r = parse_routes(text);      r.ok(), r.errors, r.table
//   const Route* route = r.table.lookup("mail.example.com");
//       most specific match: exact > longest `.suffix` > ALL; nullptr when none
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace esad::dns {

inline constexpr std::size_t kMaxRoutes = 100000;
inline constexpr std::size_t kMaxDestinations = 64;

struct RouteDest {
    enum class Kind : std::uint8_t { kHost, kAddress, kUseDns, kDiscard };
    Kind kind = Kind::kHost;
    std::string host;        // kHost: lower-cased name; kAddress: the IP literal text
    bool a_only = false;     // kHost written as `[host]`: no MX lookup
    bool ipv6 = false;       // kAddress
    std::uint16_t port = 0;  // 0: the configured delivery port
    std::uint32_t priority = 0;

    std::string to_string() const;  // canonical text, e.g. "[IPv6:2001:db8::1]:2525/pri=10"
    bool operator==(const RouteDest&) const = default;
};

struct Route {
    std::string pattern;  // "example.com", ".example.com" or "ALL"
    std::vector<RouteDest> dests;
    std::uint32_t line = 0;
};

struct RouteError {
    std::uint32_t line = 0;
    std::string message;
    std::string to_string() const;  // "line N: message"
};

class RouteTable {
  public:
    const Route* lookup(std::string_view domain) const;
    const std::vector<Route>& routes() const { return routes_; }
    bool empty() const { return routes_.empty(); }

  private:
    friend struct RoutesParser;
    std::vector<Route> routes_;
    std::unordered_map<std::string, std::size_t> exact_;   // "example.com"
    std::unordered_map<std::string, std::size_t> suffix_;  // ".example.com"
    std::size_t default_ = SIZE_MAX;
};

struct RoutesParseResult {
    RouteTable table;
    std::vector<RouteError> errors;
    bool ok() const { return errors.empty(); }
};

RoutesParseResult parse_routes(std::string_view text);

// One destination token (exposed for tests and for `smtproutes`-style CLI editing).
bool parse_route_dest(std::string_view token, RouteDest& out, std::string& error);

}  // namespace esad::dns
