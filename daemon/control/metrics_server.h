// The Prometheus endpoint ([metrics] address, docs/metrics.md): a tiny HTTP/1.x responder
// on the loop that answers `GET /metrics` with format_metrics() of the current state.
//
//   MetricsServer m(loop, state, [&] { return delivery.get(); }, top_hosts);
//   m.start("127.0.0.1:9465", &error);   ...   m.stop();
//
// One response per connection (Connection: close, Content-Length set). `GET /metrics` (any
// query string) gets 200 text/plain; version=0.0.4; any other method or path 404; a request
// line that is not HTTP/1.x 400; a request head over 8 KiB 431. Each connection has 5 s to
// send its request head and take the answer, after which it is closed; at most 16 are open at
// once (more are closed at accept). The exposition is built on the loop from in-memory state
// (one pass over the destination queues); nothing blocks.
// Logs (daemon log): the bound address at info (warning when it is not a loopback address);
// refused and timed-out clients at debug.
#pragma once

#include <uv.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "daemon/control/metrics_format.h"
#include "daemon/daemon_state.h"
#include "daemon/loop/graveyard.h"
#include "daemon/loop/handle.h"

namespace esad::delivery {
class DeliveryManager;
}

namespace esad::control {

// The snapshot format_metrics() renders: the daemon's counters and gauges, and one sample
// per destination queue when the queue is loaded (manager non-null).
MetricsSnapshot collect_metrics(DaemonState& state, delivery::DeliveryManager* manager);

class MetricsServer {
  public:
    using ManagerFn = std::function<delivery::DeliveryManager*()>;
    MetricsServer(uv_loop_t* loop, DaemonState& state, ManagerFn manager, size_t top_hosts);
    ~MetricsServer();

    // address: "host:port" / "[v6]:port"; port 0 picks a free port.
    bool start(const std::string& address, std::string* error);
    // Closes the listening socket and every open connection.
    void stop();
    void set_top_hosts(size_t n) { options_.top_hosts = n; }
    // "127.0.0.1:9465" as bound; empty before start().
    const std::string& bound_address() const { return bound_; }
    // The current exposition text (what a scrape returns).
    std::string render();

  private:
    struct Client;
    void on_connection(int status);
    void on_read(Client* client, const char* data, ssize_t n);
    void respond(Client* client, int code, std::string body);
    void finish(Client* client);

    uv_loop_t* loop_;
    DaemonState& state_;
    ManagerFn manager_;
    MetricsOptions options_;
    loop::HandlePtr<loop::Tcp> server_;
    std::string bound_;
    std::map<Client*, std::unique_ptr<Client>> clients_;
    // Finished clients, freed from a zero timer: never on their own callback's stack.
    loop::Graveyard graveyard_{loop_};
};

}  // namespace esad::control
