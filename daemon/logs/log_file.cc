// See log_file.h.
#include "daemon/logs/log_file.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/rotating_file_sink.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "common/make_dirs.h"
#include "common/thread_policy.h"

namespace esad::logs {
namespace {

std::atomic<std::uint64_t> g_dropped{0};

// The file writer of one log: callers (the loop thread, mostly) format a line and append it
// to a buffer in memory; a thread of the sink's own takes the buffer and writes it through
// the rotating file sink. It is woken when the buffer turns non-empty and then waits
// kBatchWindow for more, so a burst of lines is one write(2) and one wake-up, not one of each
// per line; an idle daemon's line reaches the file within that window. A buffer above
// kMaxPending drops new lines (counted) instead of making a caller wait on the disk.
class BatchedFileSink final : public spdlog::sinks::sink {
  public:
    static constexpr auto kBatchWindow = std::chrono::milliseconds(5);
    static constexpr std::size_t kMaxPending = 8u << 20;

    explicit BatchedFileSink(std::shared_ptr<spdlog::sinks::sink> file)
        : file_(std::move(file)), formatter_(std::make_unique<spdlog::pattern_formatter>("%v")) {
        // The file sink gets whole batches, already formatted, line ends included.
        file_->set_formatter(std::make_unique<spdlog::pattern_formatter>(
            "%v", spdlog::pattern_time_type::local, std::string()));
        thread_ = std::thread([this] {
            run_as_background_thread();
            run();
        });
    }
    ~BatchedFileSink() override {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_ = true;
        }
        cv_.notify_one();
        thread_.join();  // writes what is left
    }
    void log(const spdlog::details::log_msg& msg) override {
        spdlog::memory_buf_t line;
        bool was_empty = false;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            formatter_->format(msg, line);
            if (pending_.size() + line.size() > kMaxPending) {
                g_dropped.fetch_add(1, std::memory_order_relaxed);
                return;
            }
            was_empty = pending_.empty();
            pending_.append(line.data(), line.size());
        }
        if (was_empty) cv_.notify_one();
    }
    // Asks the writer not to wait for more; never waits for the disk itself.
    void flush() override {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            flush_now_ = true;
        }
        cv_.notify_one();
    }
    void set_pattern(const std::string& pattern) override {
        std::lock_guard<std::mutex> lock(mutex_);
        formatter_ = std::make_unique<spdlog::pattern_formatter>(pattern);
    }
    void set_formatter(std::unique_ptr<spdlog::formatter> formatter) override {
        std::lock_guard<std::mutex> lock(mutex_);
        formatter_ = std::move(formatter);
    }

  private:
    void run() {
        std::unique_lock<std::mutex> lock(mutex_);
        for (;;) {
            cv_.wait(lock, [this] { return stop_ || !pending_.empty(); });
            if (pending_.empty()) break;  // stopping, nothing left
            if (!stop_ && !flush_now_)
                cv_.wait_for(lock, kBatchWindow, [this] { return stop_ || flush_now_; });
            flush_now_ = false;
            std::string batch;
            batch.swap(pending_);
            lock.unlock();
            write(batch);
            lock.lock();
        }
    }
    void write(const std::string& batch) {
        try {
            spdlog::details::log_msg msg(spdlog::source_loc{}, "", spdlog::level::info,
                                         spdlog::string_view_t(batch.data(), batch.size()));
            file_->log(msg);
            file_->flush();
        } catch (const std::exception&) {
            g_dropped.fetch_add(
                static_cast<std::uint64_t>(std::count(batch.begin(), batch.end(), '\n')),
                std::memory_order_relaxed);
        }
    }

    std::shared_ptr<spdlog::sinks::sink> file_;
    std::unique_ptr<spdlog::formatter> formatter_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::string pending_;
    bool flush_now_ = false;
    bool stop_ = false;
    std::thread thread_;
};

}  // namespace

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
        auto sink = std::make_shared<BatchedFileSink>(
            std::make_shared<spdlog::sinks::rotating_file_sink_mt>(*path, kLogRotateBytes,
                                                                   kLogRotateFiles));
        logger = std::make_shared<spdlog::logger>(name, std::move(sink));
    } catch (const spdlog::spdlog_ex& e) {
        *error = "cannot open " + what + ": " + e.what();
        return nullptr;
    }
    logger->set_pattern("%v");
    logger->set_level(spdlog::level::trace);
    logger->flush_on(spdlog::level::off);  // the sink's writer flushes every batch
    return logger;
}

std::uint64_t dropped_log_lines() {
    return g_dropped.load(std::memory_order_relaxed);
}

}  // namespace esad::logs
