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
#include "daemon/control/control_server.h"
#include "daemon/daemon_state.h"
#include "daemon/loop/handle.h"
#include "daemon/loop/systemd_notify.h"

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
    void stop();
    // Returns the restart-only settings that changed, or an error message list.
    nlohmann::json reload();

    Config config_;
    std::string config_path_;
    uv_loop_t loop_;
    DaemonState state_;
    loop::SystemdNotifier notifier_;
    std::unique_ptr<control::ControlServer> control_;
    std::vector<loop::HandlePtr<loop::Signal>> signals_;
    bool stopping_ = false;
};

}  // namespace esad
