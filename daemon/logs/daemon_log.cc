// See daemon_log.h.
#include "daemon/logs/daemon_log.h"

#include <fmt/format.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace esad::logs {

namespace {

// Writes each record to stderr as "<N>text", N being the syslog priority: journald reads
// the prefix (SyslogLevelPrefix=, on by default) and stores the record at that priority, so
// `journalctl -p warning` finds warnings. Continuation lines of a record get the prefix too.
class JournalStreamSink : public spdlog::sinks::base_sink<std::mutex> {
  protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        spdlog::memory_buf_t formatted;
        formatter_->format(msg, formatted);
        std::string prefix = fmt::format("<{}>", syslog_priority(msg.level));
        std::string out = prefix;
        for (size_t i = 0; i < formatted.size(); ++i) {
            char c = formatted[i];
            out.push_back(c);
            if (c == '\n' && i + 1 < formatted.size()) out += prefix;
        }
        std::fwrite(out.data(), 1, out.size(), stderr);
    }
    void flush_() override { std::fflush(stderr); }
};

}  // namespace

int syslog_priority(spdlog::level::level_enum level) {
    switch (level) {
        case spdlog::level::critical:
            return 2;  // LOG_CRIT
        case spdlog::level::err:
            return 3;  // LOG_ERR
        case spdlog::level::warn:
            return 4;  // LOG_WARNING
        case spdlog::level::info:
            return 6;  // LOG_INFO
        default:
            return 7;  // LOG_DEBUG
    }
}

bool stderr_is_journal() {
    // systemd sets JOURNAL_STREAM=<device>:<inode> of the stream it connected (systemd.exec(5));
    // stderr is that stream unless it was redirected since.
    const char* env = std::getenv("JOURNAL_STREAM");
    if (!env || !*env) return false;
    unsigned long long dev = 0, ino = 0;
    if (std::sscanf(env, "%llu:%llu", &dev, &ino) != 2) return false;
    struct stat st {};
    if (fstat(STDERR_FILENO, &st) != 0) return false;
    return static_cast<unsigned long long>(st.st_dev) == dev &&
           static_cast<unsigned long long>(st.st_ino) == ino;
}

bool setup_daemon_log(const std::string& file, const std::string& level, std::string* error) {
    spdlog::level::level_enum lvl = spdlog::level::from_str(level);
    if (lvl == spdlog::level::off && level != "off") {
        *error = "unknown log level '" + level + "'";
        return false;
    }
    std::shared_ptr<spdlog::logger> logger;
    bool journal = file.empty() && stderr_is_journal();
    try {
        if (journal)
            logger =
                std::make_shared<spdlog::logger>("esad", std::make_shared<JournalStreamSink>());
        else if (file.empty())
            logger = std::make_shared<spdlog::logger>(
                "esad", std::make_shared<spdlog::sinks::stderr_sink_mt>());
        else
            logger = std::make_shared<spdlog::logger>(
                "esad", std::make_shared<spdlog::sinks::basic_file_sink_mt>(file));
    } catch (const spdlog::spdlog_ex& e) {
        *error = std::string("cannot open daemon log: ") + e.what();
        return false;
    }
    // The journal stamps and ranks each record itself.
    logger->set_pattern(journal ? "%v" : "%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
    logger->set_level(lvl);
    logger->flush_on(spdlog::level::info);
    spdlog::set_default_logger(logger);
    return true;
}

}  // namespace esad::logs
