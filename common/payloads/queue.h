// Control payloads of the delivery-queue and troubleshooting commands (esa-reference §2, §3,
// §4.5, §5, §7.1): tophosts, hoststatus, delivernow, suspenddel/resumedel, suspend, resume,
// workqueue, showrecipients, showmessage, deleterecipients/bouncerecipients,
// redirectrecipients, dig. Times are Unix seconds; null where the event never happened.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/payloads/fields.h"

namespace esad::payloads {

// --- requests -----------------------------------------------------------------------------

struct TophostsArgs {
    using PayloadTag = void;
    static constexpr bool kArgs = true;
    std::optional<std::string> sort{};  // active_rcpts (default), conn_out, deliv_rcpts, ...
    std::optional<int64_t> limit{};     // default 20
    template <class V, class S>
    static void fields(V& v, S& x) {
        v.omit_empty("sort", x.sort);
        v.omit_empty("limit", x.limit);
    }
};

struct HoststatusArgs {
    using PayloadTag = void;
    static constexpr bool kArgs = true;
    std::string domain{};
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("domain", x.domain);
    }
};

struct DelivernowArgs {
    using PayloadTag = void;
    static constexpr bool kArgs = true;
    std::string target = "all";  // "all" or a domain
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("target", x.target);
    }
};

// suspenddel / resumedel
struct SuspendDelArgs {
    using PayloadTag = void;
    static constexpr bool kArgs = true;
    std::vector<std::string> domains = {"ALL"};
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("domains", x.domains);
    }
};

// showrecipients, deleterecipients, bouncerecipients: which recipients.
struct SelectorArgs {
    using PayloadTag = void;
    static constexpr bool kArgs = true;
    std::string by = "all";  // all, host (or domain), sender
    std::optional<std::string> value{};
    std::optional<int64_t> offset{}, limit{};  // showrecipients only (default 0 and 100)
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("by", x.by);
        v.omit_empty("value", x.value);
        v.omit_empty("offset", x.offset);
        v.omit_empty("limit", x.limit);
    }
};

struct WorkqueueArgs {
    using PayloadTag = void;
    static constexpr bool kArgs = true;
    std::string action = "status";
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("action", x.action);
    }
};

struct ShowMessageArgs {
    using PayloadTag = void;
    static constexpr bool kArgs = true;
    uint64_t mid = 0;  // 0: not given
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("mid", x.mid);
    }
};

struct RedirectArgs {
    using PayloadTag = void;
    static constexpr bool kArgs = true;
    std::optional<std::string> host{};  // HOST[:PORT]
    std::optional<bool> clear{};
    template <class V, class S>
    static void fields(V& v, S& x) {
        v.omit_empty("host", x.host);
        v.omit_empty("clear", x.clear);
    }
};

struct DigArgs {
    using PayloadTag = void;
    static constexpr bool kArgs = true;
    std::string type = "a";  // mx, a, aaaa, txt, ptr
    std::string name{};
    bool no_cache = false;
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("type", x.type);
        v("name", x.name);
        v("no_cache", x.no_cache);
    }
};

// --- replies ------------------------------------------------------------------------------

struct TopHost {
    using PayloadTag = void;
    std::string host{}, host_unicode{};  // host_unicode: the U-label form, empty if none
    bool down = false;
    uint64_t active_recipients = 0, connections_out = 0, delivered_recipients = 0, soft_bounced = 0,
             hard_bounced = 0;
    std::string status{};
    std::optional<int64_t> last_activity{};
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("host", x.host);
        v("host_unicode", x.host_unicode);
        v("down", x.down);
        v("active_recipients", x.active_recipients);
        v("connections_out", x.connections_out);
        v("delivered_recipients", x.delivered_recipients);
        v("soft_bounced", x.soft_bounced);
        v("hard_bounced", x.hard_bounced);
        v("status", x.status);
        v("last_activity", x.last_activity);
    }
};

struct TophostsReply {
    using PayloadTag = void;
    int64_t status_as_of = 0;
    std::string sort{};
    uint64_t total_hosts = 0;
    std::vector<TopHost> hosts{};
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("status_as_of", x.status_as_of);
        v("sort", x.sort);
        v("total_hosts", x.total_hosts);
        v("hosts", x.hosts);
    }
};

// A destination's counters (queue::DomainCounters).
struct HostCounters {
    using PayloadTag = void;
    uint64_t soft_bounced_events = 0, completed_recipients = 0, hard_bounced_recipients = 0,
             dns_hard_bounces = 0, fivexx_hard_bounces = 0, expired_hard_bounces = 0,
             filter_hard_bounces = 0, other_hard_bounces = 0, delivered_recipients = 0,
             deleted_recipients = 0;
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("soft_bounced_events", x.soft_bounced_events);
        v("completed_recipients", x.completed_recipients);
        v("hard_bounced_recipients", x.hard_bounced_recipients);
        v("dns_hard_bounces", x.dns_hard_bounces);
        v("5xx_hard_bounces", x.fivexx_hard_bounces);
        v("expired_hard_bounces", x.expired_hard_bounces);
        v("filter_hard_bounces", x.filter_hard_bounces);
        v("other_hard_bounces", x.other_hard_bounces);
        v("delivered_recipients", x.delivered_recipients);
        v("deleted_recipients", x.deleted_recipients);
    }
};

struct HostGauges {
    using PayloadTag = void;
    uint64_t active_recipients = 0, unattempted_recipients = 0, attempted_recipients = 0,
             current_outbound_connections = 0, pending_outbound_connections = 0;
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("active_recipients", x.active_recipients);
        v("unattempted_recipients", x.unattempted_recipients);
        v("attempted_recipients", x.attempted_recipients);
        v("current_outbound_connections", x.current_outbound_connections);
        v("pending_outbound_connections", x.pending_outbound_connections);
    }
};

// An address of the destination as the resolver cache orders it.
struct OrderedIp {
    using PayloadTag = void;
    std::string host{}, ip{};
    uint64_t expires_in = 0;
    int64_t expires_at = 0;
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("host", x.host);
        v("ip", x.ip);
        v("expires_in", x.expires_in);
        v("expires_at", x.expires_at);
    }
};

struct MxRecord {
    using PayloadTag = void;
    uint64_t preference = 0;
    std::string host{};
    uint64_t ttl = 0;
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("preference", x.preference);
        v("host", x.host);
        v("ttl", x.ttl);
    }
};

// What delivery learned about one address of the destination.
struct IpHistory {
    using PayloadTag = void;
    std::string ip{};
    std::optional<int64_t> last_attempt{};
    std::string last_error{};
    uint64_t failures = 0, successes = 0;
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("ip", x.ip);
        v("last_attempt", x.last_attempt);
        v("last_error", x.last_error);
        v("failures", x.failures);
        v("successes", x.successes);
    }
};

struct LastError {
    using PayloadTag = void;
    std::string text{};  // empty: none
    std::optional<int64_t> at{};
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("text", x.text);
        v("at", x.at);
    }
};

struct HoststatusReply {
    using PayloadTag = void;
    std::string host{}, host_unicode{};
    int64_t status_as_of = 0;
    std::string status{};  // up, down, unknown
    std::optional<int64_t> retry_at{};
    HostCounters counters{};
    HostGauges gauges{};
    std::optional<int64_t> oldest_message{}, last_activity{};
    bool suspended = false;
    std::vector<std::string> routes{};
    std::vector<OrderedIp> ordered_ips{};
    std::vector<MxRecord> mx_records{};
    std::vector<IpHistory> ips{};
    LastError last_5xx_error{}, last_soft_error{};
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("host", x.host);
        v("host_unicode", x.host_unicode);
        v("status_as_of", x.status_as_of);
        v("status", x.status);
        v("retry_at", x.retry_at);
        v("counters", x.counters);
        v("gauges", x.gauges);
        v("oldest_message", x.oldest_message);
        v("last_activity", x.last_activity);
        v("suspended", x.suspended);
        v("routes", x.routes);
        v("ordered_ips", x.ordered_ips);
        v("mx_records", x.mx_records);
        v("ips", x.ips);
        v("last_5xx_error", x.last_5xx_error);
        v("last_soft_error", x.last_soft_error);
    }
};

struct DelivernowReply {
    using PayloadTag = void;
    std::string target{};
    uint64_t recipients = 0;
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("target", x.target);
        v("recipients", x.recipients);
    }
};

// suspenddel / resumedel
struct SuspendDelReply {
    using PayloadTag = void;
    bool suspended = false;              // suspenddel (true) or resumedel
    std::vector<std::string> domains{};  // done ("ALL" for all)
    std::vector<std::string> unknown{};  // no record of these
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("suspended", x.suspended);
        v("domains", x.domains);
        v("unknown", x.unknown);
    }
};

struct SuspendReply {
    using PayloadTag = void;
    std::string listener{};
    bool receiving_suspended = false, delivery_suspended = false;
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("listener", x.listener);
        v("receiving_suspended", x.receiving_suspended);
        v("delivery_suspended", x.delivery_suspended);
    }
};

struct ResumeReply {
    using PayloadTag = void;
    std::string listener{};
    bool receiving_resumed = false, delivery_resumed = false;  // false: was not suspended
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("listener", x.listener);
        v("receiving_resumed", x.receiving_resumed);
        v("delivery_resumed", x.delivery_resumed);
    }
};

struct WorkqueueReply {
    using PayloadTag = void;
    std::string status{};  // Operational, Suspended, Recovering
    uint64_t messages = 0, batches_in_flight = 0;
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("status", x.status);
        v("messages", x.messages);
        v("batches_in_flight", x.batches_in_flight);
    }
};

struct QueuedRecipient {
    using PayloadTag = void;
    uint64_t mid = 0, rid = 0;
    std::string sender{}, recipient{}, host{};  // sender and recipient as the client sent them
    int64_t age_seconds = 0;
    uint64_t attempts = 0;
    std::string state{};  // ready, deferred, delivering, completed
    std::optional<int64_t> next_attempt{};
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("mid", x.mid);
        v("rid", x.rid);
        v("sender", x.sender);
        v("recipient", x.recipient);
        v("host", x.host);
        v("age_seconds", x.age_seconds);
        v("attempts", x.attempts);
        v("state", x.state);
        v("next_attempt", x.next_attempt);
    }
};

struct ShowRecipientsReply {
    using PayloadTag = void;
    uint64_t total = 0;
    int64_t offset = 0;
    std::vector<QueuedRecipient> recipients{};
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("total", x.total);
        v("offset", x.offset);
        v("recipients", x.recipients);
    }
};

struct MessageRecipient {
    using PayloadTag = void;
    uint64_t rid = 0;
    std::string recipient{}, host{}, state{};
    uint64_t attempts = 0;
    std::optional<int64_t> next_attempt{};
    std::string host_status{};
    bool suspended = false;
    std::string last_error{};
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("rid", x.rid);
        v("recipient", x.recipient);
        v("host", x.host);
        v("state", x.state);
        v("attempts", x.attempts);
        v("next_attempt", x.next_attempt);
        v("host_status", x.host_status);
        v("suspended", x.suspended);
        v("last_error", x.last_error);
    }
};

struct ShowMessageReply {
    using PayloadTag = void;
    uint64_t mid = 0;
    std::optional<int64_t> received{};
    std::string sender{};
    std::vector<MessageRecipient> recipients{};  // by RID
    std::optional<std::string> headers{};        // null when the file was not read
    std::optional<std::string> headers_error{};  // why not
    // From the stored envelope, when the file was read:
    std::optional<uint64_t> size{}, icid{};
    std::optional<std::string> client_ip{}, client_helo{};
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("mid", x.mid);
        v("received", x.received);
        v("sender", x.sender);
        v("recipients", x.recipients);
        v("headers", x.headers);
        v.omit_empty("headers_error", x.headers_error);
        v.omit_empty("size", x.size);
        v.omit_empty("icid", x.icid);
        v.omit_empty("client_ip", x.client_ip);
        v.omit_empty("client_helo", x.client_helo);
    }
};

// deleterecipients / bouncerecipients
struct RemovalReply {
    using PayloadTag = void;
    uint64_t recipients = 0, messages = 0;
    bool bounced = false, delivery_suspended = false;
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("recipients", x.recipients);
        v("messages", x.messages);
        v("bounced", x.bounced);
        v("delivery_suspended", x.delivery_suspended);
    }
};

struct RedirectReply {
    using PayloadTag = void;
    std::optional<std::string> redirect{};  // null: cleared
    uint64_t recipients = 0;
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("redirect", x.redirect);
        v("recipients", x.recipients);
    }
};

struct DigRecord {
    using PayloadTag = void;
    std::string name{};
    uint64_t ttl = 0;
    std::string dns_class{}, type{}, data{};
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("name", x.name);
        v("ttl", x.ttl);
        v("class", x.dns_class);
        v("type", x.type);
        v("data", x.data);
    }
};

struct DigReply {
    using PayloadTag = void;
    std::string name{}, type{}, status{};  // status "ok" only with an answer
    bool from_cache = false;
    std::string error{};
    std::vector<DigRecord> answers{};
    template <class V, class S>
    static void fields(V& v, S& x) {
        v("name", x.name);
        v("type", x.type);
        v("status", x.status);
        v("from_cache", x.from_cache);
        v("error", x.error);
        v("answers", x.answers);
    }
};

}  // namespace esad::payloads
