// See cmd_queue.h.
#include "daemon/control/cmd_queue.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <list>
#include <unordered_set>

#include "common/ascii.h"
#include "common/header_fields.h"
#include "common/idna.h"
#include "common/payloads/queue.h"
#include "daemon/loop/handle.h"
#include "daemon/loop/work.h"

namespace esad::control {

namespace {

// Internal queues an operator of the appliance expects in tophosts (always idle here).
const char* const kInternalQueues[] = {"the.encryption.queue", "the.euq.queue",
                                       "the.euq.release.queue"};

// The scheduler's times are on the manager's monotonic clock; operators read wall time.
int64_t now_ms(const delivery::DeliveryManager& m) {
    return m.clock().monotonic_ms();
}

// 0 ("never happened") and kNever show as null.
std::optional<int64_t> ms_to_unix(const delivery::DeliveryManager& m, int64_t ms) {
    if (ms == 0 || ms == queue::kNever) return std::nullopt;
    return m.clock().to_wall(ms) / 1000;
}

// A recipient host as the queue knows it: A-label, lower case ("München.test" finds
// "xn--mnchen-3ya.test").
std::string host_key(const std::string& s) {
    return to_a_label(s).value_or(ascii_lowercase(s));
}

// The U-label form for display next to an A-label host; empty when it has none.
std::string unicode_form(const std::string& host) {
    std::string u = to_u_label(host);
    return u == host ? std::string() : u;
}

payloads::HostCounters host_counters(const queue::DomainCounters& c) {
    return {.soft_bounced_events = c.soft_bounced_events,
            .completed_recipients = c.completed(),
            .hard_bounced_recipients = c.hard_bounced(),
            .dns_hard_bounces = c.dns_hard,
            .fivexx_hard_bounces = c.fivexx_hard,
            .expired_hard_bounces = c.expired_hard,
            .filter_hard_bounces = c.filter_hard,
            .other_hard_bounces = c.other_hard,
            .delivered_recipients = c.delivered,
            .deleted_recipients = c.deleted};
}

// Wraps a handler: refuses while the queue is not loaded yet.
Handler needs_queue(
    QueueCommandsEnv env,
    std::function<void(delivery::DeliveryManager&, const Request&, std::shared_ptr<Responder>)>
        fn) {
    return [env, fn](const Request& req, std::shared_ptr<Responder> r) {
        delivery::DeliveryManager* m = env.manager ? env.manager() : nullptr;
        if (!m) {
            r->error("unavailable", "the spool is still being recovered; try again shortly");
            return;
        }
        fn(*m, req, r);
    };
}

bool parse_selector(const payloads::SelectorArgs& args, queue::Selector* sel, std::string* error) {
    const std::string& by = args.by;
    std::string value = args.value.value_or("");
    if (by == "all") {
        *sel = queue::Selector::all();
    } else if (by == "host" || by == "domain") {
        if (value.empty()) return *error = "host needs a domain", false;
        *sel = queue::Selector::domain(host_key(value));
    } else if (by == "sender") {
        *sel = queue::Selector::sender(value);
    } else {
        *error = "unknown selector '" + by + "' (all, host DOMAIN, sender ADDRESS)";
        return false;
    }
    return true;
}

// A recipient due now whose host is held (DNS temporary failure) or down until its retry
// time is waiting as much as one with its own retry time: "deferred", not "ready".
const char* rcpt_state(queue::RcptState s, const hosts::HostState& host, int64_t now) {
    switch (s) {
        case queue::RcptState::kInFlight:
            return "delivering";
        case queue::RcptState::kDeferred:
            return "deferred";
        case queue::RcptState::kFinal:
            return "completed";
        case queue::RcptState::kReady:
            if (host.blocked_until(now) != hosts::kNever) return "deferred";
            break;
    }
    return "ready";
}

// The header section of a stored message: everything before the first empty line, LF ends.
std::string header_block(const std::string& content) {
    std::string_view head = header_section(content);
    while (!head.empty() && (head.back() == '\n' || head.back() == '\r'))
        head.remove_suffix(1);
    std::string out;
    out.reserve(head.size());
    for (char c : head)
        if (c != '\r') out.push_back(c);
    return out;
}

// One deleterecipients / bouncerecipients in progress: the scheduler already took the
// recipients out; their journal records, log lines and DSNs are applied a slice per loop
// turn so a million recipients never hold the loop for long.
struct RemovalJob {
    queue::RemoveResult result;
    std::unordered_set<queue::Mid> done;  // messages whose last recipient is in `result`
    size_t next = 0;
    bool bounce = false;
    bool finished = false;
    uint64_t messages = 0;
    std::shared_ptr<Responder> responder;
    loop::HandlePtr<loop::Timer> timer;
};

// Owns the removal jobs (through the handlers' closures, so the ControlServer's lifetime).
// Finished jobs keep a stopped timer until the next job sweeps them: a job is never freed
// on its own timer's callback.
struct RemovalJobs {
    std::list<std::unique_ptr<RemovalJob>> jobs;
};

// Applies up to kRemovalSlice recipients, extended to the end of the current message so
// a message's recipients (and its DSN) stay in one slice. True when nothing is left.
bool apply_slice(delivery::DeliveryManager& m, RemovalJob& job) {
    const auto& all = job.result.removed;
    queue::RemoveResult slice;
    slice.found = true;
    size_t end = std::min(all.size(), job.next + kRemovalSlice);
    while (end < all.size() && end > job.next && all[end].mid == all[end - 1].mid)
        ++end;
    slice.removed.assign(all.begin() + static_cast<std::ptrdiff_t>(job.next),
                         all.begin() + static_cast<std::ptrdiff_t>(end));
    queue::Mid last = 0;
    for (const auto& f : slice.removed) {
        if (f.mid == last) continue;
        last = f.mid;
        if (job.done.erase(f.mid)) slice.messages_done.push_back(f.mid);
    }
    job.next = end;
    if (job.next >= all.size()) {  // done messages without a recipient here (none expected)
        slice.messages_done.insert(slice.messages_done.end(), job.done.begin(), job.done.end());
        job.done.clear();
    }
    m.apply_removal(slice, job.bounce);
    return job.next >= all.size();
}

payloads::RemovalReply removal_reply(const RemovalJob& job, delivery::DeliveryManager& m) {
    return {.recipients = job.result.removed.size(),
            .messages = job.messages,
            .bounced = job.bounce,
            .delivery_suspended = m.scheduler().suspended_all()};
}

// Refreshes the status flags the `status` command shows from the scheduler's state.
void sync_suspended(const QueueCommandsEnv& env, delivery::DeliveryManager& m) {
    if (env.state) env.state->delivery_suspended = m.scheduler().suspended_all();
}

}  // namespace

void register_queue_commands(ControlServer& server, QueueCommandsEnv env) {
    server.add_handler(
        "tophosts", needs_queue(env, [env](delivery::DeliveryManager& m, const Request& req,
                                           std::shared_ptr<Responder> r) {
            static const std::vector<std::string> kSorts = {
                "active_rcpts", "conn_out", "deliv_rcpts", "soft_bounced", "hard_bounced"};
            auto args = payloads::parse<payloads::TophostsArgs>(req.args);
            std::string sort = args.sort.value_or("active_rcpts");
            if (std::find(kSorts.begin(), kSorts.end(), sort) == kSorts.end()) {
                r->error("bad_args",
                         "sort must be one of active_rcpts, conn_out, deliv_rcpts, soft_bounced, "
                         "hard_bounced");
                return;
            }
            int64_t limit = args.limit.value_or(20);
            if (limit < 1) {
                r->error("bad_args", "limit must be at least 1");
                return;
            }
            queue::Scheduler& s = m.scheduler();
            struct Row {
                std::string host;
                bool down;
                uint64_t active, conn, deliv, soft, hard;
                std::string status = "unknown";
                int64_t last_activity_ms = 0;
            };
            std::vector<Row> rows;
            rows.reserve(s.domain_count() + 3);
            for (const char* q : kInternalQueues)
                rows.push_back({q, false, 0, 0, 0, 0, 0});
            for (queue::DomainId d = 0; d < s.domain_count(); ++d) {
                const queue::DomainQueue& dq = s.domain(d);
                const queue::DomainCounters& c = dq.counters;
                queue::DomainGauges g = s.gauges(d);
                rows.push_back(
                    {dq.name(), dq.host().status() == hosts::HostStatus::kDown, g.active(),
                     g.current_connections, c.delivered, c.soft_bounced_events, c.hard_bounced(),
                     std::string(hosts::to_string(dq.host().status())), dq.host().last_activity()});
            }
            auto key = [&](const Row& x) {
                if (sort == "conn_out") return x.conn;
                if (sort == "deliv_rcpts") return x.deliv;
                if (sort == "soft_bounced") return x.soft;
                if (sort == "hard_bounced") return x.hard;
                return x.active;
            };
            size_t shown = std::min<size_t>(rows.size(), static_cast<size_t>(limit));
            std::partial_sort(rows.begin(), rows.begin() + static_cast<std::ptrdiff_t>(shown),
                              rows.end(), [&](const Row& a, const Row& b) {
                                  if (key(a) != key(b)) return key(a) > key(b);
                                  return a.host < b.host;
                              });
            payloads::TophostsReply reply{
                .status_as_of = std::time(nullptr), .sort = sort, .total_hosts = rows.size()};
            for (size_t i = 0; i < shown; ++i) {
                const Row& x = rows[i];
                reply.hosts.push_back({.host = x.host,
                                       .host_unicode = unicode_form(x.host),
                                       .down = x.down,
                                       .active_recipients = x.active,
                                       .connections_out = x.conn,
                                       .delivered_recipients = x.deliv,
                                       .soft_bounced = x.soft,
                                       .hard_bounced = x.hard,
                                       .status = x.status,
                                       .last_activity = ms_to_unix(m, x.last_activity_ms)});
            }
            r->ok(reply);
        }));

    server.add_handler(
        "hoststatus", needs_queue(env, [env](delivery::DeliveryManager& m, const Request& req,
                                             std::shared_ptr<Responder> r) {
            std::string domain =
                host_key(payloads::parse<payloads::HoststatusArgs>(req.args).domain);
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
            payloads::HoststatusReply reply{
                .host = domain,
                .host_unicode = unicode_form(domain),
                .status_as_of = std::time(nullptr),
                .status = std::string(hosts::to_string(h.status())),
                .retry_at = ms_to_unix(m, h.retry_at()),
                .counters = host_counters(dq.counters),
                .gauges = {.active_recipients = g.active(),
                           .unattempted_recipients = g.unattempted,
                           .attempted_recipients = g.attempted,
                           .current_outbound_connections = g.current_connections,
                           .pending_outbound_connections = g.pending_connections},
                .oldest_message = ms_to_unix(m, g.oldest_received),
                .last_activity = ms_to_unix(m, h.last_activity()),
                .suspended = dq.suspended() || s.suspended_all(),
                .last_5xx_error = {.text = h.last_5xx().text, .at = ms_to_unix(m, h.last_5xx().at)},
                .last_soft_error = {.text = h.last_soft_error().text,
                                    .at = ms_to_unix(m, h.last_soft_error().at)}};
            for (const auto& ip : h.ips())
                reply.ips.push_back({.ip = ip.ip,
                                     .last_attempt = ms_to_unix(m, ip.last_attempt),
                                     .last_error = ip.last_error,
                                     .failures = ip.failures,
                                     .successes = ip.successes});
            if (const dns::Route* route = env.router ? env.router->route_for(domain) : nullptr)
                for (const auto& dest : route->dests)
                    reply.routes.push_back(dest.to_string());
            if (env.resolver) {
                dns::CacheSnapshot snap = env.resolver->cache_snapshot(domain);
                for (const auto& x : snap.mx)
                    reply.mx_records.push_back(
                        {.preference = x.preference, .host = x.host, .ttl = x.expires_in_s});
                for (const auto& a : snap.addresses)
                    reply.ordered_ips.push_back({.host = a.host,
                                                 .ip = a.ip,
                                                 .expires_in = a.expires_in_s,
                                                 .expires_at = a.expires_at_unix});
            }
            r->ok(reply);
        }));

    server.add_handler(
        "delivernow", needs_queue(env, [](delivery::DeliveryManager& m, const Request& req,
                                          std::shared_ptr<Responder> r) {
            std::string target = payloads::parse<payloads::DelivernowArgs>(req.args).target;
            std::optional<uint64_t> n;
            if (target == "all" || target == "ALL") {
                n = m.scheduler().delivernow_all(now_ms(m));
            } else {
                n = m.scheduler().delivernow(host_key(target), now_ms(m));
                if (!n) {
                    r->error("not_found", "No record of host: " + host_key(target));
                    return;
                }
            }
            m.kick();
            r->ok(payloads::DelivernowReply{.target = target, .recipients = n.value_or(0)});
        }));

    auto suspend_resume = [env](bool suspend) {
        return needs_queue(env, [env, suspend](delivery::DeliveryManager& m, const Request& req,
                                               std::shared_ptr<Responder> r) {
            std::vector<std::string> domains;
            try {
                domains = payloads::parse<payloads::SuspendDelArgs>(req.args).domains;
            } catch (const payloads::PayloadError&) {
                domains.clear();
            }
            if (domains.empty()) {
                r->error("bad_args", "domains must be a list of domain names (or ALL)");
                return;
            }
            payloads::SuspendDelReply reply{.suspended = suspend};
            auto& done = reply.domains;
            auto& unknown = reply.unknown;
            for (const auto& name : domains) {
                if (name == "ALL" || name == "all") {
                    if (suspend)
                        m.scheduler().suspend_all();
                    else
                        m.scheduler().resume_all();
                    done.push_back("ALL");
                } else if (suspend ? m.scheduler().suspend(ascii_lowercase(name))
                                   : m.scheduler().resume(ascii_lowercase(name))) {
                    done.push_back(ascii_lowercase(name));
                } else {
                    unknown.push_back(name);
                }
            }
            sync_suspended(env, m);
            m.kick();
            r->ok(reply);
        });
    };
    server.add_handler("suspenddel", suspend_resume(true));
    server.add_handler("resumedel", suspend_resume(false));

    server.add_handler(
        "showrecipients", needs_queue(env, [](delivery::DeliveryManager& m, const Request& req,
                                              std::shared_ptr<Responder> r) {
            auto args = payloads::parse<payloads::SelectorArgs>(req.args);
            queue::Selector sel;
            std::string error;
            if (!parse_selector(args, &sel, &error)) {
                r->error("bad_args", error);
                return;
            }
            int64_t offset = std::max<int64_t>(0, args.offset.value_or(0));
            int64_t limit = std::clamp<int64_t>(args.limit.value_or(100), 1, 10000);
            queue::Scheduler& s = m.scheduler();
            if (sel.by == queue::Selector::By::kDomain && !s.find_domain(sel.value)) {
                r->error("not_found", "No record of host: " + sel.value);
                return;
            }
            const queue::MessageIndex& idx = s.index();
            int64_t now = now_ms(m);
            payloads::ShowRecipientsReply reply{.offset = offset};
            auto& rows = reply.recipients;
            uint64_t& total = reply.total;
            for (uint32_t i = 0; i < idx.slab_size(); ++i) {
                if (!idx.valid(i)) continue;
                const queue::MessageEntry& e = idx.at(i);
                std::string_view sender = idx.sender(i);
                if (sel.by == queue::Selector::By::kSender &&
                    ascii_lowercase(std::string(sender)) != ascii_lowercase(sel.value))
                    continue;
                for (uint32_t slot = 0; slot < e.rcpts.size(); ++slot) {
                    const queue::RcptSlot& rc = e.rcpts[slot];
                    if (rc.state == queue::RcptState::kFinal) continue;
                    const std::string& host = s.domain(rc.domain).name();
                    if (sel.by == queue::Selector::By::kDomain && host != sel.value) continue;
                    ++total;
                    if (static_cast<int64_t>(total) <= offset ||
                        static_cast<int64_t>(rows.size()) >= limit)
                        continue;
                    const char* state = rcpt_state(rc.state, s.domain(rc.domain).host(), now);
                    rows.push_back({.mid = e.mid,
                                    .rid = rc.rid,
                                    .sender = std::string(sender),
                                    .recipient = std::string(idx.address(i, slot)),
                                    .host = host,
                                    .age_seconds = std::max<int64_t>(0, (now - e.received) / 1000),
                                    .attempts = rc.attempts,
                                    .state = state,
                                    .next_attempt = rc.state == queue::RcptState::kDeferred
                                                        ? ms_to_unix(m, rc.next_attempt)
                                                        : std::nullopt});
                }
            }
            r->ok(reply);
        }));

    auto jobs = std::make_shared<RemovalJobs>();
    auto remover = [env, jobs](bool bounce) {
        return needs_queue(env, [env, jobs, bounce](delivery::DeliveryManager& m,
                                                    const Request& req,
                                                    std::shared_ptr<Responder> r) {
            auto args = payloads::parse<payloads::SelectorArgs>(req.args);
            queue::Selector sel;
            std::string error;
            if (!parse_selector(args, &sel, &error)) {
                r->error("bad_args", error);
                return;
            }
            auto job = std::make_unique<RemovalJob>();
            job->bounce = bounce;
            job->responder = r;
            job->result = bounce ? m.scheduler().bounce_recipients(sel, now_ms(m))
                                 : m.scheduler().delete_recipients(sel, now_ms(m));
            if (!job->result.found) {
                r->error("not_found", sel.by == queue::Selector::By::kDomain
                                          ? "No record of host: " + sel.value
                                          : "No messages from " + sel.value);
                return;
            }
            job->done.insert(job->result.messages_done.begin(), job->result.messages_done.end());
            queue::Mid last = 0;
            for (const auto& f : job->result.removed)
                if (f.mid != last) ++job->messages, last = f.mid;
            spdlog::info("operator: {} {} recipients of {} messages ({} {})",
                         bounce ? "bouncing" : "deleting", job->result.removed.size(),
                         job->messages, args.by, args.value.value_or(""));
            if (!env.loop) {  // no loop to slice on: apply everything now
                while (!apply_slice(m, *job)) {
                }
                r->ok(removal_reply(*job, m));
                return;
            }
            jobs->jobs.remove_if([](const auto& j) { return j->finished; });
            RemovalJob* raw = job.get();
            auto manager = env.manager;
            raw->timer = loop::Timer::create(env.loop, [raw, manager] {
                delivery::DeliveryManager* dm = manager ? manager() : nullptr;
                if (!dm) {  // shutting down: the scheduler is gone with what it removed
                    raw->finished = true;
                    raw->responder->error("unavailable", "the daemon is stopping");
                    return;
                }
                if (!apply_slice(*dm, *raw)) {
                    raw->timer->start(0);
                    return;
                }
                raw->finished = true;
                raw->responder->ok(removal_reply(*raw, *dm));
            });
            raw->timer->start(0);
            jobs->jobs.push_back(std::move(job));
        });
    };
    server.add_handler("deleterecipients", remover(false));
    server.add_handler("bouncerecipients", remover(true));

    // suspend / resume: receiving (the listener greets new clients with 421 4.3.2 while
    // suspended) and delivery (every domain held, like suspenddel ALL).
    server.add_handler("suspend",
                       needs_queue(env, [env](delivery::DeliveryManager& m, const Request&,
                                              std::shared_ptr<Responder> r) {
                           env.state->listener_suspended = true;
                           m.scheduler().suspend_all();
                           sync_suspended(env, m);
                           m.kick();
                           spdlog::info("operator: receiving and delivery suspended");
                           r->ok(payloads::SuspendReply{.listener = env.state->listener_address,
                                                        .receiving_suspended = true,
                                                        .delivery_suspended = true});
                       }));
    server.add_handler("resume",
                       needs_queue(env, [env](delivery::DeliveryManager& m, const Request&,
                                              std::shared_ptr<Responder> r) {
                           bool receiving = env.state->listener_suspended;
                           bool delivery = m.scheduler().suspended_all();
                           env.state->listener_suspended = false;
                           m.scheduler().resume_all();
                           sync_suspended(env, m);
                           m.kick();
                           spdlog::info("operator: receiving and delivery resumed");
                           r->ok(payloads::ResumeReply{.listener = env.state->listener_address,
                                                       .receiving_resumed = receiving,
                                                       .delivery_resumed = delivery});
                       }));

    // workqueue status: esad has no content-scanning stage, so its work queue is the group
    // commit: messages whose DATA ended and whose 250 waits for the spool.
    server.add_handler("workqueue", [env](const Request& req, std::shared_ptr<Responder> r) {
        std::string action = payloads::parse<payloads::WorkqueueArgs>(req.args).action;
        if (action != "status") {
            r->error("bad_args",
                     "workqueue supports status (esad has no separate work queue to pause: "
                     "use suspend / resume)");
            return;
        }
        if (!env.work_queue) {
            r->error("unavailable", "the work queue is not measured by this daemon");
            return;
        }
        WorkQueueInfo info = env.work_queue();
        std::string status = env.state->recovering           ? "Recovering"
                             : env.state->listener_suspended ? "Suspended"
                                                             : "Operational";
        r->ok(payloads::WorkqueueReply{.status = status,
                                       .messages = info.messages,
                                       .batches_in_flight = info.batches_in_flight});
    });

    // redirectrecipients HOST[:PORT]: every domain is routed there (queued and new mail)
    // until `clear`; queued recipients are made due now.
    server.add_handler(
        "redirectrecipients",
        needs_queue(env, [env](delivery::DeliveryManager& m, const Request& req,
                               std::shared_ptr<Responder> r) {
            if (!env.set_redirect) {
                r->error("unavailable", "this daemon cannot redirect recipients");
                return;
            }
            auto args = payloads::parse<payloads::RedirectArgs>(req.args);
            std::string host = args.host.value_or("");
            if (args.clear.value_or(false)) {
                env.set_redirect(std::nullopt);
                spdlog::info("operator: redirect cleared");
                m.kick();
                r->ok(payloads::RedirectReply{});
                return;
            }
            if (host.empty()) {
                r->error("bad_args", "redirectrecipients needs a HOST[:PORT]");
                return;
            }
            dns::RoutesParseResult parsed = dns::parse_routes("ALL " + host);
            if (!parsed.ok() || parsed.table.routes().size() != 1) {
                r->error("bad_args", "not a host, host:port or [address]:port: " + host);
                return;
            }
            dns::Route route = parsed.table.routes().front();
            if (route.dests.size() != 1 ||
                (route.dests[0].kind != dns::RouteDest::Kind::kHost &&
                 route.dests[0].kind != dns::RouteDest::Kind::kAddress)) {
                r->error("bad_args", "redirect needs one host or address: " + host);
                return;
            }
            std::string target = route.dests[0].to_string();
            env.set_redirect(route);
            uint64_t n = m.scheduler().delivernow_all(now_ms(m)).value_or(0);
            m.kick();
            spdlog::info("operator: every domain redirected to {} ({} recipients queued)", target,
                         n);
            r->ok(payloads::RedirectReply{.redirect = target, .recipients = n});
        }));

    // showmessage MID: the envelope and per-recipient state from the queue, and the stored
    // headers (read on a worker thread).
    server.add_handler(
        "showmessage", needs_queue(env, [env](delivery::DeliveryManager& m, const Request& req,
                                              std::shared_ptr<Responder> r) {
            std::optional<payloads::ShowMessageArgs> args;
            try {
                args = payloads::parse<payloads::ShowMessageArgs>(req.args);
            } catch (const payloads::PayloadError&) {
            }
            if (!args || args->mid == 0) {
                r->error("bad_args", "showmessage needs a MID (a positive number)");
                return;
            }
            queue::Mid mid = args->mid;
            queue::Scheduler& s = m.scheduler();
            const queue::MessageIndex& idx = s.index();
            uint32_t i = idx.find(mid);
            if (i == queue::kNoIndex) {
                r->error("not_found",
                         "No message with MID " + std::to_string(mid) + " in the queue");
                return;
            }
            const queue::MessageEntry& e = idx.at(i);
            payloads::ShowMessageReply data{.mid = mid,
                                            .received = ms_to_unix(m, e.received),
                                            .sender = std::string(idx.sender(i))};
            auto& rcpts = data.recipients;
            for (uint32_t slot = 0; slot < e.rcpts.size(); ++slot) {
                const queue::RcptSlot& rc = e.rcpts[slot];
                const queue::DomainQueue& dq = s.domain(rc.domain);
                const hosts::HostState& h = dq.host();
                rcpts.push_back({.rid = rc.rid,
                                 .recipient = std::string(idx.address(i, slot)),
                                 .host = dq.name(),
                                 .state = rcpt_state(rc.state, h, now_ms(m)),
                                 .attempts = rc.attempts,
                                 .next_attempt = rc.state == queue::RcptState::kDeferred
                                                     ? ms_to_unix(m, rc.next_attempt)
                                                     : std::nullopt,
                                 .host_status = std::string(hosts::to_string(h.status())),
                                 .suspended = dq.suspended() || s.suspended_all(),
                                 .last_error = h.last_soft_error().text});
            }
            std::sort(rcpts.begin(), rcpts.end(),
                      [](const auto& a, const auto& b) { return a.rid < b.rid; });
            spool::Store* store = env.store ? env.store() : nullptr;
            if (!env.loop || !store) {
                data.headers_error = "the spool is not readable from here";
                r->ok(data);
                return;
            }
            auto result = std::make_shared<spool::LoadResult>();
            loop::queue_work(
                env.loop, [store, mid, result] { *result = store->load_content(mid); },
                [r, result, data]() mutable {
                    if (result->status != spool::LoadStatus::kOk) {
                        data.headers_error =
                            std::string(spool::to_string(result->status)) + ": " + result->reason;
                    } else {
                        const spool::Envelope& env = result->message.envelope;
                        data.size = result->message.content.size();
                        data.icid = env.icid;
                        data.client_ip = env.client_ip;
                        data.client_helo = env.client_helo;
                        data.headers = header_block(result->message.content);
                    }
                    r->ok(data);
                });
        }));

    server.add_handler("dig", [env](const Request& req, std::shared_ptr<Responder> r) {
        if (!env.resolver) {
            r->error("unavailable", "no resolver");
            return;
        }
        auto args = payloads::parse<payloads::DigArgs>(req.args);
        std::string type_text = ascii_lowercase(args.type);
        const std::string& name = args.name;
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
        opts.bypass_cache = args.no_cache;
        env.resolver->query(
            type, name,
            [r, type](const dns::QueryResult& q) {
                payloads::DigReply reply{.name = q.name,
                                         .type = std::string(dns::to_string(type)),
                                         .status = std::string(dns::to_string(q.status)),
                                         .from_cache = q.from_cache,
                                         .error = q.error};
                for (const auto& rec : q.records)
                    reply.answers.push_back({.name = rec.name,
                                             .ttl = rec.ttl,
                                             .dns_class = rec.dns_class,
                                             .type = rec.type,
                                             .data = rec.data});
                r->ok(reply);
            },
            opts);
    });
}

}  // namespace esad::control
