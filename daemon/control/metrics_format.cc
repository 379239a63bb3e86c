// See metrics_format.h.
#include "daemon/control/metrics_format.h"

#include <fmt/format.h>

#include <algorithm>
#include <iterator>

namespace esad::control {

namespace {

std::string escape_help(std::string_view text) {
    std::string out;
    for (char c : text) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

class Writer {
  public:
    void family(std::string_view name, std::string_view type, std::string_view help) {
        fmt::format_to(std::back_inserter(out_), "# HELP {} {}\n# TYPE {} {}\n", name,
                       escape_help(help), name, type);
    }
    void sample(std::string_view name, std::uint64_t value) {
        fmt::format_to(std::back_inserter(out_), "{} {}\n", name, value);
    }
    void sample(std::string_view name, std::string_view label, std::string_view label_value,
                std::uint64_t value) {
        fmt::format_to(std::back_inserter(out_), "{}{{{}=\"{}\"}} {}\n", name, label,
                       escape_label_value(label_value), value);
    }
    void gauge(std::string_view name, std::string_view help, std::uint64_t value) {
        family(name, "gauge", help);
        sample(name, value);
    }
    void ratio_gauge(std::string_view name, std::string_view help, double value) {
        family(name, "gauge", help);
        fmt::format_to(std::back_inserter(out_), "{} {:.3f}\n", name, value);
    }
    std::string& text() { return out_; }

  private:
    std::string out_;
};

struct HostFamily {
    const char* name;
    const char* type;
    const char* help;
    std::uint64_t (*value)(const HostSample&);
};

const HostFamily kHostFamilies[] = {
    {"esad_host_active_recipients", "gauge",
     "Recipients queued for this recipient host (unattempted and attempted).",
     [](const HostSample& h) { return h.active_recipients; }},
    {"esad_host_connections_out", "gauge",
     "Outbound connections to this host, established and being opened.",
     [](const HostSample& h) { return std::uint64_t{h.connections_out}; }},
    {"esad_host_down", "gauge", "1 when esad considers this host down, else 0.",
     [](const HostSample& h) { return std::uint64_t{h.down}; }},
    {"esad_host_delivered_recipients_total", "counter",
     "Recipients delivered to this host since esad started.",
     [](const HostSample& h) { return h.delivered_recipients; }},
    {"esad_host_soft_bounced_events_total", "counter",
     "Soft bounces (temporary failures) at this host since esad started.",
     [](const HostSample& h) { return h.soft_bounced_events; }},
    {"esad_host_hard_bounced_recipients_total", "counter",
     "Recipients hard-bounced for this host since esad started.",
     [](const HostSample& h) { return h.hard_bounced_recipients; }},
};

}  // namespace

std::string escape_label_value(std::string_view value) {
    std::string out;
    out.reserve(value.size());
    for (char c : value) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '"')
            out += "\\\"";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

std::vector<HostSample> select_hosts(std::vector<HostSample> hosts, const MetricsOptions& o) {
    auto by_active = [](const HostSample& a, const HostSample& b) {
        if (a.active_recipients != b.active_recipients)
            return a.active_recipients > b.active_recipients;
        return a.host < b.host;
    };
    size_t top = std::min(o.top_hosts, hosts.size());
    std::partial_sort(hosts.begin(), hosts.begin() + static_cast<std::ptrdiff_t>(top), hosts.end(),
                      by_active);
    std::vector<HostSample> out(hosts.begin(), hosts.begin() + static_cast<std::ptrdiff_t>(top));
    std::vector<HostSample> down;
    for (size_t i = top; i < hosts.size(); ++i)
        if (hosts[i].down) down.push_back(hosts[i]);
    size_t shown = std::min(o.max_down_hosts, down.size());
    auto by_name = [](const HostSample& a, const HostSample& b) { return a.host < b.host; };
    std::partial_sort(down.begin(), down.begin() + static_cast<std::ptrdiff_t>(shown), down.end(),
                      by_name);
    out.insert(out.end(), down.begin(), down.begin() + static_cast<std::ptrdiff_t>(shown));
    return out;
}

std::string format_metrics(const MetricsSnapshot& s, const MetricsOptions& options) {
    Writer w;
    w.text().reserve(8192);

    w.family("esad_info", "gauge", "Always 1; labels carry the version and the hostname.");
    fmt::format_to(std::back_inserter(w.text()), "esad_info{{version=\"{}\",hostname=\"{}\"}} 1\n",
                   escape_label_value(s.version), escape_label_value(s.hostname));
    w.gauge("esad_start_time_seconds", "Unix time the esad process started.",
            static_cast<std::uint64_t>(std::max<std::int64_t>(0, s.start_time_seconds)));

    for (size_t i = 0; i < kCounterCount; ++i) {
        const CounterInfo& info = kCounterInfo[i];
        std::string name = fmt::format("esad_{}_total", info.key);
        w.family(name, "counter",
                 fmt::format("{} (esactl status), since esad started.", info.label));
        w.sample(name, s.counters[i]);
    }
    w.family("esad_reloads_total", "counter", "Configuration reloads since esad started.");
    w.sample("esad_reloads_total", s.reloads);

    w.gauge("esad_connections_in", "Open inbound SMTP (injection) connections.", s.connections_in);
    w.gauge("esad_connections_out", "Open outbound SMTP (delivery) connections.",
            s.connections_out);
    w.gauge("esad_active_recipients", "Recipients in the queue (unattempted and attempted).",
            s.active_recipients);
    w.gauge("esad_attempted_recipients",
            "Recipients in the queue that had at least one delivery attempt.",
            s.attempted_recipients);
    w.gauge("esad_destinations", "Recipient hosts (destination domains) esad keeps a queue for.",
            s.destinations);
    std::uint64_t down = 0;
    for (const auto& h : s.hosts)
        down += h.down;
    w.gauge("esad_hosts_down", "Recipient hosts esad currently considers down.", down);
    w.gauge("esad_spool_bytes", "Bytes of message files in the queue.", s.spool_bytes);
    w.gauge("esad_spool_free_bytes", "Free bytes on the spool's file system.", s.spool_free_bytes);
    w.gauge("esad_oldest_message_timestamp_seconds",
            "Unix time the oldest queued message was received; 0 when the queue is empty.",
            static_cast<std::uint64_t>(std::max<std::int64_t>(0, s.oldest_message_unix_ms)) / 1000);
    w.gauge("esad_corrupt_files", "Spool files quarantined by recovery at startup.",
            s.corrupt_files);
    w.family("esad_log_lines_dropped_total", "counter",
             "Log lines dropped because the log disk fell behind (the loop never waits).");
    w.sample("esad_log_lines_dropped_total", s.log_lines_dropped);
    w.gauge("esad_spool_healthy",
            "0 after a spool write (fsync) failure until a probe write succeeds: new "
            "connections get 421 4.3.2; else 1.",
            s.spool_healthy);
    w.gauge("esad_spool_below_free_space_floor",
            "1 while free space is below daemon.spool_min_free_bytes or 1.5 x "
            "listener.max_message_size: MAIL gets 452 4.3.1; else 0.",
            s.spool_below_floor);
    w.gauge("esad_spool_mids_available",
            "0 while no MID can be handed out (reservation not written, e.g. started on a full "
            "spool, or MID space used up): MAIL gets "
            "4xx; else 1.",
            s.mids_available);
    w.gauge("esad_recovering", "1 while the spool is being recovered at startup, else 0.",
            s.recovering);
    w.ratio_gauge("esad_event_loop_busy_ratio",
                  "Share of the last 10 s the event loop thread spent running callbacks "
                  "(1 = saturated).",
                  s.loop_busy_10s);
    w.gauge("esad_delivery_content_budget_bytes",
            "[delivery] content_buffer_budget: the most message content delivery holds in memory.",
            s.content_budget);
    w.gauge("esad_delivery_content_bytes",
            "Message content read from the spool for delivery and not yet sent, all sessions.",
            s.content_in_use);
    w.gauge("esad_delivery_content_waiting_sessions",
            "Delivery sessions waiting for the content budget before their next read.",
            s.content_waiting);
    w.gauge("esad_delivery_suspended", "1 while delivery is suspended by the operator.",
            s.delivery_suspended);
    w.gauge("esad_listener_suspended", "1 while injection is suspended by the operator.",
            s.listener_suspended);

    std::vector<HostSample> shown = select_hosts(s.hosts, options);
    for (const HostFamily& f : kHostFamilies) {
        w.family(f.name, f.type, f.help);
        for (const auto& h : shown)
            w.sample(f.name, "host", h.host, f.value(h));
    }
    return std::move(w.text());
}

}  // namespace esad::control
