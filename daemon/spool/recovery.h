// recovery — the startup scan of the spool, run before injection opens (REQ-D10).
//
// Steps: the store's scan() (store.h: stale leftovers of unfinished commits removed, every
// message validated — with verify_content the whole-file checksum too, streamed in chunks —
// undecodable, mis-named or hard-linked ones quarantined with a reason, odd entries skipped
// and reported); apply the journal: recipients with a final record are dropped, messages
// with no recipient left are removed; the store's sync_removals() and compaction of the
// journal to the live messages; move the MID allocator past every MID seen on disk.
//
// The result keeps only envelopes of live messages with their not-yet-final recipients
// (about 100–200 bytes per recipient plus sender/helo per message); content is fetched later
// with Store::load_content(MID).
//
// API: recover(store, journal, scan, mids, options, report) — blocking, run it on a worker
// thread (the loop stays responsive for control requests meanwhile). open_spool() does
// Store/Journal/MidAllocator open + recover in one call. No logging: the report lists every
// quarantined file and skipped entry with its reason for the caller to log and count.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "daemon/spool/file_util.h"
#include "daemon/spool/journal.h"
#include "daemon/spool/mid_allocator.h"
#include "daemon/spool/recent_cache.h"
#include "daemon/spool/record_codec.h"
#include "daemon/spool/store.h"

namespace esad::spool {

struct RecoveredMessage {
    Envelope envelope;  // recipients: only those without a final journal record
    std::uint32_t total_recipients = 0;
    std::uint64_t file_size = 0;
};

struct RecoveryReport {
    std::vector<RecoveredMessage> messages;  // ascending MID
    std::vector<QuarantinedFile> quarantined;
    std::vector<SkippedEntry> skipped;
    std::uint64_t stale_tmp_removed = 0;
    std::uint64_t completed_removed = 0;  // every recipient final: file removed now
    std::uint64_t live_recipients = 0;
    std::uint64_t journal_records = 0;
    std::uint64_t journal_ignored_bytes = 0;
    std::string journal_tail_reason;
    Mid max_mid_seen = 0;
    // Work a full file system (ENOSPC/EDQUOT) deferred; empty when done. Without a MID
    // reservation new mail is refused with 4xx until a later refill succeeds.
    std::string journal_compaction_error;
    std::string mid_reservation_error;
};

// Fails only on errors that make the whole spool unusable (the store cannot be listed, cannot
// compact the journal, cannot persist the MID reservation — except for lack of space, which
// is reported in journal_compaction_error / mid_reservation_error); per-file problems are
// reported.
IoStatus recover(Store& store, Journal& journal, const JournalScan& scan, MidAllocator& mids,
                 const RecoveryOptions& options, RecoveryReport& report);

struct SpoolOptions {
    StoreOptions store;
    RecoveryOptions recovery;
    std::uint64_t journal_compact_bytes = 64ull << 20;
    std::uint64_t mid_block = kDefaultMidBlock;
};

struct Spool {
    std::unique_ptr<Store> store;
    std::unique_ptr<RecentCache> recent;  // loop thread only; the daemon sets it up
    std::unique_ptr<Journal> journal;
    std::unique_ptr<MidAllocator> mids;
};

IoStatus open_spool(SpoolOptions options, Spool& spool, RecoveryReport& report);

}  // namespace esad::spool
