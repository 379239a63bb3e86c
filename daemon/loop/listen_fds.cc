// See listen_fds.h.
#include "daemon/loop/listen_fds.h"
#include "daemon/loop/sockaddr.h"

#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace esad::loop {

namespace {

bool is_tcp(const InheritedSocket& s) {
    return s.stream && s.listening && (s.family == AF_INET || s.family == AF_INET6);
}

bool is_unix(const InheritedSocket& s) {
    return s.stream && s.listening && s.family == AF_UNIX;
}

int pick(const std::vector<InheritedSocket>& sockets, const char* name,
         bool (*fits)(const InheritedSocket&), int taken) {
    for (const auto& s : sockets)
        if (s.name == name && fits(s) && s.fd != taken) return s.fd;
    for (const auto& s : sockets)
        if (fits(s) && s.fd != taken && s.name != "smtp" && s.name != "control") return s.fd;
    return -1;
}

InheritedSocket inspect(int fd, std::string name) {
    InheritedSocket s;
    s.fd = fd;
    s.name = std::move(name);
    int value = 0;
    socklen_t len = sizeof value;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &value, &len) == 0) s.family = value;
    len = sizeof value;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &value, &len) == 0) s.stream = value == SOCK_STREAM;
    len = sizeof value;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &value, &len) == 0) s.listening = value != 0;
    return s;
}

}  // namespace

ListenFds classify_listen_fds(const std::vector<InheritedSocket>& sockets) {
    ListenFds out;
    out.smtp = pick(sockets, "smtp", is_tcp, -1);
    out.control = pick(sockets, "control", is_unix, out.smtp);
    for (const auto& s : sockets)
        if (s.fd != out.smtp && s.fd != out.control) out.unused.push_back(s.fd);
    return out;
}

ListenFds take_listen_fds() {
    char** names = nullptr;
    // unset_environment = 1: nothing esad might start sees descriptors meant for esad.
    int n = sd_listen_fds_with_names(1, &names);
    if (n < 0) spdlog::warn("socket activation: cannot read LISTEN_FDS: {}", strerror(-n));
    std::vector<InheritedSocket> sockets;
    for (int i = 0; i < n; ++i)
        sockets.push_back(inspect(SD_LISTEN_FDS_START + i, names && names[i] ? names[i] : ""));
    if (names) {
        for (int i = 0; names[i]; ++i)
            free(names[i]);
        free(names);
    }
    ListenFds fds = classify_listen_fds(sockets);
    for (const auto& s : sockets) {
        if (s.fd == fds.smtp)
            spdlog::info("socket activation: SMTP listener on inherited fd {} ({})", s.fd, s.name);
        else if (s.fd == fds.control)
            spdlog::info("socket activation: control socket on inherited fd {} ({})", s.fd, s.name);
        else
            spdlog::warn(
                "socket activation: closing inherited fd {} ({}): not a listening TCP or Unix "
                "stream socket, or a second one",
                s.fd, s.name);
    }
    for (int fd : fds.unused)
        ::close(fd);
    fds.unused.clear();
    return fds;
}

int bind_tcp_socket(const std::string& address, std::string* error) {
    sockaddr_storage addr{};
    if (!parse_sockaddr(address, &addr)) {
        *error = "listener.address: cannot parse '" + address + "'";
        return -1;
    }
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *error = "cannot create a socket for " + address + ": " + strerror(errno);
        return -1;
    }
    // As uv_tcp_bind does: a restart must not wait for TIME_WAIT connections to expire.
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    socklen_t len = addr.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
        *error = "cannot bind " + address + ": " + strerror(errno);
        ::close(fd);
        return -1;
    }
    return fd;
}

}  // namespace esad::loop
