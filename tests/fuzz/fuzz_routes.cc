// Fuzz target: the static routes file (daemon/dns/routes.*).
// Properties: no crash/UB; every accepted destination holds no NUL or control octet and
// survives to_string() -> parse_route_dest() unchanged; lookups never crash.
#include <cstdlib>
#include <string>
#include <string_view>

#include "daemon/dns/routes.h"

using namespace esad::dns;

namespace {
void check_dest(const RouteDest& d) {
    for (unsigned char c : d.host)
        if (c < 0x21 || c == 0x7f) abort();
    RouteDest again;
    std::string error;
    if (!parse_route_dest(d.to_string(), again, error)) abort();
    if (!(again == d)) abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    RouteDest one;
    std::string error;
    if (parse_route_dest(text, one, error)) check_dest(one);

    const RoutesParseResult r = parse_routes(text);
    for (const Route& route : r.table.routes()) {
        for (const RouteDest& d : route.dests)
            check_dest(d);
        (void)r.table.lookup(route.pattern);
    }
    for (const RouteError& e : r.errors)
        (void)e.to_string();
    (void)r.table.lookup(text);
    return 0;
}
