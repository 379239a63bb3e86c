// esactl delivery-queue and troubleshooting commands (esa-reference §2, §3, §4.5, §5, §7.1):
// tophosts, hoststatus, delivernow, suspenddel, resumedel, suspend, resume, workqueue,
// showrecipients, showmessage, deleterecipients, bouncerecipients, redirectrecipients, dig.
// Each command parses its arguments, calls the daemon, and prints with a renderer from
// ctl/renderers.h (or the reply's JSON with --json). Destructive commands ask first
// (`[N]>`, a line from stdin) unless --yes or --json.
#include <iostream>
#include <ostream>
#include <sstream>

#include "common/escape.h"
#include "common/format.h"
#include "ctl/commands.h"
#include "ctl/render.h"
#include "ctl/renderers.h"

namespace esad::ctl {

using nlohmann::json;

namespace {

std::string pad(std::string s, size_t width) {
    if (s.size() < width)
        s.append(width - s.size(), ' ');
    else
        s.push_back(' ');
    return s;
}

std::string time_or(const std::optional<int64_t>& v, const char* none) {
    return v ? esa_time(*v) : std::string(none);
}

int usage(Context& ctx, const std::string& text) {
    ctx.err << "esactl: usage: " << text << "\n";
    return kExitUsage;
}

// Reads "host DOMAIN" / "sender ADDR" / "all" into selector args.
bool selector_args(const std::vector<std::string>& args, size_t from, payloads::SelectorArgs* out) {
    if (args.size() <= from || args[from] == "all") {
        out->by = "all";
        return args.size() <= from + 1;
    }
    if ((args[from] == "host" || args[from] == "sender") && args.size() == from + 2) {
        out->by = args[from];
        out->value = args[from + 1];
        return true;
    }
    return false;
}

bool confirm(Context& ctx, const std::string& question) {
    ctx.out << question << " [N]> " << std::flush;
    std::string answer;
    if (!std::getline(std::cin, answer)) return false;
    return answer == "y" || answer == "Y" || answer == "yes" || answer == "Yes";
}

void counter_line(std::ostream& o, const char* label, int indent, uint64_t v) {
    o << pad_label(label, indent, 35) << num_field(v, 6) << "\n";
}

// Text that came from a peer (envelope, HELO, headers, remote replies) reaches the
// operator's terminal only escaped: no escape sequences, no forged lines.
std::string peer_text(const std::string& text) {
    return escape_for_log(text, 4096);
}

}  // namespace

// --- renderers ----------------------------------------------------------------------------

void render_tophosts(std::ostream& o, const payloads::TophostsReply& d) {
    o << "\nStatus as of: " << esa_time(d.status_as_of) << "\n";
    o << "Hosts marked with '*' were down as of the last delivery attempt.\n\n";
    o << "                                        Active   Conn.   Deliv.   Soft      Hard\n";
    o << "#   Recipient Host                      Recip.   Out     Recip.   Bounced   Bounced\n";
    int rank = 0;
    for (const auto& h : d.hosts) {
        ++rank;
        std::string num = std::to_string(rank) + (h.down ? "*" : "");
        o << pad(num, 4) << pad(h.host, 36) << pad(thousands(h.active_recipients), 9)
          << pad(thousands(h.connections_out), 8) << pad(thousands(h.delivered_recipients), 9)
          << pad(thousands(h.soft_bounced), 10) << thousands(h.hard_bounced) << "\n";
        // An internationalized host: its U-label form on a line of its own (columns stay).
        if (!h.host_unicode.empty()) o << "    (" << h.host_unicode << ")\n";
    }
}

void render_hoststatus(std::ostream& o, const payloads::HoststatusReply& d) {
    const payloads::HostCounters& c = d.counters;
    const payloads::HostGauges& g = d.gauges;
    o << "\nHost mail status for: '" << d.host << "'";
    if (!d.host_unicode.empty()) o << " (" << d.host_unicode << ")";
    o << "\n";
    o << "Status as of:         " << esa_time(d.status_as_of) << "\n";
    o << "Host up/down:         " << d.status << "\n\n";
    o << "Counters:\n  Queue\n";
    counter_line(o, "Soft Bounced Events", 4, c.soft_bounced_events);
    o << "  Completion\n";
    counter_line(o, "Completed Recipients", 4, c.completed_recipients);
    counter_line(o, "Hard Bounced Recipients", 6, c.hard_bounced_recipients);
    counter_line(o, "DNS Hard Bounces", 8, c.dns_hard_bounces);
    counter_line(o, "5XX Hard Bounces", 8, c.fivexx_hard_bounces);
    counter_line(o, "Filter Hard Bounces", 8, c.filter_hard_bounces);
    counter_line(o, "Expired Hard Bounces", 8, c.expired_hard_bounces);
    counter_line(o, "Other Hard Bounces", 8, c.other_hard_bounces);
    counter_line(o, "Delivered Recipients", 6, c.delivered_recipients);
    counter_line(o, "Deleted Recipients", 6, c.deleted_recipients);
    o << "\nGauges:\n  Queue\n";
    counter_line(o, "Active Recipients", 4, g.active_recipients);
    counter_line(o, "Unattempted Recipients", 6, g.unattempted_recipients);
    counter_line(o, "Attempted Recipients", 6, g.attempted_recipients);
    o << "  Connections\n";
    counter_line(o, "Current Outbound Connections", 4, g.current_outbound_connections);
    counter_line(o, "Pending Outbound Connections", 4, g.pending_outbound_connections);
    o << "\n" << pad("Oldest Message", 40) << time_or(d.oldest_message, "No Messages") << "\n";
    o << pad("Last Activity", 40) << time_or(d.last_activity, "Never") << "\n";
    if (d.status == "down" && d.retry_at)
        o << pad("Next Host Retry", 40) << esa_time(*d.retry_at) << "\n";
    if (d.suspended) o << pad("Delivery", 40) << "suspended\n";
    o << "\nSMTP routes for this host:\n";
    if (d.routes.empty()) o << "    (none: MX lookup)\n";
    for (const auto& r : d.routes)
        o << "    " << r << "\n";
    o << "\nOrdered IP addresses:\n";
    if (d.ordered_ips.empty())
        o << "    (none cached)\n";
    else
        o << "    Host                                IP                                       "
             "Expires\n";
    for (const auto& ip : d.ordered_ips)
        o << "    " << pad(ip.host, 36) << pad(ip.ip, 41) << esa_time(ip.expires_at) << "\n";
    o << "\nMX Records:\n";
    if (d.mx_records.empty())
        o << "    (none cached)\n";
    else
        o << "    Preference  TTL       Hostname\n";
    for (const auto& mx : d.mx_records)
        o << "    " << pad(std::to_string(mx.preference), 12) << pad(human_duration(mx.ttl), 10)
          << mx.host << "\n";
    for (const auto* e : {&d.last_5xx_error, &d.last_soft_error}) {
        o << "\n" << (e == &d.last_5xx_error ? "Last 5XX Error:" : "Last Soft Error:") << "\n";
        if (e->text.empty()) {
            o << "    (none)\n";
            continue;
        }
        o << "----------\n" << e->text << "\n(at " << time_or(e->at, "?") << ")\n----------\n";
    }
}

void render_delivernow(std::ostream& o, const payloads::DelivernowReply& d) {
    o << thousands(d.recipients) << " recipients scheduled for immediate delivery (" << d.target
      << ").\n";
}

void render_suspenddel(std::ostream& o, const payloads::SuspendDelReply& d) {
    for (const auto& x : d.domains)
        o << "Mail delivery " << (d.suspended ? "suspended" : "resumed") << " for " << x << ".\n";
    for (const auto& x : d.unknown)
        o << "No record of host: " << x << "\n";
}

void render_suspend(std::ostream& o, const payloads::SuspendReply& d) {
    o << "Receiving suspended for Listener " << d.listener << ".\n";
    o << "Mail delivery suspended.\n";
}

void render_resume(std::ostream& o, const payloads::ResumeReply& d) {
    if (d.receiving_resumed)
        o << "Receiving resumed for Listener " << d.listener << ".\n";
    else
        o << "No listeners were resumed.\n";
    if (d.delivery_resumed)
        o << "Mail delivery resumed.\n";
    else
        o << "Mail delivery was not suspended.\n";
}

void render_workqueue(std::ostream& o, const payloads::WorkqueueReply& d) {
    o << "Status: " << d.status << "\n";
    o << "Messages: " << thousands(d.messages) << "\n";
}

void render_showrecipients(std::ostream& o, const payloads::ShowRecipientsReply& d) {
    uint64_t total = d.total;
    int64_t offset = d.offset;
    const auto& rows = d.recipients;
    if (total == 0) {
        o << "There are no messages in the delivery queue matching that request.\n";
        return;
    }
    o << "Showing " << rows.size() << " of " << thousands(total) << " recipients (from "
      << offset + 1 << ")\n\n";
    o << pad("MID", 10) << pad("RID", 5) << pad("Age", 12) << pad("State", 11) << pad("Tries", 6)
      << pad("Recipient Host", 26) << pad("Sender", 30) << "Recipient\n";
    for (const auto& r : rows)
        o << pad(std::to_string(r.mid), 10) << pad(std::to_string(r.rid), 5)
          << pad(human_duration(static_cast<uint64_t>(std::max<int64_t>(0, r.age_seconds))), 12)
          << pad(r.state, 11) << pad(std::to_string(r.attempts), 6) << pad(r.host, 26)
          << pad(std::string("<").append(peer_text(r.sender)).append(">"), 30) << "<"
          << peer_text(r.recipient) << ">\n";
    int64_t next = offset + static_cast<int64_t>(rows.size());
    if (next < static_cast<int64_t>(total)) o << "\n(more: --offset " << next << ")\n";
}

void render_showmessage(std::ostream& o, const payloads::ShowMessageReply& d) {
    auto field = [&](const char* label, const std::string& value) {
        o << pad_label(label, 0, 16) << value << "\n";
    };
    field("MID:", std::to_string(d.mid));
    field("Received:", time_or(d.received, "?"));
    field("Envelope From:", "<" + peer_text(d.sender) + ">");
    if (d.icid)
        field("Injected:", "ICID " + std::to_string(*d.icid) + " from " +
                               peer_text(d.client_ip.value_or("")) + " (HELO " +
                               peer_text(d.client_helo.value_or("")) + ")");
    if (d.size) field("Size:", thousands(*d.size) + " bytes");
    o << "\nRecipients:\n";
    o << "    " << pad("RID", 5) << pad("State", 11) << pad("Tries", 6) << pad("Next Attempt", 30)
      << "Recipient\n";
    for (const auto& r : d.recipients) {
        std::string next = time_or(r.next_attempt, "-");
        if (r.suspended && r.state != "completed") next = "(delivery suspended)";
        o << "    " << pad(std::to_string(r.rid), 5) << pad(r.state, 11)
          << pad(std::to_string(r.attempts), 6) << pad(next, 30) << "<" << peer_text(r.recipient)
          << ">\n";
        std::string err = peer_text(r.last_error);
        if (r.state != "completed" && r.attempts > 0 && !err.empty())
            o << "          host " << peer_text(r.host) << " (" << r.host_status
              << "), last error: " << err << "\n";
    }
    o << "\nHeaders:\n";
    if (d.headers) {
        std::istringstream lines(*d.headers);
        std::string line;
        while (std::getline(lines, line)) {
            if (!line.empty() && line.back() == '\r') line.pop_back();
            // Folded header lines keep their indentation readable.
            for (char& c : line)
                if (c == '\t') c = ' ';
            o << "    " << escape_for_log(line, 4096) << "\n";
        }
    } else {
        o << "    (not available: " << d.headers_error.value_or("unknown reason") << ")\n";
    }
}

void render_removal(std::ostream& o, const payloads::RemovalReply& d) {
    bool bounce = d.bounced;
    uint64_t n = d.recipients;
    if (n == 0) {
        o << (bounce ? "No messages bounced.\n" : "No recipients deleted.\n");
        return;
    }
    o << thousands(n) << " recipients " << (bounce ? "bounced" : "deleted") << ".\n";
    if (bounce && d.delivery_suspended)
        o << "Delivery is currently suspended: the bounce messages will be sent when it is "
             "resumed.\n";
}

void render_redirect(std::ostream& o, const payloads::RedirectReply& d) {
    if (!d.redirect) {
        o << "Redirect cleared: mail is routed normally again.\n";
        return;
    }
    o << "All mail is now redirected to " << *d.redirect << ".\n";
    o << thousands(d.recipients) << " recipients scheduled for immediate delivery.\n";
}

void render_dig(std::ostream& o, const payloads::DigReply& d) {
    std::string qname = d.name;
    if (!qname.empty() && qname.back() != '.') qname += ".";
    o << ";; ->>HEADER<<- status: " << d.status << (d.from_cache ? " (cached)" : "")
      << "\n;; QUESTION SECTION:\n;" << pad(qname, 27) << " IN " << d.type << "\n";
    if (!d.answers.empty()) o << "\n;; ANSWER SECTION:\n";
    for (const auto& a : d.answers)
        o << pad(a.name, 28) << pad(std::to_string(a.ttl), 7) << pad(a.dns_class, 4)
          << pad(a.type, 6) << a.data << "\n";
    if (!d.error.empty()) o << ";; " << d.error << "\n";
}

// --- commands -----------------------------------------------------------------------------

namespace {

constexpr const char* kTophostsUsage =
    "tophosts [--limit N] [active_rcpts|conn_out|deliv_rcpts|soft_bounced|hard_bounced]";
constexpr const char* kShowrecipientsUsage =
    "showrecipients [host DOMAIN|sender ADDR|all] [--offset N] [--limit N]";

int cmd_tophosts(Context& ctx, const std::vector<std::string>& args) {
    payloads::TophostsArgs req;
    std::vector<std::string> rest;
    for (size_t i = 0; i < args.size(); ++i) {
        if (args[i] == "--limit" && i + 1 < args.size()) {
            try {
                req.limit = std::stoll(args[++i]);
            } catch (...) {
                return usage(ctx, kTophostsUsage);
            }
        } else {
            rest.push_back(args[i]);
        }
    }
    if (rest.size() > 1) return usage(ctx, kTophostsUsage);
    if (!rest.empty()) req.sort = rest[0];
    return show_reply(ctx, "tophosts", req, render_tophosts);
}

int cmd_hoststatus(Context& ctx, const std::vector<std::string>& args) {
    if (args.size() != 1) return usage(ctx, "hoststatus DOMAIN");
    return show_reply(ctx, "hoststatus", payloads::HoststatusArgs{.domain = args[0]},
                      render_hoststatus);
}

int cmd_delivernow(Context& ctx, const std::vector<std::string>& args) {
    if (args.size() > 1) return usage(ctx, "delivernow [all|DOMAIN]");
    payloads::DelivernowArgs req;
    if (!args.empty()) req.target = args[0];
    return show_reply(ctx, "delivernow", req, render_delivernow);
}

int suspend_resume(Context& ctx, const std::vector<std::string>& args, bool suspend) {
    payloads::SuspendDelArgs req{.domains = {}};
    for (const auto& a : args) {
        std::stringstream ss(a);
        std::string item;
        while (std::getline(ss, item, ','))
            if (!item.empty()) req.domains.push_back(item);
    }
    if (req.domains.empty()) req.domains.push_back("ALL");
    payloads::SuspendDelReply d;
    int rc = show_reply(ctx, suspend ? "suspenddel" : "resumedel", req, render_suspenddel, &d);
    if (rc != kExitOk) return rc;
    return d.unknown.empty() ? kExitOk : kExitFailed;
}

int cmd_suspenddel(Context& ctx, const std::vector<std::string>& args) {
    return suspend_resume(ctx, args, true);
}
int cmd_resumedel(Context& ctx, const std::vector<std::string>& args) {
    return suspend_resume(ctx, args, false);
}

int cmd_suspend(Context& ctx, const std::vector<std::string>& args) {
    if (!args.empty()) return usage(ctx, "suspend");
    return show_reply(ctx, "suspend", json::object(), render_suspend);
}

int cmd_resume(Context& ctx, const std::vector<std::string>& args) {
    if (!args.empty()) return usage(ctx, "resume");
    return show_reply(ctx, "resume", json::object(), render_resume);
}

int cmd_workqueue(Context& ctx, const std::vector<std::string>& args) {
    if (args.size() > 1 || (args.size() == 1 && args[0] != "status"))
        return usage(ctx, "workqueue [status]");
    return show_reply(ctx, "workqueue", payloads::WorkqueueArgs{}, render_workqueue);
}

int cmd_showrecipients(Context& ctx, const std::vector<std::string>& args) {
    std::vector<std::string> rest;
    payloads::SelectorArgs req;
    int64_t offset = 0, limit = 100;
    for (size_t i = 0; i < args.size(); ++i) {
        if ((args[i] == "--offset" || args[i] == "--limit") && i + 1 < args.size()) {
            try {
                (args[i] == "--offset" ? offset : limit) = std::stoll(args[i + 1]);
            } catch (...) {
                return usage(ctx, kShowrecipientsUsage);
            }
            ++i;
        } else {
            rest.push_back(args[i]);
        }
    }
    if (!selector_args(rest, 0, &req)) return usage(ctx, kShowrecipientsUsage);
    req.offset = offset;
    req.limit = limit;
    return show_reply(ctx, "showrecipients", req, render_showrecipients);
}

int cmd_showmessage(Context& ctx, const std::vector<std::string>& args) {
    uint64_t mid = 0;
    if (args.size() != 1 || args[0].find_first_not_of("0123456789") != std::string::npos ||
        args[0].size() > 19 || (mid = std::stoull(args[0])) == 0)
        return usage(ctx, "showmessage MID");
    return show_reply(ctx, "showmessage", payloads::ShowMessageArgs{.mid = mid},
                      render_showmessage);
}

int remover(Context& ctx, const std::vector<std::string>& args, bool bounce) {
    const char* name = bounce ? "bouncerecipients" : "deleterecipients";
    bool yes = false;
    std::vector<std::string> rest;
    for (const auto& a : args) {
        if (a == "--yes" || a == "-y")
            yes = true;
        else
            rest.push_back(a);
    }
    payloads::SelectorArgs req;
    if (rest.empty() || !selector_args(rest, 0, &req))
        return usage(ctx, std::string(name) + " [--yes] host DOMAIN|sender ADDR|all");
    if (!yes && !ctx.json &&
        !confirm(ctx, std::string("Are you sure you want to ") + (bounce ? "bounce" : "delete") +
                          " the selected recipients?")) {
        ctx.out << "Cancelled.\n";
        return kExitFailed;
    }
    return show_reply(ctx, name, req, render_removal);
}

int cmd_deleterecipients(Context& ctx, const std::vector<std::string>& args) {
    return remover(ctx, args, false);
}
int cmd_bouncerecipients(Context& ctx, const std::vector<std::string>& args) {
    return remover(ctx, args, true);
}

int cmd_redirectrecipients(Context& ctx, const std::vector<std::string>& args) {
    constexpr const char* kUsage = "redirectrecipients [--yes] HOST[:PORT] | clear";
    bool yes = false;
    std::vector<std::string> rest;
    for (const auto& a : args) {
        if (a == "--yes" || a == "-y")
            yes = true;
        else
            rest.push_back(a);
    }
    if (rest.size() != 1 || rest[0].empty() || rest[0][0] == '-') return usage(ctx, kUsage);
    payloads::RedirectArgs req;
    if (rest[0] == "clear")
        req.clear = true;
    else
        req.host = rest[0];
    if (rest[0] != "clear" && !yes && !ctx.json &&
        !confirm(ctx, "Are you sure you want to redirect all mail to " + rest[0] + "?")) {
        ctx.out << "Cancelled.\n";
        return kExitFailed;
    }
    return show_reply(ctx, "redirectrecipients", req, render_redirect);
}

int cmd_dig(Context& ctx, const std::vector<std::string>& args) {
    bool no_cache = false;
    std::vector<std::string> rest;
    for (const auto& a : args) {
        if (a == "--no-cache")
            no_cache = true;
        else
            rest.push_back(a);
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
    payloads::DigReply d;
    int rc =
        show_reply(ctx, "dig", payloads::DigArgs{.type = type, .name = name, .no_cache = no_cache},
                   render_dig, &d);
    if (rc != kExitOk) return rc;
    const std::string& status = d.status;
    // Exit 0 only with an answer: NODATA (the name exists, no record of the type) is no answer
    // for a script asking "does this domain have an MX?".
    return status == "ok" ? kExitOk : kExitFailed;
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
        {"suspenddel", "[ALL|DOMAIN,...]", "suspend delivery (all, or to the given hosts)",
         cmd_suspenddel},
        {"resumedel", "[ALL|DOMAIN,...]", "resume suspended delivery", cmd_resumedel},
        {"suspend", "", "suspend receiving (new SMTP clients get 421) and delivery", cmd_suspend},
        {"resume", "", "resume receiving and delivery", cmd_resume},
        {"workqueue", "[status]", "messages received and waiting for their spool commit",
         cmd_workqueue},
        {"showrecipients", "[host DOMAIN|sender ADDR|all] [--offset N] [--limit N]",
         "list queued recipients", cmd_showrecipients},
        {"showmessage", "MID", "envelope, recipient states and headers of a queued message",
         cmd_showmessage},
        {"deleterecipients", "[--yes] host DOMAIN|sender ADDR|all", "delete queued recipients",
         cmd_deleterecipients},
        {"bouncerecipients", "[--yes] host DOMAIN|sender ADDR|all",
         "hard-bounce queued recipients (DSN to the sender)", cmd_bouncerecipients},
        {"redirectrecipients", "[--yes] HOST[:PORT] | clear",
         "send all mail to one host (until clear or restart)", cmd_redirectrecipients},
        {"dig", "[--no-cache] [mx|a|aaaa|txt|ptr] NAME", "DNS lookup through esad's own resolver",
         cmd_dig},
    };
}

}  // namespace esad::ctl
