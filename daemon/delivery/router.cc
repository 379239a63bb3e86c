// See router.h.
#include "daemon/delivery/router.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <random>

namespace esad::delivery {

namespace {
RouteResult hard(std::string enhanced, std::string reason, std::string detail) {
    RouteResult r;
    r.status = RouteResult::Status::kHard;
    r.enhanced = std::move(enhanced);
    r.reason = std::move(reason);
    r.detail = std::move(detail);
    return r;
}

RouteResult temporary(std::string detail) {
    RouteResult r;
    r.status = RouteResult::Status::kTemporary;
    r.enhanced = "4.4.3";
    r.reason = "Other network problem";
    r.detail = std::move(detail);
    return r;
}

dns::RandomFn shuffle_rng() {
    auto engine = std::make_shared<std::mt19937_64>(std::random_device{}());
    return [engine](uint64_t bound) { return bound ? (*engine)() % bound : 0; };
}
}  // namespace

Router::Router(dns::Resolver* resolver, RouterOptions options)
    : resolver_(resolver), options_(std::move(options)) {}

const dns::Route* Router::route_for(const std::string& domain) const {
    if (redirect_) return &*redirect_;
    return routes_ ? routes_->lookup(domain) : nullptr;
}

void Router::route(const std::string& domain, std::function<void(RouteResult)> done) {
    const dns::Route* route = route_for(domain);
    if (!route) {
        resolve_mx(domain, false, std::move(done));
        return;
    }
    // Destinations in priority order; addresses need no DNS, names are resolved.
    std::vector<dns::RouteDest> dests = route->dests;
    std::stable_sort(dests.begin(), dests.end(),
                     [](const auto& a, const auto& b) { return a.priority < b.priority; });
    if (dests.front().kind == dns::RouteDest::Kind::kDiscard) {
        RouteResult r;
        r.status = RouteResult::Status::kDiscard;
        done(r);
        return;
    }
    if (dests.front().kind == dns::RouteDest::Kind::kUseDns) {
        resolve_mx(domain, false, std::move(done));
        return;
    }
    RouteResult direct;
    direct.status = RouteResult::Status::kOk;
    dns::MxOrder names;
    uint16_t name_port = 0;
    for (const auto& d : dests) {
        uint16_t port = d.port ? d.port : options_.default_port;
        if (d.kind == dns::RouteDest::Kind::kAddress) {
            direct.candidates.push_back({d.host, port, d.host});
        } else if (d.kind == dns::RouteDest::Kind::kHost) {
            names.hosts.push_back({static_cast<uint16_t>(d.priority), d.host});
            name_port = port;
        }
    }
    if (names.hosts.empty()) {
        done(std::move(direct));
        return;
    }
    // Named route destinations: resolve them like MX hosts, explicitly routed.
    resolve_hosts(domain, std::move(names), true, name_port,
                  [direct, done = std::move(done)](RouteResult r) mutable {
                      if (r.status == RouteResult::Status::kOk || !direct.candidates.empty()) {
                          direct.candidates.insert(direct.candidates.end(), r.candidates.begin(),
                                                   r.candidates.end());
                          done(std::move(direct));
                      } else {
                          done(std::move(r));
                      }
                  });
}

void Router::resolve_mx(const std::string& domain, bool explicit_route,
                        std::function<void(RouteResult)> done) {
    if (!resolver_) {
        done(temporary("no DNS resolver"));
        return;
    }
    resolver_->resolve_mx(domain, [this, domain, explicit_route,
                                   done = std::move(done)](const dns::MxResult& mx) mutable {
        switch (mx.status) {
            case dns::DnsStatus::kNxDomain:
            case dns::DnsStatus::kInvalidName:
                done(hard("5.1.2", "Bad destination host",
                          fmt::format("DNS Hard Error looking up {} (MX): NXDomain", domain)));
                return;
            case dns::DnsStatus::kNullMx:
                done(hard("5.1.10", "Bad destination host",
                          fmt::format("{} (null MX: domain accepts no mail)", dns::kNullMxText)));
                return;
            case dns::DnsStatus::kOk:
            case dns::DnsStatus::kNoData: {
                dns::MxOrder order = dns::order_mx(
                    domain,
                    mx.status == dns::DnsStatus::kOk ? mx.records : std::vector<dns::MxRecord>{},
                    shuffle_rng());
                if (order.status == dns::MxStatus::kNullMx) {
                    done(hard("5.1.10", "Bad destination host", std::string(dns::kNullMxText)));
                    return;
                }
                resolve_hosts(domain, std::move(order), explicit_route, options_.default_port,
                              std::move(done));
                return;
            }
            default:
                done(temporary(fmt::format(
                    "DNS Temporary Error looking up {} (MX): {}", domain,
                    mx.error.empty() ? std::string(dns::to_string(mx.status)) : mx.error)));
                return;
        }
    });
}

void Router::resolve_hosts(const std::string& domain, dns::MxOrder order, bool explicit_route,
                           uint16_t port, std::function<void(RouteResult)> done) {
    struct Gather {
        dns::MxOrder order;
        std::map<std::string, std::vector<dns::AddressRecord>> addresses;
        size_t waiting = 0;
        bool any_temporary = false;
        std::string last_error;
        std::function<void(RouteResult)> done;
    };
    auto g = std::make_shared<Gather>();
    g->order = std::move(order);
    g->done = std::move(done);
    g->waiting = g->order.hosts.size();
    auto finish = [this, g, domain, explicit_route, port] {
        dns::PlanOptions po;
        po.explicit_route = explicit_route || options_.allow_loopback;
        po.own_addresses = options_.own_addresses;
        po.own_names = options_.own_names;
        dns::CandidatePlan plan = dns::plan_candidates(g->order, g->addresses, po);
        switch (plan.status) {
            case dns::PlanStatus::kOk: {
                RouteResult r;
                r.status = RouteResult::Status::kOk;
                for (const auto& c : plan.candidates)
                    r.candidates.push_back({c.ip, port, c.host});
                g->done(std::move(r));
                return;
            }
            case dns::PlanStatus::kNullMx:
                g->done(hard("5.1.10", "Bad destination host", std::string(dns::kNullMxText)));
                return;
            case dns::PlanStatus::kLoop:
                g->done(hard("5.4.6", "Other network problem", std::string(dns::kLoopText)));
                return;
            case dns::PlanStatus::kNoAddresses:
                if (g->any_temporary)
                    g->done(temporary(g->last_error));
                else
                    g->done(
                        hard("5.1.2", "Bad destination host",
                             fmt::format("DNS Hard Error looking up {} (A): no address", domain)));
                return;
        }
    };
    if (g->waiting == 0 || !resolver_) {
        if (!resolver_) g->any_temporary = true, g->last_error = "no DNS resolver";
        finish();
        return;
    }
    for (const auto& h : g->order.hosts) {
        std::string host = h.host;
        resolver_->resolve_addresses(
            host, dns::IpPreference::kPreferV4, [g, host, finish](const dns::AddressResult& a) {
                if (a.status == dns::DnsStatus::kOk)
                    g->addresses[host] = a.addresses;
                else if (a.status == dns::DnsStatus::kTemporary ||
                         a.status == dns::DnsStatus::kCancelled) {
                    g->any_temporary = true;
                    g->last_error =
                        fmt::format("DNS Temporary Error looking up {} (A): {}", host, a.error);
                }
                if (--g->waiting == 0) finish();
            });
    }
}

}  // namespace esad::delivery
