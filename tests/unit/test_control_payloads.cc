// The typed control payloads (common/payloads/): each reply as esad sends it today (golden
// JSON, in the shape the daemon's handlers produced before the payloads were typed) parses
// into its struct and serializes back to the same bytes; args keep their defaults; a reply
// with a missing or wrong-typed field is a PayloadError naming the field, never another
// exception.
#include <catch2/catch.hpp>

#include "common/payloads/capture.h"
#include "common/payloads/logs.h"
#include "common/payloads/queue.h"
#include "common/payloads/status.h"
#include "common/payloads/telnet.h"

using nlohmann::json;
using namespace esad::payloads;

namespace {

template <class T>
void round_trips(const char* golden_text) {
    json golden = json::parse(golden_text);
    T parsed = parse<T>(golden);
    json again = parsed;
    CHECK(again.dump() == golden.dump());
}

// Every way of breaking one field of `golden`: removed, and replaced by a value of another
// type. Each must give a PayloadError that names the field.
template <class T>
void rejects_broken(const char* golden_text, const json::json_pointer& field) {
    json golden = json::parse(golden_text);
    std::string name = field.back();
    INFO("field " << field.to_string());
    json missing = golden;
    missing.at(field.parent_pointer()).erase(name);
    std::string error;
    CHECK_FALSE(try_parse<T>(missing, &error).has_value());
    CHECK_THAT(error, Catch::Contains(name));
    for (const json& wrong : {json("text"), json(-1), json(1.5), json::array(), json(true)}) {
        json broken = golden;
        const json& right = broken.at(field);
        if (right.type() == wrong.type()) continue;
        if (right.is_number_float() && wrong.is_number()) continue;  // fits a float field
        broken.at(field) = wrong;
        error.clear();
        CHECK_FALSE(try_parse<T>(broken, &error).has_value());
        CHECK_THAT(error, Catch::Contains(name));
    }
}

const char* const kStatus = R"({
 "version": "0.1.0", "hostname": "mx.test", "status_as_of": 1700000000,
 "up_since": 1699990000, "uptime_seconds": 10000, "last_counter_reset": null,
 "system_status": "Online",
 "counters": {"messages_received": {"reset": 1, "uptime": 2, "lifetime": 3},
              "5xx_hard_bounces": {"reset": 0, "uptime": 0, "lifetime": 7}},
 "current_ids": {"mid": 12, "icid": 3, "dcid": 4}, "oldest_message_age": 95,
 "listener": "127.0.0.1:2525", "corrupt_files": 0,
 "event_loop": {"busy_1s": 0.25, "busy_10s": 0.125, "busy_60s": 0.0},
 "log_lines_dropped": 0,
 "delivery_content": {"budget_bytes": 268435456, "in_use_bytes": 0, "peak_bytes": 65536,
                      "sessions_waiting": 0},
 "spool": {"commit_batches": 5, "messages_committed": 9, "largest_batch": 3,
           "file_fsyncs": 9, "dir_fsyncs": 5, "journal_flushes": 2, "healthy": true,
           "below_free_space_floor": false, "mids_available": true},
 "gauges": {"current_inbound_connections": 1, "current_outbound_connections": 2,
            "active_recipients": 10, "unattempted_recipients": 4, "attempted_recipients": 6,
            "destinations_in_memory": 3, "kilobytes_used": 40, "kilobytes_free": 1000}})";

const char* const kHoststatus = R"({
 "host": "xn--mnchen-3ya.test", "host_unicode": "münchen.test", "status_as_of": 1700000000,
 "status": "down", "retry_at": 1700000060,
 "counters": {"soft_bounced_events": 4, "completed_recipients": 10,
              "hard_bounced_recipients": 3, "dns_hard_bounces": 1, "5xx_hard_bounces": 2,
              "expired_hard_bounces": 0, "filter_hard_bounces": 0, "other_hard_bounces": 0,
              "delivered_recipients": 6, "deleted_recipients": 1},
 "gauges": {"active_recipients": 7, "unattempted_recipients": 2, "attempted_recipients": 5,
            "current_outbound_connections": 0, "pending_outbound_connections": 1},
 "oldest_message": 1699996400, "last_activity": null, "suspended": false,
 "routes": ["[127.0.0.1]:2525"],
 "ordered_ips": [{"host": "mx1.test", "ip": "192.0.2.10", "expires_in": 300,
                  "expires_at": 1700000300}],
 "mx_records": [{"preference": 10, "host": "mx1.test", "ttl": 3600}],
 "ips": [{"ip": "192.0.2.10", "last_attempt": 1699999990, "last_error": "421 busy",
          "failures": 2, "successes": 0}],
 "last_5xx_error": {"text": "550 5.1.1 no such user", "at": 1699999880},
 "last_soft_error": {"text": "", "at": null}})";

const char* const kTophosts = R"({
 "status_as_of": 1700000000, "sort": "active_rcpts", "total_hosts": 4,
 "hosts": [{"host": "dst.test", "host_unicode": "", "down": true, "active_recipients": 5,
            "connections_out": 1, "delivered_recipients": 2, "soft_bounced": 3,
            "hard_bounced": 0, "status": "down", "last_activity": 1699999999},
           {"host": "the.euq.queue", "host_unicode": "", "down": false,
            "active_recipients": 0, "connections_out": 0, "delivered_recipients": 0,
            "soft_bounced": 0, "hard_bounced": 0, "status": "unknown",
            "last_activity": null}]})";

const char* const kShowmessage = R"({
 "mid": 17, "received": 1700000000, "sender": "alice@src.test",
 "recipients": [{"rid": 0, "recipient": "bob@dst.test", "host": "dst.test",
                 "state": "deferred", "attempts": 2, "next_attempt": 1700000300,
                 "host_status": "down", "suspended": false, "last_error": "421 busy"}],
 "headers": "From: alice@src.test\nSubject: hi", "size": 1234, "icid": 5,
 "client_ip": "127.0.0.1", "client_helo": "client.test"})";

const char* const kShowmessageUnread = R"({
 "mid": 18, "received": null, "sender": "", "recipients": [], "headers": null,
 "headers_error": "missing: no such file"})";

const char* const kShowrecipients = R"({
 "total": 3, "offset": 1,
 "recipients": [{"mid": 17, "rid": 1, "sender": "a@src.test", "recipient": "b@dst.test",
                 "host": "dst.test", "age_seconds": 60, "attempts": 0, "state": "ready",
                 "next_attempt": null}]})";

const char* const kDig = R"({
 "name": "dst.test", "type": "MX", "status": "ok", "from_cache": true, "error": "",
 "answers": [{"name": "dst.test.", "ttl": 300, "class": "IN", "type": "MX",
              "data": "10 mx1.dst.test."}]})";

}  // namespace

TEST_CASE("status, version, resetcounters, reload round-trip", "[payloads]") {
    round_trips<StatusReply>(kStatus);
    json detail = json::parse(kStatus);
    detail["rates"] = {{"delivered_recipients", {{"1m", 60}, {"5m", 12}, {"15m", 4}}}};
    round_trips<StatusReply>(detail.dump().c_str());
    round_trips<VersionReply>(R"({"version": "0.1.0", "hostname": "mx.test", "protocol": 1})");
    round_trips<ResetCountersReply>(R"({"reset_at": 1700000000})");
    round_trips<ReloadReply>(
        R"({"config": "/etc/esad/esad.toml", "restart_required": ["listener.address"]})");
}

TEST_CASE("queue replies round-trip", "[payloads]") {
    round_trips<TophostsReply>(kTophosts);
    round_trips<HoststatusReply>(kHoststatus);
    round_trips<DelivernowReply>(R"({"target": "all", "recipients": 12})");
    round_trips<SuspendDelReply>(
        R"({"suspended": true, "domains": ["ALL", "dst.test"], "unknown": ["nx.test"]})");
    round_trips<SuspendReply>(
        R"({"listener": "127.0.0.1:25", "receiving_suspended": true, "delivery_suspended": true})");
    round_trips<ResumeReply>(
        R"({"listener": "127.0.0.1:25", "receiving_resumed": false, "delivery_resumed": true})");
    round_trips<WorkqueueReply>(
        R"({"status": "Operational", "messages": 3, "batches_in_flight": 1})");
    round_trips<ShowRecipientsReply>(kShowrecipients);
    round_trips<ShowMessageReply>(kShowmessage);
    round_trips<ShowMessageReply>(kShowmessageUnread);
    round_trips<RemovalReply>(
        R"({"recipients": 3, "messages": 1, "bounced": true, "delivery_suspended": false})");
    round_trips<RedirectReply>(R"({"redirect": "[127.0.0.1]:2526", "recipients": 4})");
    round_trips<RedirectReply>(R"({"redirect": null, "recipients": 0})");
    round_trips<DigReply>(kDig);
}

const char* const kRateRow = R"({
 "time": 1700000000, "connections_in": 3, "connections_out": 7,
 "recipients_received": 123456, "recipients_received_delta": 60,
 "recipients_completed": 123000, "recipients_completed_delta": 0, "kilobytes_used": 2048})";

const char* const kHostRateRow = R"({
 "time": 1700000000, "host": "dst.test", "host_status": "up",
 "current_outbound_connections": 2, "active_recipients": 10, "active_recipients_delta": -3,
 "delivered_recipients": 100, "delivered_recipients_delta": 3, "hard_bounced_recipients": 1,
 "hard_bounced_recipients_delta": 0, "soft_bounced_events": 4, "soft_bounced_events_delta": 1})";

const char* const kDomainDebugList = R"({
 "path": "/var/log/esad/domain_debug.log",
 "domains": [{"domain": "dst.test", "sessions_limit": 5, "sessions": 2, "lines": 40,
              "source": "esactl"},
             {"domain": "cfg.test", "sessions_limit": 0, "sessions": 0, "lines": 0,
              "source": "config"}]})";

TEST_CASE("log command replies round-trip", "[payloads]") {
    round_trips<RateRow>(kRateRow);
    round_trips<HostRateRow>(kHostRateRow);
    round_trips<HostRateRow>(R"({"time": 1700000000, "host": "nx.test",
        "host_status": "unknown", "current_outbound_connections": 0, "active_recipients": 0,
        "active_recipients_delta": 0, "delivered_recipients": 0, "delivered_recipients_delta": 0,
        "hard_bounced_recipients": 0, "hard_bounced_recipients_delta": 0,
        "soft_bounced_events": 0, "soft_bounced_events_delta": 0})");
    round_trips<TailFrame>(
        R"({"log": "mail_logs", "path": "/var/log/esad/mail.log", "lines": ["a", "b\\x07"]})");
    round_trips<TailFrame>(R"({"lines": ["Info: MID 4 ICID 2 From: <a@b.test>"]})");
    round_trips<TailFrame>(R"({"log": "domain_debug", "path": "/x/dd.log", "lines": []})");
    round_trips<FindEventSummary>(R"({"matches": 12, "shown": 2, "truncated": true,
        "files": ["mail.log", "mail.log.1"], "lines_scanned": 5000})");
    round_trips<FindEventMessage>(
        R"({"mid": 7, "lines": ["Info: MID 7 ICID 1", "Info: MID 7 done"], "truncated": false})");
    round_trips<DomainDebugList>(kDomainDebugList);
    round_trips<DomainDebugList>(R"({"path": "/x/dd.log", "domains": []})");
    round_trips<DomainDebugAdded>(
        R"({"domain": "dst.test", "sessions_limit": 0, "path": "/x/dd.log"})");
    round_trips<DomainDebugRemoved>(R"({"domain": "dst.test", "removed": true})");
    // tail's later frames carry only lines.
    CHECK(json(TailFrame{.lines = {"x"}}) == json{{"lines", {"x"}}});
}

TEST_CASE("a missing or wrong-typed reply field is a PayloadError naming it", "[payloads]") {
    using P = json::json_pointer;
    rejects_broken<StatusReply>(kStatus, P("/system_status"));
    rejects_broken<StatusReply>(kStatus, P("/counters/messages_received/uptime"));
    rejects_broken<StatusReply>(kStatus, P("/gauges/kilobytes_free"));
    rejects_broken<StatusReply>(kStatus, P("/spool/healthy"));
    rejects_broken<StatusReply>(kStatus, P("/event_loop/busy_10s"));
    rejects_broken<TophostsReply>(kTophosts, P("/hosts/1/active_recipients"));
    rejects_broken<TophostsReply>(kTophosts, P("/hosts"));
    rejects_broken<HoststatusReply>(kHoststatus, P("/mx_records/0/preference"));
    rejects_broken<HoststatusReply>(kHoststatus, P("/last_5xx_error/text"));
    rejects_broken<ShowMessageReply>(kShowmessage, P("/recipients/0/state"));
    rejects_broken<ShowRecipientsReply>(kShowrecipients, P("/recipients/0/mid"));
    rejects_broken<DigReply>(kDig, P("/answers/0/class"));
    rejects_broken<RateRow>(kRateRow, P("/kilobytes_used"));
    rejects_broken<HostRateRow>(kHostRateRow, P("/host_status"));
    rejects_broken<DomainDebugList>(kDomainDebugList, P("/domains/1/sessions"));

    std::string error;
    CHECK_FALSE(try_parse<TophostsReply>(json::parse(R"([1, 2])"), &error).has_value());
    CHECK(error == "payload: expected an object, got array");
    json t = json::parse(kTophosts);
    t["hosts"][1]["connections_out"] = -4;
    CHECK_FALSE(try_parse<TophostsReply>(t, &error).has_value());
    CHECK(error == "hosts[1].connections_out: expected an unsigned integer, got the number -4");
    CHECK_THROWS_AS(parse<StatusReply>(json::object()), PayloadError);
}

TEST_CASE("nullable fields accept null; omitted ones stay off the wire", "[payloads]") {
    ShowMessageReply m = parse<ShowMessageReply>(json::parse(kShowmessageUnread));
    CHECK_FALSE(m.headers.has_value());
    CHECK_FALSE(m.size.has_value());
    json again = m;
    CHECK(again.contains("headers"));
    CHECK(again["headers"].is_null());
    CHECK_FALSE(again.contains("size"));
    CHECK_FALSE(again.contains("icid"));
}

TEST_CASE("args keep their defaults; wrong-typed args are PayloadErrors", "[payloads]") {
    DigArgs dig = parse<DigArgs>(json{{"name", "x.test"}});
    CHECK(dig.type == "a");
    CHECK(dig.no_cache == false);
    CHECK(parse<SuspendDelArgs>(json::object()).domains == std::vector<std::string>{"ALL"});
    CHECK(parse<DelivernowArgs>(json{{"target", nullptr}}).target == "all");
    TophostsArgs top = parse<TophostsArgs>(json::object());
    CHECK_FALSE(top.sort.has_value());
    CHECK(json(top) == json::object());  // esactl sends only what was given
    CHECK(json(SelectorArgs{}) == json{{"by", "all"}});
    CHECK_THROWS_AS(parse<TophostsArgs>(json{{"limit", "x"}}), PayloadError);
    CHECK_THROWS_AS(parse<SuspendDelArgs>(json{{"domains", {1, 2}}}), PayloadError);
    CHECK_THROWS_AS(parse<ShowMessageArgs>(json{{"mid", -1}}), PayloadError);
    CHECK_THROWS_AS(parse<DigArgs>(json{{"name", {{"a", 1}}}}), PayloadError);
}

const char* const kCaptureStatus = R"json({
 "pid": 4242, "running": false, "file": "esad-20261205T060000Z.pcapng",
 "path": "/var/lib/esad/captures/esad-20261205T060000Z.pcapng", "interface": "any",
 "filter": "(tcp port 25 or tcp port 2525)", "started": 1700000000, "elapsed": 12,
 "bytes": 40960, "packets": 311, "dropped": 0, "max_size": 104857600, "duration": 600,
 "min_free": 268435456, "stopped": 1700000012, "stop_reason": "stopped by esactl"})json";

const char* const kPacketcapture = R"({
 "dir": "/var/lib/esad/captures", "default_filter": "tcp port 25 or tcp port 2525",
 "default_ports": [25, 2525], "keep": 10, "max_size": 104857600, "duration": 600,
 "min_free": 268435456,
 "keylog": {"enabled": true, "domains": ["dst.test"], "path": "/x/tls_keylog.current",
            "bytes": 100},
 "capture": null,
 "captures": [{"file": "a.pcapng", "path": "/var/lib/esad/captures/a.pcapng", "bytes": 3,
               "modified": 1700000000}]})";

TEST_CASE("packetcapture and telnet payloads round-trip", "[payloads]") {
    round_trips<CaptureStatus>(kCaptureStatus);
    json running = json::parse(kCaptureStatus);
    running["running"] = true;
    running.erase("stopped");
    running.erase("stop_reason");
    round_trips<CaptureStatus>(running.dump().c_str());
    round_trips<PacketcaptureReply>(kPacketcapture);
    json status = json::parse(kPacketcapture);
    status.erase("captures");  // action status: no list
    status["capture"] = running;
    round_trips<PacketcaptureReply>(status.dump().c_str());
    CHECK(parse<PacketcaptureArgs>(json::object()).action == "status");

    round_trips<TelnetTrying>(R"({"event": "trying", "ip": "127.0.0.1"})");
    round_trips<TelnetConnectFailed>(
        R"({"event": "connect_failed", "ip": "::1", "message": "connection refused"})");
    round_trips<TelnetConnected>(R"({"event": "connected", "ip": "127.0.0.1", "port": 25,
        "host": "mx.dst.test", "source": "127.0.0.1:40000", "session": "a1b2"})");
    round_trips<TelnetLine>(R"({"event": "line", "text": "220 mx.dst.test ESMTP\\x07"})");
    round_trips<TelnetClosed>(
        R"({"event": "closed", "reason": "Connection closed by foreign host.", "connected": true})");
    round_trips<TelnetSendReply>(R"({"sent": 12})");
    CHECK(json(TelnetArgs{.host = "mx.test", .port = std::nullopt}) == json{{"host", "mx.test"}});
    CHECK(parse<TelnetArgs>(json{{"host", "mx.test"}, {"port", 2525}}).port == 2525);
    CHECK_THROWS_AS(parse<TelnetArgs>(json{{"host", 5}}), PayloadError);
    CHECK_THROWS_AS(parse<TelnetArgs>(json{{"host", "x"}, {"port", "25"}}), PayloadError);
    CHECK_FALSE(parse<TelnetSendArgs>(json{{"session", "a1"}}).line.has_value());
}

TEST_CASE("a damaged capture status or telnet event names the field", "[payloads]") {
    using P = json::json_pointer;
    rejects_broken<CaptureStatus>(kCaptureStatus, P("/path"));
    rejects_broken<CaptureStatus>(kCaptureStatus, P("/running"));
    rejects_broken<CaptureStatus>(kCaptureStatus, P("/packets"));
    rejects_broken<PacketcaptureReply>(kPacketcapture, P("/keylog/domains"));
    rejects_broken<PacketcaptureReply>(kPacketcapture, P("/captures/0/bytes"));
    rejects_broken<TelnetConnected>(R"({"event": "connected", "ip": "127.0.0.1", "port": 25,
        "host": "mx.dst.test", "source": "127.0.0.1:40000", "session": "a1b2"})",
                                    P("/session"));
    rejects_broken<TelnetClosed>(R"({"event": "closed", "reason": "x", "connected": false})",
                                 P("/connected"));
}
