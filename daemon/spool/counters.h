// counters — lifetime counters that survive restarts (e.g. messages injected, delivered,
// hard-bounced since the spool was created), stored in spool/counters.
//
// Format: text, one "name value" per line after the line "esad-counters 1", ending with
// "crc <8 hex digits>" (CRC32C of every byte before that line). Saved atomically (tmp,
// fsync, rename, fsync dir), so a crash leaves the old or the new file, never a mix.
// Names are 1..128 bytes of [A-Za-z0-9_.:-].
//
// API: load_counters / save_counters, blocking — call them on a worker thread (e.g. save on
// a periodic timer and at shutdown). A missing file loads as an empty map; a damaged one is
// an error with a reason (the caller logs it and starts from zero). Stateless, no logging.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "daemon/spool/file_util.h"

namespace esad::spool {

using CounterMap = std::map<std::string, std::uint64_t>;

// dir: the spool directory (Store::spool_path()).
IoStatus load_counters(const std::string& dir, CounterMap& out);
IoStatus save_counters(const std::string& dir, const CounterMap& counters);

// Pure codec, exposed for tests.
std::string encode_counters(const CounterMap& counters);
bool decode_counters(std::string_view text, CounterMap& out, std::string* reason);
bool valid_counter_name(std::string_view name);

}  // namespace esad::spool
