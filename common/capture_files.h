// The packet capture directory's file names (docs/capture.md), shared by the esad-capture
// helper (which writes and rotates them) and the daemon (which lists them):
// <state_dir>/captures/capture-YYYYmmddTHHMMSS[-N].pcapng, capture.status, capture.lock.
#pragma once

#include <string>
#include <vector>

namespace esad {

// The capture-*.pcapng files in `dir`, oldest first (their names sort by time).
std::vector<std::string> capture_file_names(const std::string& dir);

}  // namespace esad
