// See control_server.h.
#include "daemon/control/control_server.h"

#include <errno.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/make_dirs.h"
#include "common/payloads/fields.h"

namespace esad::control {

namespace {
constexpr size_t kMaxClients = 64;
// Slots only root may take: silent connections of other users cannot lock the operator out.
constexpr size_t kRootReserve = 4;
// A client that does not read its replies is cut off instead of growing our buffers.
constexpr size_t kMaxPendingWrite = 8 * 1024 * 1024;

}  // namespace

bool read_peer_credentials(int fd, PeerCredentials* out) {
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
    out->uid = cred.uid;
    out->gid = cred.gid;
    out->pid = cred.pid;
    // SO_PEERGROUPS (Linux 4.13): ERANGE with the needed length when the buffer is short.
    std::vector<gid_t> groups(16);
    for (int tries = 0; tries < 4; ++tries) {
        len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) == 0) {
            groups.resize(len / sizeof(gid_t));
            out->groups = std::move(groups);
            return true;
        }
        if (errno != ERANGE) return false;
        groups.resize(len / sizeof(gid_t) + 1);
    }
    return false;
}

bool peer_allowed(const PeerPolicy& policy, const PeerCredentials& peer) {
    if (peer.uid == 0 || peer.uid == policy.daemon_uid) return true;
    if (!policy.has_group) return false;
    if (peer.gid == policy.group) return true;
    return std::find(peer.groups.begin(), peer.groups.end(), policy.group) != peer.groups.end();
}

// One accepted client. Shared ownership lets Responders outlive a request safely; the
// uv handle inside is closed through its HandlePtr when the server forgets the connection.
class Connection : public std::enable_shared_from_this<Connection> {
  public:
    Connection(ControlServer* server, loop::HandlePtr<loop::Pipe> pipe)
        : server_(server), pipe_(std::move(pipe)) {}

    // A connection that has not sent a complete request by then is closed (a client that did
    // is a real one: `tail` and `rate` may then stay quiet for as long as they like).
    void start(uv_loop_t* loop, uint64_t first_request_timeout_ms) {
        std::weak_ptr<Connection> weak = weak_from_this();
        pipe_->read_start([weak](const char* data, ssize_t n) {
            if (auto self = weak.lock()) self->on_read(data, n);
        });
        idle_ = loop::Timer::create(loop, [weak, first_request_timeout_ms] {
            auto self = weak.lock();
            if (!self || self->closed_) return;
            spdlog::info("control: client sent no request in {} s, disconnecting",
                         first_request_timeout_ms / 1000);
            self->shutdown(false);
        });
        idle_->start(first_request_timeout_ms, 0);
    }

    void send(std::string line) {
        if (closed_) return;
        if (pipe_->write_queue_size() + line.size() > kMaxPendingWrite) {
            spdlog::warn("control: client not reading its replies, disconnecting");
            shutdown(false);
            return;
        }
        pipe_->write(std::move(line));
    }

    // Flushes pending replies (when asked) and forgets this connection.
    void shutdown(bool flush) {
        if (closed_) return;
        closed_ = true;
        idle_.reset();
        if (flush)
            pipe_->close_after_writes();
        else
            pipe_->close();
        // Keep the pipe object alive until its close completes: releasing the HandlePtr
        // would close it immediately and drop the queued reply.
        pipe_.release();
        server_->forget(this);
    }

    int fd() const { return pipe_->fileno(); }

  private:
    void on_read(const char* data, ssize_t n) {
        if (n < 0) {
            shutdown(false);
            return;
        }
        framer_.append(std::string_view(data, static_cast<size_t>(n)));
        auto self = shared_from_this();  // dispatch may forget us
        while (!closed_) {
            std::optional<std::string> line = framer_.next_line();
            if (!line) break;
            if (line->empty()) continue;
            idle_.reset();  // a real client from now on
            server_->dispatch(self, *line);
        }
        if (!closed_ && framer_.overflowed()) {
            send(encode_error(std::nullopt, "too_large", "request line exceeds 1 MiB"));
            shutdown(true);
        }
    }

    ControlServer* server_;
    loop::HandlePtr<loop::Pipe> pipe_;
    LineFramer framer_;
    loop::HandlePtr<loop::Timer> idle_;  // until the first request
    bool closed_ = false;
};

void Responder::send(std::string line) {
    if (auto c = conn_.lock()) c->send(std::move(line));
}
void Responder::ok(const nlohmann::json& data) {
    send(encode_ok(id_, data));
}
void Responder::error(const std::string& code, const std::string& message) {
    send(encode_error(id_, code, message));
}
void Responder::stream(const nlohmann::json& data) {
    send(encode_ok(id_, data));
}
void Responder::end() {
    send(encode_end(id_));
}

ControlServer::ControlServer(uv_loop_t* loop, std::string socket_path, PeerPolicy policy)
    : loop_(loop), path_(std::move(socket_path)), policy_(policy) {}

ControlServer::~ControlServer() {
    stop();
}

void ControlServer::add_handler(const std::string& cmd, Handler handler) {
    handlers_[cmd] = std::move(handler);
}

bool ControlServer::start(std::string* error) {
    sockaddr_un addr{};
    if (path_.size() >= sizeof addr.sun_path) {
        *error = "control socket path too long: " + path_;
        return false;
    }
    std::string dir = path_.substr(0, path_.rfind('/') == std::string::npos ? 0 : path_.rfind('/'));
    if (!dir.empty()) {
        std::string why;
        if (!make_dirs(dir, 0750, &why)) {
            *error = "control socket directory: " + why;
            return false;
        }
        chmod(dir.c_str(), 0750);
        if (policy_.has_group && chown(dir.c_str(), static_cast<uid_t>(-1), policy_.group) != 0) {
            *error =
                "daemon.control_group: cannot set the group of " + dir + ": " + strerror(errno);
            return false;
        }
    }

    // Is another daemon answering on this path?
    struct stat st {};
    if (lstat(path_.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            *error = "control socket path exists and is not a socket: " + path_;
            return false;
        }
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        addr.sun_family = AF_UNIX;
        std::memcpy(addr.sun_path, path_.c_str(), path_.size());
        int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        int err = errno;
        ::close(fd);
        if (rc == 0) {
            *error = "another esad is already running on control socket " + path_;
            return false;
        }
        if (err != ECONNREFUSED && err != ENOENT) {
            *error = "cannot probe control socket " + path_ + ": " + strerror(err);
            return false;
        }
        spdlog::info("control: replacing stale socket {}", path_);
        unlink(path_.c_str());
    }

    listener_ = loop::Pipe::create(loop_);
    mode_t old_mask = umask(0117);  // the socket is born 0660
    int rc = uv_pipe_bind(reinterpret_cast<uv_pipe_t*>(listener_->stream()), path_.c_str());
    umask(old_mask);
    if (rc != 0) {
        *error = "cannot bind control socket " + path_ + ": " + uv_strerror(rc);
        listener_.reset();
        return false;
    }
    bound_ = true;
    chmod(path_.c_str(), 0660);
    if (policy_.has_group && chown(path_.c_str(), static_cast<uid_t>(-1), policy_.group) != 0) {
        *error = "daemon.control_group: cannot set the group of " + path_ + ": " + strerror(errno);
        return false;
    }
    rc = listener_->listen(64, [this](int status) { on_connection(status); });
    if (rc != 0) {
        *error = "cannot listen on control socket " + path_ + ": " + uv_strerror(rc);
        return false;
    }
    return true;
}

bool ControlServer::start_from_fd(int fd, std::string* error) {
    listener_ = loop::Pipe::create(loop_);
    int rc = uv_pipe_open(reinterpret_cast<uv_pipe_t*>(listener_->stream()), fd);
    if (rc == 0) rc = listener_->listen(64, [this](int status) { on_connection(status); });
    if (rc != 0) {
        *error = "cannot use inherited control socket (fd " + std::to_string(fd) +
                 "): " + uv_strerror(rc);
        listener_.reset();
        return false;
    }
    return true;
}

void ControlServer::stop() {
    listener_.reset();
    auto conns = connections_;
    for (auto& [raw, conn] : conns)
        conn->shutdown(true);
    connections_.clear();
    if (bound_) {
        unlink(path_.c_str());
        bound_ = false;
    }
}

void ControlServer::on_connection(int status) {
    if (status != 0) return;
    auto pipe = loop::Pipe::create(loop_);
    if (uv_accept(listener_->stream(), pipe->stream()) != 0) return;

    PeerCredentials cred;
    if (!read_peer_credentials(pipe->fileno(), &cred) || !peer_allowed(policy_, cred)) {
        spdlog::warn("control: refused peer uid={} gid={} pid={}", cred.uid, cred.gid, cred.pid);
        loop::Pipe* raw = pipe.release();
        raw->write(encode_error(std::nullopt, "forbidden",
                                "permission denied: not root, the daemon's user or in its group"));
        raw->close_after_writes();
        return;
    }
    if (connections_.size() >= kMaxClients + (cred.uid == 0 ? kRootReserve : 0)) {
        loop::Pipe* raw = pipe.release();
        raw->write(encode_error(std::nullopt, "unavailable", "too many control clients"));
        raw->close_after_writes();
        return;
    }
    auto conn = std::make_shared<Connection>(this, std::move(pipe));
    connections_[conn.get()] = conn;
    conn->start(loop_, policy_.first_request_timeout_ms);
}

void ControlServer::forget(Connection* conn) {
    connections_.erase(conn);
}

void ControlServer::dispatch(const std::shared_ptr<Connection>& conn, const std::string& line) {
    ParsedRequest parsed = parse_request(line);
    if (!parsed.ok()) {
        spdlog::debug("control: bad request: {}", parsed.error.message);
        conn->send(encode_error(parsed.error.id, parsed.error.code, parsed.error.message));
        return;
    }
    const Request& req = *parsed.request;
    auto it = handlers_.find(req.cmd);
    auto responder = std::make_shared<Responder>(conn, req.id);
    if (it == handlers_.end()) {
        responder->error("unknown_command", "unknown command '" + req.cmd + "'");
        return;
    }
    // No command takes a fractional number: a float where an integer is expected would be
    // converted with undefined behaviour (1e300), so it is refused before any handler runs.
    for (const auto& [key, value] : req.args.items()) {
        if (value.is_number_float()) {
            responder->error("bad_args", "argument '" + key + "' must be an integer");
            return;
        }
    }
    try {
        it->second(req, responder);
    } catch (const payloads::PayloadError& e) {
        // Arguments that do not fit the command's args payload (common/payloads/).
        responder->error("bad_args", std::string("argument of the wrong type: ") + e.what());
    } catch (const nlohmann::json::exception& e) {
        // An argument of the wrong type (a string where a number belongs, ...): the client's
        // mistake, answered as such. Handlers read their arguments before acting.
        responder->error("bad_args", std::string("argument of the wrong type: ") + e.what());
    } catch (const std::exception& e) {
        // Handlers validate their args; a throw here is a bug, reported, not fatal.
        spdlog::error("control: handler for '{}' failed: {}", req.cmd, e.what());
        responder->error("internal", std::string("internal error: ") + e.what());
    }
}

}  // namespace esad::control
