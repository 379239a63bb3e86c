// See systemd_notify.h.
#include "daemon/loop/systemd_notify.h"

#include <systemd/sd-daemon.h>

namespace esad::loop {

void SystemdNotifier::ready(const std::string& status) {
    sd_notifyf(0, "READY=1\nSTATUS=%s\nMAINPID=%lu", status.c_str(),
               static_cast<unsigned long>(getpid()));
}

void SystemdNotifier::stopping() {
    sd_notify(0, "STOPPING=1\nSTATUS=Shutting down");
}

void SystemdNotifier::reloading() {
    sd_notify(0, "RELOADING=1");
}

void SystemdNotifier::status(const std::string& status) {
    sd_notifyf(0, "STATUS=%s", status.c_str());
}

uint64_t SystemdNotifier::start_watchdog() {
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return 0;
    uint64_t interval_ms = usec / 2000;
    if (interval_ms == 0) interval_ms = 1;
    watchdog_ = Timer::create(loop_, [] { sd_notify(0, "WATCHDOG=1"); });
    watchdog_->start(interval_ms, interval_ms);
    watchdog_->unref();
    sd_notify(0, "WATCHDOG=1");
    return usec;
}

}  // namespace esad::loop
