// Control commands for monitoring and logs (esa-reference §4.3, §4.4, §7.4, §8.6):
//   rate [interval]            stream: one row every `interval` seconds (§4.3 columns)
//   hostrate domain [interval] stream: one row every `interval` seconds (§4.4 columns)
//   tail [log] [lines]         stream: the last `lines` lines of mail_logs or domain_debug,
//                              then every new line as it is written
//   findevent {criteria}       stream: a summary, then one item per matching MID with every
//                              line of its history (common/log_search.h), then the end
//   domaindebug add|remove|list
// Streams end when the client disconnects (noticed at the next row, poll or sampler tick) or
// when the daemon stops (stop(): each gets its end line). Reply data fields are part of the
// control-protocol contract (README "Control protocol").
//
// LogCommands also feeds the RateTracker: a 1-second timer samples the daemon's counters,
// so the `status detail` rates cost nothing on the delivery path. File reads (tail polling,
// findevent's scans) run on the libuv thread pool; the loop never reads a file. One
// findevent runs at a time (a long scan must not hold more than one pool thread that spool
// and journal work also need); a second gets `unavailable`.
#pragma once

#include <uv.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/rate_tracker.h"
#include "daemon/control/control_server.h"
#include "daemon/daemon_state.h"
#include "daemon/delivery/delivery_manager.h"
#include "daemon/logs/domain_debug.h"
#include "daemon/loop/handle.h"

namespace esad::control {

struct LogCommandsEnv {
    uv_loop_t* loop = nullptr;
    DaemonState* state = nullptr;
    std::function<delivery::DeliveryManager*()> manager;  // null until recovery finished
    std::string logs_dir;                                 // <logging.dir>
    logs::DomainDebug* domain_debug = nullptr;            // null: domaindebug is unavailable
    RateTracker* rates = nullptr;                         // null: no sampling
};

class LogCommands {
  public:
    struct Stream;  // one running stream or search (cmd_logs.cc)

    explicit LogCommands(LogCommandsEnv env);
    ~LogCommands();  // stop()
    LogCommands(const LogCommands&) = delete;
    LogCommands& operator=(const LogCommands&) = delete;

    void register_commands(ControlServer& server);
    // Ends every stream (with its end line), cancels searches, stops sampling. Idempotent.
    void stop();
    size_t stream_count() const { return streams_.size(); }

  private:
    void on_tick();
    void add_stream(std::shared_ptr<Stream> s);
    bool search_running() const;
    void start_rate(const Request& req, std::shared_ptr<Responder> r);
    void start_hostrate(const Request& req, std::shared_ptr<Responder> r);
    void start_tail(const Request& req, std::shared_ptr<Responder> r);
    void start_findevent(const Request& req, std::shared_ptr<Responder> r);
    void domaindebug(const Request& req, std::shared_ptr<Responder> r);

    LogCommandsEnv env_;
    loop::HandlePtr<loop::Timer> sampler_;
    std::map<uint64_t, std::shared_ptr<Stream>> streams_;
    uint64_t next_stream_ = 1;
    bool stopped_ = false;
};

// Builds the commands and registers their handlers; the daemon keeps the result, calls
// stop() when it shuts down and destroys it after the control server (before the loop
// closes).
std::unique_ptr<LogCommands> register_log_commands(ControlServer& server, LogCommandsEnv env);

}  // namespace esad::control
