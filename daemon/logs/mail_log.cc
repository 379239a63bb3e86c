// See mail_log.h.
#include "daemon/logs/mail_log.h"

#include "common/format.h"
#include "daemon/logs/log_file.h"
#include "esad_version.h"

namespace esad::logs {

std::unique_ptr<MailLog> MailLog::disabled() {
    return std::unique_ptr<MailLog>(new MailLog());
}

std::unique_ptr<MailLog> MailLog::open(const std::string& dir, bool enabled, std::string* error) {
    if (!enabled) return disabled();
    auto log = std::unique_ptr<MailLog>(new MailLog());
    log->logger_ = open_log_file(dir, "mail", "mail log", &log->path_, error);
    if (!log->logger_) return nullptr;
    log->info("Begin Logfile");
    log->info(std::string("Version: esad ") + ESAD_VERSION);
    return log;
}

MailLog::~MailLog() {
    if (logger_) logger_->flush();
}

void MailLog::flush() {
    if (logger_) logger_->flush();
}

void MailLog::write(std::string_view level, std::string_view message) {
    if (!logger_) return;
    std::time_t now = std::time(nullptr);
    if (now != stamp_second_) {
        stamp_second_ = now;
        stamp_ = esa_log_time(now);
    }
    logger_->info("{} {}: {}", stamp_, level, message);
}

}  // namespace esad::logs
