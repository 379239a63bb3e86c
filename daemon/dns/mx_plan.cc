// mx_plan — see mx_plan.h. Address parsing via inet_pton (no sockets).
#include "daemon/dns/mx_plan.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>

namespace esad::dns {
namespace {

std::string normalize_host(std::string_view s) {
    if (!s.empty() && s.back() == '.') s.remove_suffix(1);
    std::string out(s);
    for (char& c : out) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
}

struct Parsed {
    bool v6 = false;
    std::array<std::uint8_t, 16> bytes{};
};

std::optional<Parsed> parse_ip(std::string_view ip) {
    Parsed p;
    const std::string s(ip);
    in_addr a4{};
    if (inet_pton(AF_INET, s.c_str(), &a4) == 1) {
        std::memcpy(p.bytes.data(), &a4, 4);
        return p;
    }
    in6_addr a6{};
    if (inet_pton(AF_INET6, s.c_str(), &a6) == 1) {
        p.v6 = true;
        std::memcpy(p.bytes.data(), &a6, 16);
        return p;
    }
    return std::nullopt;
}

// IPv4-mapped IPv6 (::ffff:a.b.c.d) compares as IPv4.
Parsed canonical(Parsed p) {
    static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (p.v6 && std::memcmp(p.bytes.data(), kMapped, 12) == 0) {
        Parsed q;
        std::memcpy(q.bytes.data(), p.bytes.data() + 12, 4);
        return q;
    }
    return p;
}

bool same_address(std::string_view a, std::string_view b) {
    auto pa = parse_ip(a), pb = parse_ip(b);
    if (!pa || !pb) return false;
    Parsed ca = canonical(*pa), cb = canonical(*pb);
    return ca.v6 == cb.v6 && ca.bytes == cb.bytes;
}

}  // namespace

std::string_view to_string(PlanStatus s) {
    switch (s) {
        case PlanStatus::kOk:
            return "ok";
        case PlanStatus::kNullMx:
            return "null_mx";
        case PlanStatus::kLoop:
            return "loop";
        case PlanStatus::kNoAddresses:
            return "no_addresses";
    }
    return "?";
}

bool is_ipv6_text(std::string_view ip) {
    auto p = parse_ip(ip);
    return p && p->v6;
}

bool is_loopback_or_unspecified(std::string_view ip) {
    auto p = parse_ip(ip);
    if (!p) return false;
    const Parsed c = canonical(*p);
    if (!c.v6) {
        if (c.bytes[0] == 127) return true;  // 127.0.0.0/8
        return c.bytes[0] == 0 && c.bytes[1] == 0 && c.bytes[2] == 0 && c.bytes[3] == 0;
    }
    static constexpr std::array<std::uint8_t, 16> kZero{};
    std::array<std::uint8_t, 16> one{};
    one[15] = 1;
    return c.bytes == kZero || c.bytes == one;
}

MxOrder order_mx(std::string_view domain, const std::vector<MxRecord>& records, const RandomFn& rng,
                 std::size_t max_hosts) {
    MxOrder order;
    if (records.empty()) {
        order.implicit = true;
        order.hosts.push_back({0, normalize_host(domain)});
        return order;
    }
    for (const auto& r : records) {
        if (r.host.empty() || r.host == ".") {
            order.status = MxStatus::kNullMx;
            return order;
        }
    }
    for (const auto& r : records) {
        std::string host = normalize_host(r.host);
        auto it = std::find_if(order.hosts.begin(), order.hosts.end(),
                               [&](const MxHost& h) { return h.host == host; });
        if (it == order.hosts.end()) {
            order.hosts.push_back({r.preference, std::move(host)});
        } else {
            it->preference = std::min(it->preference, r.preference);
        }
    }
    // Deterministic base order (the DNS answer order is not meaningful), then shuffle ties.
    std::sort(order.hosts.begin(), order.hosts.end(), [](const MxHost& a, const MxHost& b) {
        return a.preference != b.preference ? a.preference < b.preference : a.host < b.host;
    });
    if (rng) {
        for (std::size_t begin = 0; begin < order.hosts.size();) {
            std::size_t end = begin;
            while (end < order.hosts.size() &&
                   order.hosts[end].preference == order.hosts[begin].preference) {
                ++end;
            }
            for (std::size_t i = end - begin; i > 1; --i) {
                const std::size_t j = static_cast<std::size_t>(rng(i) % i);
                std::swap(order.hosts[begin + i - 1], order.hosts[begin + j]);
            }
            begin = end;
        }
    }
    if (order.hosts.size() > max_hosts) order.hosts.resize(max_hosts);
    return order;
}

CandidatePlan plan_candidates(const MxOrder& order,
                              const std::map<std::string, std::vector<AddressRecord>>& addresses,
                              const PlanOptions& options) {
    CandidatePlan plan;
    if (order.status == MxStatus::kNullMx) {
        plan.status = PlanStatus::kNullMx;
        return plan;
    }
    auto is_self = [&](const std::string& host, const std::string& ip) {
        if (is_loopback_or_unspecified(ip)) return true;
        for (const auto& own : options.own_addresses) {
            if (same_address(own, ip)) return true;
        }
        return std::find(options.own_names.begin(), options.own_names.end(), host) !=
               options.own_names.end();
    };

    // Loop check: the best preference at which some MX is us cuts the list there.
    std::optional<std::uint16_t> self_pref;
    if (!options.explicit_route) {
        for (const auto& h : order.hosts) {
            bool self = std::find(options.own_names.begin(), options.own_names.end(), h.host) !=
                        options.own_names.end();
            if (auto it = addresses.find(h.host); it != addresses.end()) {
                for (const auto& a : it->second)
                    self = self || is_self(h.host, a.ip);
            }
            if (self && (!self_pref || h.preference < *self_pref)) self_pref = h.preference;
        }
    }

    for (const auto& h : order.hosts) {
        if (self_pref && h.preference >= *self_pref) continue;
        auto it = addresses.find(h.host);
        if (it == addresses.end()) continue;
        std::vector<Candidate> v4, v6;
        for (const auto& a : it->second) {
            auto parsed = parse_ip(a.ip);
            if (!parsed) continue;
            Candidate c{h.preference, h.host, a.ip, parsed->v6, a.ttl};
            (parsed->v6 ? v6 : v4).push_back(std::move(c));
        }
        std::vector<Candidate> ordered;
        switch (options.ip_preference) {
            case IpPreference::kPreferV4:
                ordered = std::move(v4);
                ordered.insert(ordered.end(), v6.begin(), v6.end());
                break;
            case IpPreference::kPreferV6:
                ordered = std::move(v6);
                ordered.insert(ordered.end(), v4.begin(), v4.end());
                break;
            case IpPreference::kRequireV4:
                ordered = std::move(v4);
                break;
            case IpPreference::kRequireV6:
                ordered = std::move(v6);
                break;
        }
        for (auto& c : ordered) {
            if (plan.candidates.size() >= options.max_addresses) break;
            plan.candidates.push_back(std::move(c));
        }
    }
    if (plan.candidates.empty()) {
        plan.status = self_pref ? PlanStatus::kLoop : PlanStatus::kNoAddresses;
        return plan;
    }
    plan.min_ttl = plan.candidates.front().ttl;
    for (const auto& c : plan.candidates)
        plan.min_ttl = std::min(plan.min_ttl, c.ttl);
    return plan;
}

}  // namespace esad::dns
