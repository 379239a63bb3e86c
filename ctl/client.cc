// See client.h.
#include "ctl/client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace esad::ctl {

Client::~Client() {
    if (fd_ >= 0) ::close(fd_);
}

int connect_control_socket(const std::string& path, std::string* error) {
    sockaddr_un addr{};
    if (path.size() >= sizeof addr.sun_path) {
        *error = "socket path too long: " + path;
        return -1;
    }
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *error = std::string("socket: ") + strerror(errno);
        return -1;
    }
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size());
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        *error = "cannot connect to esad at " + path + ": " + strerror(errno);
        ::close(fd);
        return -1;
    }
    return fd;
}

bool Client::connect(const std::string& path, double timeout_s, std::string* error) {
    timeout_s_ = timeout_s;
    fd_ = connect_control_socket(path, error);
    return fd_ >= 0;
}

bool Client::read_line(std::string* line, std::string* error) {
    for (;;) {
        size_t nl = buffer_.find('\n');
        if (nl != std::string::npos) {
            *line = buffer_.substr(0, nl);
            buffer_.erase(0, nl + 1);
            return true;
        }
        if (buffer_.size() > control::kMaxLineBytes * 16) {
            *error = "reply from esad too large";
            return false;
        }
        pollfd p{fd_, POLLIN, 0};
        int timeout_ms = timeout_s_ <= 0 ? -1 : static_cast<int>(timeout_s_ * 1000);
        int rc = ::poll(&p, 1, timeout_ms);
        if (rc == 0) {
            *error = "timed out waiting for esad";
            return false;
        }
        if (rc < 0) {
            if (errno == EINTR) continue;
            *error = std::string("poll: ") + strerror(errno);
            return false;
        }
        char buf[65536];
        ssize_t n = ::read(fd_, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            *error =
                n == 0 ? "esad closed the connection" : std::string("read: ") + strerror(errno);
            return false;
        }
        buffer_.append(buf, static_cast<size_t>(n));
    }
}

std::optional<control::Reply> Client::call(const std::string& cmd, const nlohmann::json& args,
                                           std::string* error) {
    control::Request req;
    req.id = next_id_++;
    req.cmd = cmd;
    req.args = args.is_null() ? nlohmann::json::object() : args;
    std::string wire = control::encode_request(req);
    size_t off = 0;
    while (off < wire.size()) {
        ssize_t n = ::send(fd_, wire.data() + off, wire.size() - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            // The daemon may have answered (e.g. "forbidden") and closed before reading.
            std::string send_error = std::string("send: ") + strerror(errno);
            if (auto early = next(error)) return early;
            *error = send_error;
            return std::nullopt;
        }
        off += static_cast<size_t>(n);
    }
    return next(error);
}

std::optional<control::Reply> Client::next(std::string* error) {
    std::string line;
    if (!read_line(&line, error)) return std::nullopt;
    auto reply = control::parse_reply(line);
    if (!reply) *error = "esad sent a reply this esactl does not understand";
    return reply;
}

}  // namespace esad::ctl
