// esactl troubleshooting tools that reach remote hosts through the daemon (esa-reference
// §7.2, §7.3): telnet, smtpping. Defined in cmd_tools.cc; main.cc adds them to the table.
#pragma once

#include <vector>

#include "ctl/commands.h"

namespace esad::ctl {

std::vector<Command> tool_commands();

}  // namespace esad::ctl
