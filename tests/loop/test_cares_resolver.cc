// cares_resolver on a real loop against tests/support/fake_dns.py (127.0.0.1 only): statuses,
// CNAMEs, TCP fallback, answer caps, the cache (hits counted on the server side), cancel and
// close with uv_loop_close()==0, destruction from inside a callback.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "daemon/dns/cares_resolver.h"
#include "daemon/loop/handle.h"
#include "tests/support/run_until.h"

using namespace esad::dns;
using esad::loop::HandleBase;
using esad::loop::Timer;

namespace {

std::string fake_dns_script() {
    if (const char* env = std::getenv("ESAD_FAKE_DNS")) return env;
    std::filesystem::path here = std::filesystem::path(__FILE__).parent_path();
    return (here.parent_path() / "support" / "fake_dns.py").string();
}

// The scripted server, one per test case: "PORT PID" on its stdout.
class FakeDns {
  public:
    FakeDns() {
        std::string cmd = "exec /usr/bin/python3 " + fake_dns_script() + " --idle 60";
        pipe_ = popen(cmd.c_str(), "r");
        REQUIRE(pipe_ != nullptr);
        REQUIRE(std::fscanf(pipe_, "%d %d", &port_, &pid_) == 2);
    }
    ~FakeDns() {
        kill(pid_, SIGTERM);
        pclose(pipe_);
    }
    std::string server() const { return "127.0.0.1:" + std::to_string(port_); }

  private:
    FILE* pipe_ = nullptr;
    int port_ = 0;
    int pid_ = 0;
};

struct Loop {
    Loop() { uv_loop_init(&loop); }
    uv_loop_t loop;
    // Runs until done() or timeout_ms passed; true when done.
    template <typename Pred>
    bool run_until(Pred done, int timeout_ms = 5000) {
        esad::test::run_until(&loop, done, static_cast<std::uint64_t>(timeout_ms));
        return done();
    }
};

struct Fixture {
    FakeDns dns;
    Loop l;
    std::uint64_t fake_now = 1'000'000;
    std::unique_ptr<Resolver> r;
    long handles_before = HandleBase::live_count();

    explicit Fixture(int timeout_ms = 2000, int tries = 1) {
        ResolverOptions o;
        o.servers = {dns.server()};
        o.timeout_ms = timeout_ms;
        o.tries = tries;
        o.min_ttl_s = 1;
        o.now_ms = [this] { return fake_now; };
        std::string err;
        r = Resolver::create(&l.loop, o, &err);
        REQUIRE(r != nullptr);
        CHECK(err.empty());
    }
    ~Fixture() {
        r.reset();
        CHECK(esad::loop::drain_and_close(&l.loop) == 0);
        CHECK(HandleBase::live_count() == handles_before);
    }

    MxResult mx(const std::string& domain, LookupOptions opts = {}) {
        std::optional<MxResult> got;
        r->resolve_mx(
            domain, [&](const MxResult& m) { got = m; }, opts);
        CHECK_FALSE(got.has_value());  // never before the call returns
        REQUIRE(l.run_until([&] { return got.has_value(); }));
        return *got;
    }
    AddressResult addrs(const std::string& host, IpPreference pref, LookupOptions opts = {}) {
        std::optional<AddressResult> got;
        r->resolve_addresses(
            host, pref, [&](const AddressResult& a) { got = a; }, opts);
        CHECK_FALSE(got.has_value());
        REQUIRE(l.run_until([&] { return got.has_value(); }));
        return *got;
    }
    QueryResult q(QueryType t, const std::string& name, LookupOptions opts = {}) {
        std::optional<QueryResult> got;
        r->query(
            t, name, [&](const QueryResult& x) { got = x; }, opts);
        CHECK_FALSE(got.has_value());
        REQUIRE(l.run_until([&] { return got.has_value(); }));
        return *got;
    }
    // Queries the server saw for `name`: {udp, tcp}.
    std::pair<int, int> count(const std::string& name) {
        QueryResult res = q(QueryType::kTxt, "count." + name, {.bypass_cache = true});
        REQUIRE(res.status == DnsStatus::kOk);
        REQUIRE(res.records.size() == 1);
        int udp = -1, tcp = -1;
        REQUIRE(std::sscanf(res.records[0].data.c_str(), "\"udp=%d tcp=%d\"", &udp, &tcp) == 2);
        return {udp, tcp};
    }
};

std::vector<std::string> ips(const AddressResult& a) {
    std::vector<std::string> out;
    for (const auto& x : a.addresses)
        out.push_back(x.ip);
    return out;
}

}  // namespace

TEST_CASE("MX with several preferences, then a cache hit and a bypass", "[dns]") {
    Fixture f;
    MxResult m = f.mx("MX.esad.test.");
    REQUIRE(m.status == DnsStatus::kOk);
    CHECK_FALSE(m.from_cache);
    CHECK(m.canonical_name.empty());
    REQUIRE(m.records.size() == 4);
    CHECK(m.records[0].preference == 10);
    CHECK(m.records[0].host == "mx1.esad.test");
    CHECK(m.records[0].ttl == 300);
    CHECK(m.records[2].host == "mx3.esad.test");  // lower-cased
    CHECK(m.records[3].preference == 5);
    CHECK(f.count("mx.esad.test") == std::pair{1, 0});

    MxResult again = f.mx("mx.esad.test");
    CHECK(again.status == DnsStatus::kOk);
    CHECK(again.from_cache);
    CHECK(again.records.size() == 4);
    CHECK(f.count("mx.esad.test") == std::pair{1, 0});  // answered without the server

    f.fake_now += 100'000;
    MxResult later = f.mx("mx.esad.test");
    CHECK(later.from_cache);
    CHECK(later.records[0].ttl == 200);  // the time left in the cache

    MxResult fresh = f.mx("mx.esad.test", {.bypass_cache = true});
    CHECK_FALSE(fresh.from_cache);
    CHECK(fresh.records[0].ttl == 300);
    CHECK(f.count("mx.esad.test") == std::pair{2, 0});

    f.fake_now += 301'000;  // past the (refreshed) TTL
    CHECK_FALSE(f.mx("mx.esad.test").from_cache);
    CHECK(f.count("mx.esad.test") == std::pair{3, 0});
}

TEST_CASE("A and AAAA with TTLs and family preference", "[dns]") {
    Fixture f;
    AddressResult a = f.addrs("mx1.esad.test", IpPreference::kPreferV4);
    REQUIRE(a.status == DnsStatus::kOk);
    CHECK(ips(a) == std::vector<std::string>{"192.0.2.1", "2001:db8::1"});
    CHECK(a.addresses[0].ttl == 120);
    CHECK(a.addresses[1].ttl == 180);
    CHECK_FALSE(a.partial);

    AddressResult v6 = f.addrs("mx1.esad.test", IpPreference::kPreferV6);
    CHECK(v6.from_cache);
    CHECK(ips(v6) == std::vector<std::string>{"2001:db8::1", "192.0.2.1"});

    AddressResult only4 = f.addrs("mx2.esad.test", IpPreference::kRequireV4);
    CHECK(ips(only4) == std::vector<std::string>{"192.0.2.2", "192.0.2.3"});
    CHECK(f.count("mx2.esad.test") == std::pair{1, 0});  // AAAA never asked

    AddressResult v4only = f.addrs("v4only.esad.test", IpPreference::kPreferV6);
    CHECK(v4only.status == DnsStatus::kOk);
    CHECK(ips(v4only) == std::vector<std::string>{"192.0.2.4"});

    CHECK(f.addrs("v6only.esad.test", IpPreference::kRequireV4).status == DnsStatus::kNoData);
    CHECK(f.addrs("nowhere.esad.test", IpPreference::kPreferV4).status == DnsStatus::kNxDomain);
    AddressResult half = f.addrs("servfail.esad.test", IpPreference::kPreferV4);
    CHECK(half.status == DnsStatus::kTemporary);
    CHECK_FALSE(half.error.empty());
}

TEST_CASE("CNAME chains are followed, also when the server leaves the target out", "[dns]") {
    Fixture f;
    MxResult m = f.mx("alias.esad.test");
    REQUIRE(m.status == DnsStatus::kOk);
    CHECK(m.canonical_name == "mx.esad.test");
    CHECK(m.records.size() == 4);

    MxResult chased = f.mx("chase.esad.test");
    REQUIRE(chased.status == DnsStatus::kOk);
    CHECK(chased.canonical_name == "mx.esad.test");
    CHECK(chased.records.size() == 4);
    CHECK(f.count("mx.esad.test").first == 1);  // the re-query at the target

    AddressResult www = f.addrs("www.esad.test", IpPreference::kPreferV4);
    CHECK(www.status == DnsStatus::kOk);
    CHECK(www.canonical_name == "mx1.esad.test");
    CHECK(ips(www) == std::vector<std::string>{"192.0.2.1", "2001:db8::1"});

    MxResult loop = f.mx("loop1.esad.test");
    CHECK(loop.status == DnsStatus::kBadAnswer);
}

TEST_CASE("NXDOMAIN, NODATA, null MX and negative caching", "[dns]") {
    Fixture f;
    MxResult nx = f.mx("nx.esad.test");
    CHECK(nx.status == DnsStatus::kNxDomain);
    CHECK(nx.records.empty());
    CHECK(f.mx("nx.esad.test").from_cache);
    CHECK(f.count("nx.esad.test") == std::pair{1, 0});
    f.fake_now += 61'000;  // negative_ttl_s = 60
    CHECK(f.mx("nx.esad.test").status == DnsStatus::kNxDomain);
    CHECK(f.count("nx.esad.test") == std::pair{2, 0});

    MxResult nodata = f.mx("mx1.esad.test");
    CHECK(nodata.status == DnsStatus::kNoData);
    CHECK(nodata.records.empty());

    MxResult null = f.mx("nullmx.esad.test");
    CHECK(null.status == DnsStatus::kNullMx);
    REQUIRE(null.records.size() == 1);
    CHECK(null.records[0].preference == 0);
    CHECK(null.records[0].host == ".");
    CHECK(order_mx("nullmx.esad.test", null.records, [](std::uint64_t) { return 0; }).status ==
          MxStatus::kNullMx);
    CHECK(f.mx("nullmx.esad.test").status == DnsStatus::kNullMx);  // also from the cache
}

TEST_CASE("SERVFAIL, REFUSED and timeouts are temporary and never cached", "[dns]") {
    Fixture f(/*timeout_ms=*/200, /*tries=*/1);
    MxResult sf = f.mx("servfail.esad.test");
    CHECK(sf.status == DnsStatus::kTemporary);
    // The operator is told what the server said, not "Could not contact DNS servers".
    CHECK(sf.error.find("general failure") != std::string::npos);
    CHECK(sf.error.find("Could not contact") == std::string::npos);
    CHECK_FALSE(f.mx("servfail.esad.test").from_cache);
    CHECK(f.count("servfail.esad.test").first == 2);
    MxResult rf = f.mx("refused.esad.test");
    CHECK(rf.status == DnsStatus::kTemporary);
    CHECK(rf.error.find("refused") != std::string::npos);
    MxResult t = f.mx("timeout.esad.test");
    CHECK(t.status == DnsStatus::kTemporary);
    CHECK(t.error.find("timeout.esad.test") != std::string::npos);
    CHECK(f.count("timeout.esad.test").first == 1);
    CHECK(f.r->pending() == 0);
}

TEST_CASE("truncated UDP answers are retried over TCP; oversize answers are refused", "[dns]") {
    Fixture f;
    MxResult big = f.mx("big.esad.test");
    REQUIRE(big.status == DnsStatus::kOk);
    CHECK(big.records.size() == 40);
    CHECK(big.records[39].host == "exchanger-number-39.a-rather-long-provider-name.esad.test");
    CHECK(f.count("big.esad.test") == std::pair{1, 1});

    QueryResult huge = f.q(QueryType::kTxt, "huge.esad.test");
    CHECK(huge.status == DnsStatus::kBadAnswer);
    CHECK(huge.error.find("too large") != std::string::npos);
    CHECK(f.q(QueryType::kA, "many.esad.test").status == DnsStatus::kBadAnswer);
    CHECK(f.q(QueryType::kA, "garbage.esad.test").status == DnsStatus::kBadAnswer);
}

TEST_CASE("query() returns dig-style records", "[dns]") {
    Fixture f;
    QueryResult mx = f.q(QueryType::kMx, "alias.esad.test");
    REQUIRE(mx.status == DnsStatus::kOk);
    REQUIRE(mx.records.size() == 6);
    CHECK(mx.records[0].name == "alias.esad.test.");
    CHECK(mx.records[0].type == "CNAME");
    CHECK(mx.records[0].ttl == 400);
    CHECK(mx.records[0].dns_class == "IN");
    CHECK(mx.records[0].data == "alias2.esad.test.");
    CHECK(mx.records[2].name == "mx.esad.test.");
    CHECK(mx.records[2].data == "10 mx1.esad.test.");

    QueryResult txt = f.q(QueryType::kTxt, "txt.esad.test");
    REQUIRE(txt.records.size() == 1);
    CHECK(txt.records[0].data == R"("v=spf1 -all" "say \"hi\"")");

    QueryResult ptr = f.q(QueryType::kPtr, "192.0.2.1");
    CHECK(ptr.name == "1.2.0.192.in-addr.arpa");
    REQUIRE(ptr.records.size() == 1);
    CHECK(ptr.records[0].type == "PTR");
    CHECK(ptr.records[0].data == "mx1.esad.test.");
    CHECK(ptr.records[0].ttl == 600);

    QueryResult aaaa = f.q(QueryType::kAaaa, "mx1.esad.test");
    REQUIRE(aaaa.records.size() == 1);
    CHECK(aaaa.records[0].data == "2001:db8::1");

    QueryResult cname = f.q(QueryType::kCname, "www.esad.test");
    REQUIRE(cname.records.size() == 1);
    CHECK(cname.records[0].data == "mx1.esad.test.");

    QueryType t{};
    CHECK(parse_query_type("AaAa", &t));
    CHECK(t == QueryType::kAaaa);
    CHECK_FALSE(parse_query_type("soa", &t));
}

TEST_CASE("invalid names are refused without a query, asynchronously", "[dns]") {
    Fixture f;
    CHECK(f.mx("bad..name").status == DnsStatus::kInvalidName);
    CHECK(f.mx("").status == DnsStatus::kInvalidName);
    CHECK(f.addrs("sp ace.test", IpPreference::kPreferV4).status == DnsStatus::kInvalidName);
    CHECK(f.q(QueryType::kA, std::string(64, 'a') + ".test").status == DnsStatus::kInvalidName);
    std::string out;
    CHECK(normalize_dns_name("Foo.Example.COM.", &out));
    CHECK(out == "foo.example.com");
    CHECK(normalize_dns_name("_dmarc.example.com", &out));
    CHECK_FALSE(normalize_dns_name(".", &out));
    CHECK_FALSE(normalize_dns_name(std::string(254, 'a'), &out));
}

TEST_CASE("the cache snapshot shows MX records and ordered IPs with expiry", "[dns]") {
    Fixture f;
    CHECK_FALSE(f.r->cache_snapshot("mx.esad.test").mx_cached);
    MxResult m = f.mx("mx.esad.test");
    for (const auto& rec : m.records)
        f.addrs(rec.host, IpPreference::kPreferV4);
    f.fake_now += 10'000;
    CacheSnapshot s = f.r->cache_snapshot("MX.esad.test");
    CHECK(s.mx_cached);
    CHECK(s.mx_status == DnsStatus::kOk);
    REQUIRE(s.mx.size() == 4);
    CHECK(s.mx[0].host == "mx0.esad.test");
    CHECK(s.mx[1].host == "mx1.esad.test");
    CHECK(s.mx[2].host == "mx2.esad.test");
    CHECK(s.mx[3].host == "mx3.esad.test");
    CHECK(s.mx[0].expires_in_s == 290);
    CHECK(s.mx[0].expires_at_unix > 0);
    std::vector<std::string> got;
    for (const auto& a : s.addresses)
        got.push_back(a.host + " " + a.ip);
    CHECK(got == std::vector<std::string>{"mx0.esad.test 192.0.2.10", "mx1.esad.test 192.0.2.1",
                                          "mx1.esad.test 2001:db8::1", "mx2.esad.test 192.0.2.2",
                                          "mx2.esad.test 192.0.2.3", "mx3.esad.test 2001:db8::3"});
    CHECK(s.addresses[1].expires_in_s == 110);
    CHECK(s.addresses[2].expires_in_s == 170);

    f.mx("v4only.esad.test");
    f.addrs("v4only.esad.test", IpPreference::kPreferV4);
    CacheSnapshot implicit = f.r->cache_snapshot("v4only.esad.test");
    CHECK(implicit.implicit);
    REQUIRE(implicit.addresses.size() == 1);
    CHECK(implicit.addresses[0].ip == "192.0.2.4");

    f.mx("nullmx.esad.test");
    CHECK(f.r->cache_snapshot("nullmx.esad.test").mx_status == DnsStatus::kNullMx);
}

TEST_CASE("the cache is bounded", "[dns]") {
    FakeDns dns;
    Loop l;
    ResolverOptions o;
    o.servers = {dns.server()};
    o.max_cache_entries = 2;
    std::string err;
    auto r = Resolver::create(&l.loop, o, &err);
    REQUIRE(r);
    int done = 0;
    for (const char* d : {"mx.esad.test", "nullmx.esad.test", "big.esad.test", "nx.esad.test"})
        r->resolve_mx(d, [&](const MxResult&) { ++done; });
    REQUIRE(l.run_until([&] { return done == 4; }));
    CHECK(r->cache_size() == 2);
    r->clear_cache();
    CHECK(r->cache_size() == 0);
    r.reset();
    CHECK(esad::loop::drain_and_close(&l.loop) == 0);
}

TEST_CASE("identical lookups in flight share one query", "[dns]") {
    Fixture f;
    int done = 0;
    for (int i = 0; i < 3; ++i)
        f.r->resolve_mx("mx.esad.test", [&](const MxResult& m) {
            CHECK(m.status == DnsStatus::kOk);
            ++done;
        });
    CHECK(f.r->pending() == 3);
    REQUIRE(f.l.run_until([&] { return done == 3; }));
    CHECK(f.r->pending() == 0);
    CHECK(f.count("mx.esad.test").first == 1);
}

TEST_CASE("close() cancels every pending callback exactly once; the loop closes", "[dns]") {
    FakeDns dns;
    Loop l;
    long before = HandleBase::live_count();
    ResolverOptions o;
    o.servers = {dns.server()};
    o.timeout_ms = 5000;
    std::string err;
    auto r = Resolver::create(&l.loop, o, &err);
    REQUIRE(r);
    int mx_calls = 0, addr_calls = 0, query_calls = 0, ok = 0;
    r->resolve_mx("timeout.esad.test", [&](const MxResult& m) {
        ++mx_calls;
        CHECK(m.status == DnsStatus::kCancelled);
    });
    r->resolve_addresses("timeout.esad.test", IpPreference::kPreferV4, [&](const AddressResult& a) {
        ++addr_calls;
        CHECK(a.status == DnsStatus::kCancelled);
    });
    r->query(QueryType::kTxt, "timeout.esad.test", [&](const QueryResult& q) {
        ++query_calls;
        CHECK(q.status == DnsStatus::kCancelled);
    });
    r->resolve_mx("mx.esad.test", [&](const MxResult& m) { ok += m.status == DnsStatus::kOk; });
    // Let the sockets open and the good answer arrive; the others stay pending.
    REQUIRE(l.run_until([&] { return ok == 1; }));
    CHECK(r->pending() == 3);
    r->close();
    CHECK(mx_calls == 1);
    CHECK(addr_calls == 1);
    CHECK(query_calls == 1);
    CHECK(r->pending() == 0);
    bool sync_cancel = false;
    r->resolve_mx("mx.esad.test",
                  [&](const MxResult& m) { sync_cancel = m.status == DnsStatus::kCancelled; });
    CHECK(sync_cancel);
    r->close();  // idempotent
    CHECK(esad::loop::drain_and_close(&l.loop) == 0);
    CHECK(mx_calls == 1);
    CHECK(HandleBase::live_count() == before);
    r.reset();
}

TEST_CASE("cancel_all() cancels pending lookups and the resolver stays usable", "[dns]") {
    Fixture f(5000, 1);
    int cancelled = 0;
    f.r->resolve_mx("timeout.esad.test",
                    [&](const MxResult& m) { cancelled += m.status == DnsStatus::kCancelled; });
    f.l.run_until([] { return false; }, 50);
    f.r->cancel_all();
    CHECK(cancelled == 1);
    f.l.run_until([] { return false; }, 20);
    CHECK(cancelled == 1);
    CHECK(f.mx("mx.esad.test").status == DnsStatus::kOk);
}

TEST_CASE("destroying the resolver from inside a result callback", "[dns]") {
    FakeDns dns;
    Loop l;
    long before = HandleBase::live_count();
    ResolverOptions o;
    o.servers = {dns.server()};
    std::string err;
    auto r = Resolver::create(&l.loop, o, &err);
    REQUIRE(r);

    SECTION("from a network answer, with another lookup pending") {
        int other = 0;
        bool got = false;
        r->resolve_mx("timeout.esad.test", [&](const MxResult& m) {
            ++other;
            CHECK(m.status == DnsStatus::kCancelled);
        });
        r->resolve_mx("mx.esad.test", [&](const MxResult& m) {
            CHECK(m.status == DnsStatus::kOk);
            got = true;
            r.reset();
        });
        REQUIRE(l.run_until([&] { return got; }));
        CHECK(r == nullptr);
        CHECK(other == 1);
    }
    SECTION("from a cache hit, queued behind another completion") {
        bool first = false;
        r->resolve_mx("mx.esad.test", [&](const MxResult&) { first = true; });
        REQUIRE(l.run_until([&] { return first; }));
        int calls = 0;
        r->resolve_mx("mx.esad.test", [&](const MxResult& m) {
            ++calls;
            CHECK(m.from_cache);
            r.reset();
        });
        r->resolve_mx("mx.esad.test", [&](const MxResult& m) {
            ++calls;  // already queued: delivered with its result during the close
            CHECK(m.status == DnsStatus::kOk);
        });
        REQUIRE(l.run_until([&] { return calls == 2; }));
        CHECK(r == nullptr);
    }
    SECTION("from a cancelled callback during close()") {
        int calls = 0;
        r->resolve_mx("timeout.esad.test", [&](const MxResult&) {
            ++calls;
            r.reset();  // inside ~Resolver's own close(): a no-op reset
        });
        l.run_until([] { return false; }, 20);
        r.reset();
        CHECK(calls == 1);
    }
    CHECK(esad::loop::drain_and_close(&l.loop) == 0);
    CHECK(HandleBase::live_count() == before);
}

TEST_CASE("servers: list forms, bad entries", "[dns]") {
    Loop l;
    std::string err;
    ResolverOptions o;
    o.servers = {"127.0.0.1", "127.0.0.1:5353", "[::1]:5353"};
    auto r = Resolver::create(&l.loop, o, &err);
    CHECK(r != nullptr);
    r.reset();
    o.servers = {"not an address"};
    CHECK(Resolver::create(&l.loop, o, &err) == nullptr);
    CHECK_FALSE(err.empty());
    err.clear();
    o.servers = {"300.1.1.1:53"};
    CHECK(Resolver::create(&l.loop, o, &err) == nullptr);
    CHECK_FALSE(err.empty());
    o.servers = {};
    o.tries = 0;
    CHECK(Resolver::create(&l.loop, o, &err) == nullptr);
    CHECK(esad::loop::drain_and_close(&l.loop) == 0);
}
