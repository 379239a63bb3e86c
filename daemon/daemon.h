// The composition root: builds every component in startup order, runs the loop, and shuts
// down gracefully.
//
// Startup: log → state dir → control socket → signals → READY=1. SIGTERM/SIGINT: STOPPING=1,
// close every handle, run the loop until all closes completed, uv_loop_close() must be 0.
// SIGHUP (and `esactl reload`): re-read the configuration file, apply what can change live,
// reopen the log file, and log the settings that need a restart.
#pragma once

#include <uv.h>

#include <memory>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/payloads/status.h"
#include "common/rate_tracker.h"
#include "daemon/control/cmd_capture.h"
#include "daemon/control/cmd_logs.h"
#include "daemon/control/control_server.h"
#include "daemon/control/metrics_server.h"
#include "daemon/daemon_state.h"
#include "daemon/delivery/delivery_manager.h"
#include "daemon/delivery/router.h"
#include "daemon/dns/cares_resolver.h"
#include "daemon/inject/committer.h"
#include "daemon/inject/listener.h"
#include "daemon/logs/domain_debug.h"
#include "daemon/logs/mail_log.h"
#include "daemon/loop/handle.h"
#include "daemon/loop/listen_fds.h"
#include "daemon/loop/loop_load.h"
#include "daemon/loop/systemd_notify.h"
#include "daemon/spool/recovery.h"

namespace esad {

class Daemon {
  public:
    // config_path is empty when running on the embedded defaults.
    Daemon(Config config, std::string config_path);
    ~Daemon();
    // Runs until a stop signal; returns the process exit code.
    int run();

  private:
    bool start(std::string* error);
    // Second startup phase, on the loop once recovery finished: open injection.
    void on_recovered(const spool::IoStatus& status, spool::RecoveryReport& report);
    bool start_listener(std::string* error);
    void apply_listener_limits();
    bool load_routes(const Config& config, std::string* error);
    void refresh_gauges();
    void save_counters();
    void stop();
    // The reply (with the restart-only settings that changed), or the errors that rejected
    // the new configuration (non-empty `errors`: nothing applied).
    struct ReloadOutcome {
        payloads::ReloadReply reply;
        std::vector<std::string> errors;
    };
    ReloadOutcome reload();
    // READY=1 with the running STATUS= (plus `note`): the end of every reload.
    void end_reload(const std::string& note);

    Config config_;
    std::string config_path_;
    uv_loop_t loop_;
    int loop_rc_ = 0;  // uv_loop_init's result; nonzero: no loop to run or close
    DaemonState state_;
    loop::SystemdNotifier notifier_;
    std::unique_ptr<control::ControlServer> control_;
    std::unique_ptr<control::MetricsServer> metrics_;
    loop::ListenFds listen_fds_;
    std::unique_ptr<logs::MailLog> mail_log_;
    RateTracker rates_;
    std::unique_ptr<logs::DomainDebug> domain_debug_;
    std::unique_ptr<control::KeyLog> key_log_;
    control::CaptureCommandsEnv capture_env_;
    std::unique_ptr<control::LogCommands> log_commands_;
    spool::Spool spool_;
    std::unique_ptr<inject::Committer> committer_;
    inject::InjectEnv inject_env_;
    std::unique_ptr<inject::Listener> listener_;
    std::unique_ptr<dns::Resolver> resolver_;
    std::unique_ptr<delivery::Router> router_;
    std::unique_ptr<delivery::DeliveryManager> delivery_;
    std::unique_ptr<loop::LoopLoad> loop_load_;
    loop::HandlePtr<loop::Timer> counters_timer_;
    loop::HandlePtr<loop::Timer> shutdown_timer_;
    bool saving_counters_ = false;
    int exit_code_ = 0;
    std::vector<loop::HandlePtr<loop::Signal>> signals_;
    bool stopping_ = false;
    bool ready_ = false;          // READY=1 sent (spool recovered, SMTP listening)
    std::string running_status_;  // STATUS= while running: "Running; SMTP ..., control ..."
};

}  // namespace esad
