// cares_resolver — c-ares 1.18 on libuv (STYLE.md §8; DESIGN.md §3.4): asynchronous MX,
// A/AAAA and dig-style lookups with a small TTL cache. Loop thread only.
//
// Bridge: the c-ares socket-state callback opens one uv_poll per c-ares socket and closes it
// when c-ares lets go of the socket; one uv timer is re-armed from ares_timeout() after every
// event. Callbacks never run on c-ares' stack or inside the call that started the lookup:
// c-ares completions (and cache hits) are queued and delivered from the loop, after c-ares
// returned. Destroying the Resolver from inside one of its callbacks is allowed: the state is
// freed when the outermost callback frame unwinds; uv handles are freed in their close
// callbacks (loop/handle.h).
//
//   std::string err;
//   auto r = Resolver::create(loop, ResolverOptions{.servers = {"127.0.0.1:5353"}}, &err);
//   r->resolve_mx("example.com", [](const MxResult& m) { ... });      m.records → order_mx()
//   r->resolve_addresses("mx.example.com", IpPreference::kPreferV4,
//                        [](const AddressResult& a) { ... });         a.addresses → plan
//   r->query(QueryType::kTxt, "example.com", [](const QueryResult& q) { ... });  // esactl dig
//   r->cache_snapshot("example.com");                                  // hoststatus
//   r->close();   // every pending callback runs now, once, with kCancelled; then
//                 // loop::drain_and_close(loop) == 0
//
// Status: kOk; kNxDomain (ARES_ENOTFOUND); kNoData (ARES_ENODATA / no record of the type:
// for MX the caller does implicit MX); kNullMx (MX: a single "0 ." record, RFC 7505; a "."
// among other MX records stays kOk with host "." and order_mx() treats it as null MX);
// kTemporary (SERVFAIL, REFUSED, timeout, connection refused, out of memory); kBadAnswer
// (unparsable, over max_answer_bytes, too many records, CNAME loop); kInvalidName (the name
// is not a valid host name: never sent); kCancelled (cancel_all(), close(), destruction).
// Names are validated, lower-cased and lose one trailing dot. CNAME chains in an answer are
// followed; a chain that ends without the record type is re-queried at its target (at most
// kMaxCnameHops). Truncated UDP answers are retried over TCP (c-ares' default).
//
// Cache: per (name, type), at most max_cache_entries (least recently used evicted). An
// answer lives min(TTL of the records and CNAMEs used), clamped to [min_ttl_s, max_ttl_s];
// NXDOMAIN and NODATA live negative_ttl_s. Temporary failures are never cached. A cache hit
// reports each record's TTL as the seconds left in the cache. bypass_cache skips the read
// (the fresh answer still refreshes the cache). Identical lookups in flight share one query.
// No logging here: results carry the detail (error text) and the glue logs. Callbacks run
// from libuv callbacks and must not throw.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/dns/mx_plan.h"

namespace esad::dns {

inline constexpr std::size_t kMaxCnameHops = 8;
inline constexpr std::size_t kMaxAnswerRecords = 256;

enum class DnsStatus : std::uint8_t {
    kOk,
    kNxDomain,
    kNoData,
    kNullMx,
    kTemporary,
    kBadAnswer,
    kInvalidName,
    kCancelled,
};
std::string_view to_string(DnsStatus s);

enum class QueryType : std::uint8_t { kA, kAaaa, kMx, kTxt, kPtr, kCname };
std::string_view to_string(QueryType t);  // "A", "AAAA", "MX", ...
// "a", "AAAA", "mx", ... → true and *out; false for an unknown type.
bool parse_query_type(std::string_view text, QueryType* out);

struct ResolverOptions {
    // "ip", "ip:port", "[v6]:port"; empty: /etc/resolv.conf.
    std::vector<std::string> servers;
    int timeout_ms = 5000;  // first try; c-ares doubles it per round
    int tries = 2;
    std::size_t max_answer_bytes = 16384;
    std::size_t max_cache_entries = 10000;
    std::uint32_t min_ttl_s = 60;
    std::uint32_t max_ttl_s = 86400;
    std::uint32_t negative_ttl_s = 60;
    // Milliseconds on a monotonic clock; empty: uv_now(loop). Tests inject a fake clock.
    std::function<std::uint64_t()> now_ms;
};

// One answer record in presentation form, as dig prints it (names are fully qualified).
struct DnsRecord {
    std::string name;  // owner, lower-case, with the trailing dot
    std::uint32_t ttl = 0;
    std::string dns_class;  // "IN"
    std::string type;       // "MX", "A", "CNAME", ..., or "TYPE65" for the rest
    std::string data;       // "10 mx.example.com.", "192.0.2.1", "\"v=spf1 -all\"", ...
};

struct MxResult {
    DnsStatus status = DnsStatus::kTemporary;
    std::vector<MxRecord> records;  // kOk only; host lower-case, no trailing dot
    std::string canonical_name;     // the name after CNAMEs; empty when there were none
    bool from_cache = false;
    std::string error;  // human detail for the log when status != kOk
};

struct AddressResult {
    DnsStatus status = DnsStatus::kTemporary;
    // kOk only: the preferred family first (IpPreference), each family in answer order.
    std::vector<AddressRecord> addresses;
    // kOk with one family failed temporarily (the other one answered).
    bool partial = false;
    std::string canonical_name;
    bool from_cache = false;  // both families came from the cache
    std::string error;
};

struct QueryResult {
    DnsStatus status = DnsStatus::kTemporary;
    std::string name;                // the name asked (normalized; PTR: the .arpa name)
    std::vector<DnsRecord> records;  // the whole answer section, CNAMEs included
    bool from_cache = false;
    std::string error;
};

struct CacheSnapshotMx {
    std::uint16_t preference = 0;
    std::string host;
    std::uint32_t expires_in_s = 0;
    std::int64_t expires_at_unix = 0;
};
struct CacheSnapshotAddress {
    std::string host;
    std::string ip;
    std::uint32_t expires_in_s = 0;
    std::int64_t expires_at_unix = 0;
};
struct CacheSnapshot {
    DnsStatus mx_status = DnsStatus::kNoData;  // of the cached MX lookup
    bool mx_cached = false;                    // false: nothing known (mx and addresses are empty)
    bool implicit = false;                     // cached NODATA: addresses are the domain's own
    std::vector<CacheSnapshotMx> mx;           // preference, then name
    std::vector<CacheSnapshotAddress> addresses;  // per host in mx order: IPv4 then IPv6
};

struct LookupOptions {
    bool bypass_cache = false;
};

class Resolver {
  public:
    using MxCallback = std::function<void(const MxResult&)>;
    using AddressCallback = std::function<void(const AddressResult&)>;
    using QueryCallback = std::function<void(const QueryResult&)>;

    // nullptr and *error on bad options or a c-ares init failure.
    static std::unique_ptr<Resolver> create(uv_loop_t* loop, ResolverOptions options,
                                            std::string* error);
    // Runs close(); allowed from inside a callback of this resolver.
    ~Resolver();
    Resolver(const Resolver&) = delete;
    Resolver& operator=(const Resolver&) = delete;

    // Each callback runs exactly once, on the loop, never before the call returns — except
    // after close(), where it runs at once with kCancelled.
    void resolve_mx(std::string_view domain, MxCallback cb, LookupOptions opts = {});
    // kRequireV4/kRequireV6 query one family; the preferences query both.
    void resolve_addresses(std::string_view host, IpPreference family, AddressCallback cb,
                           LookupOptions opts = {});
    // PTR with an IP literal asks the in-addr.arpa / ip6.arpa name.
    void query(QueryType type, std::string_view name, QueryCallback cb, LookupOptions opts = {});

    CacheSnapshot cache_snapshot(std::string_view domain) const;
    void clear_cache();
    std::size_t cache_size() const;
    std::size_t pending() const;  // callbacks not yet delivered

    // Every pending callback runs now with kCancelled (or its result, if it was already
    // complete); the resolver stays usable.
    void cancel_all();
    // cancel_all(), then c-ares and every uv handle are released. Idempotent.
    void close();

    class Impl;

  private:
    explicit Resolver(Impl* impl) : impl_(impl) {}
    Impl* impl_;
};

// Normalize and validate a DNS name: lower-case, one trailing dot dropped, labels 1..63 of
// [a-z0-9_-], total ≤ 253. false when invalid.
bool normalize_dns_name(std::string_view in, std::string* out);

}  // namespace esad::dns
