// See cmd_status.h.
#include "daemon/control/cmd_status.h"

#include "common/rate_tracker.h"
#include "daemon/logs/log_file.h"
#include "esad_version.h"

namespace esad::control {

payloads::StatusReply status_data(const DaemonState& s, std::time_t now) {
    payloads::StatusReply d;
    for (size_t i = 0; i < kCounterCount; ++i) {
        auto c = static_cast<Counter>(i);
        d.counters[std::string(kCounterInfo[i].key)] = {.reset = s.counters.reset_view(c),
                                                        .uptime = s.counters.uptime(c),
                                                        .lifetime = s.counters.lifetime(c)};
    }
    std::string system_status = s.recovering ? "Recovering spool" : "Online";
    if (s.listener_suspended && s.delivery_suspended)
        system_status = "Receiving and delivery suspended";
    else if (s.listener_suspended)
        system_status = "Receiving suspended";
    else if (s.delivery_suspended)
        system_status = "Delivery suspended";
    // What every client gets, so that "Online" never hides a spool that refuses all mail.
    std::string_view refusal;
    if (s.recovering)
        refusal = "";
    else if (!s.spool_healthy)
        refusal = " (spool write failed: new connections refused with 421)";
    else if (s.spool_below_floor)
        refusal = " (spool below free-space floor: new mail refused with 452)";
    else if (!s.mids_available)
        refusal = " (no MID available: new mail refused with 4xx)";
    system_status.append(refusal);
    d.version = ESAD_VERSION;
    d.hostname = s.hostname;
    d.status_as_of = now;
    d.up_since = s.started;
    d.uptime_seconds = now - s.started;
    if (s.counters_reset) d.last_counter_reset = s.counters_reset;
    d.system_status = std::move(system_status);
    d.current_ids = {.mid = s.current_mid, .icid = s.current_icid, .dcid = s.current_dcid};
    if (s.oldest_message_unix_ms)
        d.oldest_message_age = std::max<int64_t>(0, now - s.oldest_message_unix_ms / 1000);
    d.listener = s.listener_address;
    d.corrupt_files = s.corrupt_files;
    d.event_loop = {
        .busy_1s = s.loop_busy[0], .busy_10s = s.loop_busy[1], .busy_60s = s.loop_busy[2]};
    d.log_lines_dropped = logs::dropped_log_lines();
    d.delivery_content = {.budget_bytes = s.content_budget,
                          .in_use_bytes = s.content_in_use,
                          .peak_bytes = s.content_peak,
                          .sessions_waiting = s.content_waiting};
    d.spool = {.commit_batches = s.commit_batches,
               .messages_committed = s.commit_messages,
               .largest_batch = s.commit_largest_batch,
               .file_fsyncs = s.file_fsyncs,
               .dir_fsyncs = s.dir_fsyncs,
               .journal_flushes = s.journal_flushes,
               .healthy = s.spool_healthy,
               .below_free_space_floor = s.spool_below_floor,
               .mids_available = s.mids_available};
    d.gauges = {.current_inbound_connections = s.inbound_connections,
                .current_outbound_connections = s.outbound_connections,
                .active_recipients = s.active_recipients,
                .unattempted_recipients = s.active_recipients - s.attempted_recipients,
                .attempted_recipients = s.attempted_recipients,
                .destinations_in_memory = s.destinations,
                .kilobytes_used = (s.spool_bytes + 1023) / 1024,
                .kilobytes_free = s.spool_free_bytes / 1024};
    return d;
}

void register_status_commands(ControlServer& server, DaemonState& state) {
    server.add_handler("status", [&state](const Request& req, std::shared_ptr<Responder> r) {
        if (state.refresh_gauges) state.refresh_gauges();
        payloads::StatusReply data = status_data(state, std::time(nullptr));
        if (payloads::parse<payloads::StatusArgs>(req.args).detail && state.rates)
            data.rates = rates_of(*state.rates);
        r->ok(data);
    });
    server.add_handler("version", [&state](const Request&, std::shared_ptr<Responder> r) {
        r->ok(payloads::VersionReply{
            .version = ESAD_VERSION, .hostname = state.hostname, .protocol = kProtocolVersion});
    });
    server.add_handler("resetcounters", [&state](const Request&, std::shared_ptr<Responder> r) {
        state.counters.reset();
        state.counters_reset = std::time(nullptr);
        r->ok(payloads::ResetCountersReply{.reset_at = state.counters_reset});
    });
}

}  // namespace esad::control
