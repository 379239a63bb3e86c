// See metrics_server.h.
#include "daemon/control/metrics_server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cstdlib>

#include "daemon/delivery/delivery_manager.h"
#include "daemon/logs/log_file.h"
#include "daemon/loop/sockaddr.h"
#include "esad_version.h"

namespace esad::control {

namespace {

constexpr size_t kMaxRequestBytes = 8192;
constexpr uint64_t kClientTimeoutMs = 5000;
constexpr size_t kMaxClients = 16;

std::string format_address(const sockaddr_storage& ss, bool* loopback) {
    char ip[INET6_ADDRSTRLEN] = {};
    if (ss.ss_family == AF_INET6) {
        auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
        uv_ip6_name(a, ip, sizeof ip);
        *loopback = std::string(ip) == "::1";
        return fmt::format("[{}]:{}", ip, ntohs(a->sin6_port));
    }
    auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    uv_ip4_name(a, ip, sizeof ip);
    *loopback = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    return fmt::format("{}:{}", ip, ntohs(a->sin_port));
}

const char* reason(int code) {
    switch (code) {
        case 200:
            return "OK";
        case 400:
            return "Bad Request";
        case 404:
            return "Not Found";
        default:
            return "Request Header Fields Too Large";
    }
}

// The request line of a complete head: 200 for GET /metrics, else the error status.
int route(std::string_view head) {
    std::string_view line = head.substr(0, head.find('\n'));
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    size_t sp1 = line.find(' ');
    size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos) return 400;
    std::string_view method = line.substr(0, sp1);
    std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    std::string_view version = line.substr(sp2 + 1);
    if (version.substr(0, 7) != "HTTP/1.") return 400;
    std::string_view path = target.substr(0, target.find('?'));
    return method == "GET" && path == "/metrics" ? 200 : 404;
}

}  // namespace

struct MetricsServer::Client {
    loop::HandlePtr<loop::Tcp> tcp;
    loop::HandlePtr<loop::Timer> deadline;
    std::string request;
    bool responded = false;
};

MetricsSnapshot collect_metrics(DaemonState& state, delivery::DeliveryManager* manager) {
    if (state.refresh_gauges) state.refresh_gauges();
    MetricsSnapshot s;
    s.version = ESAD_VERSION;
    s.hostname = state.hostname;
    s.start_time_seconds = state.started;
    for (size_t i = 0; i < kCounterCount; ++i)
        s.counters[i] = state.counters.uptime(static_cast<Counter>(i));
    s.reloads = state.reloads;
    s.recovering = state.recovering;
    s.delivery_suspended = state.delivery_suspended;
    s.listener_suspended = state.listener_suspended;
    s.spool_healthy = state.spool_healthy;
    s.spool_below_floor = state.spool_below_floor;
    s.mids_available = state.mids_available;
    s.connections_in = state.inbound_connections;
    s.connections_out = state.outbound_connections;
    s.active_recipients = state.active_recipients;
    s.attempted_recipients = state.attempted_recipients;
    s.destinations = state.destinations;
    s.spool_bytes = state.spool_bytes;
    s.spool_free_bytes = state.spool_free_bytes;
    s.oldest_message_unix_ms = state.oldest_message_unix_ms;
    s.corrupt_files = state.corrupt_files;
    s.loop_busy_10s = state.loop_busy[1];
    s.content_budget = state.content_budget;
    s.content_in_use = state.content_in_use;
    s.content_waiting = state.content_waiting;
    s.log_lines_dropped = logs::dropped_log_lines();
    if (!manager) return s;
    queue::Scheduler& sch = manager->scheduler();
    s.delivery_suspended = s.delivery_suspended || sch.suspended_all();
    s.hosts.reserve(sch.domain_count());
    for (queue::DomainId d = 0; d < sch.domain_count(); ++d) {
        const queue::DomainQueue& dq = sch.domain(d);
        const queue::DomainCounters& c = dq.counters;
        queue::DomainGauges g = sch.gauges(d);
        HostSample h;
        h.host = dq.name();
        h.down = dq.host().status() == hosts::HostStatus::kDown;
        h.active_recipients = g.active();
        h.connections_out = g.current_connections + g.pending_connections;
        h.delivered_recipients = c.delivered;
        h.soft_bounced_events = c.soft_bounced_events;
        h.hard_bounced_recipients = c.hard_bounced();
        s.hosts.push_back(h);
    }
    return s;
}

MetricsServer::MetricsServer(uv_loop_t* loop, DaemonState& state, ManagerFn manager,
                             size_t top_hosts)
    : loop_(loop), state_(state), manager_(std::move(manager)) {
    options_.top_hosts = top_hosts;
}

MetricsServer::~MetricsServer() {
    stop();
}

bool MetricsServer::start(const std::string& address, std::string* error) {
    sockaddr_storage addr{};
    if (!loop::parse_sockaddr(address, &addr)) {
        *error = "metrics.address: cannot parse '" + address + "'";
        return false;
    }
    server_ = loop::Tcp::create(loop_);
    int rc = uv_tcp_bind(server_->tcp(), reinterpret_cast<sockaddr*>(&addr), 0);
    if (rc == 0) rc = server_->listen(64, [this](int status) { on_connection(status); });
    if (rc != 0) {
        *error = "metrics: cannot listen on " + address + ": " + uv_strerror(rc);
        server_.reset();
        return false;
    }
    sockaddr_storage bound{};
    int len = sizeof bound;
    uv_tcp_getsockname(server_->tcp(), reinterpret_cast<sockaddr*>(&bound), &len);
    bool loopback = false;
    bound_ = format_address(bound, &loopback);
    if (loopback)
        spdlog::info("metrics: Prometheus endpoint http://{}/metrics", bound_);
    else
        spdlog::warn(
            "metrics: Prometheus endpoint http://{}/metrics is not on a loopback address; it "
            "has no authentication and names recipient hosts",
            bound_);
    return true;
}

void MetricsServer::stop() {
    server_.reset();
    for (auto& [raw, client] : clients_) {
        client->tcp.reset();
        client->deadline.reset();
    }
    clients_.clear();
    graveyard_.clear();
}

std::string MetricsServer::render() {
    return format_metrics(collect_metrics(state_, manager_ ? manager_() : nullptr), options_);
}

void MetricsServer::on_connection(int status) {
    if (status != 0) {
        spdlog::debug("metrics: accept failed: {}", uv_strerror(status));
        return;
    }
    auto tcp = loop::Tcp::create(loop_);
    if (uv_accept(server_->stream(), tcp->stream()) != 0) return;
    if (clients_.size() >= kMaxClients) {
        spdlog::debug("metrics: {} clients open, refusing another", clients_.size());
        return;  // tcp closes as it goes out of scope
    }
    auto client = std::make_unique<Client>();
    Client* c = client.get();
    c->tcp = std::move(tcp);
    c->deadline = loop::Timer::create(loop_, [this, c] {
        spdlog::debug("metrics: client timed out");
        finish(c);
    });
    c->deadline->start(kClientTimeoutMs);
    clients_[c] = std::move(client);
    c->tcp->read_start([this, c](const char* data, ssize_t n) { on_read(c, data, n); });
}

void MetricsServer::on_read(Client* c, const char* data, ssize_t n) {
    if (n < 0) {
        finish(c);
        return;
    }
    if (c->responded) return;
    c->request.append(data, static_cast<size_t>(n));
    size_t end = c->request.find("\r\n\r\n");
    if (end == std::string::npos) end = c->request.find("\n\n");
    if (end == std::string::npos) {
        if (c->request.size() > kMaxRequestBytes) respond(c, 431, "request head too large\n");
        return;
    }
    if (end > kMaxRequestBytes) {
        respond(c, 431, "request head too large\n");
        return;
    }
    int code = route(c->request);
    if (code == 200)
        respond(c, 200, render());
    else if (code == 404)
        respond(c, 404, "esad serves GET /metrics only\n");
    else
        respond(c, code, "malformed request\n");
}

void MetricsServer::respond(Client* c, int code, std::string body) {
    c->responded = true;
    c->tcp->read_stop();
    const char* type =
        code == 200 ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain; charset=utf-8";
    std::string response = fmt::format(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        code, reason(code), type, body.size());
    response += body;
    // Closed once the kernel took the answer; the deadline covers a client that never reads.
    c->tcp->write(std::move(response), [this, c] { finish(c); });
}

void MetricsServer::finish(Client* c) {
    auto it = clients_.find(c);
    if (it == clients_.end()) return;
    it->second->tcp.reset();
    it->second->deadline.reset();
    graveyard_.bury(std::move(it->second));
    clients_.erase(it);
}

}  // namespace esad::control
