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

void counter_row(std::ostream& out, const json& counters, Counter c) {
    const CounterInfo& info = counter_info(c);
    const json& v = counters.value(std::string(info.key), json::object());
    out << pad_label(std::string(info.label), info.indent * 2, kLabelWidth)
        << num_field(v.value("reset", 0ull), kNumWidth)
        << num_field(v.value("uptime", 0ull), kNumWidth)
        << num_field(v.value("lifetime", 0ull), kNumWidth) << "\n";
}

void heading(std::ostream& out, const char* text, int indent) {
    out << std::string(static_cast<size_t>(indent) * 2, ' ') << text << "\n";
}

}  // namespace

void render_status(std::ostream& out, const json& d) {
    auto t = [&](const char* key) { return static_cast<std::time_t>(d.value(key, 0ll)); };
    out << pad_label("Status as of:", 0, kLabelWidth) << esa_time(t("status_as_of")) << "\n";
    out << pad_label("Up since:", 0, kLabelWidth) << esa_time(t("up_since")) << " ("
        << human_duration(d.value("uptime_seconds", 0ull)) << ")\n";
    out << pad_label("Last counter reset:", 0, kLabelWidth)
        << (d["last_counter_reset"].is_null() ? std::string("Never")
                                              : esa_time(t("last_counter_reset")))
        << "\n";
    out << pad_label("System status:", 0, kLabelWidth) << d.value("system_status", "") << "\n";
    std::string oldest = "No Messages";
    if (d.contains("oldest_message_age") && !d["oldest_message_age"].is_null())
        oldest = human_duration(d["oldest_message_age"].get<uint64_t>());
    out << pad_label("Oldest Message:", 0, kLabelWidth) << oldest << "\n\n";

    const json& c = d["counters"];
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
    const json& ids = d["current_ids"];
    out << pad_label("Message ID (MID)", 4, kLabelWidth)
        << num_field(ids.value("mid", 0ull), kNumWidth) << "\n";
    out << pad_label("Injection Conn. ID (ICID)", 4, kLabelWidth)
        << num_field(ids.value("icid", 0ull), kNumWidth) << "\n";
    out << pad_label("Delivery Conn. ID (DCID)", 4, kLabelWidth)
        << num_field(ids.value("dcid", 0ull), kNumWidth) << "\n\n";

    render_rates(out, d);
    const json& g = d["gauges"];
    out << pad_label("Gauges:", 0, kLabelWidth - 1) << "    Current\n";
    struct Gauge {
        const char* key;
        const char* label;
        int indent;
    };
    static const Gauge kGauges[] = {
        {"current_inbound_connections", "Current Inbound Conn.", 2},
        {"current_outbound_connections", "Current Outbound Conn.", 2},
        {"active_recipients", "Active Recipients", 2},
        {"unattempted_recipients", "Unattempted Recipients", 3},
        {"attempted_recipients", "Attempted Recipients", 3},
        {"destinations_in_memory", "Destinations In Memory", 2},
        {"kilobytes_used", "Kilobytes Used", 2},
        {"kilobytes_free", "Kilobytes Free", 2},
    };
    for (const Gauge& gauge : kGauges) {
        if (!g.contains(gauge.key)) continue;  // only gauges this daemon measures
        out << pad_label(gauge.label, gauge.indent * 2, kLabelWidth)
            << num_field(g[gauge.key].get<uint64_t>(), kNumWidth) << "\n";
    }
}

void render_version(std::ostream& out, const json& d) {
    out << "esad " << d.value("version", "?") << " on " << d.value("hostname", "?") << "\n";
}

namespace {

int cmd_status(Context& ctx, const std::vector<std::string>& args) {
    if (args.size() > 1 || (args.size() == 1 && args[0] != "detail")) {
        ctx.err << "esactl: usage: status [detail]\n";
        return kExitUsage;
    }
    json data;
    int rc = call_daemon(ctx, "status", {{"detail", !args.empty()}}, &data);
    if (rc != kExitOk) return rc;
    if (ctx.json)
        ctx.out << data.dump(2) << "\n";
    else
        render_status(ctx.out, data);
    return kExitOk;
}

int cmd_version(Context& ctx, const std::vector<std::string>& args) {
    if (!args.empty()) {
        ctx.err << "esactl: usage: version\n";
        return kExitUsage;
    }
    json data;
    int rc = call_daemon(ctx, "version", json::object(), &data);
    if (rc != kExitOk) return rc;
    if (ctx.json)
        ctx.out << data.dump(2) << "\n";
    else
        render_version(ctx.out, data);
    return kExitOk;
}

int cmd_resetcounters(Context& ctx, const std::vector<std::string>& args) {
    if (!args.empty()) {
        ctx.err << "esactl: usage: resetcounters\n";
        return kExitUsage;
    }
    json data;
    int rc = call_daemon(ctx, "resetcounters", json::object(), &data);
    if (rc != kExitOk) return rc;
    if (ctx.json)
        ctx.out << data.dump(2) << "\n";
    else
        ctx.out << "Counters reset: " << esa_time(data.value("reset_at", 0ll)) << "\n";
    return kExitOk;
}

int cmd_reload(Context& ctx, const std::vector<std::string>& args) {
    if (!args.empty()) {
        ctx.err << "esactl: usage: reload\n";
        return kExitUsage;
    }
    json data;
    int rc = call_daemon(ctx, "reload", json::object(), &data);
    if (rc != kExitOk) return rc;
    if (ctx.json) {
        ctx.out << data.dump(2) << "\n";
        return kExitOk;
    }
    ctx.out << "Configuration reloaded from " << data.value("config", "?") << "\n";
    for (const auto& key : data.value("restart_required", json::array()))
        ctx.out << "  " << key.get<std::string>() << " changed: takes effect after a restart\n";
    return kExitOk;
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
