// The delivery engine's driver: the queue (queue::Scheduler over hosts::HostTable), one uv
// timer, outbound SmtpSessions, outcome application, the recipient journal and DSNs.
//
//   mgr.add_message(envelope, size)   from injection (after commit) and from recovery
//   mgr.kick()                        something changed: ask the scheduler for work soon
//
// The scheduler decides what to deliver and when (STYLE §9); sessions report what happened;
// this file applies reports: final recipients are journaled (append + fsync on a worker,
// batched like group commit) and a message file is removed only after its last recipient's
// final record is durable; hard bounces generate an RFC 3464 DSN to the sender (never for
// the null sender or a DSN), committed to the spool as a new message. Per-recipient ESA mail
// log lines (Message done / Response / Delayed / pending till / Bounced / Message finished)
// are written here. Operator commands (delivernow, suspend, delete, bounce) go through here.
// A connection with nothing left to send is kept open for 2 s; new mail for its domain goes
// out on it instead of on a new connection.
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
#include "daemon/delivery/router.h"
#include "daemon/delivery/smtp_session.h"
#include "daemon/hosts/host_table.h"
#include "daemon/inject/committer.h"
#include "daemon/logs/mail_log.h"
#include "daemon/loop/graveyard.h"
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
    const DeliveryStats& stats() const { return stats_; }
    size_t session_count() const { return sessions_.size(); }
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
    struct Live;  // per-session bookkeeping
    void dispatch();
    void handle_pick_side_effects(queue::Pick& pick);
    void start_work(queue::Work work);
    void on_routed(queue::Work work, RouteResult result);
    void fail_work(const queue::Work& work, queue::Outcome outcome, queue::HardKind kind,
                   const std::string& enhanced, const std::string& reason, const std::string& code,
                   const std::string& detail, uint64_t dcid);
    using TransactionReady = std::function<void(std::optional<smtp::Transaction>,
                                                std::shared_ptr<ContentStream>, std::string error)>;
    void with_transaction(const queue::Work& work, TransactionReady done);
    void on_report(SmtpSession& s, const smtp::TransactionReport& report);
    void on_idle(SmtpSession& s);
    void submit_on(SmtpSession& s, queue::Work work);
    void unpark(SmtpSession& s);
    void feed_idle(queue::DomainId d);
    void arm_idle_sweep();
    void sweep_idle();
    void close_idle();
    void on_closed(SmtpSession& s);
    void record(const queue::ReportResult& result, const std::string& domain);
    void journal(const std::vector<queue::FinalRecipient>& finals,
                 const std::vector<spool::Mid>& done);
    void append_journal(const std::vector<queue::FinalRecipient>& finals,
                        const std::vector<spool::Mid>& done);
    void pump_journal();
    void finish_messages(const std::vector<spool::Mid>& done);
    void bounce(spool::Mid mid, const std::string& domain, std::vector<BounceInfo> rcpts,
                bool delay_warning = false);
    void log_outcomes(const queue::Work& work, const smtp::TransactionReport* report,
                      const queue::ReportResult& result, uint64_t dcid, const std::string& remote);
    queue::TimeMs now_ms() const;
    const DestinationControl& destination(const std::string& domain) const;
    const BounceProfile& profile(const std::string& domain) const;

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
    // Connections with nothing to send, per domain, kept kIdleKeepMs for new work.
    static constexpr queue::TimeMs kIdleKeepMs = 2000;
    static constexpr uint64_t kIdleSweepMs = 500;
    std::unordered_map<queue::DomainId, std::vector<SmtpSession*>> idle_;
    loop::HandlePtr<loop::Timer> idle_timer_;
    bool idle_sweep_armed_ = false;
    bool dispatch_scheduled_ = false;
    bool stopping_ = false;
    std::map<SmtpSession*, std::shared_ptr<SmtpSession>> sessions_;
    std::map<SmtpSession*, std::unique_ptr<Live>> live_;
    loop::Graveyard graveyard_{loop_};
    std::unordered_map<spool::Mid, uint64_t> sizes_;
    uint64_t queued_bytes_ = 0;
    // Journal: records are written (one worker write(2)) as soon as they exist, so a process
    // kill loses none; fsyncs are batched (group commit) by a second worker job that covers
    // everything written before it started, then removes the messages those records finished.
    std::vector<spool::JournalRecord> journal_pending_;  // not yet written
    std::vector<spool::Mid> remove_pending_;             // their messages done with them
    bool append_in_flight_ = false;
    uint64_t unsynced_records_ = 0;         // written, not yet covered by a sync
    std::vector<spool::Mid> sync_removes_;  // removals waiting for that sync
    bool sync_in_flight_ = false;
    std::unique_ptr<Bouncer> bouncer_;
    DeliveryStats stats_;
    std::string tls_error_;
};

}  // namespace esad::delivery
