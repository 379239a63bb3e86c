// See cmd_logs.h.
#include "daemon/control/cmd_logs.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>

#include "common/ascii.h"
#include "common/escape.h"
#include "common/log_search.h"
#include "common/payloads/logs.h"
#include "daemon/loop/work.h"

namespace esad::control {

using nlohmann::json;

namespace {

constexpr int64_t kDefaultInterval = 10;  // seconds; what the appliance's scripts assume
constexpr int64_t kMaxInterval = 3600;
constexpr uint64_t kSampleMs = 1000;
constexpr uint64_t kTailPollMs = 250;
constexpr size_t kTailReadBytes = 256 * 1024;  // per poll: bounds memory and reply size
constexpr size_t kTailBacklogBytes = 256 * 1024;
constexpr int64_t kDefaultBacklogLines = 10;
constexpr int64_t kMaxBacklogLines = 1000;
constexpr size_t kMaxLineChars = 4096;  // longer (partial) lines are cut into pieces
constexpr int64_t kDefaultFindLimit = 100;
constexpr int64_t kMaxFindLimit = 10000;
constexpr size_t kMaxFindReplyBytes = 4 * 1024 * 1024;  // below the server's 8 MiB cut-off
constexpr size_t kMaxPatternChars = 1024;               // regexes are compiled on the loop thread

bool int_arg(const json& args, const char* key, int64_t def, int64_t lo, int64_t hi, int64_t* out,
             std::string* error) {
    if (!args.contains(key) || args[key].is_null()) {
        *out = def;
        return true;
    }
    const json& v = args[key];
    bool ok = v.is_number_integer() &&
              !(v.is_number_unsigned() &&
                v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()));
    if (ok) *out = v.get<int64_t>();
    if (!ok || *out < lo || *out > hi) {
        *error = std::string(key) + " must be an integer from " + std::to_string(lo) + " to " +
                 std::to_string(hi);
        return false;
    }
    return true;
}

bool string_arg(const json& args, const char* key, std::string* out, std::string* error) {
    if (!args.contains(key) || args[key].is_null()) return true;
    if (!args[key].is_string()) {
        *error = std::string(key) + " must be a string";
        return false;
    }
    *out = args[key].get<std::string>();
    return true;
}

bool bool_arg(const json& args, const char* key, bool* out, std::string* error) {
    if (!args.contains(key) || args[key].is_null()) return true;
    if (!args[key].is_boolean()) {
        *error = std::string(key) + " must be true or false";
        return false;
    }
    *out = args[key].get<bool>();
    return true;
}

// Lines sent to a client: printable ASCII (valid UTF-8 on the wire, safe on a terminal).
std::string printable(std::string_view line) {
    bool clean = line.size() <= kMaxLineChars && std::all_of(line.begin(), line.end(), [](char c) {
                     auto u = static_cast<unsigned char>(c);
                     return u >= 0x20 && u < 0x7f;
                 });
    return clean ? std::string(line) : escape_for_log(line, kMaxLineChars);
}

int64_t delta(uint64_t now, uint64_t before) {
    return static_cast<int64_t>(now) - static_cast<int64_t>(before);
}

// --- tail: file reads on the thread pool -------------------------------------------------------

struct TailRead {
    // in
    std::string path;
    bool initial = false;
    int64_t backlog = kDefaultBacklogLines;
    uint64_t offset = 0;
    uint64_t inode = 0;
    // out
    int error = 0;  // errno of open/fstat
    std::string data;
    uint64_t new_offset = 0;
    uint64_t new_inode = 0;
};

void read_range(int fd, uint64_t from, uint64_t to, std::string* out) {
    while (from < to) {
        char buf[64 * 1024];
        size_t want = static_cast<size_t>(std::min<uint64_t>(sizeof buf, to - from));
        ssize_t n = pread(fd, buf, want, static_cast<off_t>(from));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        out->append(buf, static_cast<size_t>(n));
        from += static_cast<uint64_t>(n);
    }
}

// The last `n` complete lines of `data` and whatever follows the last newline.
std::string last_lines(const std::string& data, int64_t n) {
    size_t end = data.rfind('\n');
    if (end == std::string::npos) return data;
    size_t start = end;
    for (int64_t k = 0; k < n; ++k) {
        if (start == 0) return data;
        size_t prev = data.rfind('\n', start - 1);
        if (prev == std::string::npos) return data;
        start = prev;
    }
    return data.substr(start + 1);
}

// Worker thread: reads what was appended since the last poll, following a rotation.
void read_tail(TailRead& r) {
    int fd = ::open(r.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        r.error = errno;
        return;
    }
    struct stat st {};
    if (fstat(fd, &st) != 0) {
        r.error = errno;
        ::close(fd);
        return;
    }
    auto size = static_cast<uint64_t>(st.st_size);
    auto inode = static_cast<uint64_t>(st.st_ino);
    r.new_inode = inode;
    if (r.initial) {
        uint64_t start = size > kTailBacklogBytes ? size - kTailBacklogBytes : 0;
        read_range(fd, start, size, &r.data);
        r.new_offset = start + r.data.size();
        if (start > 0) {  // the first line is cut: drop it
            size_t nl = r.data.find('\n');
            r.data.erase(0, nl == std::string::npos ? r.data.size() : nl + 1);
        }
        r.data = last_lines(r.data, r.backlog);
    } else if (inode != r.inode) {
        // Rotated: finish the old file (now rotation 1) if it is the one we were reading.
        int old = ::open(rotated_log_path(r.path, 1).c_str(), O_RDONLY | O_CLOEXEC);
        if (old >= 0) {
            struct stat ost {};
            if (fstat(old, &ost) == 0 && static_cast<uint64_t>(ost.st_ino) == r.inode)
                read_range(old, r.offset,
                           std::min<uint64_t>(static_cast<uint64_t>(ost.st_size),
                                              r.offset + kTailReadBytes),
                           &r.data);
            ::close(old);
        }
        std::string fresh;
        read_range(fd, 0, std::min<uint64_t>(size, kTailReadBytes), &fresh);
        r.new_offset = fresh.size();
        r.data += fresh;
    } else {
        uint64_t from = size < r.offset ? 0 : r.offset;  // truncated in place: start over
        read_range(fd, from, std::min<uint64_t>(size, from + kTailReadBytes), &r.data);
        r.new_offset = from + r.data.size();
    }
    ::close(fd);
}

}  // namespace

// One running stream (rate, hostrate, tail) or search (findevent). Owned by LogCommands;
// timers hold weak references, thread-pool completions strong ones (they may outlive it).
struct LogCommands::Stream {
    enum class Kind { kRate, kHostRate, kTail, kSearch };
    Kind kind = Kind::kRate;
    std::shared_ptr<Responder> responder;
    loop::HandlePtr<loop::Timer> timer;
    std::shared_ptr<std::atomic<bool>> cancel = std::make_shared<std::atomic<bool>>(false);
    bool done = false;
    // rate / hostrate: the previous row's values, for the deltas
    std::string domain;
    std::array<uint64_t, 5> prev{};
    bool have_prev = false;
    // tail
    std::string log_name;
    std::string path;
    int64_t backlog = kDefaultBacklogLines;
    bool started = false;
    bool reading = false;
    uint64_t offset = 0;
    uint64_t inode = 0;
    std::string partial;

    // Stops the stream; with send_end the client gets the stream's end line.
    void finish(bool send_end) {
        if (done) return;
        done = true;
        cancel->store(true);
        timer.reset();
        if (send_end) responder->end();
    }
};

namespace {

using Stream = LogCommands::Stream;

payloads::RateRow rate_row(DaemonState& st, Stream& s) {
    if (st.refresh_gauges) st.refresh_gauges();
    uint64_t received = st.counters.uptime(Counter::kRecipientsReceived);
    uint64_t completed = st.counters.uptime(Counter::kCompletedRecipients);
    payloads::RateRow row{
        .time = std::time(nullptr),
        .connections_in = st.inbound_connections,
        .connections_out = st.outbound_connections,
        .recipients_received = received,
        .recipients_received_delta = s.have_prev ? delta(received, s.prev[0]) : 0,
        .recipients_completed = completed,
        .recipients_completed_delta = s.have_prev ? delta(completed, s.prev[1]) : 0,
        .kilobytes_used = (st.spool_bytes + 1023) / 1024};
    s.prev[0] = received;
    s.prev[1] = completed;
    s.have_prev = true;
    return row;
}

payloads::HostRateRow hostrate_row(delivery::DeliveryManager* m, Stream& s) {
    std::string status = "unknown";
    uint64_t conns = 0, active = 0, delivered = 0, hard = 0, soft = 0;
    if (m) {
        queue::Scheduler& sch = m->scheduler();
        if (std::optional<queue::DomainId> d = sch.find_domain(s.domain)) {
            const queue::DomainCounters& c = sch.counters(*d);
            queue::DomainGauges g = sch.gauges(*d);
            status = std::string(hosts::to_string(sch.domain(*d).host().status()));
            conns = g.current_connections;
            active = g.active();
            delivered = c.delivered;
            hard = c.hard_bounced();
            soft = c.soft_bounced_events;
        }
    }
    std::array<uint64_t, 5> now = {active, delivered, hard, soft, conns};
    auto d = [&](size_t i) { return s.have_prev ? delta(now[i], s.prev[i]) : 0; };
    payloads::HostRateRow row{.time = std::time(nullptr),
                              .host = s.domain,
                              .host_status = status,
                              .current_outbound_connections = conns,
                              .active_recipients = active,
                              .active_recipients_delta = d(0),
                              .delivered_recipients = delivered,
                              .delivered_recipients_delta = d(1),
                              .hard_bounced_recipients = hard,
                              .hard_bounced_recipients_delta = d(2),
                              .soft_bounced_events = soft,
                              .soft_bounced_events_delta = d(3)};
    s.prev = now;
    s.have_prev = true;
    return row;
}

// Splits newly read bytes into complete lines; the rest waits for its newline.
std::vector<std::string> take_lines(Stream& s, const std::string& data) {
    s.partial += data;
    std::vector<std::string> lines;
    size_t start = 0;
    for (size_t nl; (nl = s.partial.find('\n', start)) != std::string::npos; start = nl + 1)
        lines.push_back(printable(std::string_view(s.partial).substr(start, nl - start)));
    s.partial.erase(0, start);
    if (s.partial.size() > kMaxLineChars) {  // a runaway line: pass it on in pieces
        lines.push_back(printable(s.partial));
        s.partial.clear();
    }
    return lines;
}

void on_tail_read(Stream& s, TailRead& r) {
    s.reading = false;
    if (s.done) return;
    if (!s.started) {
        if (r.error) {
            s.responder->error("not_found", "Unable to tail " + s.log_name + ": " + s.path + ": " +
                                                strerror(r.error));
            s.finish(false);
            return;
        }
        s.started = true;
        s.offset = r.new_offset;
        s.inode = r.new_inode;
        s.responder->stream(
            payloads::TailFrame{.log = s.log_name, .path = s.path, .lines = take_lines(s, r.data)});
        return;
    }
    if (r.error) return;  // between a rotation's rename and the new file: try again later
    if (r.new_inode != s.inode) s.partial.clear();
    s.offset = r.new_offset;
    s.inode = r.new_inode;
    std::vector<std::string> lines = take_lines(s, r.data);
    if (!lines.empty()) s.responder->stream(payloads::TailFrame{.lines = std::move(lines)});
}

void tail_poll(uv_loop_t* loop, const std::shared_ptr<Stream>& s) {
    if (s->done || s->reading) return;
    if (!s->responder->connected()) {
        s->finish(false);
        return;
    }
    s->reading = true;
    auto r = std::make_shared<TailRead>();
    r->path = s->path;
    r->initial = !s->started;
    r->backlog = s->backlog;
    r->offset = s->offset;
    r->inode = s->inode;
    loop::queue_work(
        loop, [r] { read_tail(*r); }, [s, r] { on_tail_read(*s, *r); });
}

void send_search_result(Stream& s, const EventSearchResult& res,
                        const std::vector<std::string>& files) {
    if (!res.error.empty()) {
        s.responder->error("bad_args", res.error);
        s.finish(false);
        return;
    }
    payloads::FindEventSummary summary{
        .matches = res.matched, .truncated = res.truncated, .lines_scanned = res.lines_scanned};
    for (const auto& f : files)
        summary.files.push_back(f.substr(f.rfind('/') + 1));
    size_t bytes = 0, shown = 0;
    for (const auto& m : res.messages) {
        size_t b = 0;
        for (const auto& l : m.lines)
            b += l.size() + 4;
        if (bytes + b > kMaxFindReplyBytes && shown > 0) break;
        bytes += b;
        ++shown;
    }
    size_t skipped = res.messages.size() - shown;  // the most recent ones are kept
    summary.shown = shown;
    summary.truncated = summary.truncated || skipped > 0;
    s.responder->stream(summary);
    for (size_t i = skipped; i < res.messages.size(); ++i) {
        const MessageHistory& m = res.messages[i];
        s.responder->stream(
            payloads::FindEventMessage{.mid = m.mid, .lines = m.lines, .truncated = m.truncated});
    }
    s.finish(true);
}

}  // namespace

LogCommands::LogCommands(LogCommandsEnv env) : env_(std::move(env)) {
    sampler_ = loop::Timer::create(env_.loop, [this] { on_tick(); });
    sampler_->start(0, kSampleMs);
    sampler_->unref();  // sampling alone does not keep the daemon running
}

LogCommands::~LogCommands() {
    stop();
}

void LogCommands::stop() {
    if (stopped_) return;
    stopped_ = true;
    sampler_.reset();
    auto streams = std::move(streams_);
    streams_.clear();
    for (auto& [id, s] : streams)
        s->finish(s->responder->connected());
}

void LogCommands::on_tick() {
    if (env_.rates && env_.state)
        env_.rates->sample(static_cast<int64_t>(uv_now(env_.loop) / 1000), env_.state->counters);
    for (auto it = streams_.begin(); it != streams_.end();) {
        Stream& s = *it->second;
        if (!s.done && !s.responder->connected()) s.finish(false);
        it = s.done ? streams_.erase(it) : std::next(it);
    }
}

void LogCommands::add_stream(std::shared_ptr<Stream> s) {
    streams_[next_stream_++] = std::move(s);
}

bool LogCommands::search_running() const {
    return std::any_of(streams_.begin(), streams_.end(), [](const auto& kv) {
        return kv.second->kind == Stream::Kind::kSearch && !kv.second->done;
    });
}

void LogCommands::register_commands(ControlServer& server) {
    auto bind = [this](void (LogCommands::*fn)(const Request&, std::shared_ptr<Responder>)) {
        return [this, fn](const Request& req, std::shared_ptr<Responder> r) {
            if (stopped_) {
                r->error("unavailable", "esad is shutting down");
                return;
            }
            (this->*fn)(req, std::move(r));
        };
    };
    server.add_handler("rate", bind(&LogCommands::start_rate));
    server.add_handler("hostrate", bind(&LogCommands::start_hostrate));
    server.add_handler("tail", bind(&LogCommands::start_tail));
    server.add_handler("findevent", bind(&LogCommands::start_findevent));
    server.add_handler("domaindebug", bind(&LogCommands::domaindebug));
}

void LogCommands::start_rate(const Request& req, std::shared_ptr<Responder> r) {
    int64_t interval = 0;
    std::string error;
    if (!int_arg(req.args, "interval", kDefaultInterval, 1, kMaxInterval, &interval, &error)) {
        r->error("bad_args", error);
        return;
    }
    auto s = std::make_shared<Stream>();
    s->kind = Stream::Kind::kRate;
    s->responder = std::move(r);
    s->responder->stream(rate_row(*env_.state, *s));
    std::weak_ptr<Stream> weak = s;
    DaemonState* state = env_.state;
    s->timer = loop::Timer::create(env_.loop, [weak, state] {
        auto s = weak.lock();
        if (!s || s->done) return;
        if (!s->responder->connected()) {
            s->finish(false);
            return;
        }
        s->responder->stream(rate_row(*state, *s));
    });
    auto ms = static_cast<uint64_t>(interval) * 1000;
    s->timer->start(ms, ms);
    add_stream(std::move(s));
}

void LogCommands::start_hostrate(const Request& req, std::shared_ptr<Responder> r) {
    int64_t interval = 0;
    std::string error, domain;
    if (!string_arg(req.args, "domain", &domain, &error) ||
        !int_arg(req.args, "interval", kDefaultInterval, 1, kMaxInterval, &interval, &error)) {
        r->error("bad_args", error);
        return;
    }
    domain = ascii_lowercase(domain);
    if (domain.empty()) {
        r->error("bad_args", "hostrate needs a domain");
        return;
    }
    delivery::DeliveryManager* m = env_.manager ? env_.manager() : nullptr;
    if (!m) {
        r->error("unavailable", "the spool is still being recovered; try again shortly");
        return;
    }
    if (!m->scheduler().find_domain(domain)) {
        r->error("not_found", "No record of host: " + domain);
        return;
    }
    auto s = std::make_shared<Stream>();
    s->kind = Stream::Kind::kHostRate;
    s->domain = domain;
    s->responder = std::move(r);
    s->responder->stream(hostrate_row(m, *s));
    std::weak_ptr<Stream> weak = s;
    auto manager = env_.manager;
    s->timer = loop::Timer::create(env_.loop, [weak, manager] {
        auto s = weak.lock();
        if (!s || s->done) return;
        if (!s->responder->connected()) {
            s->finish(false);
            return;
        }
        s->responder->stream(hostrate_row(manager ? manager() : nullptr, *s));
    });
    auto ms = static_cast<uint64_t>(interval) * 1000;
    s->timer->start(ms, ms);
    add_stream(std::move(s));
}

void LogCommands::start_tail(const Request& req, std::shared_ptr<Responder> r) {
    std::string log = "mail_logs", error;
    int64_t backlog = 0;
    if (!string_arg(req.args, "log", &log, &error) ||
        !int_arg(req.args, "lines", kDefaultBacklogLines, 0, kMaxBacklogLines, &backlog, &error)) {
        r->error("bad_args", error);
        return;
    }
    std::string path;
    if (log == "mail_logs")
        path = env_.logs_dir + "/mail.current";
    else if (log == "domain_debug")
        path =
            env_.domain_debug ? env_.domain_debug->path() : env_.logs_dir + "/domain_debug.current";
    else {
        r->error("bad_args", "unknown log '" + log + "' (mail_logs, domain_debug)");
        return;
    }
    auto s = std::make_shared<Stream>();
    s->kind = Stream::Kind::kTail;
    s->responder = std::move(r);
    s->log_name = log;
    s->path = path;
    s->backlog = backlog;
    std::weak_ptr<Stream> weak = s;
    uv_loop_t* loop = env_.loop;
    s->timer = loop::Timer::create(loop, [weak, loop] {
        if (auto s = weak.lock()) tail_poll(loop, s);
    });
    s->timer->start(kTailPollMs, kTailPollMs);
    tail_poll(loop, s);
    add_stream(std::move(s));
}

void LogCommands::start_findevent(const Request& req, std::shared_ptr<Responder> r) {
    EventQuery q;
    std::string error;
    int64_t mid = -1, since = -1, until = -1, limit = 0;
    bool current_only = false;
    constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
    if (!int_arg(req.args, "mid", -1, 0, kMax, &mid, &error) ||
        !string_arg(req.args, "sender", &q.sender, &error) ||
        !string_arg(req.args, "recipient", &q.recipient, &error) ||
        !string_arg(req.args, "subject", &q.subject, &error) ||
        !bool_arg(req.args, "regex", &q.regex, &error) ||
        !int_arg(req.args, "since", -1, 0, kMax, &since, &error) ||
        !int_arg(req.args, "until", -1, 0, kMax, &until, &error) ||
        !int_arg(req.args, "limit", kDefaultFindLimit, 1, kMaxFindLimit, &limit, &error) ||
        !bool_arg(req.args, "current_only", &current_only, &error)) {
        r->error("bad_args", error);
        return;
    }
    if (mid >= 0) q.mid = static_cast<uint64_t>(mid);
    if (since >= 0) q.since = static_cast<std::time_t>(since);
    if (until >= 0) q.until = static_cast<std::time_t>(until);
    q.max_messages = static_cast<size_t>(limit);
    if (std::max({q.sender.size(), q.recipient.size(), q.subject.size()}) > kMaxPatternChars) {
        r->error("bad_args", "a search pattern is limited to " + std::to_string(kMaxPatternChars) +
                                 " characters");
        return;
    }
    if (!validate_query(q, &error)) {
        r->error("bad_args", error);
        return;
    }
    if (search_running()) {
        r->error("unavailable", "another findevent is running; try again when it finished");
        return;
    }
    auto s = std::make_shared<Stream>();
    s->kind = Stream::Kind::kSearch;
    s->responder = std::move(r);
    auto result = std::make_shared<EventSearchResult>();
    auto files = std::make_shared<std::vector<std::string>>();
    std::string dir = env_.logs_dir;
    std::shared_ptr<std::atomic<bool>> cancel = s->cancel;
    loop::queue_work(
        env_.loop,
        [dir, current_only, q, result, files, cancel] {
            // A pool thread: nothing may escape (std::regex can throw while matching).
            try {
                *files = mail_log_files(dir, current_only);
                *result = find_events(*files, q, cancel.get());
            } catch (const std::exception& e) {
                result->error = std::string("search failed: ") + e.what();
            }
        },
        [s, result, files] {
            if (s->done || result->cancelled) return;
            send_search_result(*s, *result, *files);
        });
    add_stream(std::move(s));
}

void LogCommands::domaindebug(const Request& req, std::shared_ptr<Responder> r) {
    logs::DomainDebug* dd = env_.domain_debug;
    if (!dd) {
        r->error("unavailable", "domain debug logging is not available");
        return;
    }
    std::string action = "list", domain, error;
    int64_t sessions = 0;
    if (!string_arg(req.args, "action", &action, &error) ||
        !string_arg(req.args, "domain", &domain, &error) ||
        !int_arg(req.args, "sessions", 0, 0, std::numeric_limits<uint32_t>::max(), &sessions,
                 &error)) {
        r->error("bad_args", error);
        return;
    }
    if (action == "list") {
        payloads::DomainDebugList reply{.path = dd->path()};
        for (const auto& e : dd->list())
            reply.domains.push_back({.domain = e.domain,
                                     .sessions_limit = e.max_sessions,
                                     .sessions = e.sessions,
                                     .lines = e.lines,
                                     .source = e.configured ? "config" : "esactl"});
        r->ok(reply);
    } else if (action == "add") {
        if (!dd->add(domain, static_cast<uint32_t>(sessions), &error)) {
            r->error("bad_args", error);
            return;
        }
        spdlog::info("domaindebug: recording {} ({} sessions)", logs::debug_domain_key(domain),
                     sessions ? std::to_string(sessions) : std::string("all"));
        r->ok(payloads::DomainDebugAdded{.domain = logs::debug_domain_key(domain),
                                         .sessions_limit = static_cast<uint64_t>(sessions),
                                         .path = dd->path()});
    } else if (action == "remove") {
        if (!dd->remove(domain)) {
            r->error("not_found", "No domain debug log for: " + ascii_lowercase(domain));
            return;
        }
        spdlog::info("domaindebug: stopped recording {}", logs::debug_domain_key(domain));
        r->ok(payloads::DomainDebugRemoved{.domain = logs::debug_domain_key(domain)});
    } else {
        r->error("bad_args", "action must be add, remove or list");
    }
}

std::unique_ptr<LogCommands> register_log_commands(ControlServer& server, LogCommandsEnv env) {
    auto commands = std::make_unique<LogCommands>(std::move(env));
    commands->register_commands(server);
    return commands;
}

}  // namespace esad::control
