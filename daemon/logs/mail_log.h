// The mail log: ESA "IronPort Text Mail Logs" lines (esa-reference §8) in
// <logging.dir>/mail.current, rotated by size to mail.1.current ... mail.9.current
// (spdlog's rotating sink names).
//
//   Fri Nov 27 22:56:10 2026 Info: New SMTP ICID 5 interface 127.0.0.1 address 127.0.0.1 ...
//
// Writes go through an spdlog async logger: formatting happens on the loop thread, file I/O
// on spdlog's worker, so the loop never waits for the disk. Callers escape peer-supplied
// text (escape_for_log) before it reaches a line. Disabled (mail_log = false): every call is
// a no-op.
#pragma once

#include <spdlog/spdlog.h>

#include <ctime>
#include <memory>
#include <string>
#include <string_view>

namespace esad::logs {

class MailLog {
  public:
    // Creates the directory if needed. nullptr and *error on failure.
    static std::unique_ptr<MailLog> open(const std::string& dir, bool enabled, std::string* error);
    static std::unique_ptr<MailLog> disabled();
    ~MailLog();

    void info(std::string_view message) { write("Info", message); }
    void warning(std::string_view message) { write("Warning", message); }
    void flush();
    const std::string& path() const { return path_; }

  private:
    MailLog() = default;
    void write(std::string_view level, std::string_view message);
    std::shared_ptr<spdlog::logger> logger_;
    std::string path_;
    std::time_t stamp_second_ = 0;
    std::string stamp_;
};

}  // namespace esad::logs
