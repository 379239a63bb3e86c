// See journal_writer.h.
#include "daemon/delivery/journal_writer.h"

#include <spdlog/spdlog.h>

#include <memory>

#include "daemon/loop/work.h"

namespace esad::delivery {

namespace {

spool::BounceKind journal_kind(queue::HardKind k) {
    switch (k) {
        case queue::HardKind::kDns:
            return spool::BounceKind::kDns;
        case queue::HardKind::k5xx:
            return spool::BounceKind::k5xx;
        case queue::HardKind::kExpired:
            return spool::BounceKind::kExpired;
        case queue::HardKind::kFilter:
            return spool::BounceKind::kFilter;
        case queue::HardKind::kOther:
            return spool::BounceKind::kOther;
        case queue::HardKind::kNone:
            break;
    }
    return spool::BounceKind::kNone;
}

spool::RcptState journal_state(queue::FinalState s) {
    switch (s) {
        case queue::FinalState::kDelivered:
            return spool::RcptState::kDelivered;
        case queue::FinalState::kHardBounced:
            return spool::RcptState::kHardBounced;
        case queue::FinalState::kDeleted:
            break;
    }
    return spool::RcptState::kDeleted;
}

}  // namespace

void JournalWriter::append(const std::vector<queue::FinalRecipient>& finals,
                           const std::vector<spool::Mid>& done) {
    for (const auto& f : finals)
        pending_.push_back({f.mid, f.rid, journal_state(f.state), journal_kind(f.kind)});
    remove_pending_.insert(remove_pending_.end(), done.begin(), done.end());
    pump();
}

void JournalWriter::pump() {
    const bool fresh = !pending_.empty() || !remove_pending_.empty();
    if (fresh && !append_in_flight_ && !sync_in_flight_ && unsynced_records_ == 0 &&
        sync_removes_.empty()) {
        write_and_sync();  // nothing else in flight: one job, one hand-off each way
        return;
    }
    // Write at once (a killed process loses nothing written); one write in flight at a time,
    // records arriving meanwhile go out together with the next.
    if (!append_in_flight_ && fresh) {
        append_in_flight_ = true;
        auto job = take_pending();
        loop::queue_work(
            loop_, [sp = &spool_, job] { job->write(*sp); },
            [this, job] {
                append_in_flight_ = false;
                if (written(*job)) {
                    unsynced_records_ += job->records.size();
                    sync_removes_.insert(sync_removes_.end(), job->removes.begin(),
                                         job->removes.end());
                }
                pump();
            });
    }
    // Group commit: one fsync covers everything written before it; a message file goes only
    // after its final records are durable.
    if (!sync_in_flight_ && (unsynced_records_ > 0 || !sync_removes_.empty())) {
        sync_in_flight_ = true;
        auto job = std::make_shared<Job>();
        job->synced = unsynced_records_;
        unsynced_records_ = 0;
        job->removes = std::move(sync_removes_);
        sync_removes_.clear();
        loop::queue_work(
            loop_, [sp = &spool_, job] { job->sync_and_remove(*sp); },
            [this, job] {
                sync_in_flight_ = false;
                synced(*job);
                pump();
            });
    }
}

// The records and their sync in one job: what an idle writer does with what arrives. Records
// are written as soon as the job runs, just as a write job would write them, and the sync
// the write job's completion would start at once follows without the round trip.
void JournalWriter::write_and_sync() {
    append_in_flight_ = sync_in_flight_ = true;
    auto job = take_pending();
    job->synced = job->records.size();
    loop::queue_work(
        loop_,
        [sp = &spool_, job] {
            job->write(*sp);
            if (job->write_status.ok()) job->sync_and_remove(*sp);
        },
        [this, job] {
            append_in_flight_ = sync_in_flight_ = false;
            if (written(*job)) synced(*job);
            pump();
        });
}

std::shared_ptr<JournalWriter::Job> JournalWriter::take_pending() {
    auto job = std::make_shared<Job>();
    job->records = std::move(pending_);
    job->removes = std::move(remove_pending_);
    pending_.clear();
    remove_pending_.clear();
    return job;
}

void JournalWriter::Job::write(spool::Spool& sp) {
    if (!records.empty()) write_status = sp.journal->append(records);
}

void JournalWriter::Job::sync_and_remove(spool::Spool& sp) {
    if (synced > 0) sync_status = sp.journal->sync();
    if (!sync_status.ok()) return;
    for (spool::Mid mid : removes)
        sp.store->remove_message(mid);
    if (sp.journal->needs_compaction()) spool::compact_journal(*sp.store, *sp.journal);
}

bool JournalWriter::written(const Job& job) {
    records_ += job.records.size();
    if (job.write_status.ok()) return true;
    // Their messages stay in queue/: the recipients are redone after a restart.
    spdlog::error(
        "spool: journal write failed ({} records; they will be redone after a restart): {}",
        job.records.size(), job.write_status.reason());
    return false;
}

void JournalWriter::synced(const Job& job) {
    ++flushes_;
    if (!job.sync_status.ok())
        spdlog::error(
            "spool: journal sync failed ({} records; they will be redone after a restart): {}",
            job.synced, job.sync_status.reason());
}

}  // namespace esad::delivery
