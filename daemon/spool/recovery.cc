// recovery — see recovery.h.
#include "daemon/spool/recovery.h"

#include <algorithm>
#include <cerrno>
#include <iterator>
#include <utility>

namespace esad::spool {
namespace {

using FinalSet = std::vector<std::pair<Mid, std::uint32_t>>;  // sorted (MID, RID)

bool is_final(const FinalSet& finals, Mid mid, std::uint32_t rid) {
    return std::binary_search(finals.begin(), finals.end(), std::make_pair(mid, rid));
}

}  // namespace

IoStatus recover(Store& store, Journal& journal, const JournalScan& scan, MidAllocator& mids,
                 const RecoveryOptions& options, RecoveryReport& report) {
    report = RecoveryReport{};
    // 1. The journal's final states, sorted for lookup.
    FinalSet finals;
    finals.reserve(scan.records.size());
    for (const JournalRecord& r : scan.records) {
        finals.emplace_back(r.mid, r.rid);
        report.max_mid_seen = std::max(report.max_mid_seen, r.mid);
    }
    std::sort(finals.begin(), finals.end());
    finals.erase(std::unique(finals.begin(), finals.end()), finals.end());
    report.journal_records = scan.records.size();
    report.journal_ignored_bytes = scan.ignored_bytes;
    report.journal_tail_reason = scan.tail_reason;

    // 2. The stored messages, ascending MID, each applied against the journal as it comes
    // (only live recipients are kept in memory).
    StoreScan found;
    IoStatus scanned = store.scan(options, found, [&](StoredMessage&& sm) {
        const Mid mid = sm.envelope.mid;
        RecoveredMessage m;
        m.file_size = sm.size;
        m.total_recipients = static_cast<std::uint32_t>(sm.envelope.recipients.size());
        std::vector<Recipient>& rcpts = sm.envelope.recipients;
        rcpts.erase(
            std::remove_if(rcpts.begin(), rcpts.end(),
                           [&](const Recipient& r) { return is_final(finals, mid, r.rid); }),
            rcpts.end());
        if (rcpts.empty()) {
            // Every outcome is journaled: finish the removal the crash interrupted.
            if (IoStatus st = store.remove_message(mid); !st.ok()) {
                report.skipped.push_back({mid_name(mid), st.reason()});
            } else {
                ++report.completed_removed;
            }
            return;
        }
        rcpts.shrink_to_fit();
        m.envelope = std::move(sm.envelope);
        report.live_recipients += m.envelope.recipients.size();
        report.messages.push_back(std::move(m));
    });
    if (!scanned.ok()) return scanned;
    report.quarantined = std::move(found.quarantined);
    report.skipped.insert(report.skipped.begin(), std::make_move_iterator(found.skipped.begin()),
                          std::make_move_iterator(found.skipped.end()));
    report.stale_tmp_removed = found.stale_tmp_removed;
    report.max_mid_seen = std::max(report.max_mid_seen, found.max_mid_seen);

    // 3. Journal compaction: keep only live messages' records. The store's sync first makes
    // the removals and quarantine moves durable before their records go (scan() leaves every
    // directory to sync: earlier runtime removals may still be unsynced).
    auto live = [&report](Mid mid) {
        auto it =
            std::lower_bound(report.messages.begin(), report.messages.end(), mid,
                             [](const RecoveredMessage& m, Mid v) { return m.envelope.mid < v; });
        return it != report.messages.end() && it->envelope.mid == mid;
    };
    // A full file system defers the compaction (the old journal stays whole and valid) and
    // the MID reservation: the daemon must start on a full spool, since delivering is what
    // frees space.
    if (IoStatus st = journal.compact(live, [&store] { return store.sync_removals(); }); !st.ok()) {
        if (st.error_class() != ErrorClass::kNoSpace) return st;
        report.journal_compaction_error = st.reason();
    }

    // 4. New MIDs start above everything seen.
    if (IoStatus st = mids.observe(report.max_mid_seen); !st.ok()) {
        if (st.error_class() != ErrorClass::kNoSpace) return st;
        report.mid_reservation_error = st.reason();
    }
    return IoStatus::success();
}

IoStatus open_spool(SpoolOptions options, Spool& spool, RecoveryReport& report) {
    Spool s;
    if (IoStatus st = Store::open(std::move(options.store), s.store); !st.ok()) return st;
    JournalScan scan;
    if (IoStatus st =
            Journal::open(s.store->spool_path(), options.journal_compact_bytes, s.journal, &scan);
        !st.ok()) {
        return st;
    }
    if (IoStatus st = MidAllocator::open(s.store->spool_path(), options.mid_block, s.mids);
        !st.ok()) {
        return st;
    }
    if (IoStatus st = recover(*s.store, *s.journal, scan, *s.mids, options.recovery, report);
        !st.ok()) {
        return st;
    }
    if (report.mid_reservation_error.empty() && !s.mids->available())
        report.mid_reservation_error = s.mids->last_refill_error().reason();
    spool = std::move(s);
    return IoStatus::success();
}

}  // namespace esad::spool
