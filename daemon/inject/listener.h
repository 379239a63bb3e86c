// The SMTP injection listener ([listener]): accepts TCP connections, assigns ICIDs, applies
// the connection caps and relay_from, and owns the InjectSessions.
//
// Over max_connections (or max_connections_per_client for one address) a client is still
// accepted, greeted with 421 4.7.0 and closed, so it knows to retry. While the spool is
// unhealthy new clients get 421 4.3.2. stop() closes the listening socket and asks every
// session to end gracefully (421 4.3.2 after any commit in flight).
// Logs: the bound address (daemon log); per-connection lines via the sessions (mail log).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/cidr.h"
#include "daemon/inject/inject_session.h"
#include "daemon/loop/graveyard.h"

namespace esad::inject {

class Listener {
  public:
    Listener(InjectEnv& env, CidrList relay_from, uint32_t max_connections,
             uint32_t max_per_client);
    ~Listener();
    // address: "host:port" / "[v6]:port"; port 0 picks a free port.
    bool start(const std::string& address, std::string* error);
    // Socket activation: listen on an inherited, already bound socket.
    bool start_from_fd(int fd, std::string* error);
    void stop();
    void abort_sessions();
    // "127.0.0.1:2525" as bound.
    const std::string& bound_address() const { return bound_; }
    size_t session_count() const { return sessions_.size(); }
    // Reload: clients connecting from now on are judged by the new list.
    void set_relay_from(CidrList relay_from) { relay_from_ = std::move(relay_from); }
    void set_limits(uint32_t max_connections, uint32_t max_per_client) {
        max_connections_ = max_connections;
        max_per_client_ = max_per_client;
    }

  private:
    void on_connection(int status);
    bool listen_and_log(const std::string& what, std::string* error);
    void on_session_finished(InjectSession* session);

    InjectEnv& env_;
    CidrList relay_from_;
    uint32_t max_connections_;
    uint32_t max_per_client_;
    loop::HandlePtr<loop::Tcp> server_;
    std::string bound_;
    std::map<InjectSession*, std::shared_ptr<InjectSession>> sessions_;
    std::map<std::string, uint32_t> per_client_;
    // Finished sessions, freed from a zero timer so none dies on its own callback's stack.
    loop::Graveyard graveyard_{env_.loop};
};

}  // namespace esad::inject
