// segment_store — the log-structured spool backend ([spool] layout = "segment"): no inode per
// message.
//
// Layout under <state_dir>/spool/:
//   segments/<seq>.seg   seq: 16 hex digits, ascending. Append-only; each record is a frame
//                        "ESASEG01" + MID (u64 LE) + length (u64 LE) + CRC32C of those 24 bytes
//                        (u32 LE), then `length` bytes: one message in record_codec format (with
//                        its envelope and whole-message checksums).
//   segments/<seq>.dead  tombstones of that segment's removed messages: MID (u64 LE) + CRC32C
//                        of it (u32 LE) each; written by sync_removals() only.
//   corrupt/, tmp/, queue/, lock: owned by an inner HashedStore, which also keeps serving the
//                        messages a file layout left in queue/ (a switch loses nothing).
//
// commit_batch: under one append lock, every message's encoding and then its frame are written at
// the end of the current segment's records with pwritev, then ONE fdatasync covers the batch
// (the group commit). The records go into room prefilled with zeros 1 MiB at a time, so that
// the fdatasync of a batch writes its data only (no new file size, no block allocation); the
// index (MID -> segment, offset, size) learns the messages only then. A write that fails is cut
// off again (ftruncate) and fails that message only; a failed fdatasync cuts the whole batch off,
// fails it, marks the store unhealthy and starts a new segment for the next batch (fsyncgate).
// A segment is rotated at StoreOptions::segment_bytes; a new segment's name is made durable
// (directory fsync) before anything in it is acknowledged.
//
// Removal: remove_message() drops the MID from the index (has_message() turns false) and keeps
// a tombstone in memory; sync_removals() (journal compaction, before the journal forgets the
// MID's final records) appends the pending tombstones to <seq>.dead and fdatasyncs them, so
// recovery never brings a finished message back. Maintenance (a worker thread of the store,
// or maintain() called directly) unlinks a segment whose messages are all removed (then fsyncs
// segments/, then unlinks its .dead) — the current segment too once it is fully dead and at
// least a quarter full — and compacts: the live messages of a mostly-dead old segment (live bytes
// <= 1/4, at least two segments behind the current one) are copied forward into the current
// segment, which is fdatasynced before the old one is unlinked, so mail for dead destinations pins
// no segment. Before it unlinks anything, maintenance makes every tombstone still in memory
// durable (a message finished while it was being copied has its tombstone in the old segment's
// .dead file, which goes with that segment, and one for its copy that must not stay in memory),
// and it unlinks oldest first, none newer than a segment it could not compact (a tombstone also
// covers the older copy of a compaction a crash interrupted).
//
// scan(): reads every segment in ascending order, frame by frame, up to its prefilled zeros
// (zero bytes from where a frame is expected to the end of the file). A record whose frame is valid
// but whose message does not decode is copied to corrupt/<MID> (tombstoned, never delivered) and
// the scan goes on after it; bytes with no valid frame are copied to corrupt/<seq>.seg@<offset>
// up to the next valid frame, except a torn tail of the newest segment (an unfinished batch,
// never acknowledged), which is only reported. Either way the segment is cut at the bad bytes
// only if nothing valid follows. Tombstoned MIDs are skipped; a MID in two segments (a copy
// interrupted by a crash) is taken from the newer. Visits are in ascending MID order.
//
// Threading: as store.h. One append at a time (commits and compaction copies); readers dup the
// segment's descriptor, so an unlinked segment stays readable for a delivery that opened it.
#pragma once

#include <fcntl.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "daemon/spool/file_store.h"

namespace esad::spool {

inline constexpr std::string_view kSegmentMagic = "ESASEG01";
inline constexpr std::size_t kFrameSize = 28;

// The frame that precedes a record in a segment (see above).
std::string encode_frame(Mid mid, std::uint64_t length);
// True when `bytes` (kFrameSize) is a frame with a valid checksum; sets mid and length.
bool decode_frame(std::string_view bytes, Mid& mid, std::uint64_t& length);

class SegmentStore final : public Store {
  public:
    static IoStatus open(StoreOptions options, std::unique_ptr<Store>& out);
    ~SegmentStore() override;  // stops the maintenance thread

    Layout layout() const override { return Layout::kSegment; }
    std::size_t commit_slots() const override { return 1; }
    void commit_batch(std::vector<PendingMessage>& batch) override;
    SpaceCheck space_ok(std::uint64_t max_message_size) const override;
    bool healthy() const override;
    IoStatus probe() override;
    LoadResult load_content(Mid mid) const override;
    LoadStatus open_message(Mid mid, MessageRange& out, std::string& reason) const override;
    IoStatus remove_message(Mid mid) override;
    IoStatus sync_removals() override;
    bool has_message(Mid mid) const override;
    IoStatus quarantine(Mid mid, std::string* moved_to) override;
    IoStatus scan(const RecoveryOptions& options, StoreScan& out,
                  const std::function<void(StoredMessage&&)>& visit) override;
    StoreStats stats() const override;
    const std::string& spool_path() const override { return files_->spool_path(); }

    struct Maintenance {
        std::uint64_t reclaimed = 0;  // segments unlinked
        std::uint64_t compacted = 0;  // segments whose live messages were copied forward
        std::uint64_t copied = 0;     // messages copied forward
    };
    // The maintenance thread's work, done now on the calling thread (tests, benchmarks).
    IoStatus maintain(Maintenance* done = nullptr);
    // Sequence numbers of the segments that hold data (ascending).
    std::vector<std::uint64_t> segment_seqs() const;

    // Read-only listing for tools (no lock taken, the daemon may be running): every record of
    // every segment of `spool_path` that is not tombstoned, newest copy of a MID only, as
    // (MID, encoded message). Returns 0 or errno of listing the directory.
    static int read_records(const std::string& spool_path,
                            const std::function<void(Mid, std::string_view)>& visit);

  private:
    struct Segment {
        std::uint64_t seq = 0;
        UniqueFd fd;               // O_RDWR: appends, cuts, maintenance reads
        UniqueFd rfd;              // O_RDONLY: what open_message() hands out (dup)
        std::uint64_t size = 0;    // bytes of complete, durable records
        std::uint64_t filled = 0;  // file size: records, then zeros (prefill())
        std::uint64_t live_count = 0;
        std::uint64_t live_bytes = 0;  // frames included
        int open_reader(int dir_fd, const std::string& name) {
            rfd.reset(::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
            return rfd.valid() ? 0 : errno;
        }
    };
    struct Loc {
        std::uint64_t seq = 0;
        std::uint64_t offset = 0;  // of the encoded message (after its frame)
        std::uint64_t size = 0;    // of the encoded message
    };
    struct Copy;

    explicit SegmentStore(StoreOptions options) : options_(std::move(options)) {}
    int inject(FaultPoint point, Mid mid) const;
    void mark_fsync_failed();
    int fsync_segments_dir();
    // Under append_mu_: a current segment with room, created if needed.
    IoStatus ensure_current(std::uint64_t incoming);
    // Under append_mu_: makes [size, need) of the current segment written room (zeros, in
    // steps of 1 MiB), so that appends there change neither the file's size nor its block
    // map and a commit's fdatasync writes data only. Without room (ENOSPC) appends extend
    // the file as they come.
    void prefill(std::uint64_t need);
    // Under append_mu_: appends frame + record pieces at the current end, the record before
    // its frame (pieces[0]); 0 or errno (the segment is cut back on failure).
    int append(Mid mid, const std::string_view* pieces, std::size_t n, std::uint64_t& at);
    // Under append_mu_: one fdatasync of the current segment for everything after `start`;
    // on failure the segment is cut back to `start` and retired.
    int sync_current(std::uint64_t start, Mid first_mid);
    void index_insert(Mid mid, const Loc& loc);                      // under mu_
    std::shared_ptr<Segment> find_segment(std::uint64_t seq) const;  // under mu_
    IoStatus copy_out(int fd, std::uint64_t offset, std::uint64_t size, const std::string& name,
                      std::string* moved_to);
    IoStatus compact(std::uint64_t seq, Maintenance& done);
    IoStatus reclaim(std::uint64_t seq, Maintenance& done);
    // After a failed sync_removals(): reclaims the oldest segments of `dead` (sorted; none
    // newer than `failed`) when no other segment has a tombstone waiting.
    void reclaim_oldest(const std::vector<std::uint64_t>& dead, std::uint64_t failed,
                        Maintenance& done);
    void maintenance_loop();
    bool maintenance_due(const Segment& seg) const;
    void wake() const;

    StoreOptions options_;
    std::unique_ptr<Store> files_;  // directories, lock, probe, space, legacy queue/ files
    UniqueFd seg_dir_, corrupt_fd_;
    std::atomic<bool> healthy_{true};
    // The last free-space check failed: a finished current segment is retired whatever its
    // size, so delivery frees the space that lets mail in again.
    mutable std::atomic<bool> space_short_{false};

    std::mutex append_mu_;  // one append + sync at a time; guards current_ rotation
    std::mutex tomb_mu_;    // tombstone writes vs segment unlinks
    std::mutex maintain_mu_;
    mutable std::mutex mu_;  // everything below
    std::map<std::uint64_t, std::shared_ptr<Segment>> segments_;
    std::shared_ptr<Segment> current_;
    std::uint64_t next_seq_ = 1;
    std::unordered_map<Mid, Loc> index_;
    std::unordered_set<Mid> legacy_;                          // messages served by files_
    std::map<std::uint64_t, std::vector<Mid>> pending_dead_;  // tombstones not yet written
    std::unordered_set<std::uint64_t> dead_files_;            // segments with a .dead file
    bool dir_dirty_ = false;  // segments/ entries created/removed since its last fsync

    mutable std::mutex wake_mu_;
    mutable std::condition_variable wake_cv_;
    mutable bool wake_ = false;
    bool stopping_ = false;
    std::thread maintainer_;

    mutable AtomicStoreStats stats_;
};

}  // namespace esad::spool
