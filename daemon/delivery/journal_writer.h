// journal_writer — owns getting final recipient records into the spool journal and, after
// that, their finished messages out of queue/: the order that makes "nothing acknowledged is
// ever lost" hold across a crash.
//
//   JournalWriter w(loop, spool);
//   w.append(finals, done);   // on the loop; returns at once
//
// Records are written (one worker write(2)) as soon as they exist, so a process kill loses
// none; fsyncs are batched (group commit) by a second worker job that covers everything
// written before it started, and only after that sync are the messages those records
// finished removed. One write and one sync in flight at a time; whatever arrives meanwhile
// goes out with the next; an idle writer writes and syncs in one job. A failed write or sync
// leaves the messages in queue/: their recipients are redone after a restart (logged). The
// loop never waits on the disk.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "daemon/queue/scheduler.h"
#include "daemon/spool/recovery.h"

namespace esad::delivery {

class JournalWriter {
  public:
    JournalWriter(uv_loop_t* loop, spool::Spool& spool) : loop_(loop), spool_(spool) {}

    void append(const std::vector<queue::FinalRecipient>& finals,
                const std::vector<spool::Mid>& done);

    std::uint64_t records_written() const { return records_; }
    std::uint64_t flushes() const { return flushes_; }
    // Nothing waits to be written, synced or removed.
    bool idle() const {
        return !append_in_flight_ && !sync_in_flight_ && pending_.empty() &&
               remove_pending_.empty() && unsynced_records_ == 0 && sync_removes_.empty();
    }

  private:
    // One worker job's records, removals and results.
    struct Job {
        std::vector<spool::JournalRecord> records;
        std::vector<spool::Mid> removes;
        std::uint64_t synced = 0;  // records the sync covers
        spool::IoStatus write_status;
        spool::IoStatus sync_status;
        void write(spool::Spool& sp);            // worker
        void sync_and_remove(spool::Spool& sp);  // worker
    };

    void pump();
    void write_and_sync();
    std::shared_ptr<Job> take_pending();
    bool written(const Job& job);  // counts and logs a finished write; false if it failed
    void synced(const Job& job);   // counts and logs a finished sync

    uv_loop_t* loop_;
    spool::Spool& spool_;
    std::vector<spool::JournalRecord> pending_;  // not yet written
    std::vector<spool::Mid> remove_pending_;     // their messages done with them
    bool append_in_flight_ = false;
    std::uint64_t unsynced_records_ = 0;    // written, not yet covered by a sync
    std::vector<spool::Mid> sync_removes_;  // removals waiting for that sync
    bool sync_in_flight_ = false;
    std::uint64_t records_ = 0;
    std::uint64_t flushes_ = 0;
};

}  // namespace esad::delivery
