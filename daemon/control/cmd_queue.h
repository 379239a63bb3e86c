// Control commands over the delivery queue and the troubleshooting tools:
//   tophosts, hoststatus, delivernow, suspenddel, resumedel, showrecipients,
//   deleterecipients, bouncerecipients, dig.
// Reply data field names are part of the control-protocol contract (README).
// Until spool recovery has finished, these answer `unavailable`.
#pragma once

#include <functional>

#include "daemon/control/control_server.h"
#include "daemon/daemon_state.h"
#include "daemon/delivery/delivery_manager.h"
#include "daemon/delivery/router.h"
#include "daemon/dns/cares_resolver.h"

namespace esad::control {

struct QueueCommandsEnv {
    DaemonState* state = nullptr;
    std::function<delivery::DeliveryManager*()> manager;  // null until recovery finished
    dns::Resolver* resolver = nullptr;
    delivery::Router* router = nullptr;
};

void register_queue_commands(ControlServer& server, QueueCommandsEnv env);

}  // namespace esad::control
