// esad configuration: the typed form of /etc/esad/esad.toml (DESIGN.md §8).
//
// API: load_config_file(path) / load_config_string(text, origin) parse TOML, apply the
// embedded defaults for every missing key and validate. Validation never stops at the
// first problem: every error names its key path and source line, so `esad --check-config`
// can print them all. Unknown keys are errors (a typo must not silently fall back to a
// default). An empty document is the embedded default configuration.
//
// Which settings a SIGHUP may change live is decided by reload_diff().
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace esad {

struct DaemonConfig {
    std::string state_dir;       // spool, run/ and logs/ live below it unless configured
    std::string control_socket;  // default: <state_dir>/run/esad.sock
    std::string control_group;   // members may use the control socket; empty: none
    std::string hostname;        // banner / Received / prompt; default: gethostname()
    std::string user;            // drop privileges to this user after binding (when root)
    uint64_t spool_min_free_bytes = 64ull << 20;  // below this free space: 452 4.3.1 at MAIL
    uint64_t shutdown_timeout_s = 30;  // graceful stop: transactions get this long to finish
};

// How the spool stores messages: "segment" (daemon/spool/segment_store.h: commit batches
// appended to segment files, no file per message; also reads what a file layout left in
// queue/), "hashed" (daemon/spool/file_store.h: queue/<xx>/<MID>, O_TMPFILE + linkat, batched
// removals), "flat" (queue/<MID>, tmp/ + rename) or "rocksdb" (daemon/spool/rocks_store.h: an
// embedded RocksDB, one synced write per batch; only in builds with RocksDB, also reads queue/).
// The file layouts read each other's files.
struct SpoolConfig {
    std::string layout = "segment";
    // Recently committed messages kept in memory so that delivery reads them without the
    // disk (daemon/spool/recent_cache.h); 0 turns it off. Live on reload.
    uint64_t recent_cache = 8ull << 20;
};

struct ListenerConfig {
    std::string address;  // "host:port", "[v6]:port"
    std::vector<std::string> relay_from;
    uint64_t max_message_size = 10 * 1024 * 1024;
    uint32_t max_recipients = 1000;
    uint32_t max_connections = 1000;
    uint32_t max_connections_per_client = 100;
    uint32_t max_hops = 100;
    // Longest DATA line accepted (octets, without CRLF and a transparency dot). Longer than
    // RFC 5321's 998 on purpose: Postfix and Exim relay such lines; delivery folds them.
    uint32_t max_line_length = 65536;
    uint32_t max_errors = 10;  // protocol errors + refused RCPTs before 421 (hard error limit)
    uint32_t command_timeout_s = 300;  // RFC 5321 §4.5.3.2: 5 minutes
    uint32_t data_timeout_s = 600;     // whole DATA phase
    std::string tls_cert;
    std::string tls_key;
};

struct DeliveryConfig {
    uint16_t port = 25;
    uint32_t max_concurrency = 10000;
    std::string source_address;
    bool possible_delivery = false;
    // Message content in memory for delivery, across all sessions (bytes, live).
    uint64_t content_buffer_budget = 64ull << 20;
    std::string tls_ca_file;  // trusted CAs for *-verify TLS policies; empty: system store
    // The SMTP client's deadlines per stage, RFC 5321 §4.5.3.2 defaults (seconds, live).
    uint32_t greeting_timeout_s = 300;    // the server's 220 after connecting
    uint32_t mail_timeout_s = 300;        // reply to MAIL FROM
    uint32_t rcpt_timeout_s = 300;        // reply to each RCPT TO
    uint32_t data_init_timeout_s = 120;   // 354 after DATA
    uint32_t data_block_timeout_s = 180;  // each block of content sent
    uint32_t data_done_timeout_s = 600;   // reply to the final "."
};

struct DnsConfig {
    std::vector<std::string> servers;  // empty: /etc/resolv.conf
    bool allow_loopback = false;       // let MX/A answers point at 127.0.0.0/8 or ::1 (labs, tests)
    uint32_t timeout_ms = 5000;
};

struct RoutesConfig {
    std::string file;  // empty: no static routes
};

struct BounceProfile {
    uint32_t max_retries = 100;
    uint64_t max_queue_time_s = 72 * 3600;
    uint64_t initial_retry_s = 60;
    uint64_t max_retry_s = 3600;
    bool send_dsn = true;
    bool delay_warning = false;
};

struct DestinationControl {
    uint32_t max_concurrency = 500;
    uint32_t max_messages_per_connection = 50;
    uint32_t max_recipients_per_hour = 0;  // 0: unlimited
    std::string tls = "preferred";  // none|preferred|required|preferred-verify|required-verify
    std::string bounce_profile = "default";
};

struct LoggingConfig {
    std::string dir;  // default: <state_dir>/logs
    std::string level = "info";
    std::string daemon_log;  // the daemon's own log file; empty: stderr
    bool mail_log = true;
    std::vector<std::string> domain_debug;
};

struct MetricsConfig {
    std::string address;      // Prometheus GET /metrics on "host:port"; empty: off
    uint32_t top_hosts = 20;  // per-host series for this many busiest hosts (+ down hosts)
};

// `esactl packetcapture` (docs/capture.md): limits of the esad-capture helper. Captures
// live in <state_dir>/captures.
struct CaptureConfig {
    uint32_t keep = 10;                      // capture files kept (oldest removed first)
    uint64_t max_size_bytes = 100ull << 20;  // default --max-size
    uint64_t duration_s = 600;               // default --duration
    uint64_t min_free_bytes = 256ull << 20;  // stop when the file system has less free
};

// esad-web, the Delivery Status page (docs/web.md). The daemon ignores this section.
struct WebConfig {
    std::string address = "127.0.0.1:8025";  // "host:port" the page is served on
    std::string token_file;     // operator password/token for Retry buttons; empty: read-only
    uint32_t max_hosts = 1000;  // destinations listed (busiest first)
};

struct Config {
    DaemonConfig daemon;
    SpoolConfig spool;
    ListenerConfig listener;
    DeliveryConfig delivery;
    DnsConfig dns;
    RoutesConfig routes;
    std::map<std::string, BounceProfile> bounce_profiles;    // always has "default"
    std::map<std::string, DestinationControl> destinations;  // always has "default"
    LoggingConfig logging;
    MetricsConfig metrics;
    CaptureConfig capture;
    WebConfig web;
    std::string origin;  // file path or "<embedded defaults>"
};

struct ConfigError {
    std::string key;    // dotted key path, e.g. "listener.max_recipients"
    uint32_t line = 0;  // 1-based; 0 when unknown
    std::string message;
    std::string to_string(const std::string& origin) const;
};

struct ConfigResult {
    std::optional<Config> config;
    std::vector<ConfigError> errors;
    bool ok() const { return config.has_value(); }
};

ConfigResult load_config_string(const std::string& text, const std::string& origin);
ConfigResult load_config_file(const std::string& path);
Config default_config();

// Every duration setting is at most this long (100 years); session timeouts at most a day.
inline constexpr uint64_t kMaxDurationS = 100ull * 365 * 86400;
inline constexpr uint64_t kMaxSessionTimeoutS = 86400;

// Parses "90s", "5m", "72h", "2d" or a bare number of seconds; nullopt when malformed or
// longer than kMaxDurationS (parse_duration_overflows() tells the two apart).
std::optional<uint64_t> parse_duration(const std::string& text);
bool parse_duration_overflows(const std::string& text);

// Settings that differ between `before` and `after` and need a restart to take effect.
std::vector<std::string> restart_only_changes(const Config& before, const Config& after);

}  // namespace esad
