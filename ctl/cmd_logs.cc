// esactl rate, hostrate, tail, findevent, domaindebug (see cmd_logs.h).
//
// The streaming commands (rate, hostrate, tail) print "Type Ctrl-C to return to the main
// prompt." and then rows until Ctrl-C; `--count N` stops after N rows (tail: N lines) for
// scripts. With --json each row is printed as one JSON object per line. Streams wait for the
// daemon without a timeout (rows may be minutes apart); a daemon that goes away ends them
// with exit 1.
#include "ctl/cmd_logs.h"

#include <unistd.h>

#include <ctime>
#include <iostream>
#include <ostream>

#include "common/counters.h"
#include "common/format.h"
#include "common/rate_tracker.h"
#include "ctl/render.h"

namespace esad::ctl {

namespace {

using nlohmann::json;

constexpr const char* kCtrlC = "Type Ctrl-C to return to the main prompt.";

int usage(Context& ctx, const std::string& text) {
    ctx.err << "esactl: usage: " << text << "\n";
    return kExitUsage;
}

std::string rjust(const std::string& s, size_t width) {
    return s.size() < width ? std::string(width - s.size(), ' ') + s : " " + s;
}

std::string clock_time(std::time_t v) {
    struct tm tm_local {};
    localtime_r(&v, &tm_local);
    char buf[16];
    size_t n = std::strftime(buf, sizeof buf, "%H:%M:%S", &tm_local);
    return std::string(buf, n);
}

template <class T>
std::string num(T v) {
    return std::to_string(v);
}

bool parse_count(const std::string& text, int64_t min, int64_t* out) {
    try {
        size_t used = 0;
        long long v = std::stoll(text, &used);
        if (used != text.size() || v < min) return false;
        *out = v;
        return true;
    } catch (...) {
        return false;
    }
}

// "1700000000", "2026-11-27", "2026-11-27 23:16[:19]" (or with T), "30m" / "2h" / "1d" ago.
bool parse_time(const std::string& text, std::time_t* out) {
    if (text.empty()) return false;
    if (text.find_first_not_of("0123456789") == std::string::npos) {
        int64_t v = 0;
        if (!parse_count(text, 0, &v)) return false;
        *out = static_cast<std::time_t>(v);
        return true;
    }
    char unit = text.back();
    std::string digits = text.substr(0, text.size() - 1);
    if ((unit == 's' || unit == 'm' || unit == 'h' || unit == 'd') && !digits.empty() &&
        digits.find_first_not_of("0123456789") == std::string::npos) {
        int64_t v = 0;
        if (!parse_count(digits, 0, &v)) return false;
        int64_t mult = unit == 's' ? 1 : unit == 'm' ? 60 : unit == 'h' ? 3600 : 86400;
        *out = std::time(nullptr) - static_cast<std::time_t>(v * mult);
        return true;
    }
    std::string t = text;
    for (auto& c : t)
        if (c == 'T') c = ' ';
    for (const char* fmt : {"%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"}) {
        struct tm tm {};
        const char* end = strptime(t.c_str(), fmt, &tm);
        if (end && *end == '\0') {
            tm.tm_isdst = -1;
            *out = mktime(&tm);
            return *out != static_cast<std::time_t>(-1);
        }
    }
    return false;
}

int report_error(Context& ctx, const control::Reply& reply) {
    if (ctx.json)
        ctx.out << json{{"error", {{"code", reply.error_code}, {"message", reply.error_message}}}}
                       .dump(2)
                << "\n";
    ctx.err << "esactl: " << reply.error_message << "\n";
    return reply.error_code == "bad_args" || reply.error_code == "unknown_command" ? kExitUsage
                                                                                   : kExitFailed;
}

// Runs a streaming request: on_item sees every data line until the end line, an error, or
// until it returns false (then the connection is closed, which ends the daemon's stream).
int run_stream(Context& ctx, const std::string& cmd, const json& args,
               const std::function<bool(const json&)>& on_item) {
    Client client;
    std::string error;
    if (!client.connect(ctx.socket_path, 0, &error)) {
        ctx.err << "esactl: " << error << "\n";
        return kExitUnreachable;
    }
    std::optional<control::Reply> reply = client.call(cmd, args, &error);
    if (!reply) {
        ctx.err << "esactl: " << error << "\n";
        return kExitUnreachable;
    }
    for (;;) {
        if (!reply->ok) return report_error(ctx, *reply);
        if (reply->end) return kExitOk;
        if (!on_item(reply->data)) return kExitOk;
        reply = client.next(&error);
        if (!reply) {
            ctx.err << "esactl: " << error << "\n";
            return kExitFailed;
        }
    }
}

// run_stream with each frame parsed into its payload type T; a frame that does not fit ends
// the stream as a malformed reply. on_item gets the parsed frame and its raw JSON (--json).
template <payloads::HasFields T, class F>
int run_typed_stream(Context& ctx, const std::string& cmd, const json& args, F on_item) {
    int bad = kExitOk;
    int rc = run_stream(ctx, cmd, args, [&](const json& raw) {
        std::string why;
        std::optional<T> item = payloads::try_parse<T>(raw, &why);
        if (!item) {
            bad = malformed_reply(ctx, cmd, why);
            return false;
        }
        return on_item(*item, raw);
    });
    return rc != kExitOk ? rc : bad;
}

// Reads "--count N" (and "--lines N" when lines != nullptr) out of args; the rest stay.
bool stream_options(std::vector<std::string>& args, int64_t* count, int64_t* lines) {
    std::vector<std::string> rest;
    for (size_t i = 0; i < args.size(); ++i) {
        if (args[i] == "--count" && i + 1 < args.size()) {
            if (!parse_count(args[++i], 1, count)) return false;
        } else if (lines && args[i] == "--lines" && i + 1 < args.size()) {
            if (!parse_count(args[++i], 0, lines)) return false;
        } else {
            rest.push_back(args[i]);
        }
    }
    args = rest;
    return true;
}

// rate and hostrate: a row per frame under `header` (or the frame's JSON with --json) until
// `count` rows (0: until Ctrl-C).
template <class Row>
int print_rows(Context& ctx, const std::string& cmd, const json& args, int64_t count,
               const std::string& header, std::string (*render)(const Row&)) {
    int64_t rows = 0;
    bool started = false;
    return run_typed_stream<Row>(ctx, cmd, args, [&](const Row& row, const json& raw) {
        if (ctx.json) {
            ctx.out << raw.dump() << "\n";
        } else {
            if (!started) ctx.out << kCtrlC << "\n\n" << header;
            started = true;
            ctx.out << render(row);
        }
        ctx.out << std::flush;
        return count == 0 || ++rows < count;
    });
}

int cmd_rate(Context& ctx, const std::vector<std::string>& in) {
    const char* kUsage = "rate [--count N] [SECONDS]";
    std::vector<std::string> args = in;
    int64_t count = 0, interval = 10;
    if (!stream_options(args, &count, nullptr) || args.size() > 1) return usage(ctx, kUsage);
    if (!args.empty() && !parse_count(args[0], 1, &interval)) return usage(ctx, kUsage);
    return print_rows<payloads::RateRow>(ctx, "rate", {{"interval", interval}}, count,
                                         rate_header(), rate_row);
}

int cmd_hostrate(Context& ctx, const std::vector<std::string>& in) {
    const char* kUsage = "hostrate [--count N] DOMAIN [SECONDS]";
    std::vector<std::string> args = in;
    int64_t count = 0, interval = 10;
    if (!stream_options(args, &count, nullptr) || args.empty() || args.size() > 2)
        return usage(ctx, kUsage);
    if (args.size() == 2 && !parse_count(args[1], 1, &interval)) return usage(ctx, kUsage);
    return print_rows<payloads::HostRateRow>(ctx, "hostrate",
                                             {{"domain", args[0]}, {"interval", interval}}, count,
                                             hostrate_header(), hostrate_row);
}

int cmd_tail(Context& ctx, const std::vector<std::string>& in) {
    const char* kUsage = "tail [--count N] [--lines N] [mail_logs|domain_debug]";
    std::vector<std::string> args = in;
    int64_t count = 0, backlog = 10;
    if (!stream_options(args, &count, &backlog) || args.size() > 1) return usage(ctx, kUsage);
    std::string log = args.empty() ? "mail_logs" : args[0];
    int64_t printed = 0;
    bool first = true;
    return run_typed_stream<payloads::TailFrame>(
        ctx, "tail", {{"log", log}, {"lines", backlog}},
        [&](const payloads::TailFrame& item, const json&) {
            if (first && !ctx.json && isatty(STDOUT_FILENO)) ctx.out << kCtrlC << "\n\n";
            first = false;
            for (const auto& line : item.lines) {
                if (ctx.json)
                    ctx.out << json{{"log", log}, {"line", line}}.dump() << "\n";
                else
                    ctx.out << line << "\n";
                if (count > 0 && ++printed >= count) {
                    ctx.out << std::flush;
                    return false;
                }
            }
            ctx.out << std::flush;
            return true;
        });
}

int cmd_findevent(Context& ctx, const std::vector<std::string>& args) {
    const char* kUsage =
        "findevent [MID] [--mid N] [--sender RE] [--recipient RE] [--subject RE] [--regex] "
        "[--since TIME] [--until TIME] [--current] [--limit N]";
    json req = json::object();
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        bool has_value = i + 1 < args.size();
        int64_t n = 0;
        std::time_t t = 0;
        if (a == "--regex") {
            req["regex"] = true;
        } else if (a == "--current") {
            req["current_only"] = true;
        } else if ((a == "--sender" || a == "--recipient" || a == "--subject") && has_value) {
            req[a.substr(2)] = args[++i];
        } else if ((a == "--since" || a == "--until") && has_value) {
            if (!parse_time(args[++i], &t)) {
                ctx.err << "esactl: " << a << ": expected Unix seconds, YYYY-MM-DD[ HH:MM[:SS]] "
                        << "or an age like 30m, 2h, 1d\n";
                return kExitUsage;
            }
            req[a.substr(2)] = static_cast<int64_t>(t);
        } else if (a == "--limit" && has_value) {
            if (!parse_count(args[++i], 1, &n)) return usage(ctx, kUsage);
            req["limit"] = n;
        } else if (a == "--mid" && has_value) {
            if (!parse_count(args[++i], 0, &n)) return usage(ctx, kUsage);
            req["mid"] = n;
        } else if (!a.empty() && a[0] != '-' && !req.contains("mid") && parse_count(a, 0, &n)) {
            req["mid"] = n;
        } else {
            return usage(ctx, kUsage);
        }
    }
    // The summary frame first, then one frame (with a "mid") per message.
    payloads::FindEventSummary summary;
    std::vector<payloads::FindEventMessage> messages;
    json summary_raw = json::object(), messages_raw = json::array();
    std::string why;
    int rc = run_stream(ctx, "findevent", req, [&](const json& item) {
        if (item.is_object() && item.contains("mid")) {
            std::optional<payloads::FindEventMessage> m =
                payloads::try_parse<payloads::FindEventMessage>(item, &why);
            if (!m) return false;
            messages.push_back(std::move(*m));
            messages_raw.push_back(item);
        } else {
            std::optional<payloads::FindEventSummary> s =
                payloads::try_parse<payloads::FindEventSummary>(item, &why);
            if (!s) return false;
            summary = std::move(*s);
            summary_raw = item;
        }
        return true;
    });
    if (rc != kExitOk) return rc;
    if (!why.empty()) return malformed_reply(ctx, "findevent", why);
    if (ctx.json) {
        summary_raw["messages"] = messages_raw;
        ctx.out << summary_raw.dump(2) << "\n";
        return messages.empty() ? kExitFailed : kExitOk;
    }
    if (messages.empty()) {
        ctx.out << "No results were found\n";
        return kExitFailed;
    }
    for (const auto& m : messages) {
        ctx.out << "MID " << m.mid << "\n";
        for (const auto& line : m.lines)
            ctx.out << "  " << line << "\n";
        if (m.truncated) ctx.out << "  (more lines not shown)\n";
        ctx.out << "\n";
    }
    if (summary.truncated)
        ctx.out << "Showing the " << messages.size() << " most recent of "
                << thousands(summary.matches)
                << " matching messages; narrow the search or raise --limit.\n";
    return kExitOk;
}

void render_domaindebug_added(std::ostream& o, const payloads::DomainDebugAdded& d) {
    uint64_t n = d.sessions_limit;
    o << "Domain debug logging started for " << d.domain << " ("
      << (n ? "next " + std::to_string(n) + " session" + (n == 1 ? "" : "s")
            : std::string("every session"))
      << ") in " << d.path << ".\n";
}

void render_domaindebug_removed(std::ostream& o, const payloads::DomainDebugRemoved& d) {
    o << "Domain debug logging stopped for " << d.domain << ".\n";
}

void render_domaindebug_list(std::ostream& o, const payloads::DomainDebugList& d) {
    o << "Domain debug log: " << d.path << "\n";
    if (d.domains.empty()) {
        o << "No domains are being debugged.\n";
        return;
    }
    o << "\nDomain                              Sessions        Lines  Source\n";
    for (const auto& e : d.domains) {
        uint64_t limit = e.sessions_limit;
        std::string sessions =
            std::to_string(e.sessions) + (limit ? " of " + std::to_string(limit) : std::string());
        std::string domain = e.domain;
        if (domain.size() < 36)
            domain.append(36 - domain.size(), ' ');
        else
            domain += " ";
        std::string s = sessions;
        if (s.size() < 12) s.append(12 - s.size(), ' ');
        o << domain << s << rjust(std::to_string(e.lines), 9) << "  " << e.source << "\n";
    }
}

int cmd_domaindebug(Context& ctx, const std::vector<std::string>& args) {
    const char* kUsage = "domaindebug add DOMAIN [--sessions N] | remove DOMAIN | list";
    if (args.empty()) return usage(ctx, kUsage);
    json req = {{"action", args[0]}};
    if (args[0] == "list") {
        if (args.size() != 1) return usage(ctx, kUsage);
    } else if (args[0] == "remove") {
        if (args.size() != 2) return usage(ctx, kUsage);
        req["domain"] = args[1];
    } else if (args[0] == "add") {
        int64_t sessions = 0;
        std::string domain;
        for (size_t i = 1; i < args.size(); ++i) {
            if (args[i] == "--sessions" && i + 1 < args.size()) {
                if (!parse_count(args[++i], 1, &sessions)) return usage(ctx, kUsage);
            } else if (domain.empty() && args[i][0] != '-') {
                domain = args[i];
            } else {
                return usage(ctx, kUsage);
            }
        }
        if (domain.empty()) return usage(ctx, kUsage);
        req["domain"] = domain;
        req["sessions"] = sessions;
    } else {
        return usage(ctx, kUsage);
    }
    if (args[0] == "add") return show_reply(ctx, "domaindebug", req, render_domaindebug_added);
    if (args[0] == "remove") return show_reply(ctx, "domaindebug", req, render_domaindebug_removed);
    return show_reply(ctx, "domaindebug", req, render_domaindebug_list);
}

}  // namespace

std::string rate_header() {
    return " Time    Connections Recipients          Recipients            Queue\n"
           "          In   Out   Received    Delta   Completed    Delta    K-Used\n";
}

std::string rate_row(const payloads::RateRow& row) {
    return clock_time(row.time) + rjust(num(row.connections_in), 4) +
           rjust(num(row.connections_out), 6) + rjust(num(row.recipients_received), 11) +
           rjust(num(row.recipients_received_delta), 9) + rjust(num(row.recipients_completed), 12) +
           rjust(num(row.recipients_completed_delta), 9) + rjust(num(row.kilobytes_used), 10) +
           "\n";
}

std::string hostrate_header() {
    return "   Time      Host  CrtCncOut   ActvRcp ActvRcp  DlvRcp HrdBncRcp  SftBncEvt\n"
           "            Status                       Delta   Delta     Delta      Delta\n";
}

std::string hostrate_row(const payloads::HostRateRow& row) {
    return clock_time(row.time) + rjust(row.host_status, 10) +
           rjust(num(row.current_outbound_connections), 10) +
           rjust(num(row.active_recipients), 10) + rjust(num(row.active_recipients_delta), 8) +
           rjust(num(row.delivered_recipients_delta), 8) +
           rjust(num(row.hard_bounced_recipients_delta), 10) +
           rjust(num(row.soft_bounced_events_delta), 11) + "\n";
}

void render_rates(std::ostream& out, const payloads::StatusReply& status) {
    if (!status.rates) return;
    const auto& rates = *status.rates;
    out << pad_label("Rates (Events Per Hour):", 0, 31) << "   1-Minute  5-Minutes  15-Minutes\n";
    for (Counter c : RateTracker::kRateCounters) {
        const CounterInfo& info = counter_info(c);
        auto it = rates.find(std::string(info.key));
        payloads::RateValues r = it == rates.end() ? payloads::RateValues{} : it->second;
        out << pad_label(std::string(info.label), 4, 31) << num_field(r.per_1m, 11)
            << num_field(r.per_5m, 11) << num_field(r.per_15m, 12) << "\n";
    }
    out << "\n";
}

std::vector<Command> log_commands() {
    return {
        {"rate", "[--count N] [SECONDS]",
         "connections, received and completed recipients every SECONDS (default 10)", cmd_rate},
        {"hostrate", "[--count N] DOMAIN [SECONDS]",
         "one destination's status and counters every SECONDS (default 10)", cmd_hostrate},
        {"tail", "[--count N] [--lines N] [mail_logs|domain_debug]",
         "follow a log: the last lines (default 10), then new ones until Ctrl-C", cmd_tail},
        {"findevent",
         "[MID] [--sender RE] [--recipient RE] [--subject RE] [--since T] [--until T] [--regex] "
         "[--current] [--limit N]",
         "message tracking: every mail log line of the matching messages", cmd_findevent},
        {"domaindebug", "add DOMAIN [--sessions N] | remove DOMAIN | list",
         "record the SMTP conversations with a domain in the domain debug log", cmd_domaindebug},
    };
}

}  // namespace esad::ctl
