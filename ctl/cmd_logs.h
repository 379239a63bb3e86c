// esactl monitoring and log commands (esa-reference §4.1, §4.3, §4.4, §7.4, §8.6): rate,
// hostrate, tail, findevent, domaindebug; and the Rates block of `status detail`.
#pragma once

#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/payloads/logs.h"
#include "common/payloads/status.h"
#include "ctl/commands.h"

namespace esad::ctl {

std::vector<Command> log_commands();

// Prints the "Rates (Events Per Hour):" block of `status detail` followed by a blank line
// when `status` carries `rates`; prints nothing otherwise.
void render_rates(std::ostream& out, const payloads::StatusReply& status);

// Row layouts of the streaming commands (esa-reference §4.3, §4.4).
std::string rate_header();
std::string rate_row(const payloads::RateRow& row);
std::string hostrate_header();
std::string hostrate_row(const payloads::HostRateRow& row);

}  // namespace esad::ctl
