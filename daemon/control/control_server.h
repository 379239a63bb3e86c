// The control server: esactl's endpoint (DESIGN.md §6, protocol in common/control_protocol.h).
//
// Listens on a Unix socket created 0660 inside a 0750 directory. Each accepted peer is
// checked with SO_PEERCRED and SO_PEERGROUPS (the kernel's record of the peer's uid, gid and
// supplementary groups when it connected: no /proc read on the loop, no race with a pid
// that was reused): root, the daemon's own uid, or a member of the configured group; anyone
// else gets one `forbidden` error reply and is disconnected. A client that sends no complete
// request within first_request_timeout_ms (10 s) is disconnected. Requests are
// framed by newline (1 MiB cap); each is parsed and dispatched to the handler registered
// for its `cmd`. A malformed request gets an error reply; an oversize line gets a
// `too_large` reply and the connection is closed. Nothing a client sends can affect other
// clients or the daemon.
//
// Startup: a socket file left by a crashed run (connect → ECONNREFUSED) is replaced; a
// live one (another daemon answers) makes start() fail with a message saying so.
// Logs: refused peers (uid/pid), protocol errors at debug level.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "common/control_protocol.h"
#include "daemon/loop/handle.h"

namespace esad::control {

class Connection;

// Lets a handler answer now or later (after async work), once or as a stream. Answers
// after the client disconnected are dropped.
class Responder {
  public:
    Responder(std::weak_ptr<Connection> conn, int64_t id) : conn_(std::move(conn)), id_(id) {}
    void ok(const nlohmann::json& data);
    void error(const std::string& code, const std::string& message);
    void stream(const nlohmann::json& data);  // one of several data lines
    void end();                               // ends a stream
    bool connected() const { return !conn_.expired(); }
    int64_t id() const { return id_; }

  private:
    void send(std::string line);
    std::weak_ptr<Connection> conn_;
    int64_t id_;
};

using Handler = std::function<void(const Request&, std::shared_ptr<Responder>)>;

struct PeerPolicy {
    uid_t daemon_uid = 0;
    bool has_group = false;
    gid_t group = 0;
    uint64_t first_request_timeout_ms = 10 * 1000;
};

// What the kernel recorded of a connected peer (SO_PEERCRED, SO_PEERGROUPS).
struct PeerCredentials {
    uid_t uid = 0;
    gid_t gid = 0;
    pid_t pid = 0;
    std::vector<gid_t> groups;  // supplementary groups
};
// false (errno set) when the socket does not tell.
bool read_peer_credentials(int fd, PeerCredentials* out);

// True when a peer with these credentials may use the socket.
bool peer_allowed(const PeerPolicy& policy, const PeerCredentials& peer);

class ControlServer {
  public:
    ControlServer(uv_loop_t* loop, std::string socket_path, PeerPolicy policy);
    ~ControlServer();

    void add_handler(const std::string& cmd, Handler handler);
    // Creates the directory and socket and starts listening. On failure returns false and
    // sets *error to a message for the operator.
    bool start(std::string* error);
    // Socket activation: serve an inherited listening socket (never unlinked by stop()).
    bool start_from_fd(int fd, std::string* error);
    // Stops listening and disconnects every client; removes the socket file.
    void stop();
    size_t client_count() const { return connections_.size(); }
    const std::string& socket_path() const { return path_; }

  private:
    friend class Connection;
    void on_connection(int status);
    void dispatch(const std::shared_ptr<Connection>& conn, const std::string& line);
    void forget(Connection* conn);

    uv_loop_t* loop_;
    std::string path_;
    PeerPolicy policy_;
    loop::HandlePtr<loop::Pipe> listener_;
    std::map<std::string, Handler> handlers_;
    std::map<Connection*, std::shared_ptr<Connection>> connections_;
    bool bound_ = false;
};

}  // namespace esad::control
