// Control commands over the delivery queue and the troubleshooting tools:
//   tophosts, hoststatus, delivernow, suspenddel, resumedel, suspend, resume, workqueue,
//   showrecipients, showmessage, deleterecipients, bouncerecipients, redirectrecipients, dig.
// Reply data field names are part of the control-protocol contract (README).
// Until spool recovery has finished, the queue commands answer `unavailable`.
//
// Long operations do not hold the loop: deleterecipients / bouncerecipients take the
// recipients out of the scheduler in one call, then journal, log and bounce them in slices
// of kRemovalSlice recipients per loop turn (a zero timer), and answer with the counts once
// the last slice is applied. showmessage reads the stored message on a worker thread.
// Logs: operator actions (suspend, resume, redirect, delete, bounce) at info level.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <optional>

#include "daemon/control/control_server.h"
#include "daemon/daemon_state.h"
#include "daemon/delivery/delivery_manager.h"
#include "daemon/delivery/router.h"
#include "daemon/dns/cares_resolver.h"
#include "daemon/dns/routes.h"
#include "daemon/spool/store.h"

namespace esad::control {

// Recipients applied per loop turn by deleterecipients / bouncerecipients.
inline constexpr size_t kRemovalSlice = 10000;

// The injection pipeline between "end of DATA" and "queued": group commit.
struct WorkQueueInfo {
    uint64_t messages = 0;           // received, waiting for or inside a commit batch
    uint64_t batches_in_flight = 0;  // commit batches being written
};

struct QueueCommandsEnv {
    DaemonState* state = nullptr;
    std::function<delivery::DeliveryManager*()> manager;  // null until recovery finished
    dns::Resolver* resolver = nullptr;
    delivery::Router* router = nullptr;
    // Slices of long operations, showmessage's worker. Null: removals run in one turn and
    // showmessage prints no headers.
    uv_loop_t* loop = nullptr;
    // The spool, for showmessage's headers. Null (or returning null): no headers.
    std::function<spool::Store*()> store;
    // Installs (a route) or clears (nullopt) the operator's redirect of every domain.
    // Null: redirectrecipients answers `unavailable`.
    std::function<void(std::optional<dns::Route>)> set_redirect;
    // The group-commit pipeline's size for `workqueue status`. Null: `unavailable`.
    std::function<WorkQueueInfo()> work_queue;
};

void register_queue_commands(ControlServer& server, QueueCommandsEnv env);

}  // namespace esad::control
