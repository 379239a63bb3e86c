// The daemon's own log (not the mail log): spdlog to stderr, or to `[logging] daemon_log`
// when set. reopen() re-creates the file sink so logrotate's move-and-HUP works.
#pragma once

#include <string>

namespace esad::logs {

// Returns false and sets *error when the file cannot be opened or the level is unknown.
bool setup_daemon_log(const std::string& file, const std::string& level, std::string* error);

}  // namespace esad::logs
