// Golden-output tests of esactl's renderers (ctl/renderers.h) and shell helpers
// (ctl/shell.h). Each renderer gets fixed reply data, in UTC, and must print exactly the
// text in tests/unit/golden/<name>.txt. After an intended layout change, regenerate with
//   ESAD_UPDATE_GOLDEN=1 build/test/tests/ctl_tests
// and review the diff of the golden files.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>

#include "ctl/cmd_logs.h"
#include "ctl/renderers.h"
#include "ctl/shell.h"

using nlohmann::json;
using namespace esad::ctl;

namespace {

constexpr long long kNow = 1700000000;  // Tue Nov 14 22:13:20 2023 UTC

void use_utc() {
    setenv("TZ", "UTC", 1);
    tzset();
}

std::string golden_path(const std::string& name) {
    return std::string(ESAD_GOLDEN_DIR) + "/" + name + ".txt";
}

void check_golden_text(const std::string& name, const std::string& text);

// `data` is the reply as the daemon sends it; the renderer gets it parsed into its payload.
template <class T>
void check_golden(const std::string& name, void (*render)(std::ostream&, const T&),
                  const json& data) {
    use_utc();
    std::ostringstream out;
    render(out, esad::payloads::parse<T>(data));
    check_golden_text(name, out.str());
}

void check_golden_text(const std::string& name, const std::string& text) {
    if (std::getenv("ESAD_UPDATE_GOLDEN")) {
        std::ofstream(golden_path(name), std::ios::binary) << text;
        return;
    }
    std::ifstream in(golden_path(name), std::ios::binary);
    REQUIRE(in.good());
    std::stringstream expected;
    expected << in.rdbuf();
    INFO("golden file " << golden_path(name));
    CHECK(text == expected.str());
}

json counters(uint64_t base) {
    json c = json::object();
    uint64_t i = 0;
    for (const char* k : {"messages_received", "recipients_received", "gen_bounce_recipients",
                          "rejected_recipients", "dropped_messages", "soft_bounced_events",
                          "completed_recipients", "hard_bounced_recipients", "dns_hard_bounces",
                          "5xx_hard_bounces", "expired_hard_bounces", "filter_hard_bounces",
                          "other_hard_bounces", "delivered_recipients", "deleted_recipients"}) {
        ++i;
        c[k] = {{"reset", base * i}, {"uptime", base * i * 10}, {"lifetime", base * i * 100}};
    }
    return c;
}

json status_data() {
    return {
        {"version", "0.1.0"},
        {"hostname", "mail.example.test"},
        {"status_as_of", kNow},
        {"up_since", kNow - 93784},
        {"uptime_seconds", 93784},
        {"last_counter_reset", nullptr},
        {"system_status", "Online"},
        {"oldest_message_age", 3725},
        {"counters", counters(3)},
        {"current_ids", {{"mid", 1234}, {"icid", 567}, {"dcid", 89}}},
        {"listener", "127.0.0.1:25"},
        {"corrupt_files", 0},
        {"event_loop", {{"busy_1s", 0.0}, {"busy_10s", 0.0}, {"busy_60s", 0.0}}},
        {"log_lines_dropped", 0},
        {"delivery_content",
         {{"budget_bytes", 0}, {"in_use_bytes", 0}, {"peak_bytes", 0}, {"sessions_waiting", 0}}},
        {"spool",
         {{"commit_batches", 0},
          {"messages_committed", 0},
          {"largest_batch", 0},
          {"file_fsyncs", 0},
          {"dir_fsyncs", 0},
          {"journal_flushes", 0},
          {"healthy", true},
          {"below_free_space_floor", false},
          {"mids_available", true}}},
        {"gauges",
         {{"current_inbound_connections", 2},
          {"current_outbound_connections", 5},
          {"active_recipients", 1500},
          {"unattempted_recipients", 1000},
          {"attempted_recipients", 500},
          {"destinations_in_memory", 42},
          {"kilobytes_used", 20480},
          {"kilobytes_free", 1048576}}}};
}

}  // namespace

TEST_CASE("status renders the ESA layout", "[ctl][render]") {
    check_golden("status", render_status, status_data());
}

TEST_CASE("status detail adds the rates block; suspended system status", "[ctl][render]") {
    json d = status_data();
    d["system_status"] = "Receiving and delivery suspended";
    d["last_counter_reset"] = kNow - 600;
    d["oldest_message_age"] = nullptr;
    json rates = json::object();
    for (const char* k :
         {"messages_received", "recipients_received", "soft_bounced_events", "completed_recipients",
          "hard_bounced_recipients", "delivered_recipients"})
        rates[k] = {{"1m", 6000}, {"5m", 1200}, {"15m", 400}};
    d["rates"] = rates;
    check_golden("status_detail", render_status, d);
}

TEST_CASE("version", "[ctl][render]") {
    check_golden("version", render_version,
                 {{"version", "0.1.0"}, {"hostname", "mx.test"}, {"protocol", 1}});
}

TEST_CASE("tophosts: '*' on down hosts, thousands separators", "[ctl][render]") {
    json d = {{"status_as_of", kNow},
              {"sort", "active_rcpts"},
              {"total_hosts", 5},
              {"hosts",
               {{{"host", "big.example.com"},
                 {"host_unicode", ""},
                 {"status", "down"},
                 {"last_activity", nullptr},
                 {"down", true},
                 {"active_recipients", 1234567},
                 {"connections_out", 0},
                 {"delivered_recipients", 7055},
                 {"soft_bounced", 182000},
                 {"hard_bounced", 12}},
                {{"host", "small.test"},
                 {"host_unicode", ""},
                 {"status", "up"},
                 {"last_activity", nullptr},
                 {"down", false},
                 {"active_recipients", 3},
                 {"connections_out", 1},
                 {"delivered_recipients", 0},
                 {"soft_bounced", 0},
                 {"hard_bounced", 0}},
                {{"host", "the.encryption.queue"},
                 {"host_unicode", ""},
                 {"status", "unknown"},
                 {"last_activity", nullptr},
                 {"down", false},
                 {"active_recipients", 0},
                 {"connections_out", 0},
                 {"delivered_recipients", 0},
                 {"soft_bounced", 0},
                 {"hard_bounced", 0}}}}};
    check_golden("tophosts", render_tophosts, d);
}

TEST_CASE("hoststatus: a down host with routes, MX, addresses and errors", "[ctl][render]") {
    json d = {
        {"host", "dst.test"},
        {"host_unicode", ""},
        {"status_as_of", kNow},
        {"status", "down"},
        {"retry_at", kNow + 60},
        {"counters",
         {{"soft_bounced_events", 4},
          {"completed_recipients", 10},
          {"hard_bounced_recipients", 3},
          {"dns_hard_bounces", 1},
          {"5xx_hard_bounces", 2},
          {"expired_hard_bounces", 0},
          {"filter_hard_bounces", 0},
          {"other_hard_bounces", 0},
          {"delivered_recipients", 6},
          {"deleted_recipients", 1}}},
        {"gauges",
         {{"active_recipients", 7},
          {"unattempted_recipients", 2},
          {"attempted_recipients", 5},
          {"current_outbound_connections", 0},
          {"pending_outbound_connections", 1}}},
        {"oldest_message", kNow - 3600},
        {"last_activity", kNow - 30},
        {"suspended", true},
        {"routes", {"[127.0.0.1]:2525"}},
        {"ordered_ips",
         {{{"host", "mx1.dst.test"},
           {"ip", "192.0.2.10"},
           {"expires_in", 300},
           {"expires_at", kNow + 300}}}},
        {"mx_records",
         {{{"preference", 10}, {"host", "mx1.dst.test"}, {"ttl", 3600}},
          {{"preference", 20}, {"host", "mx2.dst.test"}, {"ttl", 90}}}},
        {"ips", json::array()},
        {"last_5xx_error", {{"text", "550 5.1.1 <x@dst.test>: no such user"}, {"at", kNow - 120}}},
        {"last_soft_error", {{"text", ""}, {"at", nullptr}}}};
    check_golden("hoststatus", render_hoststatus, d);
}

TEST_CASE("hoststatus: an up host with nothing cached", "[ctl][render]") {
    json d = {{"host", "new.test"},
              {"host_unicode", ""},
              {"status_as_of", kNow},
              {"status", "up"},
              {"retry_at", nullptr},
              {"counters", json(esad::payloads::HostCounters{})},
              {"gauges", json(esad::payloads::HostGauges{})},
              {"oldest_message", nullptr},
              {"last_activity", nullptr},
              {"suspended", false},
              {"routes", json::array()},
              {"ordered_ips", json::array()},
              {"mx_records", json::array()},
              {"ips", json::array()},
              {"last_5xx_error", {{"text", ""}, {"at", nullptr}}},
              {"last_soft_error", {{"text", "421 4.7.0 try later"}, {"at", kNow}}}};
    check_golden("hoststatus_up", render_hoststatus, d);
}

TEST_CASE("delivernow, suspenddel, resumedel", "[ctl][render]") {
    check_golden("delivernow", render_delivernow, {{"target", "all"}, {"recipients", 12345}});
    check_golden("suspenddel", render_suspenddel,
                 {{"suspended", true}, {"domains", {"a.test", "b.test"}}, {"unknown", {"zz"}}});
    check_golden("resumedel", render_suspenddel,
                 {{"suspended", false}, {"domains", {"ALL"}}, {"unknown", json::array()}});
}

TEST_CASE("suspend, resume, workqueue", "[ctl][render]") {
    check_golden("suspend", render_suspend,
                 {{"listener", "127.0.0.1:2525"},
                  {"receiving_suspended", true},
                  {"delivery_suspended", true}});
    check_golden(
        "resume", render_resume,
        {{"listener", "127.0.0.1:2525"}, {"receiving_resumed", true}, {"delivery_resumed", true}});
    check_golden("resume_nothing", render_resume,
                 {{"listener", "127.0.0.1:2525"},
                  {"receiving_resumed", false},
                  {"delivery_resumed", false}});
    check_golden("workqueue", render_workqueue,
                 {{"status", "Operational"}, {"messages", 1234}, {"batches_in_flight", 2}});
}

TEST_CASE("showrecipients: rows, paging hint, empty queue", "[ctl][render]") {
    json d = {{"total", 3},
              {"offset", 0},
              {"recipients",
               {{{"mid", 17},
                 {"rid", 0},
                 {"sender", "alice@src.test"},
                 {"recipient", "bob@dst.test"},
                 {"host", "dst.test"},
                 {"age_seconds", 3725},
                 {"attempts", 2},
                 {"state", "deferred"},
                 {"next_attempt", kNow + 60}},
                {{"mid", 17},
                 {"rid", 1},
                 {"sender", "alice@src.test"},
                 {"recipient", "carol@other.test"},
                 {"host", "other.test"},
                 {"age_seconds", 5},
                 {"attempts", 0},
                 {"state", "ready"},
                 {"next_attempt", nullptr}}}}};
    check_golden("showrecipients", render_showrecipients, d);
    check_golden("showrecipients_empty", render_showrecipients,
                 {{"total", 0}, {"offset", 0}, {"recipients", json::array()}});
}

TEST_CASE("showmessage: envelope, recipients, headers", "[ctl][render]") {
    json d = {{"mid", 17},
              {"received", kNow - 3600},
              {"sender", "alice@src.test"},
              {"icid", 4},
              {"client_ip", "127.0.0.1"},
              {"client_helo", "client.src.test"},
              {"size", 2048},
              {"recipients",
               {{{"rid", 0},
                 {"recipient", "bob@dst.test"},
                 {"host", "dst.test"},
                 {"state", "deferred"},
                 {"attempts", 2},
                 {"next_attempt", kNow + 60},
                 {"host_status", "down"},
                 {"suspended", false},
                 {"last_error", "Connection refused"}},
                {{"rid", 1},
                 {"recipient", "carol@other.test"},
                 {"host", "other.test"},
                 {"state", "completed"},
                 {"attempts", 1},
                 {"next_attempt", nullptr},
                 {"host_status", "up"},
                 {"suspended", false},
                 {"last_error", ""}}}},
              {"headers", "From: alice@src.test\nTo: bob@dst.test\nSubject: hello"}};
    check_golden("showmessage", render_showmessage, d);
    json no_headers = {{"mid", 18},
                       {"received", kNow},
                       {"sender", ""},
                       {"recipients",
                        {{{"rid", 0},
                          {"recipient", "x@y.test"},
                          {"host", "y.test"},
                          {"state", "ready"},
                          {"attempts", 0},
                          {"next_attempt", nullptr},
                          {"host_status", "unknown"},
                          {"suspended", true},
                          {"last_error", ""}}}},
                       {"headers", nullptr},
                       {"headers_error", "missing: no such file"}};
    check_golden("showmessage_no_headers", render_showmessage, no_headers);
}

TEST_CASE("deleterecipients / bouncerecipients result lines (esa-reference §5.2, §5.3)",
          "[ctl][render]") {
    check_golden("delete", render_removal,
                 {{"recipients", 1000000},
                  {"messages", 10000},
                  {"bounced", false},
                  {"delivery_suspended", false}});
    check_golden(
        "delete_none", render_removal,
        {{"recipients", 0}, {"messages", 0}, {"bounced", false}, {"delivery_suspended", false}});
    check_golden(
        "bounce_suspended", render_removal,
        {{"recipients", 3}, {"messages", 1}, {"bounced", true}, {"delivery_suspended", true}});
    check_golden(
        "bounce_none", render_removal,
        {{"recipients", 0}, {"messages", 0}, {"bounced", true}, {"delivery_suspended", false}});
}

TEST_CASE("redirectrecipients", "[ctl][render]") {
    check_golden("redirect", render_redirect,
                 {{"redirect", "[127.0.0.1]:2526"}, {"recipients", 4321}});
    check_golden("redirect_clear", render_redirect, {{"redirect", nullptr}, {"recipients", 0}});
}

TEST_CASE("dig: question and answer sections like dig", "[ctl][render]") {
    json d = {{"name", "dst.test"},
              {"type", "MX"},
              {"status", "ok"},
              {"from_cache", false},
              {"error", ""},
              {"answers",
               {{{"name", "dst.test."},
                 {"ttl", 3600},
                 {"class", "IN"},
                 {"type", "MX"},
                 {"data", "10 mx1.dst.test."}},
                {{"name", "dst.test."},
                 {"ttl", 3600},
                 {"class", "IN"},
                 {"type", "MX"},
                 {"data", "20 mx2.dst.test."}}}}};
    check_golden("dig", render_dig, d);
    check_golden("dig_nxdomain", render_dig,
                 {{"name", "nope.test"},
                  {"type", "A"},
                  {"status", "nxdomain"},
                  {"from_cache", true},
                  {"error", "Domain name not found"},
                  {"answers", json::array()}});
}

TEST_CASE("rate and hostrate rows", "[ctl][render]") {
    use_utc();
    std::ostringstream out;
    out << rate_header()
        << rate_row({.time = kNow,
                     .connections_in = 3,
                     .connections_out = 7,
                     .recipients_received = 123456,
                     .recipients_received_delta = 60,
                     .recipients_completed = 123000,
                     .recipients_completed_delta = 55,
                     .kilobytes_used = 2048})
        << hostrate_header()
        << hostrate_row({.time = kNow,
                         .host = "dst.test",
                         .host_status = "up",
                         .current_outbound_connections = 2,
                         .active_recipients = 10,
                         .active_recipients_delta = -3,
                         .delivered_recipients = 100,
                         .delivered_recipients_delta = 3,
                         .hard_bounced_recipients = 1,
                         .hard_bounced_recipients_delta = 0,
                         .soft_bounced_events = 4,
                         .soft_bounced_events_delta = 1});
    check_golden_text("rate_rows", out.str());
}

TEST_CASE("split_words: blanks, quotes, escapes", "[ctl][shell]") {
    std::vector<std::string> w;
    std::string err;
    REQUIRE(split_words("  findevent --subject 'hello world'  --sender \"a b\"", &w, &err));
    CHECK(w ==
          std::vector<std::string>{"findevent", "--subject", "hello world", "--sender", "a b"});
    REQUIRE(split_words("dig mx a\\ b ''", &w, &err));
    CHECK(w == std::vector<std::string>{"dig", "mx", "a b", ""});
    REQUIRE(split_words("   ", &w, &err));
    CHECK(w.empty());
    CHECK_FALSE(split_words("findevent --subject 'oops", &w, &err));
    CHECK(err == "unterminated ' quote");
}

TEST_CASE("completions: commands, keywords, domains", "[ctl][shell]") {
    std::vector<std::string> domains = {"dst.test", "dst2.test", "other.test"};
    CHECK(completions({}, "host", domains) == std::vector<std::string>{"hostrate", "hoststatus"});
    CHECK(completions({}, "qu", domains) == std::vector<std::string>{"quit"});
    CHECK(completions({"hoststatus"}, "dst", domains) ==
          std::vector<std::string>{"dst.test", "dst2.test"});
    CHECK(completions({"dig"}, "", domains) ==
          std::vector<std::string>{"--no-cache", "a", "aaaa", "dst.test", "dst2.test", "mx",
                                   "other.test", "ptr", "txt"});
    CHECK(completions({"status"}, "", domains) == std::vector<std::string>{"detail"});
    CHECK(completions({"help"}, "suspend", domains) ==
          std::vector<std::string>{"suspend", "suspenddel"});
}

// Defect: showmessage printed peer-supplied header bytes raw, so an injecting client could
// retitle or clear the operator's terminal and forge output lines.
TEST_CASE("showmessage and showrecipients escape every peer-supplied byte") {
    json d = {{"mid", 9},
              {"received", 0},
              {"sender", "evil\x1b]0;owned\x07@src.test"},
              {"icid", 1},
              {"client_ip", "127.0.0.1"},
              {"client_helo", "h\x1b[2J"},
              {"recipients",
               {{{"rid", 0},
                 {"recipient", "bob\r\nRID 1 forged@dst.test"},
                 {"host", "dst.test"},
                 {"state", "deferred"},
                 {"attempts", 1},
                 {"next_attempt", nullptr},
                 {"host_status", "up"},
                 {"suspended", false},
                 {"last_error", "550 \x1b[31mred"}}}},
              {"headers",
               "Subject: \x1b]2;retitled\x07hi\r\n\tfolded \x9b"
               "1m\r\nX: \x1b[2J"}};
    std::ostringstream out;
    render_showmessage(out, d);
    const std::string text = out.str();
    for (char c : text) {
        const unsigned char u = static_cast<unsigned char>(c);
        INFO(text);
        REQUIRE((u == '\n' || (u >= 0x20 && u < 0x7f)));
    }
    CHECK(text.find("\\x1b]2;retitled\\x07hi") != std::string::npos);
    CHECK(text.find("     folded \\x9b1m") != std::string::npos);
    CHECK(text.find("\nRID 1 forged") == std::string::npos);

    json rows = {{"total", 1},
                 {"offset", 0},
                 {"recipients",
                  {{{"mid", 9},
                    {"rid", 0},
                    {"age_seconds", 1},
                    {"state", "ready"},
                    {"attempts", 0},
                    {"host", "dst.test"},
                    {"sender", "a\x1b[2J@b"},
                    {"recipient", "c\r\nd@e"}}}}};
    std::ostringstream out2;
    render_showrecipients(out2, rows);
    for (char c : out2.str()) {
        const unsigned char u = static_cast<unsigned char>(c);
        REQUIRE((u == '\n' || (u >= 0x20 && u < 0x7f)));
    }
}
