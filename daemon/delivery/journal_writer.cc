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
    spool::Spool* sp = &spool_;
    // Write at once (a killed process loses nothing written); one write in flight at a time,
    // records arriving meanwhile go out together with the next.
    if (!append_in_flight_ && (!pending_.empty() || !remove_pending_.empty())) {
        append_in_flight_ = true;
        auto records = std::make_shared<std::vector<spool::JournalRecord>>(std::move(pending_));
        auto removes = std::make_shared<std::vector<spool::Mid>>(std::move(remove_pending_));
        pending_.clear();
        remove_pending_.clear();
        auto status = std::make_shared<spool::IoStatus>();
        loop::queue_work(
            loop_,
            [sp, records, status] {
                if (!records->empty()) *status = sp->journal->append(*records);
            },
            [this, records, removes, status] {
                append_in_flight_ = false;
                records_ += records->size();
                if (status->ok()) {
                    unsynced_records_ += records->size();
                    sync_removes_.insert(sync_removes_.end(), removes->begin(), removes->end());
                } else {
                    // Their messages stay in queue/: the recipients are redone after a restart.
                    spdlog::error(
                        "spool: journal write failed ({} records; they will be redone after a "
                        "restart): {}",
                        records->size(), status->reason());
                }
                pump();
            });
    }
    // Group commit: one fsync covers everything written before it; a message file goes only
    // after its final records are durable.
    if (!sync_in_flight_ && (unsynced_records_ > 0 || !sync_removes_.empty())) {
        sync_in_flight_ = true;
        const uint64_t count = unsynced_records_;
        unsynced_records_ = 0;
        auto removes = std::make_shared<std::vector<spool::Mid>>(std::move(sync_removes_));
        sync_removes_.clear();
        auto status = std::make_shared<spool::IoStatus>();
        loop::queue_work(
            loop_,
            [sp, count, removes, status] {
                if (count > 0) *status = sp->journal->sync();
                if (status->ok())
                    for (spool::Mid mid : *removes)
                        sp->store->remove_message(mid);
                if (status->ok() && sp->journal->needs_compaction())
                    spool::compact_journal(*sp->store, *sp->journal);
            },
            [this, count, status] {
                sync_in_flight_ = false;
                ++flushes_;
                if (!status->ok())
                    spdlog::error(
                        "spool: journal sync failed ({} records; they will be redone after a "
                        "restart): {}",
                        count, status->reason());
                pump();
            });
    }
}

}  // namespace esad::delivery
