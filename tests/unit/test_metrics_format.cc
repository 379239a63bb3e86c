// Prometheus exposition: names, values, host selection (top N + down, bounded), escaping,
// and the structure of the text (HELP/TYPE once per family, before its samples).
#include <catch2/catch.hpp>

#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "daemon/control/metrics_format.h"

using namespace esad;
using namespace esad::control;

namespace {

// name{labels} -> value, and a structural check of the whole text.
struct Parsed {
    std::map<std::string, std::string> samples;
    std::map<std::string, std::string> types;
    std::vector<std::string> families;  // in order of their TYPE line
};

Parsed parse(const std::string& text) {
    static const std::regex kHelp(R"(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$)");
    static const std::regex kType(R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge)$)");
    static const std::regex kSample(
        R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*",?)*\})? ([0-9]+(\.[0-9]+)?)$)");
    Parsed p;
    REQUIRE(!text.empty());
    REQUIRE(text.back() == '\n');
    std::istringstream in(text);
    std::string line, help_for, current;
    std::set<std::string> seen;
    std::smatch m;
    while (std::getline(in, line)) {
        INFO(line);
        if (std::regex_match(line, m, kHelp)) {
            help_for = m[1];
        } else if (std::regex_match(line, m, kType)) {
            CHECK(m[1] == help_for);  // HELP comes right before TYPE
            CHECK(seen.insert(m[1]).second);
            current = m[1];
            p.types[current] = m[2];
            p.families.push_back(current);
        } else {
            REQUIRE(std::regex_match(line, m, kSample));
            CHECK(m[1] == current);  // a sample belongs to the family declared last
            if (p.types[current] == "counter") CHECK(current.size() > 6);
            std::string key = m[1].str() + m[2].str();
            CHECK(p.samples.count(key) == 0);
            p.samples[key] = m[5];
        }
    }
    return p;
}

HostSample host(std::string_view name, uint64_t active, bool down = false) {
    HostSample h;
    h.host = name;
    h.active_recipients = active;
    h.down = down;
    return h;
}

std::vector<std::string> names(const std::vector<HostSample>& hosts) {
    std::vector<std::string> out;
    for (const auto& h : hosts)
        out.emplace_back(h.host);
    return out;
}

}  // namespace

TEST_CASE("every counter is exposed as esad_<key>_total with its Uptime value") {
    MetricsSnapshot s;
    for (size_t i = 0; i < kCounterCount; ++i)
        s.counters[i] = 100 + i;
    Parsed p = parse(format_metrics(s, {}));
    for (size_t i = 0; i < kCounterCount; ++i) {
        std::string name = "esad_" + std::string(kCounterInfo[i].key) + "_total";
        INFO(name);
        CHECK(p.types[name] == "counter");
        CHECK(p.samples[name] == std::to_string(100 + i));
    }
    CHECK(p.samples["esad_messages_received_total"] == "100");
    CHECK(p.samples.count("esad_5xx_hard_bounces_total") == 1);
}

TEST_CASE("global gauges carry the snapshot's values") {
    MetricsSnapshot s;
    s.version = "0.1.0";
    s.hostname = "mta.example";
    s.start_time_seconds = 1700000000;
    s.connections_in = 3;
    s.connections_out = 7;
    s.active_recipients = 1234;
    s.attempted_recipients = 34;
    s.destinations = 5;
    s.spool_bytes = 4096;
    s.spool_free_bytes = 1 << 30;
    s.oldest_message_unix_ms = 1700000123456;
    s.recovering = true;
    s.spool_below_floor = true;
    s.reloads = 2;
    s.loop_busy_10s = 0.4567;
    s.content_budget = 64ull << 20;
    s.content_in_use = 131072;
    s.content_waiting = 2;
    s.hosts = {host("a.example", 1, true), host("b.example", 2), host("c.example", 3, true)};
    Parsed p = parse(format_metrics(s, {}));
    CHECK(p.samples["esad_info{version=\"0.1.0\",hostname=\"mta.example\"}"] == "1");
    CHECK(p.samples["esad_start_time_seconds"] == "1700000000");
    CHECK(p.samples["esad_connections_in"] == "3");
    CHECK(p.samples["esad_connections_out"] == "7");
    CHECK(p.samples["esad_active_recipients"] == "1234");
    CHECK(p.samples["esad_attempted_recipients"] == "34");
    CHECK(p.samples["esad_destinations"] == "5");
    CHECK(p.samples["esad_hosts_down"] == "2");
    CHECK(p.samples["esad_spool_bytes"] == "4096");
    CHECK(p.samples["esad_spool_free_bytes"] == "1073741824");
    CHECK(p.samples["esad_oldest_message_timestamp_seconds"] == "1700000123");
    CHECK(p.samples["esad_recovering"] == "1");
    CHECK(p.samples["esad_delivery_suspended"] == "0");
    CHECK(p.samples["esad_spool_healthy"] == "1");
    CHECK(p.samples["esad_spool_below_free_space_floor"] == "1");
    CHECK(p.samples["esad_spool_mids_available"] == "1");
    CHECK(p.samples["esad_reloads_total"] == "2");
    CHECK(p.samples["esad_event_loop_busy_ratio"] == "0.457");
    CHECK(p.samples["esad_delivery_content_budget_bytes"] == "67108864");
    CHECK(p.samples["esad_delivery_content_bytes"] == "131072");
    CHECK(p.samples["esad_delivery_content_waiting_sessions"] == "2");
    CHECK(p.types["esad_connections_in"] == "gauge");
}

TEST_CASE("per-host series: values and types") {
    MetricsSnapshot s;
    HostSample h = host("mx.example", 42);
    h.connections_out = 4;
    h.delivered_recipients = 10;
    h.soft_bounced_events = 11;
    h.hard_bounced_recipients = 12;
    s.hosts = {h};
    Parsed p = parse(format_metrics(s, {}));
    CHECK(p.samples["esad_host_active_recipients{host=\"mx.example\"}"] == "42");
    CHECK(p.samples["esad_host_connections_out{host=\"mx.example\"}"] == "4");
    CHECK(p.samples["esad_host_down{host=\"mx.example\"}"] == "0");
    CHECK(p.samples["esad_host_delivered_recipients_total{host=\"mx.example\"}"] == "10");
    CHECK(p.samples["esad_host_soft_bounced_events_total{host=\"mx.example\"}"] == "11");
    CHECK(p.samples["esad_host_hard_bounced_recipients_total{host=\"mx.example\"}"] == "12");
    CHECK(p.types["esad_host_delivered_recipients_total"] == "counter");
    CHECK(p.types["esad_host_down"] == "gauge");
}

TEST_CASE("host selection: top N by active recipients, then every down host") {
    std::vector<HostSample> hosts = {
        host("quiet.example", 1),           host("big.example", 500),
        host("dead-b.example", 0, true),    host("mid.example", 50),
        host("tie-b.example", 50),          host("dead-a.example", 0, true),
        host("big-down.example", 900, true)};
    MetricsOptions o;
    o.top_hosts = 3;
    // Ties break by name; a down host in the top N is listed once.
    CHECK(names(select_hosts(hosts, o)) ==
          std::vector<std::string>{"big-down.example", "big.example", "mid.example",
                                   "dead-a.example", "dead-b.example"});
    o.top_hosts = 0;
    CHECK(names(select_hosts(hosts, o)) ==
          std::vector<std::string>{"big-down.example", "dead-a.example", "dead-b.example"});
    o.max_down_hosts = 2;
    CHECK(names(select_hosts(hosts, o)) ==
          std::vector<std::string>{"big-down.example", "dead-a.example"});
    o.top_hosts = 100;
    CHECK(select_hosts(hosts, o).size() == hosts.size());
    CHECK(select_hosts({}, o).empty());
}

TEST_CASE("label cardinality stays bounded with many hosts") {
    std::vector<std::string> storage;
    for (int i = 0; i < 5000; ++i)
        storage.push_back("d" + std::to_string(i) + ".example");
    MetricsSnapshot s;
    for (int i = 0; i < 5000; ++i)
        s.hosts.push_back(host(storage[i], static_cast<uint64_t>(i), i % 1000 == 0));
    MetricsOptions o;
    o.top_hosts = 20;
    Parsed p = parse(format_metrics(s, o));
    size_t active_series = 0;
    for (const auto& [key, value] : p.samples)
        active_series += key.rfind("esad_host_active_recipients{", 0) == 0;
    CHECK(active_series == 20 + 5);  // the top 20 (d4980..d4999) and d0, d1000 ... d4000
    CHECK(p.samples["esad_host_active_recipients{host=\"d4999.example\"}"] == "4999");
    CHECK(p.samples["esad_host_down{host=\"d1000.example\"}"] == "1");
    CHECK(p.samples.count("esad_host_down{host=\"d1001.example\"}") == 0);
    CHECK(p.samples["esad_hosts_down"] == "5");
}

TEST_CASE("label values are escaped") {
    CHECK(escape_label_value("plain.example") == "plain.example");
    CHECK(escape_label_value("a\"b") == "a\\\"b");
    CHECK(escape_label_value("a\\b") == "a\\\\b");
    CHECK(escape_label_value("a\nb") == "a\\nb");
    MetricsSnapshot s;
    s.hostname = "evil\"host\\\n";
    s.hosts = {host("we\"ird\\.example\n", 1)};
    std::string text = format_metrics(s, {});
    Parsed p = parse(text);  // still one sample per line, every line well-formed
    CHECK(p.samples["esad_host_active_recipients{host=\"we\\\"ird\\\\.example\\n\"}"] == "1");
    CHECK(text.find("hostname=\"evil\\\"host\\\\\\n\"") != std::string::npos);
}

TEST_CASE("while recovering there are no host samples, but every family is declared") {
    MetricsSnapshot s;
    s.recovering = true;
    Parsed p = parse(format_metrics(s, {}));
    CHECK(p.types.count("esad_host_active_recipients") == 1);
    for (const auto& [key, value] : p.samples)
        CHECK(key.find("host=") == std::string::npos);
    CHECK(p.samples["esad_hosts_down"] == "0");
    CHECK(p.samples["esad_oldest_message_timestamp_seconds"] == "0");
}
