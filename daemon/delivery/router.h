// Router: recipient host → ordered delivery candidates (DESIGN.md §3.4).
//
// Static routes first (smtproutes syntax, dns/routes.h): addresses as given, host names
// resolved to A/AAAA, USEDNS falls through to MX, /dev/null discards. Otherwise MX via the
// resolver: NXDOMAIN → hard 5.1.2 "Bad destination host"; null MX → hard 5.1.10; no MX →
// the domain's own A/AAAA (implicit MX); SERVFAIL/timeout → temporary 4.4.3, never a bounce;
// MX pointing at loopback or at us → hard 5.4.6 loop, unless routed there explicitly (or
// [dns] allow_loopback for labs and tests). Candidate order is dns::plan_candidates():
// preference, shuffled among equals.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "daemon/delivery/smtp_session.h"
#include "daemon/dns/cares_resolver.h"
#include "daemon/dns/mx_plan.h"
#include "daemon/dns/routes.h"

namespace esad::delivery {

struct RouteResult {
    enum class Status { kOk, kDiscard, kHard, kTemporary };
    Status status = Status::kTemporary;
    std::vector<Candidate> candidates;
    std::string enhanced;  // kHard / kTemporary: "5.1.2", "4.4.3", ...
    std::string reason;    // ESA reason text: "Bad destination host"
    std::string detail;    // e.g. "DNS Hard Error looking up x.test (MX): NXDomain"
};

struct RouterOptions {
    uint16_t default_port = 25;
    bool allow_loopback = false;
    std::vector<std::string> own_names;
    std::vector<std::string> own_addresses;
};

class Router {
  public:
    Router(dns::Resolver* resolver, RouterOptions options);
    void set_routes(std::shared_ptr<const dns::RouteTable> routes) { routes_ = std::move(routes); }
    const dns::Route* route_for(const std::string& domain) const;
    // Operator override (esactl redirectrecipients): every domain takes this route; nullopt
    // clears it.
    void set_redirect(std::optional<dns::Route> route) { redirect_ = std::move(route); }
    void route(const std::string& domain, std::function<void(RouteResult)> done);

  private:
    void resolve_mx(const std::string& domain, bool explicit_route,
                    std::function<void(RouteResult)> done);
    void resolve_hosts(const std::string& domain, dns::MxOrder order, bool explicit_route,
                       uint16_t port, std::function<void(RouteResult)> done);

    dns::Resolver* resolver_;
    RouterOptions options_;
    std::shared_ptr<const dns::RouteTable> routes_;
    std::optional<dns::Route> redirect_;
};

}  // namespace esad::delivery
