// Opens an ESA-style transaction log file: <dir>/<name>.current, created with its parent
// directories (0750), rotated by size to <name>.1.current ... <name>.9.current. Lines are
// written verbatim ("%v"): formatted on the caller's thread into a buffer in memory, written
// and flushed by a thread of the log's own, which takes everything that arrived within 5 ms
// of the first line as one write(2). An idle daemon's lines reach the file within those 5 ms,
// so `tail`/`findevent` and operators see them at once; under load the mail log costs a
// write and a wake-up per batch, not per line. A crash loses what was not yet written, as any
// asynchronous log does (at most the last 5 ms of lines).
//
// Overflow: the loop never waits on the disk. When the disk is slower than the logging for
// long enough to fill the buffer (8 MiB), new lines are dropped instead of blocking the loop
// thread until the writer catches up: a slow or stuck log disk must not stop mail flow
// (DSK-10). Dropped lines are counted (dropped_log_lines()) and shown in `esactl status`
// (log_lines_dropped) and the metrics (esad_log_lines_dropped_total), so a gap in a log is
// never silent.
#pragma once

#include <spdlog/spdlog.h>

#include <cstdint>
#include <memory>
#include <string>

namespace esad::logs {

inline constexpr size_t kLogRotateBytes = 50 * 1024 * 1024;
inline constexpr size_t kLogRotateFiles = 9;

// nullptr and *error (naming `what`) when the directory or the file cannot be created.
std::shared_ptr<spdlog::logger> open_log_file(const std::string& dir, const std::string& name,
                                              const std::string& what, std::string* path,
                                              std::string* error);

// Lines the log writers dropped since start, over every log file.
std::uint64_t dropped_log_lines();

}  // namespace esad::logs
