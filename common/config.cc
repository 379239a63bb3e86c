// TOML → Config with defaults and validation; see config.h for the contract.
#include "common/config.h"

#include <fmt/format.h>
#include <unistd.h>

#include <stdexcept>

// toml++ is compiled here, header-only, with its internal assertions turned into an
// exception in every build type. toml++ 3.3 asserts on some malformed input (a non-ASCII
// key, among others): with assert() that aborts a Debug build, and under NDEBUG it becomes
// __builtin_assume, i.e. undefined behaviour. load_config_string() reports such a document
// as a syntax error with a line number instead.
namespace esad::toml_guard {
struct InternalError : std::logic_error {
    using std::logic_error::logic_error;
};
[[noreturn]] inline void fail(const char* expr) {
    throw InternalError(expr);
}
}  // namespace esad::toml_guard
#ifdef NDEBUG
#define ESAD_TOML_NDEBUG_WAS_SET
#undef NDEBUG
#endif
#undef TOML_HEADER_ONLY
#define TOML_HEADER_ONLY 1
#undef TOML_SHARED_LIB
#define TOML_ASSERT(expr) (static_cast<bool>(expr) ? void(0) : ::esad::toml_guard::fail(#expr))
#include <toml++/toml.h>
#ifdef ESAD_TOML_NDEBUG_WAS_SET
#define NDEBUG
#undef ESAD_TOML_NDEBUG_WAS_SET
#endif

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "common/defaults.h"

namespace esad {

namespace {

constexpr uint64_t kMaxMessageSizeCeiling = 1ull
                                            << 31;  // 2 GiB: spool records use 32-bit-safe sizes
const std::set<std::string> kTlsPolicies = {"none", "preferred", "required", "preferred-verify",
                                            "required-verify"};
const std::set<std::string> kLogLevels = {"trace", "debug",    "info", "warning",
                                          "error", "critical", "off"};

uint32_t line_of(const toml::node& node) {
    return node.source().begin.line;
}

// Reads one TOML table, recording every problem instead of stopping at the first.
class TableReader {
  public:
    TableReader(const toml::table& table, std::string path, std::vector<ConfigError>& errors)
        : table_(table), path_(std::move(path)), errors_(errors) {}

    // Call once all known keys were read: everything not consumed is unknown.
    void reject_unknown() {
        for (const auto& [key, node] : table_) {
            if (!seen_.count(std::string(key.str())))
                error(std::string(key.str()), line_of(node), "unknown key");
        }
    }

    void read(const char* key, std::string& out) {
        if (const toml::node* n = take(key)) {
            if (auto v = n->value<std::string>())
                out = *v;
            else
                error(key, line_of(*n), "expected a string");
        }
    }

    void read(const char* key, bool& out) {
        if (const toml::node* n = take(key)) {
            if (auto v = n->value<bool>())
                out = *v;
            else
                error(key, line_of(*n), "expected true or false");
        }
    }

    template <typename Int>
    void read_int(const char* key, Int& out, int64_t min, int64_t max) {
        if (const toml::node* n = take(key)) {
            auto v = n->value<int64_t>();
            if (!v || !n->is_integer()) {
                error(key, line_of(*n), "expected an integer");
            } else if (*v < min || *v > max) {
                error(key, line_of(*n), fmt::format("must be between {} and {}", min, max));
            } else {
                out = static_cast<Int>(*v);
            }
        }
    }

    // Durations are bounded (max_s) so that no setting wraps when the daemon stores it in
    // a narrower type or converts it to milliseconds.
    template <typename Int>
    void read_duration(const char* key, Int& out, uint64_t max_s = kMaxDurationS) {
        if (const toml::node* n = take(key)) {
            std::optional<uint64_t> secs;
            bool too_long = false;
            if (n->is_integer()) {
                int64_t v = *n->value<int64_t>();
                if (v >= 0) secs = static_cast<uint64_t>(v);
            } else if (auto s = n->value<std::string>()) {
                secs = parse_duration(*s);
                too_long = !secs && parse_duration_overflows(*s);
            }
            if (secs && *secs > max_s) too_long = true;
            if (too_long)
                error(key, line_of(*n), fmt::format("must be at most {} seconds", max_s));
            else if (!secs)
                error(key, line_of(*n), "expected a duration such as \"90s\", \"5m\", \"72h\"");
            else
                out = static_cast<Int>(*secs);
        }
    }

    void read(const char* key, std::vector<std::string>& out) {
        if (const toml::node* n = take(key)) {
            const toml::array* arr = n->as_array();
            if (!arr) {
                error(key, line_of(*n), "expected an array of strings");
                return;
            }
            std::vector<std::string> values;
            for (const auto& item : *arr) {
                if (auto v = item.value<std::string>()) {
                    values.push_back(*v);
                } else {
                    error(key, line_of(item), "expected an array of strings");
                    return;
                }
            }
            out = std::move(values);
        }
    }

    const toml::table* subtable(const char* key) {
        const toml::node* n = take(key);
        if (!n) return nullptr;
        if (!n->is_table()) {
            error(key, line_of(*n), "expected a table");
            return nullptr;
        }
        return n->as_table();
    }

    void error(const std::string& key, uint32_t line, std::string message) {
        errors_.push_back({path_.empty() ? key : path_ + "." + key, line, std::move(message)});
    }

    uint32_t line_for(const char* key) const {
        const toml::node* n = table_.get(key);
        return n ? line_of(*n) : 0;
    }

  private:
    const toml::node* take(const char* key) {
        seen_.insert(key);
        return table_.get(key);
    }

    const toml::table& table_;
    std::string path_;
    std::vector<ConfigError>& errors_;
    std::set<std::string> seen_;
};

bool valid_host_port(const std::string& text) {
    // "host:port" or "[v6]:port" with a port in 1..65535.
    size_t colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 >= text.size()) return false;
    std::string host = text.substr(0, colon);
    if (host.front() == '[' && host.back() != ']') return false;
    std::string port = text.substr(colon + 1);
    if (port.size() > 5) return false;
    for (char c : port)
        if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    int p = std::stoi(port);
    return p >= 0 && p <= 65535;
}

void read_daemon(TableReader& r, DaemonConfig& c) {
    r.read("state_dir", c.state_dir);
    r.read("control_socket", c.control_socket);
    r.read("control_group", c.control_group);
    r.read("hostname", c.hostname);
    r.read("user", c.user);
    r.read_int("spool_min_free_bytes", c.spool_min_free_bytes, 0, int64_t{1} << 50);
    r.read_duration("shutdown_timeout", c.shutdown_timeout_s);
    if (c.state_dir.empty()) r.error("state_dir", r.line_for("state_dir"), "must not be empty");
    r.reject_unknown();
}

void read_listener(TableReader& r, ListenerConfig& c) {
    r.read("address", c.address);
    r.read("relay_from", c.relay_from);
    r.read_int("max_message_size", c.max_message_size, 1024, kMaxMessageSizeCeiling);
    r.read_int("max_recipients", c.max_recipients, 1, 100000);
    r.read_int("max_connections", c.max_connections, 1, 100000);
    r.read_int("max_connections_per_client", c.max_connections_per_client, 1, 100000);
    r.read_int("max_hops", c.max_hops, 1, 1000);
    r.read_duration("command_timeout", c.command_timeout_s, kMaxSessionTimeoutS);
    r.read_duration("data_timeout", c.data_timeout_s, kMaxSessionTimeoutS);
    r.read("tls_cert", c.tls_cert);
    r.read("tls_key", c.tls_key);
    if (!valid_host_port(c.address))
        r.error("address", r.line_for("address"), "expected \"host:port\" or \"[ipv6]:port\"");
    if (c.tls_cert.empty() != c.tls_key.empty())
        r.error(c.tls_cert.empty() ? "tls_cert" : "tls_key",
                r.line_for(c.tls_cert.empty() ? "tls_key" : "tls_cert"),
                "tls_cert and tls_key must be set together");
    r.reject_unknown();
}

void read_delivery(TableReader& r, DeliveryConfig& c) {
    r.read_int("port", c.port, 1, 65535);
    r.read_int("max_concurrency", c.max_concurrency, 1, 1000000);
    r.read("source_address", c.source_address);
    r.read("possible_delivery", c.possible_delivery);
    r.read("tls_ca_file", c.tls_ca_file);
    r.reject_unknown();
}

void read_bounce_profile(TableReader& r, BounceProfile& p) {
    r.read_int("max_retries", p.max_retries, 0, 100000);
    r.read_duration("max_queue_time", p.max_queue_time_s);
    r.read_duration("initial_retry", p.initial_retry_s);
    r.read_duration("max_retry", p.max_retry_s);
    r.read("send_dsn", p.send_dsn);
    r.read("delay_warning", p.delay_warning);
    if (p.initial_retry_s == 0)
        r.error("initial_retry", r.line_for("initial_retry"), "must be at least 1s");
    if (p.max_retry_s < p.initial_retry_s)
        r.error("max_retry", r.line_for("max_retry"), "must not be shorter than initial_retry");
    r.reject_unknown();
}

void read_destination(TableReader& r, DestinationControl& d) {
    r.read_int("max_concurrency", d.max_concurrency, 1, 100000);
    r.read_int("max_messages_per_connection", d.max_messages_per_connection, 1, 100000);
    r.read_int("max_recipients_per_hour", d.max_recipients_per_hour, 0, 100000000);
    r.read("tls", d.tls);
    r.read("bounce_profile", d.bounce_profile);
    if (!kTlsPolicies.count(d.tls))
        r.error("tls", r.line_for("tls"),
                "expected one of none, preferred, required, preferred-verify, required-verify");
    r.reject_unknown();
}

void read_logging(TableReader& r, LoggingConfig& c) {
    r.read("dir", c.dir);
    r.read("level", c.level);
    r.read("daemon_log", c.daemon_log);
    r.read("mail_log", c.mail_log);
    r.read("domain_debug", c.domain_debug);
    if (!kLogLevels.count(c.level))
        r.error("level", r.line_for("level"),
                "expected one of trace, debug, info, warning, error, critical, off");
    r.reject_unknown();
}

void read_metrics(TableReader& r, MetricsConfig& c) {
    r.read("address", c.address);
    r.read_int("top_hosts", c.top_hosts, 0, 1000);
    if (!c.address.empty() && !valid_host_port(c.address))
        r.error("address", r.line_for("address"),
                "expected \"host:port\" or \"[ipv6]:port\" (empty: off)");
    r.reject_unknown();
}

// Reads "[name.*]" sub-tables: "default" first so named entries inherit from it.
template <typename T, typename ReadFn>
void read_named_tables(TableReader& top, const char* section, std::map<std::string, T>& out,
                       std::vector<ConfigError>& errors, ReadFn read_fn) {
    const toml::table* tables = top.subtable(section);
    if (!tables) return;
    auto read_one = [&](const std::string& name, const toml::node& node, T& target) {
        if (!node.is_table()) {
            errors.push_back(
                {std::string(section) + "." + name, line_of(node), "expected a table"});
            return;
        }
        TableReader r(*node.as_table(), std::string(section) + "." + name, errors);
        read_fn(r, target);
    };
    if (const toml::node* def = tables->get("default")) read_one("default", *def, out["default"]);
    for (const auto& [key, node] : *tables) {
        std::string name(key.str());
        if (name == "default") continue;
        T entry = out["default"];
        read_one(name, node, entry);
        out[name] = entry;
    }
}

// TOML allows non-ASCII text only inside strings and comments. toml++ 3.3 reaches
// __builtin_unreachable() when it classifies some non-ASCII characters elsewhere (its
// generated is_non_ascii_horizontal_whitespace table), so such a document is refused here,
// before it reaches the parser. Returns the 1-based line of the first offending octet, or 0.
uint32_t non_ascii_outside_strings(std::string_view t) {
    enum class In { kCode, kComment, kBasic, kLiteral, kMultiBasic, kMultiLiteral };
    In in = In::kCode;
    uint32_t line = 1;
    auto starts = [&](size_t i, std::string_view what) { return t.substr(i, what.size()) == what; };
    for (size_t i = 0; i < t.size(); ++i) {
        const char c = t[i];
        if (c == '\n') {
            ++line;
            if (in == In::kComment || in == In::kBasic || in == In::kLiteral) in = In::kCode;
            continue;
        }
        switch (in) {
            case In::kCode:
                if (static_cast<unsigned char>(c) >= 0x80) return line;
                if (c == '#') {
                    in = In::kComment;
                } else if (starts(i, "\"\"\"")) {
                    in = In::kMultiBasic;
                    i += 2;
                } else if (starts(i, "'''")) {
                    in = In::kMultiLiteral;
                    i += 2;
                } else if (c == '"') {
                    in = In::kBasic;
                } else if (c == '\'') {
                    in = In::kLiteral;
                }
                break;
            case In::kComment:
                break;
            case In::kBasic:
                if (c == '\\' && i + 1 < t.size() && t[i + 1] != '\n')
                    ++i;
                else if (c == '"')
                    in = In::kCode;
                break;
            case In::kLiteral:
                if (c == '\'') in = In::kCode;
                break;
            case In::kMultiBasic:
            case In::kMultiLiteral: {
                const bool basic = in == In::kMultiBasic;
                if (basic && c == '\\' && i + 1 < t.size() && t[i + 1] != '\n') {
                    ++i;
                } else if (starts(i, basic ? "\"\"\"" : "'''")) {
                    i += 2;
                    // Up to two more quotes belong to the string ("""a"""" is a").
                    for (int k = 0; k < 2 && i + 1 < t.size() && t[i + 1] == t[i]; ++k)
                        ++i;
                    in = In::kCode;
                }
                break;
            }
        }
    }
    return 0;
}

// The first line at which the parser trips over an internal assertion: the shortest
// prefix of whole lines that still trips it (bisection; a document is a few KiB).
uint32_t line_of_internal_error(const std::string& text, const std::string& origin) {
    std::vector<size_t> ends;  // ends[k]: length of the first k+1 lines
    for (size_t i = 0; i < text.size(); ++i)
        if (text[i] == '\n') ends.push_back(i + 1);
    if (ends.empty() || ends.back() != text.size()) ends.push_back(text.size());
    auto trips = [&](size_t lines) {
        try {
            (void)toml::parse(std::string_view(text).substr(0, ends[lines - 1]),
                              std::string_view(origin));
        } catch (const toml_guard::InternalError&) {
            return true;
        } catch (const toml::parse_error&) {
        }
        return false;
    };
    size_t lo = 0, hi = ends.size();  // prefix(lo) does not trip (0 lines), prefix(hi) does
    while (hi - lo > 1) {
        const size_t mid = lo + (hi - lo) / 2;
        (trips(mid) ? hi : lo) = mid;
    }
    return static_cast<uint32_t>(hi);
}

}  // namespace

std::string ConfigError::to_string(const std::string& origin) const {
    if (line) return fmt::format("{}:{}: {}: {}", origin, line, key, message);
    return fmt::format("{}: {}: {}", origin, key, message);
}

namespace {
// The value and unit of "90s"; nullopt when malformed. `overflow` is set when the text is
// well-formed but its value exceeds kMaxDurationS.
std::optional<uint64_t> duration_value(const std::string& text, bool& overflow) {
    overflow = false;
    if (text.empty() || text.size() > 20) return std::nullopt;
    size_t i = 0;
    uint64_t value = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
        if (value <= kMaxDurationS) value = value * 10 + static_cast<uint64_t>(text[i] - '0');
        ++i;
    }
    if (i == 0) return std::nullopt;
    const std::string unit = text.substr(i);
    uint64_t scale;
    if (unit.empty() || unit == "s")
        scale = 1;
    else if (unit == "m")
        scale = 60;
    else if (unit == "h")
        scale = 3600;
    else if (unit == "d")
        scale = 86400;
    else
        return std::nullopt;
    if (value > kMaxDurationS / scale) {
        overflow = true;
        return std::nullopt;
    }
    return value * scale;
}
}  // namespace

std::optional<uint64_t> parse_duration(const std::string& text) {
    bool overflow;
    return duration_value(text, overflow);
}

bool parse_duration_overflows(const std::string& text) {
    bool overflow;
    (void)duration_value(text, overflow);
    return overflow;
}

Config default_config() {
    Config c;
    c.daemon.state_dir = kDefaultStateDir;
    c.listener.address = kDefaultListenAddress;
    c.listener.relay_from = {"127.0.0.0/8", "::1/128"};
    c.bounce_profiles["default"] = BounceProfile{};
    c.destinations["default"] = DestinationControl{};
    c.origin = "<embedded defaults>";
    return c;
}

ConfigResult load_config_string(const std::string& text, const std::string& origin) {
    ConfigResult result;
    toml::table root;
    if (const uint32_t line = non_ascii_outside_strings(text)) {
        result.errors.push_back(
            {"", line, "non-ASCII character outside a string or comment (TOML keys are ASCII)"});
        return result;
    }
    try {
        root = toml::parse(text, origin);
    } catch (const toml::parse_error& e) {
        result.errors.push_back(
            {"", static_cast<uint32_t>(e.source().begin.line), std::string(e.description())});
        return result;
    } catch (const toml_guard::InternalError&) {
        result.errors.push_back({"", line_of_internal_error(text, origin),
                                 "malformed TOML (the parser rejected this line)"});
        return result;
    }

    Config c = default_config();
    c.origin = origin;
    std::vector<ConfigError>& errors = result.errors;
    TableReader top(root, "", errors);

    if (const toml::table* t = top.subtable("daemon")) {
        TableReader r(*t, "daemon", errors);
        read_daemon(r, c.daemon);
    }
    if (const toml::table* t = top.subtable("listener")) {
        TableReader r(*t, "listener", errors);
        read_listener(r, c.listener);
    }
    if (const toml::table* t = top.subtable("delivery")) {
        TableReader r(*t, "delivery", errors);
        read_delivery(r, c.delivery);
    }
    if (const toml::table* t = top.subtable("dns")) {
        TableReader r(*t, "dns", errors);
        r.read("servers", c.dns.servers);
        r.read("allow_loopback", c.dns.allow_loopback);
        r.read_int("timeout_ms", c.dns.timeout_ms, 100, 60000);
        for (const auto& s : c.dns.servers) {
            bool bare_ip = s.find(':') == std::string::npos || s.find("::") != std::string::npos;
            if (!bare_ip && !valid_host_port(s))
                r.error("servers", r.line_for("servers"), "bad server address '" + s + "'");
        }
        r.reject_unknown();
    }
    if (const toml::table* t = top.subtable("routes")) {
        TableReader r(*t, "routes", errors);
        r.read("file", c.routes.file);
        r.reject_unknown();
    }
    read_named_tables(top, "bounce_profiles", c.bounce_profiles, errors, read_bounce_profile);
    read_named_tables(top, "destinations", c.destinations, errors, read_destination);
    if (const toml::table* t = top.subtable("logging")) {
        TableReader r(*t, "logging", errors);
        read_logging(r, c.logging);
    }
    if (const toml::table* t = top.subtable("metrics")) {
        TableReader r(*t, "metrics", errors);
        read_metrics(r, c.metrics);
    }
    top.reject_unknown();

    for (const auto& [name, dest] : c.destinations) {
        if (!c.bounce_profiles.count(dest.bounce_profile))
            errors.push_back({"destinations." + name + ".bounce_profile", 0,
                              "no bounce profile named '" + dest.bounce_profile + "'"});
    }

    if (c.daemon.control_socket.empty())
        c.daemon.control_socket = c.daemon.state_dir + "/run/esad.sock";
    if (c.logging.dir.empty()) c.logging.dir = c.daemon.state_dir + "/logs";
    if (c.daemon.hostname.empty()) {
        char name[256] = {};
        if (gethostname(name, sizeof name - 1) == 0 && name[0])
            c.daemon.hostname = name;
        else
            c.daemon.hostname = "localhost";
    }
    if (errors.empty()) result.config = std::move(c);
    return result;
}

ConfigResult load_config_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        ConfigResult r;
        r.errors.push_back({"", 0, "cannot read file: " + std::string(strerror(errno))});
        return r;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    return load_config_string(ss.str(), path);
}

std::vector<std::string> restart_only_changes(const Config& a, const Config& b) {
    std::vector<std::string> out;
    auto check = [&](bool changed, const char* key) {
        if (changed) out.push_back(key);
    };
    check(a.daemon.state_dir != b.daemon.state_dir, "daemon.state_dir");
    check(a.daemon.control_socket != b.daemon.control_socket, "daemon.control_socket");
    check(a.daemon.control_group != b.daemon.control_group, "daemon.control_group");
    check(a.daemon.user != b.daemon.user, "daemon.user");
    check(a.listener.address != b.listener.address, "listener.address");
    check(a.listener.tls_cert != b.listener.tls_cert, "listener.tls_cert");
    check(a.listener.tls_key != b.listener.tls_key, "listener.tls_key");
    check(a.dns.servers != b.dns.servers, "dns.servers");
    check(a.logging.dir != b.logging.dir, "logging.dir");
    check(a.metrics.address != b.metrics.address, "metrics.address");
    return out;
}

}  // namespace esad
