// esactl delivery-queue and troubleshooting commands (esa-reference §2, §3, §5, §7.1):
// tophosts, hoststatus, delivernow, suspenddel, resumedel, showrecipients,
// deleterecipients, bouncerecipients, dig.
#include <iostream>
#include <ostream>
#include <sstream>

#include "common/format.h"
#include "ctl/commands.h"
#include "ctl/render.h"

namespace esad::ctl {

namespace {

using nlohmann::json;

std::string pad(std::string s, size_t width) {
    if (s.size() < width) s.append(width - s.size(), ' ');
    else s.push_back(' ');
    return s;
}

std::string time_or(const json& v, const char* none) {
    return v.is_number() ? esa_time(v.get<std::time_t>()) : std::string(none);
}

int print_or_json(Context& ctx, const json& data, const std::function<void()>& render) {
    if (ctx.json) ctx.out << data.dump(2) << "\n";
    else render();
    return kExitOk;
}

int usage(Context& ctx, const std::string& text) {
    ctx.err << "esactl: usage: " << text << "\n";
    return kExitUsage;
}

// Reads "host DOMAIN" / "sender ADDR" / "all" into selector args.
bool selector_args(const std::vector<std::string>& args, size_t from, json* out) {
    if (args.size() <= from || args[from] == "all") {
        *out = {{"by", "all"}};
        return args.size() <= from + 1;
    }
    if ((args[from] == "host" || args[from] == "sender") && args.size() == from + 2) {
        *out = {{"by", args[from]}, {"value", args[from + 1]}};
        return true;
    }
    return false;
}

bool confirm(Context& ctx, const std::string& question) {
    ctx.out << question << " [N]> " << std::flush;
    std::string answer;
    if (!std::getline(std::cin, answer)) return false;
    return answer == "y" || answer == "Y" || answer == "yes";
}

int cmd_tophosts(Context& ctx, const std::vector<std::string>& args) {
    json req = json::object();
    std::vector<std::string> rest;
    for (size_t i = 0; i < args.size(); ++i) {
        if (args[i] == "--limit" && i + 1 < args.size()) {
            try {
                req["limit"] = std::stoll(args[++i]);
            } catch (...) {
                return usage(ctx, "tophosts [--limit N] [active_rcpts|conn_out|deliv_rcpts|soft_bounced|hard_bounced]");
            }
        } else {
            rest.push_back(args[i]);
        }
    }
    if (rest.size() > 1) return usage(ctx, "tophosts [--limit N] [active_rcpts|conn_out|deliv_rcpts|soft_bounced|hard_bounced]");
    if (!rest.empty()) req["sort"] = rest[0];
    json d;
    int rc = call_daemon(ctx, "tophosts", req, &d);
    if (rc != kExitOk) return rc;
    return print_or_json(ctx, d, [&] {
        std::ostream& o = ctx.out;
        o << "\nStatus as of: " << esa_time(d.value("status_as_of", 0ll)) << "\n";
        o << "Hosts marked with '*' were down as of the last delivery attempt.\n\n";
        o << "                                        Active   Conn.   Deliv.   Soft      Hard\n";
        o << "#   Recipient Host                      Recip.   Out     Recip.   Bounced   Bounced\n";
        int rank = 0;
        for (const auto& h : d["hosts"]) {
            ++rank;
            std::string num = std::to_string(rank) + (h.value("down", false) ? "*" : "");
            o << pad(num, 4) << pad(h.value("host", ""), 36) << pad(thousands(h.value("active_recipients", 0ull)), 9)
              << pad(thousands(h.value("connections_out", 0ull)), 8)
              << pad(thousands(h.value("delivered_recipients", 0ull)), 9)
              << pad(thousands(h.value("soft_bounced", 0ull)), 10) << thousands(h.value("hard_bounced", 0ull))
              << "\n";
        }
    });
}

void counter_line(std::ostream& o, const char* label, int indent, uint64_t v) {
    o << pad_label(label, indent, 35) << num_field(v, 6) << "\n";
}

int cmd_hoststatus(Context& ctx, const std::vector<std::string>& args) {
    if (args.size() != 1) return usage(ctx, "hoststatus DOMAIN");
    json d;
    int rc = call_daemon(ctx, "hoststatus", {{"domain", args[0]}}, &d);
    if (rc != kExitOk) return rc;
    return print_or_json(ctx, d, [&] {
        std::ostream& o = ctx.out;
        const json& c = d["counters"];
        const json& g = d["gauges"];
        auto n = [](const json& j, const char* k) { return j.value(k, 0ull); };
        o << "\nHost mail status for: '" << d.value("host", "") << "'\n";
        o << "Status as of:         " << esa_time(d.value("status_as_of", 0ll)) << "\n";
        o << "Host up/down:         " << d.value("status", "unknown") << "\n\n";
        o << "Counters:\n  Queue\n";
        counter_line(o, "Soft Bounced Events", 4, n(c, "soft_bounced_events"));
        o << "  Completion\n";
        counter_line(o, "Completed Recipients", 4, n(c, "completed_recipients"));
        counter_line(o, "Hard Bounced Recipients", 6, n(c, "hard_bounced_recipients"));
        counter_line(o, "DNS Hard Bounces", 8, n(c, "dns_hard_bounces"));
        counter_line(o, "5XX Hard Bounces", 8, n(c, "5xx_hard_bounces"));
        counter_line(o, "Filter Hard Bounces", 8, n(c, "filter_hard_bounces"));
        counter_line(o, "Expired Hard Bounces", 8, n(c, "expired_hard_bounces"));
        counter_line(o, "Other Hard Bounces", 8, n(c, "other_hard_bounces"));
        counter_line(o, "Delivered Recipients", 6, n(c, "delivered_recipients"));
        counter_line(o, "Deleted Recipients", 6, n(c, "deleted_recipients"));
        o << "\nGauges:\n  Queue\n";
        counter_line(o, "Active Recipients", 4, n(g, "active_recipients"));
        counter_line(o, "Unattempted Recipients", 6, n(g, "unattempted_recipients"));
        counter_line(o, "Attempted Recipients", 6, n(g, "attempted_recipients"));
        o << "  Connections\n";
        counter_line(o, "Current Outbound Connections", 4, n(g, "current_outbound_connections"));
        counter_line(o, "Pending Outbound Connections", 4, n(g, "pending_outbound_connections"));
        o << "\n" << pad("Oldest Message", 40) << time_or(d["oldest_message"], "No Messages") << "\n";
        o << pad("Last Activity", 40) << time_or(d["last_activity"], "Never") << "\n";
        if (d.value("status", "") == "down" && d["retry_at"].is_number())
            o << pad("Next Host Retry", 40) << esa_time(d["retry_at"].get<std::time_t>()) << "\n";
        if (d.value("suspended", false)) o << pad("Delivery", 40) << "suspended\n";
        o << "\nSMTP routes for this host:\n";
        if (d["routes"].empty()) o << "    (none: MX lookup)\n";
        for (const auto& r : d["routes"]) o << "    " << r.get<std::string>() << "\n";
        o << "\nOrdered IP addresses:\n";
        if (d["ordered_ips"].empty()) o << "    (none cached)\n";
        else o << "    Host                                IP                                       Expires\n";
        for (const auto& ip : d["ordered_ips"])
            o << "    " << pad(ip.value("host", ""), 36) << pad(ip.value("ip", ""), 41)
              << esa_time(ip.value("expires_at", 0ll)) << "\n";
        o << "\nMX Records:\n";
        if (d["mx_records"].empty()) o << "    (none cached)\n";
        else o << "    Preference  TTL       Hostname\n";
        for (const auto& mx : d["mx_records"])
            o << "    " << pad(std::to_string(mx.value("preference", 0)), 12)
              << pad(human_duration(mx.value("ttl", 0ull)), 10) << mx.value("host", "") << "\n";
        for (const char* key : {"last_5xx_error", "last_soft_error"}) {
            const json& e = d[key];
            o << "\n" << (std::string(key) == "last_5xx_error" ? "Last 5XX Error:" : "Last Soft Error:") << "\n";
            if (e.value("text", "").empty()) {
                o << "    (none)\n";
                continue;
            }
            o << "----------\n" << e.value("text", "") << "\n(at " << time_or(e["at"], "?") << ")\n----------\n";
        }
    });
}

int cmd_delivernow(Context& ctx, const std::vector<std::string>& args) {
    if (args.size() > 1) return usage(ctx, "delivernow [all|DOMAIN]");
    std::string target = args.empty() ? "all" : args[0];
    json d;
    int rc = call_daemon(ctx, "delivernow", {{"target", target}}, &d);
    if (rc != kExitOk) return rc;
    return print_or_json(ctx, d, [&] {
        ctx.out << thousands(d.value("recipients", 0ull)) << " recipients scheduled for immediate delivery ("
                << target << ").\n";
    });
}

int suspend_resume(Context& ctx, const std::vector<std::string>& args, bool suspend) {
    json domains = json::array();
    for (const auto& a : args) {
        std::stringstream ss(a);
        std::string item;
        while (std::getline(ss, item, ','))
            if (!item.empty()) domains.push_back(item);
    }
    if (domains.empty()) domains.push_back("ALL");
    json d;
    int rc = call_daemon(ctx, suspend ? "suspenddel" : "resumedel", {{"domains", domains}}, &d);
    if (rc != kExitOk) return rc;
    print_or_json(ctx, d, [&] {
        for (const auto& x : d["domains"])
            ctx.out << "Delivery " << (suspend ? "suspended" : "resumed") << " for " << x.get<std::string>() << ".\n";
        for (const auto& x : d["unknown"]) ctx.out << "No record of host: " << x.get<std::string>() << "\n";
    });
    return d["unknown"].empty() ? kExitOk : kExitFailed;
}

int cmd_suspenddel(Context& ctx, const std::vector<std::string>& args) { return suspend_resume(ctx, args, true); }
int cmd_resumedel(Context& ctx, const std::vector<std::string>& args) { return suspend_resume(ctx, args, false); }

int cmd_showrecipients(Context& ctx, const std::vector<std::string>& args) {
    std::vector<std::string> rest;
    json req;
    int64_t offset = 0, limit = 100;
    for (size_t i = 0; i < args.size(); ++i) {
        if ((args[i] == "--offset" || args[i] == "--limit") && i + 1 < args.size()) {
            try {
                (args[i] == "--offset" ? offset : limit) = std::stoll(args[i + 1]);
            } catch (...) {
                return usage(ctx, "showrecipients [host DOMAIN|sender ADDR|all] [--offset N] [--limit N]");
            }
            ++i;
        } else {
            rest.push_back(args[i]);
        }
    }
    if (!selector_args(rest, 0, &req))
        return usage(ctx, "showrecipients [host DOMAIN|sender ADDR|all] [--offset N] [--limit N]");
    req["offset"] = offset;
    req["limit"] = limit;
    json d;
    int rc = call_daemon(ctx, "showrecipients", req, &d);
    if (rc != kExitOk) return rc;
    return print_or_json(ctx, d, [&] {
        std::ostream& o = ctx.out;
        uint64_t total = d.value("total", 0ull);
        if (total == 0) {
            o << "There are no messages in the delivery queue matching that request.\n";
            return;
        }
        o << "Showing " << d["recipients"].size() << " of " << thousands(total) << " recipients (from "
          << offset + 1 << ")\n\n";
        o << pad("MID", 10) << pad("RID", 5) << pad("Age", 12) << pad("State", 11) << pad("Tries", 6)
          << pad("Recipient Host", 26) << pad("Sender", 30) << "Recipient\n";
        for (const auto& r : d["recipients"])
            o << pad(std::to_string(r.value("mid", 0ull)), 10) << pad(std::to_string(r.value("rid", 0u)), 5)
              << pad(human_duration(r.value("age_seconds", 0ull)), 12) << pad(r.value("state", ""), 11)
              << pad(std::to_string(r.value("attempts", 0u)), 6) << pad(r.value("host", ""), 26)
              << pad("<" + r.value("sender", "") + ">", 30) << "<" << r.value("recipient", "") << ">\n";
        if (offset + static_cast<int64_t>(d["recipients"].size()) < static_cast<int64_t>(total))
            o << "\n(more: --offset " << offset + static_cast<int64_t>(d["recipients"].size()) << ")\n";
    });
}

int remover(Context& ctx, const std::vector<std::string>& args, bool bounce) {
    const char* name = bounce ? "bouncerecipients" : "deleterecipients";
    bool yes = false;
    std::vector<std::string> rest;
    for (const auto& a : args) {
        if (a == "--yes" || a == "-y") yes = true;
        else rest.push_back(a);
    }
    json req;
    if (rest.empty() || !selector_args(rest, 0, &req))
        return usage(ctx, std::string(name) + " [--yes] host DOMAIN|sender ADDR|all");
    if (!yes && !ctx.json &&
        !confirm(ctx, std::string("Are you sure you want to ") + (bounce ? "bounce" : "delete") +
                          " the selected recipients?")) {
        ctx.out << "Cancelled.\n";
        return kExitFailed;
    }
    json d;
    int rc = call_daemon(ctx, name, req, &d);
    if (rc != kExitOk) return rc;
    return print_or_json(ctx, d, [&] {
        ctx.out << thousands(d.value("recipients", 0ull)) << " recipients " << (bounce ? "bounced" : "deleted")
                << ".\n";
    });
}

int cmd_deleterecipients(Context& ctx, const std::vector<std::string>& args) { return remover(ctx, args, false); }
int cmd_bouncerecipients(Context& ctx, const std::vector<std::string>& args) { return remover(ctx, args, true); }

int cmd_dig(Context& ctx, const std::vector<std::string>& args) {
    bool no_cache = false;
    std::vector<std::string> rest;
    for (const auto& a : args) {
        if (a == "--no-cache") no_cache = true;
        else rest.push_back(a);
    }
    std::string type = "a", name;
    if (rest.size() == 1) {
        name = rest[0];
    } else if (rest.size() == 2) {
        type = rest[0];
        name = rest[1];
    } else {
        return usage(ctx, "dig [--no-cache] [mx|a|aaaa|txt|ptr] NAME");
    }
    json d;
    int rc = call_daemon(ctx, "dig", {{"type", type}, {"name", name}, {"no_cache", no_cache}}, &d);
    if (rc != kExitOk) return rc;
    print_or_json(ctx, d, [&] {
        std::ostream& o = ctx.out;
        std::string qname = d.value("name", name);
        if (!qname.empty() && qname.back() != '.') qname += ".";
        o << ";; ->>HEADER<<- status: " << d.value("status", "") << (d.value("from_cache", false) ? " (cached)" : "")
          << "\n;; QUESTION SECTION:\n;" << pad(qname, 27) << " IN " << d.value("type", "") << "\n";
        if (!d["answers"].empty()) o << "\n;; ANSWER SECTION:\n";
        for (const auto& a : d["answers"])
            o << pad(a.value("name", ""), 28) << pad(std::to_string(a.value("ttl", 0u)), 7)
              << pad(a.value("class", "IN"), 4) << pad(a.value("type", ""), 6) << a.value("data", "") << "\n";
        if (!d.value("error", "").empty()) o << ";; " << d.value("error", "") << "\n";
    });
    std::string status = d.value("status", "");
    return status == "ok" || status == "nodata" ? kExitOk : kExitFailed;
}

}  // namespace

std::vector<Command> queue_commands() {
    return {
        {"tophosts", "[--limit N] [active_rcpts|conn_out|deliv_rcpts|soft_bounced|hard_bounced]",
         "recipient hosts with the most queued mail", cmd_tophosts},
        {"hoststatus", "DOMAIN", "up/down state, counters, gauges, routes, MX and errors of a host",
         cmd_hoststatus},
        {"delivernow", "[all|DOMAIN]", "retry queued recipients now (clears host retry timers)",
         cmd_delivernow},
        {"suspenddel", "[ALL|DOMAIN,...]", "suspend delivery (all, or to the given hosts)", cmd_suspenddel},
        {"resumedel", "[ALL|DOMAIN,...]", "resume suspended delivery", cmd_resumedel},
        {"showrecipients", "[host DOMAIN|sender ADDR|all] [--offset N] [--limit N]",
         "list queued recipients", cmd_showrecipients},
        {"deleterecipients", "[--yes] host DOMAIN|sender ADDR|all", "delete queued recipients",
         cmd_deleterecipients},
        {"bouncerecipients", "[--yes] host DOMAIN|sender ADDR|all",
         "hard-bounce queued recipients (DSN to the sender)", cmd_bouncerecipients},
        {"dig", "[--no-cache] [mx|a|aaaa|txt|ptr] NAME", "DNS lookup through esad's own resolver",
         cmd_dig},
    };
}

}  // namespace esad::ctl
