// See cmd_queue.h.
#include "daemon/control/cmd_queue.h"

#include <algorithm>
#include <chrono>

namespace esad::control {

using nlohmann::json;

namespace {

// Internal queues an operator of the appliance expects in tophosts (always idle here).
const char* const kInternalQueues[] = {"the.encryption.queue", "the.euq.queue",
                                       "the.euq.release.queue"};

int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

json ms_to_unix(int64_t ms) { return ms > 0 && ms != queue::kNever ? json(ms / 1000) : json(nullptr); }

std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

json counters_json(const queue::DomainCounters& c) {
    return {{"soft_bounced_events", c.soft_bounced_events},
            {"completed_recipients", c.completed()},
            {"hard_bounced_recipients", c.hard_bounced()},
            {"dns_hard_bounces", c.dns_hard},
            {"5xx_hard_bounces", c.fivexx_hard},
            {"expired_hard_bounces", c.expired_hard},
            {"filter_hard_bounces", c.filter_hard},
            {"other_hard_bounces", c.other_hard},
            {"delivered_recipients", c.delivered},
            {"deleted_recipients", c.deleted}};
}

// Wraps a handler: refuses while the queue is not loaded yet.
Handler needs_queue(QueueCommandsEnv env,
                    std::function<void(delivery::DeliveryManager&, const Request&, std::shared_ptr<Responder>)> fn) {
    return [env, fn](const Request& req, std::shared_ptr<Responder> r) {
        delivery::DeliveryManager* m = env.manager ? env.manager() : nullptr;
        if (!m) {
            r->error("unavailable", "the spool is still being recovered; try again shortly");
            return;
        }
        fn(*m, req, r);
    };
}

bool parse_selector(const json& args, queue::Selector* sel, std::string* error) {
    std::string by = args.value("by", "all");
    std::string value = args.value("value", "");
    if (by == "all") {
        *sel = queue::Selector::all();
    } else if (by == "host" || by == "domain") {
        if (value.empty()) return *error = "host needs a domain", false;
        *sel = queue::Selector::domain(lower(value));
    } else if (by == "sender") {
        *sel = queue::Selector::sender(value);
    } else {
        *error = "unknown selector '" + by + "' (all, host DOMAIN, sender ADDRESS)";
        return false;
    }
    return true;
}

}  // namespace

void register_queue_commands(ControlServer& server, QueueCommandsEnv env) {
    server.add_handler("tophosts", needs_queue(env, [env](delivery::DeliveryManager& m, const Request& req,
                                                           std::shared_ptr<Responder> r) {
        static const std::vector<std::string> kSorts = {"active_rcpts", "conn_out", "deliv_rcpts",
                                                        "soft_bounced", "hard_bounced"};
        std::string sort = req.args.value("sort", "active_rcpts");
        if (std::find(kSorts.begin(), kSorts.end(), sort) == kSorts.end()) {
            r->error("bad_args", "sort must be one of active_rcpts, conn_out, deliv_rcpts, soft_bounced, hard_bounced");
            return;
        }
        int64_t limit = req.args.value("limit", 20);
        if (limit < 1) {
            r->error("bad_args", "limit must be at least 1");
            return;
        }
        queue::Scheduler& s = m.scheduler();
        struct Row {
            std::string host;
            bool down;
            uint64_t active, conn, deliv, soft, hard;
        };
        std::vector<Row> rows;
        rows.reserve(s.domain_count() + 3);
        for (const char* q : kInternalQueues) rows.push_back({q, false, 0, 0, 0, 0, 0});
        for (queue::DomainId d = 0; d < s.domain_count(); ++d) {
            const queue::DomainQueue& dq = s.domain(d);
            const queue::DomainCounters& c = dq.counters;
            queue::DomainGauges g = s.gauges(d);
            rows.push_back({dq.name(), dq.host().status() == hosts::HostStatus::kDown, g.active(),
                            g.current_connections, c.delivered, c.soft_bounced_events, c.hard_bounced()});
        }
        auto key = [&](const Row& x) {
            if (sort == "conn_out") return x.conn;
            if (sort == "deliv_rcpts") return x.deliv;
            if (sort == "soft_bounced") return x.soft;
            if (sort == "hard_bounced") return x.hard;
            return x.active;
        };
        size_t shown = std::min<size_t>(rows.size(), static_cast<size_t>(limit));
        std::partial_sort(rows.begin(), rows.begin() + static_cast<std::ptrdiff_t>(shown), rows.end(),
                          [&](const Row& a, const Row& b) {
                              if (key(a) != key(b)) return key(a) > key(b);
                              return a.host < b.host;
                          });
        json hosts = json::array();
        for (size_t i = 0; i < shown; ++i) {
            const Row& x = rows[i];
            hosts.push_back({{"host", x.host}, {"down", x.down}, {"active_recipients", x.active},
                             {"connections_out", x.conn}, {"delivered_recipients", x.deliv},
                             {"soft_bounced", x.soft}, {"hard_bounced", x.hard}});
        }
        r->ok({{"status_as_of", std::time(nullptr)}, {"sort", sort}, {"total_hosts", rows.size()}, {"hosts", hosts}});
    }));

    server.add_handler("hoststatus", needs_queue(env, [env](delivery::DeliveryManager& m, const Request& req,
                                                             std::shared_ptr<Responder> r) {
        std::string domain = lower(req.args.value("domain", ""));
        if (domain.empty()) {
            r->error("bad_args", "hoststatus needs a domain");
            return;
        }
        queue::Scheduler& s = m.scheduler();
        std::optional<queue::DomainId> d = s.find_domain(domain);
        if (!d) {
            r->error("not_found", "No record of host: " + domain);
            return;
        }
        const queue::DomainQueue& dq = s.domain(*d);
        const hosts::HostState& h = dq.host();
        queue::DomainGauges g = s.gauges(*d);
        json ips = json::array();
        for (const auto& ip : h.ips())
            ips.push_back({{"ip", ip.ip}, {"last_attempt", ms_to_unix(ip.last_attempt)},
                           {"last_error", ip.last_error}, {"failures", ip.failures},
                           {"successes", ip.successes}});
        json routes = json::array();
        if (const dns::Route* route = env.router ? env.router->route_for(domain) : nullptr)
            for (const auto& dest : route->dests) routes.push_back(dest.to_string());
        json mx = json::array(), ordered = json::array();
        if (env.resolver) {
            dns::CacheSnapshot snap = env.resolver->cache_snapshot(domain);
            for (const auto& x : snap.mx)
                mx.push_back({{"preference", x.preference}, {"host", x.host}, {"ttl", x.expires_in_s}});
            for (const auto& a : snap.addresses)
                ordered.push_back({{"host", a.host}, {"ip", a.ip}, {"expires_in", a.expires_in_s},
                                   {"expires_at", a.expires_at_unix}});
        }
        r->ok({{"host", domain},
               {"status_as_of", std::time(nullptr)},
               {"status", std::string(hosts::to_string(h.status()))},
               {"retry_at", ms_to_unix(h.retry_at())},
               {"counters", counters_json(dq.counters)},
               {"gauges",
                {{"active_recipients", g.active()},
                 {"unattempted_recipients", g.unattempted},
                 {"attempted_recipients", g.attempted},
                 {"current_outbound_connections", g.current_connections},
                 {"pending_outbound_connections", g.pending_connections}}},
               {"oldest_message", ms_to_unix(g.oldest_received)},
               {"last_activity", ms_to_unix(h.last_activity())},
               {"suspended", dq.suspended() || s.suspended_all()},
               {"routes", routes},
               {"ordered_ips", ordered},
               {"mx_records", mx},
               {"ips", ips},
               {"last_5xx_error", {{"text", h.last_5xx().text}, {"at", ms_to_unix(h.last_5xx().at)}}},
               {"last_soft_error", {{"text", h.last_soft_error().text}, {"at", ms_to_unix(h.last_soft_error().at)}}}});
    }));

    server.add_handler("delivernow", needs_queue(env, [](delivery::DeliveryManager& m, const Request& req,
                                                         std::shared_ptr<Responder> r) {
        std::string target = req.args.value("target", "all");
        std::optional<uint64_t> n;
        if (target == "all" || target == "ALL") {
            n = m.scheduler().delivernow_all(now_ms());
        } else {
            n = m.scheduler().delivernow(lower(target), now_ms());
            if (!n) {
                r->error("not_found", "No record of host: " + lower(target));
                return;
            }
        }
        m.kick();
        r->ok({{"target", target}, {"recipients", n.value_or(0)}});
    }));

    auto suspend_resume = [env](bool suspend) {
        return needs_queue(env, [suspend](delivery::DeliveryManager& m, const Request& req,
                                          std::shared_ptr<Responder> r) {
            json domains = req.args.value("domains", json::array({"ALL"}));
            if (!domains.is_array() || domains.empty()) {
                r->error("bad_args", "domains must be a list (or ALL)");
                return;
            }
            json done = json::array(), unknown = json::array();
            for (const auto& d : domains) {
                std::string name = d.is_string() ? d.get<std::string>() : "";
                if (name == "ALL" || name == "all") {
                    if (suspend) m.scheduler().suspend_all();
                    else m.scheduler().resume_all();
                    done.push_back("ALL");
                } else if (suspend ? m.scheduler().suspend(lower(name)) : m.scheduler().resume(lower(name))) {
                    done.push_back(lower(name));
                } else {
                    unknown.push_back(name);
                }
            }
            m.kick();
            r->ok({{"suspended", suspend}, {"domains", done}, {"unknown", unknown}});
        });
    };
    server.add_handler("suspenddel", suspend_resume(true));
    server.add_handler("resumedel", suspend_resume(false));

    server.add_handler("showrecipients", needs_queue(env, [](delivery::DeliveryManager& m, const Request& req,
                                                             std::shared_ptr<Responder> r) {
        queue::Selector sel;
        std::string error;
        if (!parse_selector(req.args, &sel, &error)) {
            r->error("bad_args", error);
            return;
        }
        int64_t offset = std::max<int64_t>(0, req.args.value("offset", 0));
        int64_t limit = std::clamp<int64_t>(req.args.value("limit", 100), 1, 10000);
        queue::Scheduler& s = m.scheduler();
        const queue::MessageIndex& idx = s.index();
        int64_t now = now_ms();
        json rows = json::array();
        uint64_t total = 0;
        for (uint32_t i = 0; i < idx.slab_size(); ++i) {
            if (!idx.valid(i)) continue;
            const queue::MessageEntry& e = idx.at(i);
            std::string_view sender = idx.sender(i);
            if (sel.by == queue::Selector::By::kSender && lower(std::string(sender)) != lower(sel.value)) continue;
            for (uint32_t slot = 0; slot < e.rcpts.size(); ++slot) {
                const queue::RcptSlot& rc = e.rcpts[slot];
                if (rc.state == queue::RcptState::kFinal) continue;
                const std::string& host = s.domain(rc.domain).name();
                if (sel.by == queue::Selector::By::kDomain && host != sel.value) continue;
                ++total;
                if (static_cast<int64_t>(total) <= offset || static_cast<int64_t>(rows.size()) >= limit) continue;
                const char* state = rc.state == queue::RcptState::kInFlight ? "delivering"
                                    : rc.state == queue::RcptState::kDeferred ? "deferred"
                                                                              : "ready";
                rows.push_back({{"mid", e.mid}, {"rid", rc.rid}, {"sender", std::string(sender)},
                                {"recipient", std::string(idx.address(i, slot))}, {"host", host},
                                {"age_seconds", std::max<int64_t>(0, (now - e.received) / 1000)},
                                {"attempts", rc.attempts}, {"state", state},
                                {"next_attempt", rc.state == queue::RcptState::kDeferred ? ms_to_unix(rc.next_attempt) : json(nullptr)}});
            }
        }
        r->ok({{"total", total}, {"offset", offset}, {"recipients", rows}});
    }));

    auto remover = [env](bool bounce) {
        return needs_queue(env, [bounce](delivery::DeliveryManager& m, const Request& req,
                                         std::shared_ptr<Responder> r) {
            queue::Selector sel;
            std::string error;
            if (!parse_selector(req.args, &sel, &error)) {
                r->error("bad_args", error);
                return;
            }
            queue::RemoveResult res = bounce ? m.scheduler().bounce_recipients(sel, now_ms())
                                             : m.scheduler().delete_recipients(sel, now_ms());
            if (!res.found) {
                r->error("not_found", sel.by == queue::Selector::By::kDomain ? "No record of host: " + sel.value
                                                                              : "No messages from " + sel.value);
                return;
            }
            size_t n = res.removed.size();
            m.apply_removal(res, bounce);
            r->ok({{"recipients", n}, {"bounced", bounce}});
        });
    };
    server.add_handler("deleterecipients", remover(false));
    server.add_handler("bouncerecipients", remover(true));

    server.add_handler("dig", [env](const Request& req, std::shared_ptr<Responder> r) {
        if (!env.resolver) {
            r->error("unavailable", "no resolver");
            return;
        }
        std::string type_text = lower(req.args.value("type", "a"));
        std::string name = req.args.value("name", "");
        dns::QueryType type;
        if (!dns::parse_query_type(type_text, &type)) {
            r->error("bad_args", "query type must be one of mx, a, aaaa, txt, ptr");
            return;
        }
        if (name.empty()) {
            r->error("bad_args", "dig needs a name");
            return;
        }
        dns::LookupOptions opts;
        opts.bypass_cache = req.args.value("no_cache", false);
        env.resolver->query(type, name, [r, type](const dns::QueryResult& q) {
            json records = json::array();
            for (const auto& rec : q.records)
                records.push_back({{"name", rec.name}, {"ttl", rec.ttl}, {"class", rec.dns_class},
                                   {"type", rec.type}, {"data", rec.data}});
            r->ok({{"name", q.name}, {"type", std::string(dns::to_string(type))},
                   {"status", std::string(dns::to_string(q.status))}, {"from_cache", q.from_cache},
                   {"error", q.error}, {"answers", records}});
        }, opts);
    });
}

}  // namespace esad::control
