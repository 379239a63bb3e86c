// See mail_log.h.
#include "daemon/logs/mail_log.h"

#include <spdlog/async.h>
#include <spdlog/sinks/rotating_file_sink.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "common/format.h"
#include "esad_version.h"

namespace esad::logs {

namespace {
constexpr size_t kRotateBytes = 50 * 1024 * 1024;
constexpr size_t kRotateFiles = 9;
}  // namespace

std::unique_ptr<MailLog> MailLog::disabled() {
    return std::unique_ptr<MailLog>(new MailLog());
}

std::unique_ptr<MailLog> MailLog::open(const std::string& dir, bool enabled, std::string* error) {
    if (!enabled) return disabled();
    std::string partial;
    for (size_t pos = 0; pos != std::string::npos;) {
        pos = dir.find('/', pos + 1);
        partial = dir.substr(0, pos);
        if (!partial.empty() && mkdir(partial.c_str(), 0750) != 0 && errno != EEXIST) {
            *error = "cannot create log directory " + partial + ": " + strerror(errno);
            return nullptr;
        }
    }
    auto log = std::unique_ptr<MailLog>(new MailLog());
    log->path_ = dir + "/mail.current";
    try {
        if (!spdlog::thread_pool()) spdlog::init_thread_pool(8192, 1);
        auto sink = std::make_shared<spdlog::sinks::rotating_file_sink_mt>(log->path_, kRotateBytes,
                                                                           kRotateFiles);
        log->logger_ = std::make_shared<spdlog::async_logger>(
            "mail_logs", sink, spdlog::thread_pool(), spdlog::async_overflow_policy::block);
    } catch (const spdlog::spdlog_ex& e) {
        *error = std::string("cannot open mail log: ") + e.what();
        return nullptr;
    }
    log->logger_->set_pattern("%v");
    log->logger_->set_level(spdlog::level::trace);
    log->logger_->flush_on(spdlog::level::info);
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
