// esactl status / version / resetcounters / reload (esa-reference §4.1, §4.6).
#include <ostream>

#include "common/counters.h"
#include "common/format.h"
#include "ctl/cmd_logs.h"
#include "ctl/commands.h"
#include "ctl/render.h"
#include "ctl/renderers.h"

namespace esad::ctl {

using nlohmann::json;

namespace {

constexpr size_t kLabelWidth = 31;
constexpr size_t kNumWidth = 11;

void counter_row(std::ostream& out, const std::map<std::string, payloads::CounterValues>& counters,
                 Counter c) {
    const CounterInfo& info = counter_info(c);
    auto it = counters.find(std::string(info.key));
    payloads::CounterValues v = it == counters.end() ? payloads::CounterValues{} : it->second;
    out << pad_label(std::string(info.label), info.indent * 2, kLabelWidth)
        << num_field(v.reset, kNumWidth) << num_field(v.uptime, kNumWidth)
        << num_field(v.lifetime, kNumWidth) << "\n";
}

void heading(std::ostream& out, const char* text, int indent) {
    out << std::string(static_cast<size_t>(indent) * 2, ' ') << text << "\n";
}

}  // namespace

void render_status(std::ostream& out, const payloads::StatusReply& d) {
    out << pad_label("Status as of:", 0, kLabelWidth) << esa_time(d.status_as_of) << "\n";
    out << pad_label("Up since:", 0, kLabelWidth) << esa_time(d.up_since) << " ("
        << human_duration(static_cast<uint64_t>(std::max<int64_t>(0, d.uptime_seconds))) << ")\n";
    out << pad_label("Last counter reset:", 0, kLabelWidth)
        << (d.last_counter_reset ? esa_time(*d.last_counter_reset) : std::string("Never")) << "\n";
    out << pad_label("System status:", 0, kLabelWidth) << d.system_status << "\n";
    std::string oldest = "No Messages";
    if (d.oldest_message_age)
        oldest = human_duration(static_cast<uint64_t>(std::max<int64_t>(0, *d.oldest_message_age)));
    out << pad_label("Oldest Message:", 0, kLabelWidth) << oldest << "\n\n";

    const auto& c = d.counters;
    out << pad_label("Counters:", 0, kLabelWidth - 1) << "      Reset     Uptime   Lifetime\n";
    heading(out, "Receiving", 1);
    counter_row(out, c, Counter::kMessagesReceived);
    counter_row(out, c, Counter::kRecipientsReceived);
    counter_row(out, c, Counter::kGenBounceRecipients);
    heading(out, "Rejection", 1);
    counter_row(out, c, Counter::kRejectedRecipients);
    counter_row(out, c, Counter::kDroppedMessages);
    heading(out, "Queue", 1);
    counter_row(out, c, Counter::kSoftBouncedEvents);
    heading(out, "Completion", 1);
    for (Counter k :
         {Counter::kCompletedRecipients, Counter::kHardBouncedRecipients, Counter::kDnsHardBounces,
          Counter::kHardBounces5xx, Counter::kExpiredHardBounces, Counter::kFilterHardBounces,
          Counter::kOtherHardBounces, Counter::kDeliveredRecipients, Counter::kDeletedRecipients})
        counter_row(out, c, k);
    heading(out, "Current IDs", 1);
    const payloads::CurrentIds& ids = d.current_ids;
    out << pad_label("Message ID (MID)", 4, kLabelWidth) << num_field(ids.mid, kNumWidth) << "\n";
    out << pad_label("Injection Conn. ID (ICID)", 4, kLabelWidth) << num_field(ids.icid, kNumWidth)
        << "\n";
    out << pad_label("Delivery Conn. ID (DCID)", 4, kLabelWidth) << num_field(ids.dcid, kNumWidth)
        << "\n\n";

    render_rates(out, d);
    const payloads::StatusGauges& g = d.gauges;
    out << pad_label("Gauges:", 0, kLabelWidth - 1) << "    Current\n";
    struct Gauge {
        uint64_t value;
        const char* label;
        int indent;
    };
    const Gauge gauges[] = {
        {g.current_inbound_connections, "Current Inbound Conn.", 2},
        {g.current_outbound_connections, "Current Outbound Conn.", 2},
        {g.active_recipients, "Active Recipients", 2},
        {g.unattempted_recipients, "Unattempted Recipients", 3},
        {g.attempted_recipients, "Attempted Recipients", 3},
        {g.destinations_in_memory, "Destinations In Memory", 2},
        {g.kilobytes_used, "Kilobytes Used", 2},
        {g.kilobytes_free, "Kilobytes Free", 2},
    };
    for (const Gauge& gauge : gauges)
        out << pad_label(gauge.label, gauge.indent * 2, kLabelWidth)
            << num_field(gauge.value, kNumWidth) << "\n";
}

void render_version(std::ostream& out, const payloads::VersionReply& d) {
    out << "esad " << d.version << " on " << d.hostname << "\n";
}

void render_resetcounters(std::ostream& out, const payloads::ResetCountersReply& d) {
    out << "Counters reset: " << esa_time(d.reset_at) << "\n";
}

void render_reload(std::ostream& out, const payloads::ReloadReply& d) {
    out << "Configuration reloaded from " << d.config << "\n";
    for (const auto& key : d.restart_required)
        out << "  " << key << " changed: takes effect after a restart\n";
}

namespace {

int cmd_status(Context& ctx, const std::vector<std::string>& args) {
    if (args.size() > 1 || (args.size() == 1 && args[0] != "detail")) {
        ctx.err << "esactl: usage: status [detail]\n";
        return kExitUsage;
    }
    return show_reply(ctx, "status", payloads::StatusArgs{.detail = !args.empty()}, render_status);
}

int cmd_version(Context& ctx, const std::vector<std::string>& args) {
    if (!args.empty()) {
        ctx.err << "esactl: usage: version\n";
        return kExitUsage;
    }
    return show_reply(ctx, "version", json::object(), render_version);
}

int cmd_resetcounters(Context& ctx, const std::vector<std::string>& args) {
    if (!args.empty()) {
        ctx.err << "esactl: usage: resetcounters\n";
        return kExitUsage;
    }
    return show_reply(ctx, "resetcounters", json::object(), render_resetcounters);
}

int cmd_reload(Context& ctx, const std::vector<std::string>& args) {
    if (!args.empty()) {
        ctx.err << "esactl: usage: reload\n";
        return kExitUsage;
    }
    return show_reply(ctx, "reload", json::object(), render_reload);
}

}  // namespace

std::vector<Command> status_commands() {
    return {
        {"status", "[detail]", "system status, counters and gauges", cmd_status},
        {"version", "", "daemon version", cmd_version},
        {"resetcounters", "", "zero the Reset column of the counters", cmd_resetcounters},
        {"reload", "", "re-read the configuration file", cmd_reload},
    };
}

}  // namespace esad::ctl
