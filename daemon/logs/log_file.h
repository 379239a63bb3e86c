// Opens an ESA-style transaction log file: <dir>/<name>.current, created with its parent
// directories (0750), rotated by size to <name>.1.current ... <name>.9.current, written by
// an spdlog async logger (formatting on the caller's thread, file I/O on spdlog's worker).
// Lines are written verbatim ("%v") and flushed as they come, so `tail`/`findevent` and
// operators see them at once.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace esad::logs {

inline constexpr size_t kLogRotateBytes = 50 * 1024 * 1024;
inline constexpr size_t kLogRotateFiles = 9;

// nullptr and *error (naming `what`) when the directory or the file cannot be created.
std::shared_ptr<spdlog::logger> open_log_file(const std::string& dir, const std::string& name,
                                              const std::string& what, std::string* path,
                                              std::string* error);

}  // namespace esad::logs
