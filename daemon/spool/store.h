// store — the interface of the spool's message storage, and the types every backend shares.
//
// A backend keeps the accepted messages (record_codec format) under <state_dir>/spool/ next
// to the journal, the MID reservation, the counters and the lock, which are not its business
// (journal.h, mid_allocator.h, counters.h). The daemon's users (committer, delivery, bouncer,
// control) see only this interface; Store::open() picks the backend from StoreOptions::layout:
//   kFlat    file_store.h FlatStore:   queue/<MID>, tmp/ + rename, one flat directory
//   kHashed  file_store.h HashedStore: queue/<xx>/<MID>, O_TMPFILE + linkat, batched unlinks
//   kSegment segment_store.h SegmentStore: segments/<seq>.seg, one fdatasync per batch, no inode
//            per message, tombstones + compaction
//   kRocksdb rocks_store.h RocksStore: rocksdb/, one embedded RocksDB, one synced WAL write
//            per batch (built only with RocksDB: ESAD_HAVE_ROCKSDB)
// A backend must keep these promises (REQ-D1..D14):
//   * commit_batch: a message whose result is ok is durable (data and the name that finds it)
//     and may be answered 250; a failed one leaves nothing that would be delivered. A batch is
//     one group commit. ENOSPC/EDQUOT → error_class() kNoSpace (452 4.3.1), else 451 4.3.0.
//   * a failed fsync is never retried on the same data (fsyncgate): healthy() turns false
//     until probe() proves the disk again; commits still work meanwhile, each proving its own.
//   * remove_message may be lazy (a later sync_removals() makes every earlier removal
//     durable): a lost removal only brings back a message whose journal records say it is
//     done, and recovery removes it again. has_message() stays true until the data is gone.
//   * scan() (recovery only) drops leftovers of unfinished commits, quarantines what does not
//     decode (moved where an operator looks, never deleted, never delivered) and hands every
//     valid message's envelope to the visitor in ascending MID order.
//
// Threading: every method except healthy(), stats() and spool_path() blocks and is meant for
// a libuv worker thread. Different methods and batches may run concurrently on different
// threads as long as no MID is handled by two calls at once; healthy() and stats() are
// lock-free reads safe from the loop thread. Backends do not log: results carry reasons.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/spool/file_util.h"
#include "daemon/spool/record_codec.h"

namespace esad::spool {

// Syscall points where the test/crash hook may inject an errno (REQ-D14: this seam cannot
// skip an fsync; it can only make an operation fail or let the hook _exit()). kRename is the
// step that makes a written message visible under its name (rename or linkat).
enum class FaultPoint : std::uint8_t { kCreate, kWrite, kFileFsync, kRename, kDirFsync, kProbe };

enum class Layout : std::uint8_t { kFlat, kHashed, kSegment, kRocksdb };
std::string_view to_string(Layout layout);
// "flat" | "hashed" | "segment" | "rocksdb" (false for "rocksdb" without ESAD_HAVE_ROCKSDB).
bool parse_layout(std::string_view text, Layout& out);

struct StoreOptions {
    std::string state_dir;                       // the spool is <state_dir>/spool
    Layout layout = Layout::kHashed;             // which backend Store::open() builds (the
                                                 // daemon passes [spool] layout: segment)
    std::uint64_t min_free_bytes = 64ull << 20;  // space_ok() floor
    std::uint64_t min_free_inodes = 1000;        // space_ok() inode floor
    std::uint64_t segment_bytes = 64ull << 20;   // kSegment: a segment is rotated past this
    // Returns 0 to proceed, or an errno that the operation then fails with. Called on the
    // calling worker thread; must be thread-safe if batches run concurrently.
    std::function<int(FaultPoint, Mid)> fault_hook;
};

struct PendingMessage {
    Message message;  // envelope.mid from MidAllocator; at least one recipient
    IoStatus result;  // set by commit_batch: ok() => durable, may answer 250
};

struct StoreStats {
    std::uint64_t batches = 0;
    std::uint64_t commits_ok = 0;
    std::uint64_t commits_failed = 0;
    std::uint64_t file_fsyncs = 0;  // fsync/fdatasync calls on message files
    std::uint64_t dir_fsyncs = 0;   // fsync calls on spool directories
    std::uint64_t fsync_failures = 0;
    std::uint64_t removed = 0;
    std::uint64_t removal_batches = 0;  // lazy removals made durable together
    std::uint64_t quarantined = 0;
    std::uint64_t probes_ok = 0;
    std::uint64_t maintenance_wakeups = 0;  // segment: the maintenance thread woken for work
};

// What a backend that wraps an inner file store (segment, rocksdb: legacy queue/ files,
// corrupt/, probes) reports as its own: the inner store's quarantines, removals and probes.
void add_inner_stats(StoreStats& own, const StoreStats& inner);

struct SpaceCheck {
    bool ok = false;  // false => 452 4.3.1 Insufficient system storage
    IoStatus status;  // statvfs error, if any (then ok == false)
    std::uint64_t free_bytes = 0;
    std::uint64_t free_inodes = 0;
    std::uint64_t required_bytes = 0;
    std::string reason;  // why not ok
};

enum class LoadStatus : std::uint8_t { kOk, kMissing, kIoError, kCorrupt };
std::string_view to_string(LoadStatus s);

struct LoadResult {
    LoadStatus status = LoadStatus::kIoError;
    std::string reason;  // empty when ok
    Message message;     // envelope + content when ok
};

// A message opened for streaming: the encoded message (record_codec format) occupies
// [offset, offset+size) of fd. Not validated: the reader checks the trailer as it goes.
struct MessageRange {
    UniqueFd fd;
    std::uint64_t offset = 0;
    std::uint64_t size = 0;
};

struct RecoveryOptions {
    bool verify_content = true;          // stream the whole-file CRC of every message
    std::size_t read_chunk = 64 * 1024;  // read buffer size
};

// One valid message found by scan(): its envelope with every recipient.
struct StoredMessage {
    Envelope envelope;
    std::uint64_t size = 0;  // encoded size
};

struct QuarantinedFile {
    std::string name;      // where it was, relative to queue/ ("<MID>" or "<xx>/<MID>")
    std::string moved_to;  // name in corrupt/ (empty if the move failed)
    DecodeStatus status = DecodeStatus::kMalformed;
    std::string reason;
};

struct SkippedEntry {
    std::string path;  // "queue/<name>" or "tmp/<name>"
    std::string reason;
};

struct StoreScan {
    std::vector<QuarantinedFile> quarantined;
    std::vector<SkippedEntry> skipped;  // neither delivered nor touched
    std::uint64_t stale_tmp_removed = 0;
    Mid max_mid_seen = 0;  // over valid, corrupt and quarantined messages: never reuse these
};

// "00000000000004d2" for 1234; parse_mid_name accepts exactly that form (16 hex, not 0).
std::string mid_name(Mid mid);
bool parse_mid_name(std::string_view name, Mid& mid);

class Store {
  public:
    // Builds the backend options.layout names. Creates its directories (0700) if missing,
    // refuses symlinked/non-directory ones, and takes an exclusive flock on spool/lock (a
    // second daemon gets EWOULDBLOCK).
    static IoStatus open(StoreOptions options, std::unique_ptr<Store>& out);
    virtual ~Store() = default;

    virtual Layout layout() const = 0;
    virtual void commit_batch(std::vector<PendingMessage>& batch) = 0;
    // How many commit_batch calls may usefully run at once. One file per message: separate
    // files, so concurrent fsyncs overlap. One append-only segment: batches serialize on it,
    // and messages that wait for the running batch share the next one's fdatasync.
    virtual std::size_t commit_slots() const = 0;

    // statvfs pre-check for MAIL FROM (REQ-D5): free bytes >= max(min_free_bytes,
    // 1.5 * max_message_size) and free inodes >= min_free_inodes (skipped when the file
    // system reports no inode count).
    virtual SpaceCheck space_ok(std::uint64_t max_message_size) const = 0;
    virtual bool healthy() const = 0;
    virtual IoStatus probe() = 0;

    // Reads and fully validates a message for delivery. kCorrupt => call quarantine().
    virtual LoadResult load_content(Mid mid) const = 0;
    // The encoded message (record_codec format) occupies [offset, offset+size) of fd.
    virtual LoadStatus open_message(Mid mid, MessageRange& out, std::string& reason) const = 0;

    // Reclaims a message once every recipient is final and journaled (REQ-D9); may be lazy
    // (see the contract above). A message already gone counts as removed.
    virtual IoStatus remove_message(Mid mid) = 0;
    // Makes every earlier removal and quarantine durable (journal compaction runs it before
    // the records of removed messages disappear).
    virtual IoStatus sync_removals() = 0;
    virtual bool has_message(Mid mid) const = 0;

    // Moves a message where operators look for corrupt data (never deleted, never
    // delivered) and makes the move durable; `moved_to` gets its name in corrupt/.
    virtual IoStatus quarantine(Mid mid, std::string* moved_to) = 0;

    // Recovery's startup scan (see the contract above). Fails only when the storage cannot be
    // listed; per-message problems are reported in `out`.
    virtual IoStatus scan(const RecoveryOptions& options, StoreScan& out,
                          const std::function<void(StoredMessage&&)>& visit) = 0;

    virtual StoreStats stats() const = 0;
    // The spool directory (the journal, the MID allocator and the counters live there).
    virtual const std::string& spool_path() const = 0;
};

}  // namespace esad::spool
