// sd_notify integration: READY=1 once listening, STOPPING=1 on shutdown, STATUS= lines, and
// WATCHDOG=1 pings at half of WATCHDOG_USEC while the loop is alive. Every call is a no-op
// when NOTIFY_SOCKET is unset (not started by systemd).
#pragma once

#include <uv.h>

#include <string>

#include "daemon/loop/handle.h"

namespace esad::loop {

class SystemdNotifier {
  public:
    explicit SystemdNotifier(uv_loop_t* loop) : loop_(loop) {}
    void ready(const std::string& status);
    void stopping();
    void reloading();
    void status(const std::string& status);
    // Starts the watchdog timer when systemd asked for one; returns the interval in µs or 0.
    uint64_t start_watchdog();
    void stop_watchdog() { watchdog_.reset(); }

  private:
    uv_loop_t* loop_;
    HandlePtr<Timer> watchdog_;
};

}  // namespace esad::loop
