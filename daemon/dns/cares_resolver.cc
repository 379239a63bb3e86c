// See cares_resolver.h. Why the shape: c-ares must never see its channel destroyed while it
// is on the stack (ares_process_fd → callback → user code → ~Resolver), and user code must
// never run inside the call that started a lookup. So c-ares callbacks only record results
// in a queue (ready_); the queue is drained from loop callbacks after c-ares returned, and
// a depth counter defers freeing the state until the outermost frame unwinds.
#include "daemon/dns/cares_resolver.h"

#include <ares.h>
#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <ctime>
#include <deque>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "daemon/loop/handle.h"

namespace esad::dns {

namespace {

constexpr int kClassIn = 1;
constexpr std::uint16_t kTypeA = 1;
constexpr std::uint16_t kTypeCname = 5;
constexpr std::uint16_t kTypePtr = 12;
constexpr std::uint16_t kTypeMx = 15;
constexpr std::uint16_t kTypeTxt = 16;
constexpr std::uint16_t kTypeAaaa = 28;
constexpr std::size_t kMaxNameLength = 253;
constexpr std::size_t kMaxLabelLength = 63;

std::uint16_t wire_type(QueryType t) {
    switch (t) {
        case QueryType::kA:
            return kTypeA;
        case QueryType::kAaaa:
            return kTypeAaaa;
        case QueryType::kMx:
            return kTypeMx;
        case QueryType::kTxt:
            return kTypeTxt;
        case QueryType::kPtr:
            return kTypePtr;
        case QueryType::kCname:
            return kTypeCname;
    }
    return kTypeA;
}

std::string type_name(std::uint16_t t) {
    switch (t) {
        case kTypeA:
            return "A";
        case kTypeAaaa:
            return "AAAA";
        case kTypeMx:
            return "MX";
        case kTypeTxt:
            return "TXT";
        case kTypePtr:
            return "PTR";
        case kTypeCname:
            return "CNAME";
        case 2:
            return "NS";
        case 6:
            return "SOA";
        default:
            return "TYPE" + std::to_string(t);
    }
}

std::uint16_t be16(const unsigned char* p) {
    return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}
std::uint32_t be32(const unsigned char* p) {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
           std::uint32_t{p[3]};
}

std::string lower(std::string s) {
    for (char& c : s)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return s;
}

std::string fqdn(const std::string& name) {
    return name.empty() ? "." : name + ".";
}

// One parsed answer record.
struct Rr {
    std::string name;  // owner, lower-case, no trailing dot
    std::uint16_t type = 0;
    std::uint16_t klass = 0;
    std::uint32_t ttl = 0;
    std::uint16_t preference = 0;  // MX
    std::string target;            // MX/CNAME/PTR target, lower-case; A/AAAA: the address
    std::string data;              // presentation form
};

// Expands a (possibly compressed) name at `p`; *used gets its length at `p`.
bool expand_name(const unsigned char* p, const unsigned char* abuf, int alen, std::string* out,
                 long* used) {
    char* s = nullptr;
    if (p >= abuf + alen || ares_expand_name(p, abuf, alen, &s, used) != ARES_SUCCESS) return false;
    *out = lower(s);
    ares_free_string(s);
    return true;
}

std::string quote_txt(const unsigned char* p, std::size_t n) {
    std::string out = "\"";
    for (std::size_t i = 0; i < n; ++i) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < 0x20 || c >= 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\%03u", c);
            out += buf;
        } else {
            out += static_cast<char>(c);
        }
    }
    return out + "\"";
}

// The answer section of a DNS message. false and *err when it does not parse.
bool parse_answer(const unsigned char* abuf, int alen, std::vector<Rr>* out, std::string* err) {
    if (alen < 12) {
        *err = "short DNS message";
        return false;
    }
    const unsigned char* end = abuf + alen;
    std::size_t qdcount = be16(abuf + 4);
    std::size_t ancount = be16(abuf + 6);
    if (ancount > kMaxAnswerRecords) {
        *err = "too many answer records (" + std::to_string(ancount) + ")";
        return false;
    }
    const unsigned char* p = abuf + 12;
    std::string name;
    long used = 0;
    for (std::size_t i = 0; i < qdcount; ++i) {
        if (!expand_name(p, abuf, alen, &name, &used) || end - (p + used) < 4) {
            *err = "malformed question section";
            return false;
        }
        p += used + 4;
    }
    for (std::size_t i = 0; i < ancount; ++i) {
        Rr rr;
        if (!expand_name(p, abuf, alen, &rr.name, &used) || end - (p + used) < 10) {
            *err = "malformed answer record";
            return false;
        }
        p += used;
        rr.type = be16(p);
        rr.klass = be16(p + 2);
        rr.ttl = be32(p + 4);
        if (rr.ttl > 0x7fffffffu) rr.ttl = 0;  // RFC 2181 §8
        std::size_t rdlen = be16(p + 8);
        p += 10;
        if (static_cast<std::size_t>(end - p) < rdlen) {
            *err = "answer record overruns the message";
            return false;
        }
        const unsigned char* rd = p;
        bool ok = true;
        switch (rr.type) {
            case kTypeA:
            case kTypeAaaa: {
                std::size_t want = rr.type == kTypeA ? 4 : 16;
                char buf[INET6_ADDRSTRLEN];
                ok = rdlen == want && inet_ntop(rr.type == kTypeA ? AF_INET : AF_INET6, rd, buf,
                                                sizeof buf) != nullptr;
                if (ok) rr.target = rr.data = buf;
                break;
            }
            case kTypeMx:
                ok = rdlen >= 3 && expand_name(rd + 2, abuf, alen, &rr.target, &used) &&
                     static_cast<std::size_t>(used) <= rdlen - 2;
                if (ok) {
                    rr.preference = be16(rd);
                    rr.data = std::to_string(rr.preference) + " " + fqdn(rr.target);
                }
                break;
            case kTypeCname:
            case kTypePtr:
                ok = rdlen >= 1 && expand_name(rd, abuf, alen, &rr.target, &used) &&
                     static_cast<std::size_t>(used) <= rdlen;
                if (ok) rr.data = fqdn(rr.target);
                break;
            case kTypeTxt: {
                std::size_t off = 0;
                while (ok && off < rdlen) {
                    std::size_t n = rd[off];
                    ok = off + 1 + n <= rdlen;
                    if (ok) {
                        if (!rr.data.empty()) rr.data += ' ';
                        rr.data += quote_txt(rd + off + 1, n);
                    }
                    off += 1 + n;
                }
                ok = ok && rdlen > 0;
                break;
            }
            default: {  // RFC 3597 generic presentation
                rr.data = "\\# " + std::to_string(rdlen);
                if (rdlen > 0) rr.data += ' ';
                char buf[3];
                for (std::size_t k = 0; k < rdlen; ++k) {
                    std::snprintf(buf, sizeof buf, "%02x", rd[k]);
                    rr.data += buf;
                }
                break;
            }
        }
        if (!ok) {
            *err = "malformed " + type_name(rr.type) + " record";
            return false;
        }
        p += rdlen;
        out->push_back(std::move(rr));
    }
    return true;
}

// c-ares status → our status (the ARES_SUCCESS case is decided by the answer parse).
DnsStatus map_status(int status) {
    switch (status) {
        case ARES_ENOTFOUND:
            return DnsStatus::kNxDomain;
        case ARES_ENODATA:
            return DnsStatus::kNoData;
        case ARES_EBADRESP:
        case ARES_EFORMERR:
            return DnsStatus::kBadAnswer;
        case ARES_EBADNAME:
            return DnsStatus::kInvalidName;
        case ARES_ECANCELLED:
        case ARES_EDESTRUCTION:
            return DnsStatus::kCancelled;
        default:  // ESERVFAIL, ETIMEOUT, ECONNREFUSED, EREFUSED, ENOTIMP, ENOMEM, ...
            return DnsStatus::kTemporary;
    }
}

// "1.2.0.192.in-addr.arpa" / nibble form for an IP literal; empty when `name` is not one.
std::string reverse_name(const std::string& name) {
    unsigned char buf[16];
    char out[80];
    if (inet_pton(AF_INET, name.c_str(), buf) == 1) {
        std::snprintf(out, sizeof out, "%u.%u.%u.%u.in-addr.arpa", buf[3], buf[2], buf[1], buf[0]);
        return out;
    }
    if (inet_pton(AF_INET6, name.c_str(), buf) == 1) {
        static const char kHex[] = "0123456789abcdef";
        std::string s;
        for (int i = 15; i >= 0; --i) {
            s += kHex[buf[i] & 0xf];
            s += '.';
            s += kHex[buf[i] >> 4];
            s += '.';
        }
        return s + "ip6.arpa";
    }
    return {};
}

// One uv_poll on a c-ares socket; lifetime as every loop handle (loop/handle.h).
class SocketPoll final : public loop::HandleBase {
  public:
    using Callback = std::function<void(int status, int events)>;
    static loop::HandlePtr<SocketPoll> create(uv_loop_t* loop, int fd, Callback cb) {
        auto* p = new SocketPoll(std::move(cb));
        if (uv_poll_init_socket(loop, &p->poll_, fd) != 0) {
            delete p;  // never initialized: nothing for uv_close to do
            return nullptr;
        }
        p->poll_.data = p;
        return loop::HandlePtr<SocketPoll>(p);
    }
    void start(int events) {
        if (!closing()) uv_poll_start(&poll_, events, &SocketPoll::on_poll);
    }

  private:
    explicit SocketPoll(Callback cb) : cb_(std::move(cb)) {}
    uv_handle_t* raw_handle() override { return reinterpret_cast<uv_handle_t*>(&poll_); }
    void on_close_started() override { cb_ = nullptr; }
    static void on_poll(uv_poll_t* h, int status, int events) {
        auto* self = static_cast<SocketPoll*>(h->data);
        if (self->closing() || !self->cb_) return;
        Callback cb = self->cb_;  // the callback may close this handle
        cb(status, events);
    }
    uv_poll_t poll_;
    Callback cb_;
};

std::once_flag g_library_once;
int g_library_status = ARES_SUCCESS;

}  // namespace

// --- names and enums -----------------------------------------------------------------------

bool normalize_dns_name(std::string_view in, std::string* out) {
    if (!in.empty() && in.back() == '.') in.remove_suffix(1);
    if (in.empty() || in.size() > kMaxNameLength) return false;
    std::string s;
    s.reserve(in.size());
    std::size_t label = 0;
    for (char c : in) {
        if (c == '.') {
            if (label == 0) return false;
            label = 0;
        } else {
            bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_';
            if (!ok || ++label > kMaxLabelLength) return false;
        }
        s += c;
    }
    *out = lower(std::move(s));
    return true;
}

std::string_view to_string(DnsStatus s) {
    switch (s) {
        case DnsStatus::kOk:
            return "ok";
        case DnsStatus::kNxDomain:
            return "nxdomain";
        case DnsStatus::kNoData:
            return "nodata";
        case DnsStatus::kNullMx:
            return "null_mx";
        case DnsStatus::kTemporary:
            return "temporary";
        case DnsStatus::kBadAnswer:
            return "bad_answer";
        case DnsStatus::kInvalidName:
            return "invalid_name";
        case DnsStatus::kCancelled:
            return "cancelled";
    }
    return "?";
}

std::string_view to_string(QueryType t) {
    switch (t) {
        case QueryType::kA:
            return "A";
        case QueryType::kAaaa:
            return "AAAA";
        case QueryType::kMx:
            return "MX";
        case QueryType::kTxt:
            return "TXT";
        case QueryType::kPtr:
            return "PTR";
        case QueryType::kCname:
            return "CNAME";
    }
    return "?";
}

bool parse_query_type(std::string_view text, QueryType* out) {
    std::string t = lower(std::string(text));
    static const std::pair<const char*, QueryType> kTypes[] = {
        {"a", QueryType::kA},     {"aaaa", QueryType::kAaaa}, {"mx", QueryType::kMx},
        {"txt", QueryType::kTxt}, {"ptr", QueryType::kPtr},   {"cname", QueryType::kCname},
    };
    for (const auto& [name, type] : kTypes) {
        if (t == name) {
            *out = type;
            return true;
        }
    }
    return false;
}

// --- Impl ----------------------------------------------------------------------------------

// The result of one (name, type) lookup, as cached and shared between waiters.
struct Lookup {
    DnsStatus status = DnsStatus::kTemporary;
    std::string name;        // asked
    std::string canonical;   // after CNAMEs; empty when none
    std::vector<Rr> answer;  // every answer record seen (CNAMEs included), for dig
    std::vector<Rr> finals;  // the records of the asked type at the canonical name
    bool from_cache = false;
    std::string error;
};
using LookupPtr = std::shared_ptr<const Lookup>;
using Waiter = std::function<void(const Lookup&)>;

class Resolver::Impl {
  public:
    Impl(uv_loop_t* loop, ResolverOptions options) : loop_(loop), options_(std::move(options)) {}

    bool init(std::string* error);
    void resolve_mx(std::string_view domain, MxCallback cb, LookupOptions opts);
    void resolve_addresses(std::string_view host, IpPreference family, AddressCallback cb,
                           LookupOptions opts);
    void query(QueryType type, std::string_view name, QueryCallback cb, LookupOptions opts);
    CacheSnapshot cache_snapshot(std::string_view domain) const;
    void clear_cache() {
        cache_.clear();
        lru_.clear();
    }
    std::size_t cache_size() const { return cache_.size(); }
    std::size_t pending() const { return pending_; }
    void cancel_all();
    void close();
    // The owner let go: free now, or when the outermost callback frame unwinds.
    void release() {
        if (depth_ == 0) {
            delete this;
        } else {
            orphaned_ = true;
        }
    }

  private:
    // Keeps the Impl alive while user callbacks may run; frees it on the way out if the
    // owner was destroyed meanwhile. Nothing may touch the Impl after the guard ends.
    struct Guard {
        explicit Guard(Impl* i) : impl(i) { ++impl->depth_; }
        ~Guard() {
            if (--impl->depth_ == 0 && impl->orphaned_) delete impl;
        }
        Guard(const Guard&) = delete;
        Guard& operator=(const Guard&) = delete;
        Impl* impl;
    };

    // One query in flight for (name, type); the c-ares callback argument.
    struct InFlight {
        Impl* impl = nullptr;
        std::string key;
        std::string name;     // asked
        std::string current;  // queried now (moves along a CNAME chain)
        std::uint16_t type = 0;
        std::size_t hops = 0;
        std::uint32_t min_ttl = 0xffffffffu;
        std::vector<Rr> answer;
        std::vector<Waiter> waiters;
    };

    struct CacheEntry {
        LookupPtr lookup;
        std::uint64_t expires_ms = 0;
        std::list<std::string>::iterator lru;
    };

    static void on_sock_state(void* data, ares_socket_t fd, int readable, int writable);
    static void on_answer(void* arg, int status, int timeouts, unsigned char* abuf, int alen);
    void handle_answer(InFlight* f, int status, const unsigned char* abuf, int alen);
    void finish(InFlight* f, DnsStatus status, std::string error, std::vector<Rr> finals = {});
    void on_socket_event(int fd, int status, int events);
    void on_ares_timer();

    void lookup(const std::string& name, std::uint16_t type, bool bypass, Waiter w);
    void start_query(InFlight* f);
    void post(std::function<void()> fn);
    void flush();
    void rearm();
    std::uint64_t now_ms() const { return options_.now_ms ? options_.now_ms() : uv_now(loop_); }
    static std::string key_of(const std::string& name, std::uint16_t type) {
        return std::to_string(type) + " " + name;
    }
    LookupPtr cache_get(const std::string& key);
    const CacheEntry* cache_peek(const std::string& key) const;
    void cache_put(const std::string& key, LookupPtr l, std::uint32_t ttl_s);

    uv_loop_t* loop_;
    ResolverOptions options_;
    ares_channel channel_ = nullptr;
    loop::HandlePtr<loop::Timer> ares_timer_;
    loop::HandlePtr<loop::Timer> dispatch_timer_;
    std::map<int, loop::HandlePtr<SocketPoll>> polls_;
    std::unordered_map<std::string, InFlight*> inflight_;
    std::deque<std::function<void()>> ready_;
    std::unordered_map<std::string, CacheEntry> cache_;
    std::list<std::string> lru_;  // front: most recently used
    std::size_t pending_ = 0;
    int depth_ = 0;
    bool orphaned_ = false;
    bool closed_ = false;
};

bool Resolver::Impl::init(std::string* error) {
    std::call_once(g_library_once, [] { g_library_status = ares_library_init(ARES_LIB_INIT_ALL); });
    if (g_library_status != ARES_SUCCESS) {
        *error = std::string("ares_library_init: ") + ares_strerror(g_library_status);
        return false;
    }
    if (options_.timeout_ms <= 0 || options_.tries <= 0) {
        *error = "dns timeout and tries must be positive";
        return false;
    }
    std::string csv;
    for (const std::string& s : options_.servers) {
        if (s.empty() || s.find_first_of(", \t") != std::string::npos) {
            *error = "bad dns server \"" + s + "\"";
            return false;
        }
        if (!csv.empty()) csv += ',';
        csv += s;
    }
    ares_options o{};
    o.sock_state_cb = &Impl::on_sock_state;
    o.sock_state_cb_data = this;
    o.timeout = options_.timeout_ms;
    o.tries = options_.tries;
    // c-ares 1.18 drops SERVFAIL/REFUSED answers and, once every server did so, reports
    // ECONNREFUSED ("Could not contact DNS servers"): the operator would chase a network
    // problem that is a zone problem. With NOCHECKRESP the answer's rcode reaches us
    // (ESERVFAIL / EREFUSED); the attempt is temporary either way and is retried later.
    o.flags = ARES_FLAG_NOCHECKRESP;
    int rc = ares_init_options(
        &channel_, &o,
        ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS);
    if (rc != ARES_SUCCESS) {
        channel_ = nullptr;
        *error = std::string("ares_init_options: ") + ares_strerror(rc);
        return false;
    }
    if (!csv.empty()) {
        rc = ares_set_servers_ports_csv(channel_, csv.c_str());
        if (rc != ARES_SUCCESS) {
            *error = "dns servers \"" + csv + "\": " + ares_strerror(rc);
            ares_destroy(channel_);
            channel_ = nullptr;
            return false;
        }
    }
    ares_timer_ = loop::Timer::create(loop_, [this] { on_ares_timer(); });
    dispatch_timer_ = loop::Timer::create(loop_, [this] {
        Guard g(this);
        flush();
    });
    return true;
}

// --- the c-ares bridge ---------------------------------------------------------------------

void Resolver::Impl::on_sock_state(void* data, ares_socket_t fd, int readable, int writable) {
    auto* self = static_cast<Impl*>(data);
    auto it = self->polls_.find(fd);
    if (!readable && !writable) {
        // c-ares is about to close the socket: uv_close stops polling it right now.
        if (it != self->polls_.end()) self->polls_.erase(it);
        return;
    }
    if (it == self->polls_.end()) {
        if (self->closed_) return;
        auto p = SocketPoll::create(self->loop_, fd, [self, fd](int status, int events) {
            self->on_socket_event(fd, status, events);
        });
        // Without a poll the query still ends, by c-ares' timeout.
        if (!p) return;
        it = self->polls_.emplace(fd, std::move(p)).first;
    }
    it->second->start((readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0));
}

void Resolver::Impl::on_socket_event(int fd, int status, int events) {
    Guard g(this);
    // An error counts as both readable and writable, so c-ares notices it on its own socket.
    bool r = status < 0 || (events & UV_READABLE);
    bool w = status < 0 || (events & UV_WRITABLE);
    ares_process_fd(channel_, r ? fd : ARES_SOCKET_BAD, w ? fd : ARES_SOCKET_BAD);
    rearm();
    flush();
}

void Resolver::Impl::on_ares_timer() {
    Guard g(this);
    ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    rearm();
    flush();
}

void Resolver::Impl::rearm() {
    if (closed_) return;
    timeval tv{};
    timeval* t = ares_timeout(channel_, nullptr, &tv);
    if (t == nullptr) {
        ares_timer_->stop();
        return;
    }
    std::uint64_t ms = static_cast<std::uint64_t>(t->tv_sec) * 1000 +
                       static_cast<std::uint64_t>((t->tv_usec + 999) / 1000);
    ares_timer_->start(ms);
}

void Resolver::Impl::post(std::function<void()> fn) {
    ready_.push_back(std::move(fn));
    // A loop callback on the stack may flush first; the zero timer then finds nothing to do.
    if (!closed_) dispatch_timer_->start(0);
}

void Resolver::Impl::flush() {
    while (!ready_.empty()) {
        std::function<void()> fn = std::move(ready_.front());
        ready_.pop_front();
        fn();
    }
}

// --- lookups -------------------------------------------------------------------------------

void Resolver::Impl::lookup(const std::string& name, std::uint16_t type, bool bypass, Waiter w) {
    std::string key = key_of(name, type);
    if (!bypass) {
        if (LookupPtr hit = cache_get(key)) {
            post([w = std::move(w), hit] { w(*hit); });
            return;
        }
    }
    if (auto it = inflight_.find(key); it != inflight_.end()) {
        it->second->waiters.push_back(std::move(w));
        return;
    }
    auto* f = new InFlight;
    f->impl = this;
    f->key = key;
    f->name = name;
    f->current = name;
    f->type = type;
    f->waiters.push_back(std::move(w));
    inflight_.emplace(key, f);
    start_query(f);
}

void Resolver::Impl::start_query(InFlight* f) {
    // May complete synchronously (and free f).
    ares_query(channel_, f->current.c_str(), kClassIn, f->type, &Impl::on_answer, f);
    rearm();
}

void Resolver::Impl::on_answer(void* arg, int status, int /*timeouts*/, unsigned char* abuf,
                               int alen) {
    auto* f = static_cast<InFlight*>(arg);
    f->impl->handle_answer(f, status, abuf, alen);
}

void Resolver::Impl::handle_answer(InFlight* f, int status, const unsigned char* abuf, int alen) {
    std::string what = type_name(f->type) + " lookup for " + f->current + ": ";
    if (status == ARES_ECANCELLED || status == ARES_EDESTRUCTION) {
        finish(f, DnsStatus::kCancelled, what + ares_strerror(status));
        return;
    }
    if (abuf != nullptr && alen > 0 && static_cast<std::size_t>(alen) > options_.max_answer_bytes) {
        finish(f, DnsStatus::kBadAnswer,
               what + "answer too large (" + std::to_string(alen) + " bytes, limit " +
                   std::to_string(options_.max_answer_bytes) + ")");
        return;
    }
    if (status != ARES_SUCCESS) {
        finish(f, map_status(status), what + ares_strerror(status));
        return;
    }
    std::vector<Rr> rrs;
    std::string err;
    if (abuf == nullptr || !parse_answer(abuf, alen, &rrs, &err)) {
        finish(f, DnsStatus::kBadAnswer, what + err);
        return;
    }
    // Follow the CNAME chain inside this answer (unless CNAME itself was asked).
    std::string cur = f->current;
    if (f->type != kTypeCname) {
        for (;;) {
            auto it = std::find_if(rrs.begin(), rrs.end(), [&](const Rr& r) {
                return r.type == kTypeCname && r.name == cur;
            });
            if (it == rrs.end()) break;
            if (++f->hops > kMaxCnameHops) {
                finish(f, DnsStatus::kBadAnswer, what + "CNAME chain too long or looping");
                return;
            }
            f->min_ttl = std::min(f->min_ttl, it->ttl);
            cur = it->target;
        }
    }
    std::vector<Rr> finals;
    for (const Rr& r : rrs) {
        if (r.type == f->type && r.name == cur) {
            finals.push_back(r);
            f->min_ttl = std::min(f->min_ttl, r.ttl);
        }
    }
    f->answer.insert(f->answer.end(), rrs.begin(), rrs.end());
    if (f->answer.size() > kMaxAnswerRecords) {
        finish(f, DnsStatus::kBadAnswer, what + "too many answer records");
        return;
    }
    if (!finals.empty()) {
        f->current = cur;
        finish(f, DnsStatus::kOk, {}, std::move(finals));
        return;
    }
    if (cur != f->current && !closed_) {
        // The chain ended without the record type: ask at its target.
        f->current = cur;
        start_query(f);  // may free f
        return;
    }
    f->current = cur;
    finish(f, DnsStatus::kNoData, what + "no " + type_name(f->type) + " record");
}

void Resolver::Impl::finish(InFlight* f, DnsStatus status, std::string error,
                            std::vector<Rr> finals) {
    auto l = std::make_shared<Lookup>();
    l->status = status;
    l->name = f->name;
    if (f->current != f->name) l->canonical = f->current;
    l->answer = std::move(f->answer);
    l->finals = std::move(finals);
    l->error = std::move(error);
    LookupPtr shared = l;
    if (status == DnsStatus::kOk) {
        std::uint32_t ttl = std::clamp(f->min_ttl, options_.min_ttl_s,
                                       std::max(options_.min_ttl_s, options_.max_ttl_s));
        cache_put(f->key, shared, ttl);
    } else if (status == DnsStatus::kNxDomain || status == DnsStatus::kNoData) {
        cache_put(f->key, shared, options_.negative_ttl_s);
    }
    if (auto it = inflight_.find(f->key); it != inflight_.end() && it->second == f)
        inflight_.erase(it);
    for (Waiter& w : f->waiters)
        post([w = std::move(w), shared] { w(*shared); });
    delete f;
}

// --- cache ---------------------------------------------------------------------------------

LookupPtr Resolver::Impl::cache_get(const std::string& key) {
    auto it = cache_.find(key);
    if (it == cache_.end()) return nullptr;
    std::uint64_t now = now_ms();
    if (now >= it->second.expires_ms) {
        lru_.erase(it->second.lru);
        cache_.erase(it);
        return nullptr;
    }
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    auto copy = std::make_shared<Lookup>(*it->second.lookup);
    auto left = static_cast<std::uint32_t>((it->second.expires_ms - now + 999) / 1000);
    for (Rr& r : copy->answer)
        r.ttl = left;
    for (Rr& r : copy->finals)
        r.ttl = left;
    copy->from_cache = true;
    return copy;
}

const Resolver::Impl::CacheEntry* Resolver::Impl::cache_peek(const std::string& key) const {
    auto it = cache_.find(key);
    if (it == cache_.end() || now_ms() >= it->second.expires_ms) return nullptr;
    return &it->second;
}

void Resolver::Impl::cache_put(const std::string& key, LookupPtr l, std::uint32_t ttl_s) {
    if (options_.max_cache_entries == 0 || ttl_s == 0) return;
    if (auto it = cache_.find(key); it != cache_.end()) {
        lru_.erase(it->second.lru);
        cache_.erase(it);
    }
    while (cache_.size() >= options_.max_cache_entries && !lru_.empty()) {
        cache_.erase(lru_.back());
        lru_.pop_back();
    }
    lru_.push_front(key);
    cache_.emplace(key,
                   CacheEntry{std::move(l), now_ms() + std::uint64_t{ttl_s} * 1000, lru_.begin()});
}

CacheSnapshot Resolver::Impl::cache_snapshot(std::string_view domain) const {
    CacheSnapshot snap;
    std::string name;
    if (!normalize_dns_name(domain, &name)) return snap;
    const CacheEntry* mx = cache_peek(key_of(name, kTypeMx));
    if (mx == nullptr) return snap;
    std::uint64_t now = now_ms();
    std::int64_t wall = static_cast<std::int64_t>(std::time(nullptr));
    auto left_of = [now](const CacheEntry& e) {
        return static_cast<std::uint32_t>((e.expires_ms - now + 999) / 1000);
    };
    snap.mx_cached = true;
    snap.mx_status = mx->lookup->status;
    std::vector<std::string> hosts;
    if (mx->lookup->status == DnsStatus::kOk) {
        for (const Rr& r : mx->lookup->finals) {
            if (r.target.empty()) snap.mx_status = DnsStatus::kNullMx;
            std::uint32_t left = left_of(*mx);
            snap.mx.push_back({r.preference, r.target.empty() ? "." : r.target, left,
                               wall + static_cast<std::int64_t>(left)});
        }
        std::sort(snap.mx.begin(), snap.mx.end(), [](const auto& a, const auto& b) {
            return a.preference != b.preference ? a.preference < b.preference : a.host < b.host;
        });
        if (snap.mx_status == DnsStatus::kNullMx) return snap;
        for (const auto& m : snap.mx)
            if (std::find(hosts.begin(), hosts.end(), m.host) == hosts.end())
                hosts.push_back(m.host);
    } else if (mx->lookup->status == DnsStatus::kNoData) {
        snap.implicit = true;
        hosts.push_back(name);
    }
    for (const std::string& host : hosts) {
        for (std::uint16_t type : {kTypeA, kTypeAaaa}) {
            const CacheEntry* e = cache_peek(key_of(host, type));
            if (e == nullptr || e->lookup->status != DnsStatus::kOk) continue;
            std::uint32_t left = left_of(*e);
            for (const Rr& r : e->lookup->finals)
                snap.addresses.push_back({host, r.target, left, wall + left});
        }
    }
    return snap;
}

// --- the public lookups --------------------------------------------------------------------

namespace {

MxResult to_mx_result(const Lookup& l) {
    MxResult r;
    r.status = l.status;
    r.canonical_name = l.canonical;
    r.from_cache = l.from_cache;
    r.error = l.error;
    if (l.status != DnsStatus::kOk) return r;
    for (const Rr& rr : l.finals)
        r.records.push_back({rr.preference, rr.target.empty() ? "." : rr.target, rr.ttl});
    if (r.records.size() == 1 && r.records[0].preference == 0 && r.records[0].host == ".") {
        r.status = DnsStatus::kNullMx;
        r.error = "null MX for " + l.name;
    }
    return r;
}

QueryResult to_query_result(const Lookup& l) {
    QueryResult r;
    r.status = l.status;
    r.name = l.name;
    r.from_cache = l.from_cache;
    r.error = l.error;
    for (const Rr& rr : l.answer) {
        std::string klass = rr.klass == kClassIn ? "IN" : "CLASS" + std::to_string(rr.klass);
        r.records.push_back({fqdn(rr.name), rr.ttl, std::move(klass), type_name(rr.type), rr.data});
    }
    return r;
}

// Both address families of one host, joined into one AddressResult.
struct AddressJoin {
    Resolver::AddressCallback cb;
    IpPreference family = IpPreference::kPreferV4;
    int left = 0;
    std::optional<Lookup> v4;
    std::optional<Lookup> v6;

    AddressResult result() const {
        AddressResult r;
        std::vector<const Lookup*> ls;
        bool v6_first = family == IpPreference::kPreferV6 || family == IpPreference::kRequireV6;
        for (const std::optional<Lookup>* o :
             v6_first ? std::array{&v6, &v4} : std::array{&v4, &v6})
            if (o->has_value()) ls.push_back(&**o);
        r.from_cache = true;
        bool any_temp = false, any_bad = false, any_cancel = false, any_invalid = false;
        bool all_nx = true;
        for (const Lookup* l : ls) {
            r.from_cache = r.from_cache && l->from_cache;
            if (r.canonical_name.empty()) r.canonical_name = l->canonical;
            for (const Rr& rr : l->finals)
                r.addresses.push_back({rr.target, rr.ttl});
            any_temp |= l->status == DnsStatus::kTemporary;
            any_bad |= l->status == DnsStatus::kBadAnswer;
            any_cancel |= l->status == DnsStatus::kCancelled;
            any_invalid |= l->status == DnsStatus::kInvalidName;
            all_nx &= l->status == DnsStatus::kNxDomain;
            if (l->status != DnsStatus::kOk && !l->error.empty()) {
                if (!r.error.empty()) r.error += "; ";
                r.error += l->error;
            }
        }
        if (any_cancel) {
            r.status = DnsStatus::kCancelled;
            r.addresses.clear();
        } else if (!r.addresses.empty()) {
            r.status = DnsStatus::kOk;
            r.partial = any_temp || any_bad;
        } else if (any_temp) {
            r.status = DnsStatus::kTemporary;
        } else if (any_bad) {
            r.status = DnsStatus::kBadAnswer;
        } else if (any_invalid) {
            r.status = DnsStatus::kInvalidName;
        } else if (all_nx) {
            r.status = DnsStatus::kNxDomain;
        } else {
            r.status = DnsStatus::kNoData;
        }
        return r;
    }
};

}  // namespace

void Resolver::Impl::resolve_mx(std::string_view domain, MxCallback cb, LookupOptions opts) {
    if (closed_) {
        MxResult r;
        r.status = DnsStatus::kCancelled;
        r.error = "resolver closed";
        cb(r);
        return;
    }
    ++pending_;
    std::string name;
    if (!normalize_dns_name(domain, &name)) {
        post([this, cb = std::move(cb), d = std::string(domain)] {
            --pending_;
            MxResult r;
            r.status = DnsStatus::kInvalidName;
            r.error = "invalid domain name \"" + d + "\"";
            cb(r);
        });
        return;
    }
    lookup(name, kTypeMx, opts.bypass_cache, [this, cb = std::move(cb)](const Lookup& l) {
        --pending_;
        cb(to_mx_result(l));
    });
}

void Resolver::Impl::resolve_addresses(std::string_view host, IpPreference family,
                                       AddressCallback cb, LookupOptions opts) {
    if (closed_) {
        AddressResult r;
        r.status = DnsStatus::kCancelled;
        r.error = "resolver closed";
        cb(r);
        return;
    }
    ++pending_;
    std::string name;
    if (!normalize_dns_name(host, &name)) {
        post([this, cb = std::move(cb), h = std::string(host)] {
            --pending_;
            AddressResult r;
            r.status = DnsStatus::kInvalidName;
            r.error = "invalid host name \"" + h + "\"";
            cb(r);
        });
        return;
    }
    auto join = std::make_shared<AddressJoin>();
    join->cb = std::move(cb);
    join->family = family;
    bool want4 = family != IpPreference::kRequireV6;
    bool want6 = family != IpPreference::kRequireV4;
    join->left = (want4 ? 1 : 0) + (want6 ? 1 : 0);
    auto done = [this, join] {
        if (--join->left > 0) return;
        --pending_;
        AddressCallback cb = std::move(join->cb);
        cb(join->result());
    };
    if (want4)
        lookup(name, kTypeA, opts.bypass_cache, [join, done](const Lookup& l) {
            join->v4 = l;
            done();
        });
    if (want6)
        lookup(name, kTypeAaaa, opts.bypass_cache, [join, done](const Lookup& l) {
            join->v6 = l;
            done();
        });
}

void Resolver::Impl::query(QueryType type, std::string_view name, QueryCallback cb,
                           LookupOptions opts) {
    if (closed_) {
        QueryResult r;
        r.status = DnsStatus::kCancelled;
        r.name = std::string(name);
        r.error = "resolver closed";
        cb(r);
        return;
    }
    ++pending_;
    std::string asked(name);
    if (type == QueryType::kPtr) {
        if (std::string rev = reverse_name(asked); !rev.empty()) asked = rev;
    }
    std::string normal;
    if (!normalize_dns_name(asked, &normal)) {
        post([this, cb = std::move(cb), asked] {
            --pending_;
            QueryResult r;
            r.status = DnsStatus::kInvalidName;
            r.name = asked;
            r.error = "invalid name \"" + asked + "\"";
            cb(r);
        });
        return;
    }
    lookup(normal, wire_type(type), opts.bypass_cache, [this, cb = std::move(cb)](const Lookup& l) {
        --pending_;
        cb(to_query_result(l));
    });
}

void Resolver::Impl::cancel_all() {
    Guard g(this);
    // Every query's callback runs now with ARES_ECANCELLED (queries started from those
    // callbacks are not cancelled: ares_cancel takes the list first).
    if (channel_ != nullptr) ares_cancel(channel_);
    rearm();
    flush();
}

void Resolver::Impl::close() {
    if (closed_) return;
    Guard g(this);
    closed_ = true;
    if (channel_ != nullptr) {
        ares_cancel(channel_);
        ares_destroy(channel_);  // closes its sockets: on_sock_state drops their polls
        channel_ = nullptr;
    }
    polls_.clear();
    ares_timer_.reset();
    dispatch_timer_.reset();
    flush();
}

// --- Resolver ------------------------------------------------------------------------------

std::unique_ptr<Resolver> Resolver::create(uv_loop_t* loop, ResolverOptions options,
                                           std::string* error) {
    auto* impl = new Impl(loop, std::move(options));
    if (!impl->init(error)) {
        impl->close();
        impl->release();
        return nullptr;
    }
    return std::unique_ptr<Resolver>(new Resolver(impl));
}

Resolver::~Resolver() {
    impl_->close();
    impl_->release();
}

void Resolver::resolve_mx(std::string_view domain, MxCallback cb, LookupOptions opts) {
    impl_->resolve_mx(domain, std::move(cb), opts);
}
void Resolver::resolve_addresses(std::string_view host, IpPreference family, AddressCallback cb,
                                 LookupOptions opts) {
    impl_->resolve_addresses(host, family, std::move(cb), opts);
}
void Resolver::query(QueryType type, std::string_view name, QueryCallback cb, LookupOptions opts) {
    impl_->query(type, name, std::move(cb), opts);
}
CacheSnapshot Resolver::cache_snapshot(std::string_view domain) const {
    return impl_->cache_snapshot(domain);
}
void Resolver::clear_cache() {
    impl_->clear_cache();
}
std::size_t Resolver::cache_size() const {
    return impl_->cache_size();
}
std::size_t Resolver::pending() const {
    return impl_->pending();
}
void Resolver::cancel_all() {
    impl_->cancel_all();
}
void Resolver::close() {
    impl_->close();
}

}  // namespace esad::dns
