// What a spool in a test's temp dir holds on disk, read directly (loop-tier tests):
//   test::message_file_exists(dir.path, mid)   queue/<MID> or queue/<xx>/<MID>
//   test::journal_records(dir.path)            every record in the journal file
#pragma once

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "daemon/spool/journal.h"
#include "daemon/spool/store.h"

namespace esad::test {

// The message file in either layout: flat or hashed (xx = the MID's low byte).
inline bool message_file_exists(const std::string& state_dir, spool::Mid mid) {
    const std::string name = spool::mid_name(mid);
    const std::string queue = state_dir + "/spool/queue/";
    return std::filesystem::exists(queue + name) ||
           std::filesystem::exists(queue + name.substr(name.size() - 2) + "/" + name);
}

inline std::vector<spool::JournalRecord> journal_records(const std::string& state_dir) {
    for (const auto& e : std::filesystem::recursive_directory_iterator(state_dir)) {
        if (e.path().filename() != "journal") continue;
        std::ifstream in(e.path(), std::ios::binary);
        std::string bytes((std::istreambuf_iterator<char>(in)), {});
        return spool::parse_journal(bytes).records;
    }
    return {};
}

}  // namespace esad::test
