// store — the on-disk spool of accepted messages under <state_dir>/spool/:
//   tmp/<MID>.tmp   being written (removed by recovery at startup)
//   queue/<MID>     committed messages (MID as 16 lower-case hex digits; flat directory)
//   corrupt/<name>  quarantined files, never deleted or delivered by the daemon
//   journal, mid_reservation, counters, lock   (see journal.h, mid_allocator.h, counters.h)
//
// Commit protocol (REQ-D1..D4, D6): for each message of a batch write tmp/<MID>.tmp
// (O_CREAT|O_EXCL|O_NOFOLLOW, 0600), fsync it, rename it to queue/<MID> without replacing an
// existing file; then ONE fsync of queue/ for the whole batch (group commit). Only a message
// whose result is ok may be answered 250. On any failure the message's temp (or, after a
// failed directory fsync, its queue file) is removed and the result carries the errno; its
// error_class() selects 452 4.3.1 (ENOSPC/EDQUOT) or 451 4.3.0 (anything else). A failed
// fsync is never retried on the same data (fsyncgate); it marks the store unhealthy until
// probe() (write + fsync + unlink of tmp/.probe) succeeds — the glue answers 421 4.3.2 to new
// sessions meanwhile. Commits still work while unhealthy: each one proves its own fsync.
//
// Threading: every method is blocking and meant for a libuv worker thread. Different
// methods and batches may run concurrently on different threads as long as no MID is
// handled by two calls at once; healthy() and stats() are lock-free reads safe from the loop
// thread. The store has no thread of its own and does not log: results carry reasons.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/spool/file_util.h"
#include "daemon/spool/record_codec.h"

namespace esad::spool {

// Syscall points where the test/crash hook may inject an errno (REQ-D14: this seam cannot
// skip an fsync; it can only make an operation fail or let the hook _exit()).
enum class FaultPoint : std::uint8_t { kCreate, kWrite, kFileFsync, kRename, kDirFsync, kProbe };

struct StoreOptions {
    std::string state_dir;                       // the spool is <state_dir>/spool
    std::uint64_t min_free_bytes = 64ull << 20;  // space_ok() floor
    std::uint64_t min_free_inodes = 1000;        // space_ok() inode floor
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
    std::uint64_t file_fsyncs = 0;  // fsync calls on message files
    std::uint64_t dir_fsyncs = 0;   // fsync calls on spool directories
    std::uint64_t fsync_failures = 0;
    std::uint64_t removed = 0;
    std::uint64_t quarantined = 0;
    std::uint64_t probes_ok = 0;
};

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

// ---- streaming a message for delivery (content_reader.h reads it in chunks) ----
// clang-format off
struct MessageRange { UniqueFd fd; std::uint64_t offset = 0; std::uint64_t size = 0; };
// clang-format on
// ---- end ----

// "00000000000004d2" for 1234; parse_mid_name accepts exactly that form (16 hex, not 0).
std::string mid_name(Mid mid);
bool parse_mid_name(std::string_view name, Mid& mid);

class Store {
  public:
    // Creates the directories (0700) if missing, refuses symlinked/non-directory ones, and
    // takes an exclusive flock on spool/lock (a second daemon gets EWOULDBLOCK).
    static IoStatus open(StoreOptions options, std::unique_ptr<Store>& out);
    ~Store();

    void commit_batch(std::vector<PendingMessage>& batch);

    // statvfs pre-check for MAIL FROM (REQ-D5): free bytes >= max(min_free_bytes,
    // 1.5 * max_message_size) and free inodes >= min_free_inodes (skipped when the file
    // system reports no inode count).
    SpaceCheck space_ok(std::uint64_t max_message_size) const;

    bool healthy() const { return healthy_.load(std::memory_order_acquire); }
    IoStatus probe();

    // Reads and fully validates queue/<MID> for delivery. kCorrupt => call quarantine().
    LoadResult load_content(Mid mid) const;

    // ---- streaming a message for delivery ----
    // The encoded message (record_codec format) occupies [offset, offset+size) of fd.
    LoadStatus open_message(Mid mid, MessageRange& out, std::string& reason) const;
    // ---- end ----

    // Unlinks queue/<MID> once every recipient is final and journaled (REQ-D9). The
    // directory sync is lazy (see sync_queue_dir): a lost unlink only brings back a message
    // whose journal records are still there, so nothing is redelivered. ENOENT counts as ok.
    IoStatus remove_message(Mid mid);
    IoStatus sync_queue_dir();
    bool has_message(Mid mid) const;

    // Moves queue/<queue_name> to corrupt/ (suffix .1, .2... if taken); `moved_to` gets the
    // final name. With sync, fsyncs corrupt/ and queue/ (recovery batches this instead).
    IoStatus quarantine_file(const std::string& queue_name, bool sync, std::string* moved_to);
    IoStatus quarantine(Mid mid, std::string* moved_to) {
        return quarantine_file(mid_name(mid), true, moved_to);
    }
    IoStatus sync_corrupt_dir();

    StoreStats stats() const;

    // For recovery, the journal and the MID allocator.
    const std::string& spool_path() const { return spool_path_; }
    int spool_fd() const { return spool_fd_.get(); }
    int tmp_fd() const { return tmp_fd_.get(); }
    int queue_fd() const { return queue_fd_.get(); }
    int corrupt_fd() const { return corrupt_fd_.get(); }

  private:
    explicit Store(StoreOptions options) : options_(std::move(options)) {}
    int inject(FaultPoint point, Mid mid) const;
    IoStatus write_temp(const Message& message, const std::string& tmp_name);
    int fsync_dir(int fd);
    void mark_fsync_failed();

    StoreOptions options_;
    std::string spool_path_;
    UniqueFd spool_fd_, tmp_fd_, queue_fd_, corrupt_fd_, lock_fd_;
    std::atomic<bool> healthy_{true};
    std::mutex probe_mu_;
    std::mutex quarantine_mu_;

    struct AtomicStats {
        std::atomic<std::uint64_t> batches{0}, commits_ok{0}, commits_failed{0}, file_fsyncs{0},
            dir_fsyncs{0}, fsync_failures{0}, removed{0}, quarantined{0}, probes_ok{0};
    };
    mutable AtomicStats stats_;
};

}  // namespace esad::spool
