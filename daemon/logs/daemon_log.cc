// See daemon_log.h.
#include "daemon/logs/daemon_log.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace esad::logs {

bool setup_daemon_log(const std::string& file, const std::string& level, std::string* error) {
    spdlog::level::level_enum lvl = spdlog::level::from_str(level);
    if (lvl == spdlog::level::off && level != "off") {
        *error = "unknown log level '" + level + "'";
        return false;
    }
    std::shared_ptr<spdlog::logger> logger;
    try {
        if (file.empty())
            logger = std::make_shared<spdlog::logger>(
                "esad", std::make_shared<spdlog::sinks::stderr_sink_mt>());
        else
            logger = std::make_shared<spdlog::logger>(
                "esad", std::make_shared<spdlog::sinks::basic_file_sink_mt>(file));
    } catch (const spdlog::spdlog_ex& e) {
        *error = std::string("cannot open daemon log: ") + e.what();
        return false;
    }
    logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
    logger->set_level(lvl);
    logger->flush_on(spdlog::level::info);
    spdlog::set_default_logger(logger);
    return true;
}

}  // namespace esad::logs
