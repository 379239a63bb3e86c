// journal — append-only file spool/journal of per-recipient final states (REQ-D7).
//
// Format: magic "ESAJRNL1", then records: payload length (u32 LE) + CRC32C of the payload
// (u32 LE) + payload (MID u64, RID u32, state u8, bounce kind u8). Reading stops at the first
// record that is incomplete or fails its checksum: a torn tail (crash mid-append) is
// ignored, costing at most a duplicate delivery of those recipients. open() truncates such a
// tail away so later appends stay readable. Zero bytes from the end of the records to the end
// of the file are room, not a tail: appends go into room prefilled 256 KiB at a time, so that
// a sync there writes the records only (no new file size, no block allocation).
//
// Use: append(records) after the outcome is known, then sync() (the glue batches syncs over
// many appends); only after sync() succeeded may a message whose recipients are now all
// final be removed (Store::remove_message). A failed sync is never retried on the same file
// (fsyncgate): the journal is marked broken and the next append()/sync() first rewrites the
// readable records into a fresh file (tmp, fsync, rename, fsync dir).
//
// Compaction (at startup by recovery, and whenever needs_compaction()): rewrite keeping only
// records whose MID keep() accepts; before_replace() runs after keep() was asked and before
// the new file replaces the old — compact_journal() passes Store::sync_removals() there, so
// the dropped records' message-file unlinks are durable before their records disappear.
//
// Threading: every method may be called from any worker thread; they serialise on an
// internal mutex, except that sync()'s fdatasync runs outside it (appends are not blocked by a
// slow disk sync). No logging: results carry reasons.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/spool/file_util.h"
#include "daemon/spool/record_codec.h"

namespace esad::spool {

class Store;

enum class RcptState : std::uint8_t { kDelivered = 1, kHardBounced = 2, kDeleted = 3 };
enum class BounceKind : std::uint8_t {
    kNone = 0,  // delivered / deleted
    kDns = 1,
    k5xx = 2,
    kExpired = 3,
    kFilter = 4,
    kOther = 5,
};
std::string_view to_string(RcptState s);
std::string_view to_string(BounceKind k);

struct JournalRecord {
    Mid mid = 0;
    std::uint32_t rid = 0;
    RcptState state = RcptState::kDelivered;
    BounceKind kind = BounceKind::kNone;

    bool operator==(const JournalRecord&) const = default;
};

inline constexpr std::string_view kJournalMagic = "ESAJRNL1";

struct JournalScan {
    std::vector<JournalRecord> records;
    std::uint64_t valid_bytes = 0;    // header + every good record
    std::uint64_t ignored_bytes = 0;  // torn or corrupt tail
    std::uint64_t room_bytes = 0;     // zeros after the records (prefilled room)
    std::string tail_reason;          // why the tail was ignored; empty if none
};

// Pure codec. parse_journal() never reads outside `bytes`; a bad header yields
// valid_bytes == 0 and a reason.
std::string encode_journal_record(const JournalRecord& record);
JournalScan parse_journal(std::string_view bytes);

class Journal {
  public:
    // dir: the spool directory. Creates the journal if missing. `scan` (optional) receives
    // the records found and what was ignored — recovery applies them.
    static IoStatus open(const std::string& dir, std::uint64_t compact_threshold_bytes,
                         std::unique_ptr<Journal>& out, JournalScan* scan);

    IoStatus append(std::span<const JournalRecord> records);
    IoStatus sync();
    IoStatus compact(const std::function<bool(Mid)>& keep,
                     const std::function<IoStatus()>& before_replace);

    std::uint64_t size_bytes() const;
    bool needs_compaction() const;
    bool broken() const;
    std::uint64_t sync_count() const;

  private:
    Journal(UniqueFd dir_fd, std::string label, std::uint64_t threshold)
        : dir_fd_(std::move(dir_fd)), label_(std::move(label)), threshold_(threshold) {}
    IoStatus reopen_locked();
    IoStatus rewrite_locked(const std::function<bool(Mid)>& keep,
                            const std::function<IoStatus()>& before_replace);

    UniqueFd dir_fd_;
    std::string label_;
    std::uint64_t threshold_;
    mutable std::mutex mu_;
    std::shared_ptr<UniqueFd> fd_;  // O_RDWR; shared so sync() can run unlocked
    std::uint64_t size_ = 0;        // header + records; appends go here
    std::uint64_t filled_ = 0;      // the file's size: records, then zeros
    bool broken_ = false;
    std::uint64_t syncs_ = 0;
};

// Runtime compaction against the store: keeps records of messages it still has and makes
// its removals durable (sync_removals) before dropping the others. Call on a worker thread.
IoStatus compact_journal(Store& store, Journal& journal);

}  // namespace esad::spool
