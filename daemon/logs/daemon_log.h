// The daemon's own log (not the mail log): spdlog to stderr, or to `[logging] daemon_log`
// when set. reopen() re-creates the file sink so logrotate's move-and-HUP works.
// When stderr is the journal (systemd's JOURNAL_STREAM), each record carries its syslog
// priority as a "<N>" prefix instead of a timestamp and level name.
#pragma once

#include <spdlog/common.h>

#include <string>

namespace esad::logs {

// Returns false and sets *error when the file cannot be opened or the level is unknown.
bool setup_daemon_log(const std::string& file, const std::string& level, std::string* error);

// The syslog priority (sd-daemon(3) "<N>" prefix) of an spdlog level.
int syslog_priority(spdlog::level::level_enum level);
// True when stderr is the journal stream systemd names in $JOURNAL_STREAM.
bool stderr_is_journal();

}  // namespace esad::logs
