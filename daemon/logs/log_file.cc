// See log_file.h.
#include "daemon/logs/log_file.h"

#include <spdlog/async.h>
#include <spdlog/sinks/rotating_file_sink.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "common/make_dirs.h"

namespace esad::logs {

std::shared_ptr<spdlog::logger> open_log_file(const std::string& dir, const std::string& name,
                                              const std::string& what, std::string* path,
                                              std::string* error) {
    std::string why;
    if (!make_dirs(dir, 0750, &why)) {
        *error = "log directory: " + why;
        return nullptr;
    }
    *path = dir + "/" + name + ".current";
    std::shared_ptr<spdlog::logger> logger;
    try {
        if (!spdlog::thread_pool()) spdlog::init_thread_pool(8192, 1);
        auto sink = std::make_shared<spdlog::sinks::rotating_file_sink_mt>(*path, kLogRotateBytes,
                                                                           kLogRotateFiles);
        logger = std::make_shared<spdlog::async_logger>(
            name, sink, spdlog::thread_pool(), spdlog::async_overflow_policy::overrun_oldest);
    } catch (const spdlog::spdlog_ex& e) {
        *error = "cannot open " + what + ": " + e.what();
        return nullptr;
    }
    logger->set_pattern("%v");
    logger->set_level(spdlog::level::trace);
    logger->flush_on(spdlog::level::info);
    return logger;
}

std::uint64_t dropped_log_lines() {
    auto pool = spdlog::thread_pool();
    return pool ? pool->overrun_counter() : 0;
}

}  // namespace esad::logs
