// See listener.h.
#include "daemon/inject/listener.h"
#include "daemon/loop/sockaddr.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace esad::inject {

namespace {
std::string format_address(const sockaddr_storage& ss, bool with_port) {
    char ip[INET6_ADDRSTRLEN] = {};
    int port = 0;
    if (ss.ss_family == AF_INET6) {
        auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
        uv_ip6_name(a, ip, sizeof ip);
        port = ntohs(a->sin6_port);
        if (with_port) return fmt::format("[{}]:{}", ip, port);
    } else {
        auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
        uv_ip4_name(a, ip, sizeof ip);
        port = ntohs(a->sin_port);
        if (with_port) return fmt::format("{}:{}", ip, port);
    }
    return ip;
}
}  // namespace

Listener::Listener(InjectEnv& env, CidrList relay_from, uint32_t max_connections,
                   uint32_t max_per_client)
    : env_(env),
      relay_from_(std::move(relay_from)),
      max_connections_(max_connections),
      max_per_client_(max_per_client) {}

Listener::~Listener() {
    stop();
    sessions_.clear();
    graveyard_.clear();
}

bool Listener::start(const std::string& address, std::string* error) {
    sockaddr_storage addr{};
    if (!loop::parse_sockaddr(address, &addr)) {
        *error = "listener.address: cannot parse '" + address + "'";
        return false;
    }
    server_ = loop::Tcp::create(env_.loop);
    int rc = uv_tcp_bind(server_->tcp(), reinterpret_cast<sockaddr*>(&addr), 0);
    if (rc != 0) {
        *error = "cannot listen on " + address + ": " + uv_strerror(rc);
        server_.reset();
        return false;
    }
    return listen_and_log(address, error);
}

bool Listener::start_from_fd(int fd, std::string* error) {
    server_ = loop::Tcp::create(env_.loop);
    int rc = uv_tcp_open(server_->tcp(), fd);
    if (rc != 0) {
        *error =
            "cannot use inherited SMTP socket (fd " + std::to_string(fd) + "): " + uv_strerror(rc);
        server_.reset();
        return false;
    }
    return listen_and_log("inherited socket fd " + std::to_string(fd), error);
}

// libuv reports most bind errors (EADDRINUSE) only here, at listen().
bool Listener::listen_and_log(const std::string& what, std::string* error) {
    const int sndbuf = kReplySendBufferBytes;  // inherited by every accepted connection
    if (setsockopt(server_->fileno(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf) != 0)
        spdlog::warn("listener: cannot set SO_SNDBUF on {}: {}", what, std::strerror(errno));
    int rc = server_->listen(1024, [this](int status) { on_connection(status); });
    if (rc != 0) {
        *error = "cannot listen on " + what + ": " + uv_strerror(rc);
        server_.reset();
        return false;
    }
    sockaddr_storage bound{};
    int len = sizeof bound;
    uv_tcp_getsockname(server_->tcp(), reinterpret_cast<sockaddr*>(&bound), &len);
    bound_ = format_address(bound, true);
    env_.interface_ip = format_address(bound, false);
    spdlog::info("SMTP listener on {}", bound_);
    return true;
}

void Listener::stop() {
    server_.reset();
    auto sessions = sessions_;
    for (auto& [raw, session] : sessions)
        session->shutdown();
}

void Listener::abort_sessions() {
    auto sessions = sessions_;
    for (auto& [raw, session] : sessions)
        session->abort();
}

void Listener::on_connection(int status) {
    if (status != 0) {
        spdlog::warn("listener: accept failed: {}", uv_strerror(status));
        return;
    }
    auto tcp = loop::Tcp::create(env_.loop);
    if (uv_accept(server_->stream(), tcp->stream()) != 0) return;
    uv_tcp_nodelay(tcp->tcp(), 1);
    sockaddr_storage peer{};
    int len = sizeof peer;
    uv_tcp_getpeername(tcp->tcp(), reinterpret_cast<sockaddr*>(&peer), &len);
    std::string ip = format_address(peer, false);

    uint64_t icid = ++env_.state->current_icid;
    smtp::Greeting greeting = smtp::Greeting::kReady;
    if (!env_.committer->healthy())
        greeting = smtp::Greeting::kSpoolUnavailable;
    else if (env_.state->listener_suspended)
        greeting = smtp::Greeting::kSuspended;
    else if (sessions_.size() >= max_connections_ || per_client_[ip] >= max_per_client_)
        greeting = smtp::Greeting::kTooManyConnections;

    auto session =
        std::make_shared<InjectSession>(env_, std::move(tcp), icid, ip, relay_from_.contains(ip));
    sessions_[session.get()] = session;
    ++per_client_[ip];
    session->start(greeting, [this](InjectSession* s) { on_session_finished(s); });
}

void Listener::on_session_finished(InjectSession* session) {
    auto it = sessions_.find(session);
    if (it == sessions_.end()) return;
    auto pc = per_client_.find(session->peer_ip());
    if (pc != per_client_.end() && --pc->second == 0) per_client_.erase(pc);
    graveyard_.bury(std::move(it->second));
    sessions_.erase(it);
}

}  // namespace esad::inject
