// delivery_manager — the delivery engine's coordinator (Postfix's qmgr: it never speaks SMTP
// and decides no outcome). It owns the queue (queue::Scheduler over hosts::HostTable) and its
// dispatch timer, routing of picked work, opening a session per new connection and loading
// each transaction's envelope, and the glue that hands results to the owners:
//
//   outcome_policy.h   what a report or a local failure means (pure)
//   delivery_log.h     the ESA mail-log lines of those decisions (pure)
//   connection_pool.h  the sessions and their bookkeeping, idle connections per domain
//   journal_writer.h   final records appended and synced, messages removed after the sync
//   bouncer.h          DSNs: final bounces held until their DSN is in the spool
//
//   mgr.add_message(envelope, size)   from injection (after commit) and from recovery
//   mgr.kick()                        something changed: ask the scheduler for work soon
//
// The scheduler decides what to deliver and when (STYLE §9); sessions report what happened;
// the policy decides what it means and this file applies that: host events to the host
// state, queue updates to the scheduler, then log lines, counters, DSNs and the journal.
// Operator commands (delivernow, suspend, delete, bounce) go through here. A connection with
// nothing left to send is kept open for a moment; new mail for its domain goes out on it
// instead of on a new connection.
//
// Time: the scheduler, host back-off, retries and expiry run on the monotonic clock (an NTP
// step cannot stall or rush them); wall time is for log lines, display (clock().to_wall())
// and the spool (arrival times are read as wall time and converted when a message is added).
#pragma once

#include <uv.h>

#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/config.h"
#include "daemon/daemon_state.h"
#include "daemon/delivery/bouncer.h"
#include "daemon/delivery/connection_pool.h"
#include "daemon/delivery/journal_writer.h"
#include "daemon/delivery/outcome_policy.h"
#include "daemon/delivery/router.h"
#include "daemon/delivery/smtp_session.h"
#include "daemon/hosts/host_table.h"
#include "daemon/inject/committer.h"
#include "daemon/logs/mail_log.h"
#include "daemon/loop/handle.h"
#include "daemon/loop/soon.h"
#include "daemon/queue/scheduler.h"
#include "daemon/spool/recovery.h"

namespace esad::delivery {

struct DeliveryStats {
    uint64_t journal_flushes = 0;
    uint64_t journal_records = 0;
    uint64_t dsns = 0;
};

class DeliveryManager {
  public:
    DeliveryManager(uv_loop_t* loop, DaemonState& state, logs::MailLog& mail_log,
                    spool::Spool& spool, inject::Committer& committer, Router& router,
                    const Config& config, const Clock& clock = Clock::system());
    ~DeliveryManager();

    // Not empty when a TLS client context could not be built (e.g. an unreadable
    // [delivery] tls_ca_file): the daemon must not start, or the first STARTTLS would have
    // no context to use.
    const std::string& tls_error() const { return tls_error_; }
    void apply_config(const Config& config);  // destinations, bounce profiles (live)
    void add_message(const spool::Envelope& envelope, uint64_t size);
    void kick();
    void stop();            // no new work; sessions finish their transaction and QUIT
    void abort_sessions();  // the shutdown deadline passed: close every connection now

    queue::Scheduler& scheduler() { return *scheduler_; }
    // The scheduler's clock: its times are monotonic_ms(); show them with to_wall().
    const Clock& clock() const { return clock_; }
    const ContentBudget& content_budget() const { return *content_budget_; }
    hosts::HostTable& hosts() { return hosts_; }
    uint64_t queued_bytes() const { return queued_bytes_; }
    DeliveryStats stats() const;
    size_t session_count() const { return pool_.size(); }
    // Operator: records the finals of deleted/bounced recipients (journal, counters, logs).
    void apply_removal(const queue::RemoveResult& removed, bool bounce);
    // Domain debug: SMTP trace lines of these domains go to the domain debug log.
    void set_trace(std::function<void(const std::string&, uint64_t, const std::string&)> trace) {
        env_.trace = std::move(trace);
    }
    // TLS key log sinks per domain (docs/capture.md); see SessionEnv::keylog.
    void set_keylog(std::function<tls::Engine::KeylogSink(const std::string&)> keylog) {
        env_.keylog = std::move(keylog);
    }
    std::string helo_name() const { return env_.helo_name; }

  private:
    using SessionId = ConnectionPool::Id;
    void dispatch();
    void handle_pick_side_effects(queue::Pick& pick);
    void start_work(queue::Work work);
    void on_routed(queue::Work work, RouteResult result);
    void open_session(queue::Work work, std::vector<Candidate> candidates, smtp::Transaction tx,
                      std::shared_ptr<ContentStream> content);
    using TransactionReady = std::function<void(std::optional<smtp::Transaction>,
                                                std::shared_ptr<ContentStream>, std::string error)>;
    void with_transaction(const queue::Work& work, TransactionReady done);
    void on_greeting(SessionId id, SmtpSession& s, const std::string& ip);
    void on_report(SessionId id, SmtpSession& s, const smtp::TransactionReport& report);
    void on_idle(SessionId id, SmtpSession& s);
    void on_closed(SessionId id);
    void submit_on(SessionId id, queue::Work work);
    void feed_idle(queue::DomainId d);
    // The outcome policy's decisions, applied.
    Attempt attempt(const queue::Work& work, uint64_t dcid, const std::string& remote,
                    bool greeted) const;
    void fail_work(const queue::Work& work, const LocalFailure& failure, uint64_t dcid = 0);
    void apply(const Attempt& attempt, const Verdict& verdict);
    void carry_out(const FollowUp& follow_up);
    void bounce(const BounceRequest& request);
    queue::TimeMs now_ms() const;
    const DestinationControl& destination(const std::string& domain) const;
    const BounceProfile& profile(const std::string& domain) const;
    bool sends_dsn(queue::DomainId d) const;

    uv_loop_t* loop_;
    const Clock& clock_;
    DaemonState& state_;
    logs::MailLog& mail_log_;
    spool::Spool& spool_;
    inject::Committer& committer_;
    Router& router_;
    Config config_;
    SessionEnv env_;
    hosts::HostTable hosts_;
    std::unique_ptr<queue::Scheduler> scheduler_;
    std::mt19937_64 rng_;
    // [delivery] content_buffer_budget, all sessions (shared with their ContentStreams).
    std::shared_ptr<ContentBudget> content_budget_;
    // Answers of content streams served from the spool's recent cache (content_stream.h).
    std::shared_ptr<loop::Soon> soon_ = std::make_shared<loop::Soon>(loop_);
    loop::HandlePtr<loop::Timer> timer_;
    bool dispatch_scheduled_ = false;
    bool stopping_ = false;
    ConnectionPool pool_;
    std::unordered_map<spool::Mid, uint64_t> sizes_;
    uint64_t queued_bytes_ = 0;
    JournalWriter journal_;
    std::unique_ptr<Bouncer> bouncer_;
    uint64_t dsns_ = 0;
    std::string tls_error_;
};

}  // namespace esad::delivery
