// The injection side of the spool: MIDs, the MAIL-time admission check, and group commit.
//
//   committer.next_mid(&mid)                 MID for a new transaction (loop thread)
//   committer.admit(declared_size)           cached statvfs verdict + store health + a MID
//                                            reservation left (else 451 4.3.0 at MAIL)
//   committer.commit(message, done)          done(status) on the loop thread, after the
//                                            message file and its directory entry are durable
//
// Group commit: up to store.commit_slots() batches are written on the thread pool at once
// (four for one file per message, one for the segment layout); messages that finish DATA while
// every slot is busy wait and go out together with the next free slot, so under load many
// messages share one fsync and concurrent file fsyncs overlap. A message
// is answered 250 only from `done` with an ok status. After an fsync failure the store is
// unhealthy: admit() answers kUnavailable (new sessions get 421 4.3.2) and a probe runs every
// second until a probe write succeeds. Free space is re-checked on a worker once a second, never on
// the loop. Logs: commit failures and health changes (daemon log).
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <vector>

#include "daemon/loop/handle.h"
#include "daemon/smtp/server_fsm.h"
#include "daemon/spool/recovery.h"

namespace esad::inject {

struct CommitStats {
    uint64_t batches = 0;
    uint64_t messages = 0;
    uint64_t largest_batch = 0;
};

class Committer {
  public:
    using Done = std::function<void(const spool::IoStatus&)>;

    Committer(uv_loop_t* loop, spool::Spool& spool, uint64_t max_message_size);
    ~Committer();

    // Starts the free-space refresher; call once the spool is open.
    void start();
    void stop();

    spool::IoStatus next_mid(spool::Mid* mid);
    smtp::SpoolAdmit admit(uint64_t declared_size) const;
    bool healthy() const { return spool_.store->healthy(); }
    void commit(spool::Message message, Done done);
    void set_max_message_size(uint64_t size) { max_message_size_ = size; }
    // Told the outcome of every free-space check (for the status gauges).
    void on_space(std::function<void(const spool::SpaceCheck&)> cb) { on_space_ = std::move(cb); }
    const CommitStats& stats() const { return stats_; }
    // Messages whose DATA ended and whose commit has not completed (waiting or being written).
    uint64_t pending_messages() const { return waiting_->messages.size() + messages_in_flight_; }
    size_t batches_in_flight() const { return in_flight_; }
    const spool::SpaceCheck& last_space() const { return *space_; }

  private:
    struct Batch {
        std::vector<spool::PendingMessage> messages;
        std::vector<Done> done;
    };
    void flush();
    void start_batch(std::shared_ptr<Batch> batch);
    void refresh_space();
    void maybe_probe();
    void maybe_refill();  // MID reservation on a worker, one at a time
    // `work` on a worker while `busy` is set; `done` gets its status on the loop thread.
    void run_once(bool& busy, std::function<spool::IoStatus()> work,
                  std::function<void(const spool::IoStatus&)> done);

    uv_loop_t* loop_;
    spool::Spool& spool_;
    uint64_t max_message_size_;
    std::unique_ptr<Batch> waiting_;
    size_t in_flight_ = 0;
    uint64_t messages_in_flight_ = 0;
    bool refilling_ = false;
    bool mid_reserve_ok_ = true;  // last refill outcome, to log changes only
    bool space_checking_ = false;
    bool probing_ = false;
    bool stopped_ = false;
    std::shared_ptr<spool::SpaceCheck> space_;
    std::function<void(const spool::SpaceCheck&)> on_space_;
    loop::HandlePtr<loop::Timer> timer_;
    CommitStats stats_;
};

}  // namespace esad::inject
