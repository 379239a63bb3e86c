// Control commands `status` and `version` (reply data documented in README "Control protocol").
#pragma once

#include "common/payloads/status.h"
#include "daemon/control/control_server.h"
#include "daemon/daemon_state.h"

namespace esad::control {

payloads::StatusReply status_data(const DaemonState& state, std::time_t now);
void register_status_commands(ControlServer& server, DaemonState& state);

}  // namespace esad::control
