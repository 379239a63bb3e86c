// mx_plan — pure MX planning (RFC 5321 §5.1, RFC 7505; DESIGN.md §3.4): from the MX answer
// and the address answers, the ordered list of (host, IP) candidates to try.
// Pure: no resolver, no sockets, no clock; randomness is injected; no logging.
//
// Two steps, because the glue resolves addresses only for the hosts step 1 chose:
//   MxOrder order = order_mx(domain, mx_records, rng, max_hosts);
//     * no MX records                → implicit MX: the domain itself at preference 0
//     * any MX with target "." (null MX, RFC 7505; Postfix treats a mixed answer the same)
//                                    → kNullMx: hard bounce "5.1.10" (kNullMxText)
//     * otherwise: names lower-cased, trailing dot dropped, duplicates keep their best
//       preference, sorted by preference, equal preferences shuffled with rng
//       (Fisher–Yates), at most max_hosts (default 10) hosts
//   CandidatePlan plan = plan_candidates(order, addresses, options);
//     * per host, its addresses in the order given, filtered/ordered by the IP preference
//       (prefer/require IPv4/IPv6: a stable partition by family, REQ-5321-15)
//     * at most max_addresses (default 20) candidates in total
//     * loop detection: an address that is loopback, unspecified (0.0.0.0, ::), or one of
//       options.own_addresses, or a host in options.own_names, means "this MX is us": that
//       host and every MX at the same or a worse preference are dropped (RFC 5321 §5.1);
//       if nothing is left → kLoop, hard bounce "5.4.6" (kLoopText). options.explicit_route
//       (the destination came from smtproutes) disables this check.
//     * no address at all for any host → kNoAddresses (the glue decides: bounce or defer
//       depending on whether the lookups failed temporarily)
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace esad::dns {

using RandomFn = std::function<std::uint64_t(std::uint64_t bound)>;  // [0, bound)

inline constexpr std::string_view kNullMxStatus = "5.1.10";
inline constexpr std::string_view kNullMxText = "5.1.10 Recipient address has null MX";
inline constexpr std::string_view kLoopStatus = "5.4.6";
inline constexpr std::string_view kLoopText = "5.4.6 mail for domain loops back to myself";
inline constexpr std::size_t kDefaultMaxMxHosts = 10;
inline constexpr std::size_t kDefaultMaxAddresses = 20;

struct MxRecord {
    std::uint16_t preference = 0;
    std::string host;
    std::uint32_t ttl = 0;
};

struct MxHost {
    std::uint16_t preference = 0;
    std::string host;  // lower-case, no trailing dot
    bool operator==(const MxHost&) const = default;
};

enum class MxStatus : std::uint8_t { kOk, kNullMx };

struct MxOrder {
    MxStatus status = MxStatus::kOk;
    bool implicit = false;  // no MX records: the domain itself
    std::vector<MxHost> hosts;
};

MxOrder order_mx(std::string_view domain, const std::vector<MxRecord>& records, const RandomFn& rng,
                 std::size_t max_hosts = kDefaultMaxMxHosts);

struct AddressRecord {
    std::string ip;  // textual IPv4 or IPv6 address
    std::uint32_t ttl = 0;
};

// ESA destconfig ip_sort_pref.
enum class IpPreference : std::uint8_t { kPreferV4, kPreferV6, kRequireV4, kRequireV6 };

struct PlanOptions {
    IpPreference ip_preference = IpPreference::kPreferV4;
    std::vector<std::string> own_addresses;  // our listener / interface addresses
    std::vector<std::string> own_names;      // our host name(s), lower-case
    bool explicit_route = false;
    std::size_t max_addresses = kDefaultMaxAddresses;
};

struct Candidate {
    std::uint16_t preference = 0;
    std::string host;
    std::string ip;
    bool ipv6 = false;
    std::uint32_t ttl = 0;
    bool operator==(const Candidate&) const = default;
};

enum class PlanStatus : std::uint8_t { kOk, kNullMx, kLoop, kNoAddresses };
std::string_view to_string(PlanStatus s);

struct CandidatePlan {
    PlanStatus status = PlanStatus::kOk;
    std::vector<Candidate> candidates;
    std::uint32_t min_ttl = 0;  // smallest TTL among the candidates (cache expiry)
};

// addresses: host (lower-case) -> its A/AAAA records as resolved.
CandidatePlan plan_candidates(const MxOrder& order,
                              const std::map<std::string, std::vector<AddressRecord>>& addresses,
                              const PlanOptions& options);

// Address classification helpers (exposed for tests).
bool is_ipv6_text(std::string_view ip);
bool is_loopback_or_unspecified(std::string_view ip);

}  // namespace esad::dns
