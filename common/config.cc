// TOML → Config with defaults and validation; see config.h for the contract.
#include "common/config.h"

#include <fmt/format.h>
#include <unistd.h>

#include <toml++/toml.h>
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

    void read_duration(const char* key, uint64_t& out) {
        if (const toml::node* n = take(key)) {
            std::optional<uint64_t> secs;
            if (n->is_integer()) {
                int64_t v = *n->value<int64_t>();
                if (v >= 0) secs = static_cast<uint64_t>(v);
            } else if (auto s = n->value<std::string>()) {
                secs = parse_duration(*s);
            }
            if (!secs)
                error(key, line_of(*n), "expected a duration such as \"90s\", \"5m\", \"72h\"");
            else
                out = *secs;
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
    r.read_int("max_line_length", c.max_line_length, 998, 1u << 24);
    uint64_t cmd = c.command_timeout_s, data = c.data_timeout_s;
    r.read_duration("command_timeout", cmd);
    r.read_duration("data_timeout", data);
    c.command_timeout_s = static_cast<uint32_t>(cmd);
    c.data_timeout_s = static_cast<uint32_t>(data);
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

void read_capture(TableReader& r, CaptureConfig& c) {
    r.read_int("keep", c.keep, 1, 1000);
    r.read_int("max_size_bytes", c.max_size_bytes, 4096, int64_t{1} << 40);
    r.read_duration("duration", c.duration_s);
    r.read_int("min_free_bytes", c.min_free_bytes, 0, int64_t{1} << 50);
    if (c.duration_s == 0) r.error("duration", r.line_for("duration"), "must be at least 1s");
    r.reject_unknown();
}

void read_web(TableReader& r, WebConfig& c) {
    r.read("address", c.address);
    r.read("token_file", c.token_file);
    r.read_int("max_hosts", c.max_hosts, 1, 1000000);
    if (!valid_host_port(c.address))
        r.error("address", r.line_for("address"), "expected \"host:port\" or \"[ipv6]:port\"");
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

}  // namespace

std::string ConfigError::to_string(const std::string& origin) const {
    if (line) return fmt::format("{}:{}: {}: {}", origin, line, key, message);
    return fmt::format("{}: {}: {}", origin, key, message);
}

std::optional<uint64_t> parse_duration(const std::string& text) {
    if (text.empty() || text.size() > 20) return std::nullopt;
    size_t i = 0;
    uint64_t value = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
        value = value * 10 + static_cast<uint64_t>(text[i] - '0');
        ++i;
    }
    if (i == 0) return std::nullopt;
    std::string unit = text.substr(i);
    if (unit.empty() || unit == "s") return value;
    if (unit == "m") return value * 60;
    if (unit == "h") return value * 3600;
    if (unit == "d") return value * 86400;
    return std::nullopt;
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
    try {
        root = toml::parse(text, origin);
    } catch (const toml::parse_error& e) {
        result.errors.push_back(
            {"", static_cast<uint32_t>(e.source().begin.line), std::string(e.description())});
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
    if (const toml::table* t = top.subtable("capture")) {
        TableReader r(*t, "capture", errors);
        read_capture(r, c.capture);
    }
    if (const toml::table* t = top.subtable("web")) {
        TableReader r(*t, "web", errors);
        read_web(r, c.web);
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
    check(a.daemon.spool_min_free_bytes != b.daemon.spool_min_free_bytes,
          "daemon.spool_min_free_bytes");
    check(a.daemon.shutdown_timeout_s != b.daemon.shutdown_timeout_s, "daemon.shutdown_timeout");
    check(a.listener.address != b.listener.address, "listener.address");
    check(a.listener.tls_cert != b.listener.tls_cert, "listener.tls_cert");
    check(a.listener.tls_key != b.listener.tls_key, "listener.tls_key");
    check(a.dns.servers != b.dns.servers, "dns.servers");
    check(a.logging.dir != b.logging.dir, "logging.dir");
    check(a.metrics.address != b.metrics.address, "metrics.address");
    return out;
}

}  // namespace esad
