// Configuration loading: defaults, every section, and each validation error path.
#include <catch2/catch.hpp>

#include "common/config.h"

using namespace esad;

namespace {
// The first error, or "" when the text is valid.
ConfigError first_error(const std::string& text) {
    auto r = load_config_string(text, "t.toml");
    REQUIRE_FALSE(r.ok());
    REQUIRE_FALSE(r.errors.empty());
    return r.errors.front();
}
}  // namespace

TEST_CASE("an empty document is the embedded defaults") {
    auto r = load_config_string("", "<embedded defaults>");
    REQUIRE(r.ok());
    const Config& c = *r.config;
    CHECK(c.daemon.state_dir == "var");
    CHECK(c.daemon.control_socket == "var/run/esad.sock");
    CHECK(c.listener.address == "127.0.0.1:2525");
    CHECK(c.listener.relay_from == std::vector<std::string>{"127.0.0.0/8", "::1/128"});
    CHECK(c.delivery.port == 25);
    CHECK(c.delivery.max_concurrency == 10000);
    // RFC 5321 §4.5.3.2 client deadlines.
    CHECK(c.delivery.greeting_timeout_s == 300);
    CHECK(c.delivery.mail_timeout_s == 300);
    CHECK(c.delivery.rcpt_timeout_s == 300);
    CHECK(c.delivery.data_init_timeout_s == 120);
    CHECK(c.delivery.data_block_timeout_s == 180);
    CHECK(c.delivery.data_done_timeout_s == 600);
    CHECK(c.bounce_profiles.at("default").max_retries == 100);
    CHECK(c.bounce_profiles.at("default").max_queue_time_s == 72 * 3600);
    CHECK(c.destinations.at("default").max_concurrency == 500);
    CHECK(c.destinations.at("default").max_messages_per_connection == 50);
    CHECK(c.logging.dir == "var/logs");
    CHECK_FALSE(c.daemon.hostname.empty());
}

TEST_CASE("every section is read") {
    auto r = load_config_string(R"(
[daemon]
state_dir = "/var/lib/esad"
control_socket = "/run/esad/esad.sock"
hostname = "mx1.example.net"
[listener]
address = "[::1]:2526"
relay_from = ["10.0.0.0/8"]
max_message_size = 2048000
max_recipients = 50
command_timeout = "2m"
[delivery]
port = 2525
possible_delivery = true
rcpt_timeout = "90s"
content_buffer_budget = 8388608
data_done_timeout = 1200
[dns]
servers = ["127.0.0.1:5353"]
[routes]
file = "routes.txt"
[bounce_profiles.default]
max_retries = 5
initial_retry = "10s"
[bounce_profiles.fast]
max_queue_time = "1h"
[destinations.default]
tls = "required"
[destinations."example.com"]
max_concurrency = 3
bounce_profile = "fast"
[logging]
level = "debug"
)",
                                "t.toml");
    REQUIRE(r.ok());
    const Config& c = *r.config;
    CHECK(c.daemon.control_socket == "/run/esad/esad.sock");
    CHECK(c.daemon.hostname == "mx1.example.net");
    CHECK(c.listener.address == "[::1]:2526");
    CHECK(c.listener.max_recipients == 50);
    CHECK(c.listener.command_timeout_s == 120);
    CHECK(c.delivery.port == 2525);
    CHECK(c.delivery.possible_delivery);
    CHECK(c.delivery.rcpt_timeout_s == 90);
    CHECK(c.delivery.content_buffer_budget == 8ull << 20);
    CHECK(c.delivery.data_done_timeout_s == 1200);
    CHECK(c.delivery.mail_timeout_s == 300);
    CHECK(c.dns.servers == std::vector<std::string>{"127.0.0.1:5353"});
    CHECK(c.bounce_profiles.at("default").max_retries == 5);
    // Named profiles and destinations inherit from "default".
    CHECK(c.bounce_profiles.at("fast").max_retries == 5);
    CHECK(c.bounce_profiles.at("fast").max_queue_time_s == 3600);
    CHECK(c.destinations.at("example.com").tls == "required");
    CHECK(c.destinations.at("example.com").max_concurrency == 3);
    CHECK(c.logging.level == "debug");
    CHECK(c.logging.dir == "/var/lib/esad/logs");
}

TEST_CASE("validation errors name the key path and line") {
    struct Case {
        std::string text;
        std::string key;
        uint32_t line;
        std::string fragment;
    };
    std::vector<Case> cases = {
        {"[listener]\nmax_recipients = \"many\"", "listener.max_recipients", 2, "integer"},
        {"[listener]\n\nmax_recipients = 0", "listener.max_recipients", 3, "between"},
        // A float is not an integer, and one past int64_t's range is not undefined behaviour.
        {"[listener]\nmax_recipients = 5.1e301", "listener.max_recipients", 2, "integer"},
        {"[listener]\nmax_recipients = 2.0", "listener.max_recipients", 2, "integer"},
        {"[listener]\naddress = \"nowhere\"", "listener.address", 2, "host:port"},
        {"[listener]\ntls_cert = \"/c.pem\"", "listener.tls_key", 2, "together"},
        {"[listener]\nrelay_from = \"x\"", "listener.relay_from", 2, "array"},
        {"[listener]\nrelay_from = [1]", "listener.relay_from", 2, "array of strings"},
        {"[daemon]\nstate_dir = 5", "daemon.state_dir", 2, "string"},
        {"[daemon]\nstate_dir = \"\"", "daemon.state_dir", 2, "empty"},
        {"[daemon]\nstate_dri = \"x\"", "daemon.state_dri", 2, "unknown key"},
        {"[delivery]\nport = 70000", "delivery.port", 2, "between"},
        {"[delivery]\ndata_done_timeout = \"0s\"", "delivery.data_done_timeout", 2, "at least"},
        {"[delivery]\nrcpt_timeout = \"2d\"", "delivery.rcpt_timeout", 2, "at most"},
        {"[delivery]\ngreeting_timeout = \"soon\"", "delivery.greeting_timeout", 2, "duration"},
        {"[delivery]\npossible_delivery = \"yes\"", "delivery.possible_delivery", 2,
         "true or false"},
        {"[bounce_profiles.default]\nmax_queue_time = \"3 weeks\"",
         "bounce_profiles.default.max_queue_time", 2, "duration"},
        {"[bounce_profiles.default]\ninitial_retry = \"2h\"\nmax_retry = \"1h\"",
         "bounce_profiles.default.max_retry", 3, "initial_retry"},
        {"[destinations.default]\ntls = \"sometimes\"", "destinations.default.tls", 2, "preferred"},
        {"[destinations.\"a.com\"]\nbounce_profile = \"nope\"", "destinations.a.com.bounce_profile",
         0, "no bounce profile"},
        {"[logging]\nlevel = \"loud\"", "logging.level", 2, "one of"},
        {"[nosuch]\nx = 1", "nosuch", 1, "unknown key"},
        {"daemon = 3", "daemon", 1, "table"},
        {"[dns]\nservers = [\"1.2.3.4:99999\"]", "dns.servers", 2, "bad server"},
        {"[capture]\nkeep = 0", "capture.keep", 2, "between"},
        {"[capture]\nmax_size_bytes = 100", "capture.max_size_bytes", 2, "between"},
        {"[capture]\n\nduration = \"0s\"", "capture.duration", 3, "at least"},
        {"[capture]\nfilter = \"x\"", "capture.filter", 2, "unknown key"},
        {"[web]\naddress = \"everywhere\"", "web.address", 2, "host:port"},
        {"[web]\nmax_hosts = 0", "web.max_hosts", 2, "between"},
        {"[spool]\nlayout = \"tree\"", "spool.layout", 2,
         "\"segment\", \"hashed\", \"flat\" or \"rocksdb\""},
        {"[spool]\nlayot = \"flat\"", "spool.layot", 2, "unknown key"},
        {"[delivery]\ncontent_buffer_budget = 1000", "delivery.content_buffer_budget", 2,
         "between"},
    };
    for (const auto& c : cases) {
        INFO(c.text);
        ConfigError e = first_error(c.text);
        CHECK(e.key == c.key);
        CHECK(e.line == c.line);
        CHECK(e.message.find(c.fragment) != std::string::npos);
    }
}

TEST_CASE("[capture] and [web]: defaults and values") {
    auto d = load_config_string("", "t.toml");
    REQUIRE(d.ok());
    CHECK(d.config->capture.keep == 10);
    CHECK(d.config->capture.max_size_bytes == 100ull << 20);
    CHECK(d.config->capture.duration_s == 600);
    CHECK(d.config->capture.min_free_bytes == 256ull << 20);
    CHECK(d.config->web.address == "127.0.0.1:8025");
    CHECK(d.config->web.token_file.empty());
    auto r = load_config_string(
        "[capture]\nkeep = 3\nmax_size_bytes = 20000\nduration = \"2m\"\nmin_free_bytes = 0\n"
        "[web]\naddress = \"[::1]:9000\"\ntoken_file = \"/etc/esad/web.token\"\nmax_hosts = 50\n",
        "t.toml");
    REQUIRE(r.ok());
    CHECK(r.config->capture.keep == 3);
    CHECK(r.config->capture.max_size_bytes == 20000);
    CHECK(r.config->capture.duration_s == 120);
    CHECK(r.config->capture.min_free_bytes == 0);
    CHECK(r.config->web.address == "[::1]:9000");
    CHECK(r.config->web.token_file == "/etc/esad/web.token");
    CHECK(r.config->web.max_hosts == 50);
}

TEST_CASE(
    "[spool]: layout defaults to segment, hashed and flat are accepted, a change needs a restart") {
    auto d = load_config_string("", "t.toml");
    REQUIRE(d.ok());
    CHECK(d.config->spool.layout == "segment");
    auto r = load_config_string("[spool]\nlayout = \"flat\"\n", "t.toml");
    REQUIRE(r.ok());
    CHECK(r.config->spool.layout == "flat");
    const auto changes = restart_only_changes(*d.config, *r.config);
    REQUIRE(changes.size() == 1);
    CHECK(changes[0] == "spool.layout");
    auto seg = load_config_string("[spool]\nlayout = \"segment\"\n", "t.toml");
    REQUIRE(seg.ok());
    CHECK(seg.config->spool.layout == "segment");
}

TEST_CASE("[spool]: layout rocksdb is accepted where esad was built with RocksDB") {
    const char* text = "[spool]\nlayout = \"rocksdb\"\n";
    auto r = load_config_string(text, "t.toml");
    if (ESAD_HAVE_ROCKSDB) {
        REQUIRE(r.ok());
        CHECK(r.config->spool.layout == "rocksdb");
    } else {
        const ConfigError e = first_error(text);
        CHECK(e.key == "spool.layout");
        CHECK(e.line == 2);
        CHECK(e.message.find("built without RocksDB") != std::string::npos);
    }
}

TEST_CASE("[spool] recent_cache: 8 MiB by default, 0 turns it off, live on reload") {
    auto d = load_config_string("", "t.toml");
    REQUIRE(d.ok());
    CHECK(d.config->spool.recent_cache == 8ull << 20);
    auto r = load_config_string("[spool]\nrecent_cache = 0\n", "t.toml");
    REQUIRE(r.ok());
    CHECK(r.config->spool.recent_cache == 0);
    CHECK(restart_only_changes(*d.config, *r.config).empty());
    auto bad = load_config_string("[spool]\nrecent_cache = -1\n", "t.toml");
    CHECK_FALSE(bad.ok());
}

TEST_CASE("TOML syntax errors carry the line") {
    ConfigError e = first_error("[listener]\nmax_recipients = = 3\n");
    CHECK(e.line == 2);
    CHECK(e.to_string("t.toml").rfind("t.toml:2:", 0) == 0);
}

TEST_CASE("all errors are reported, not just the first") {
    auto r = load_config_string("[listener]\nmax_recipients = 0\n[delivery]\nport = 0\n", "t.toml");
    REQUIRE_FALSE(r.ok());
    CHECK(r.errors.size() == 2);
}

TEST_CASE("durations") {
    CHECK(parse_duration("90") == 90u);
    CHECK(parse_duration("90s") == 90u);
    CHECK(parse_duration("5m") == 300u);
    CHECK(parse_duration("72h") == 259200u);
    CHECK(parse_duration("2d") == 172800u);
    CHECK_FALSE(parse_duration(""));
    CHECK_FALSE(parse_duration("h"));
    CHECK_FALSE(parse_duration("5 m"));
    CHECK_FALSE(parse_duration("5w"));
}

TEST_CASE("restart-only changes are detected") {
    Config a = default_config();
    Config b = a;
    b.listener.address = "127.0.0.1:2600";
    b.destinations["default"].max_concurrency = 10;  // live
    auto changes = restart_only_changes(a, b);
    REQUIRE(changes.size() == 1);
    CHECK(changes[0] == "listener.address");
}

// Fuzz findings (tests/fuzz/fuzz_config): 32-bit truncation of durations, and toml++
// internal assertions on malformed documents (abort in Debug, undefined behaviour under
// NDEBUG) - each must be an error that names a line.
TEST_CASE("durations too long for their setting are errors, never truncated", "[config]") {
    for (const char* text :
         {"[listener]\ncommand_timeout = 4294967296\n",
          "[listener]\ncommand_timeout = \"4294967296s\"\n",
          "[listener]\ndata_timeout = \"100000d\"\n",
          "[bounce_profiles.default]\nmax_queue_time = \"99999999999999999999\"\n",
          "[daemon]\nshutdown_timeout = \"999999999999d\"\n"}) {
        INFO(text);
        const auto r = esad::load_config_string(text, "t.toml");
        REQUIRE_FALSE(r.ok());
        REQUIRE(r.errors.size() == 1);
        CHECK(r.errors[0].line == 2);
        CHECK(r.errors[0].message.find("at most") != std::string::npos);
    }
    const auto ok = esad::load_config_string("[listener]\ncommand_timeout = \"1d\"\n", "t.toml");
    REQUIRE(ok.ok());
    CHECK(ok.config->listener.command_timeout_s == 86400);
    CHECK_FALSE(esad::parse_duration("18446744073709551616"));
    CHECK(esad::parse_duration_overflows("18446744073709551616"));
}

TEST_CASE("malformed TOML is an error with a line number, never an assertion", "[config]") {
    struct Case {
        const char* text;
        uint32_t line;
    };
    for (const Case& c :
         {Case{"[", 1}, Case{"a = 1979-05-27T-", 1}, Case{"[daemon]\n[\xc3\xbc]\n", 2},
          Case{"x = 1\n\n\xc3\xbc = 2\n", 3}, Case{"[listener]\n[\xe2\x82\xac.x]\nk = 1\n", 2}}) {
        INFO(c.text);
        const auto r = esad::load_config_string(c.text, "t.toml");
        REQUIRE_FALSE(r.ok());
        REQUIRE_FALSE(r.errors.empty());
        CHECK(r.errors[0].line == c.line);
    }
}
