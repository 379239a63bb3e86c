// file_store — the file-per-message spool backends behind store.h's interface.
//
// Layout under <state_dir>/spool/:
//   tmp/<MID>.tmp      being written (removed by scan() at startup)
//   queue/<MID>        flat layout: committed messages in one directory
//   queue/<xx>/<MID>   hashed layout: 256 subdirectories, xx = the MID's low byte in hex
//   corrupt/<name>     quarantined files, never deleted or delivered by the daemon
// Both backends read both layouts: a message is looked up where this layout puts it, then
// where the other one does, so a spool written by either still delivers after a switch.
// scan() lists queue/ and every queue/<xx>/ whatever the layout.
//
// FlatStore — commit: per message tmp/<MID>.tmp (O_CREAT|O_EXCL|O_NOFOLLOW, 0600), write,
// fsync, rename to queue/<MID> without replacing; then ONE fsync of queue/ for the batch.
// remove_message unlinks at once; sync_removals() fsyncs queue/ (lazy directory sync).
//
// HashedStore — commit: per message an O_TMPFILE file in queue/<xx>/ (nameless until it is
// complete, so a crash leaves nothing to clean), write, fdatasync, linkat to
// queue/<xx>/<MID> (which fails rather than replace a name); then one fsync per touched
// subdirectory for the whole batch (group commit; after the first, ext4 finds the others'
// entries already in the committed transaction). Where O_TMPFILE is unsupported it falls back
// to tmp/<MID>.tmp + fsync + rename into queue/<xx>/. Spreading the files over 256
// directories keeps each one small, so creating and removing entries does not serialise on
// one large directory's lock and block lookups. remove_message() only queues the MID: the
// store's reclaimer thread unlinks queued messages in batches, off the delivery path,
// without a directory fsync (each would force a journal commit); sync_removals() drains the
// queue itself, then fsyncs each directory touched since the last sync once. A removal lost in a
// crash brings back a message whose journal records say every recipient is final: recovery removes
// it again, nothing is redelivered.
//
// On any commit failure the message's file is removed (after a failed directory fsync, its
// queue file too) and the result carries the errno. A failed fsync is never retried on the
// same data: the store is unhealthy until probe() (write + fsync + unlink of tmp/.probe).
#pragma once

#include <atomic>
#include <bitset>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "daemon/spool/store.h"

namespace esad::spool {

// The validation of one encoded message (shared with segment_store.h).
struct RecordCheck {
    enum class Kind { kOk, kCorrupt, kSkip } kind = Kind::kOk;
    DecodeStatus status = DecodeStatus::kOk;
    std::string reason;
    Envelope envelope;
    std::uint64_t size = 0;
    static RecordCheck corrupt(DecodeStatus status, std::string reason);
    static RecordCheck skip(std::string reason);  // an I/O problem: neither valid nor corrupt
};

// Validates the encoded message at [base, base+size) of fd: header, envelope + its checksum,
// sizes, trailer and (with verify_content) the whole checksum, streamed in read_chunk pieces
// so bodies are never held in memory; the envelope's MID must be `mid`.
RecordCheck check_record(int fd, std::uint64_t base, std::uint64_t size, Mid mid,
                         const RecoveryOptions& options, std::string& buf);

// StoreStats counted by concurrent threads.
struct AtomicStoreStats {
    std::atomic<std::uint64_t> batches{0}, commits_ok{0}, commits_failed{0}, file_fsyncs{0},
        dir_fsyncs{0}, fsync_failures{0}, removed{0}, removal_batches{0}, quarantined{0},
        probes_ok{0}, maintenance_wakeups{0};
    StoreStats snapshot() const;
};

// load_content() for any backend: open_message(), read the range, decode and check the MID.
LoadResult load_message(const Store& store, Mid mid);
// The decoding half of load_message(): `bytes` is the encoded message stored for `mid`;
// `label` names where it was read in reasons.
LoadResult decode_loaded(Mid mid, std::string_view bytes, const std::string& label);

class FileStore : public Store {
  public:
    ~FileStore() override;

    // Writes each message with write_one() at its home, then fsyncs every touched directory
    // once; a failed directory fsync fails (and removes) that directory's messages.
    void commit_batch(std::vector<PendingMessage>& batch) final;
    std::size_t commit_slots() const final { return 4; }
    SpaceCheck space_ok(std::uint64_t max_message_size) const override;
    bool healthy() const override { return healthy_.load(std::memory_order_acquire); }
    IoStatus probe() override;
    LoadResult load_content(Mid mid) const override;
    LoadStatus open_message(Mid mid, MessageRange& out, std::string& reason) const override;
    IoStatus sync_removals() override;
    bool has_message(Mid mid) const override;
    IoStatus quarantine(Mid mid, std::string* moved_to) override;
    IoStatus scan(const RecoveryOptions& options, StoreScan& out,
                  const std::function<void(StoredMessage&&)>& visit) override;
    StoreStats stats() const override;
    const std::string& spool_path() const override { return spool_path_; }

  protected:
    // Directory slots: 0..255 are queue/<xx>/, kTop is queue/ itself.
    static constexpr int kSlots = 257;
    static constexpr int kTop = 256;
    static int hashed_slot(Mid mid) { return static_cast<int>(mid & 0xFFu); }

    explicit FileStore(StoreOptions options) : options_(std::move(options)) {}
    // Opens spool/, tmp/, queue/, corrupt/ and the lock, and queue/<xx>/: created when
    // `create_subdirs`, else opened where they exist.
    IoStatus open_dirs(bool create_subdirs);
    // Where this layout puts a MID (the other layout's place is the fallback).
    virtual int home_slot(Mid mid) const = 0;
    // Makes one message durable under its name in `slot` (the directory fsync follows).
    virtual IoStatus write_one(const Message& message, int slot) = 0;

    int slot_fd(int slot) const { return slots_[slot].get(); }
    std::string slot_label(int slot, std::string_view name) const;
    // Runs op(slot) at the MID's home, then at the other layout's place while op returns
    // ENOENT; returns op's last errno and the slot tried last.
    int at_message(Mid mid, const std::function<int(int slot)>& op, int* slot = nullptr) const;
    int unlink_message(Mid mid);  // ENOENT counts as done; marks the directory dirty
    void mark_dirty(int slot);

    int inject(FaultPoint point, Mid mid) const;
    // Writes the encoded message to fd and syncs it (fdatasync when `data_only`).
    int write_and_sync(int fd, const Message& message, bool data_only);
    // tmp/<MID>.tmp written and fsynced, then renamed to `slot` without replacing.
    IoStatus write_renamed(const Message& message, int slot);
    int fsync_dir(int fd);
    void mark_fsync_failed();
    static void bump(std::atomic<std::uint64_t>& counter, std::uint64_t n = 1) {
        counter.fetch_add(n, std::memory_order_relaxed);
    }

    using AtomicStats = AtomicStoreStats;

    StoreOptions options_;
    std::string spool_path_;
    UniqueFd spool_fd_, tmp_fd_, corrupt_fd_, lock_fd_;
    UniqueFd slots_[kSlots];
    std::atomic<bool> healthy_{true};
    mutable AtomicStats stats_;

  private:
    IoStatus quarantine_at(int slot, const std::string& name, std::string* moved_to);
    IoStatus sync_corrupt_dir();

    std::mutex probe_mu_;
    std::mutex quarantine_mu_;
    std::mutex dirty_mu_;
    std::bitset<kSlots> dirty_;  // directories with removals or moves not yet fsynced
    std::mutex sync_mu_;         // one sync_removals() at a time
};

class FlatStore final : public FileStore {
  public:
    static IoStatus open(StoreOptions options, std::unique_ptr<Store>& out);
    Layout layout() const override { return Layout::kFlat; }
    IoStatus remove_message(Mid mid) override;

  private:
    using FileStore::FileStore;
    int home_slot(Mid) const override { return kTop; }
    IoStatus write_one(const Message& message, int slot) override;
};

class HashedStore final : public FileStore {
  public:
    static IoStatus open(StoreOptions options, std::unique_ptr<Store>& out);
    ~HashedStore() override;  // drains the removal queue, then stops the reclaimer
    Layout layout() const override { return Layout::kHashed; }
    IoStatus remove_message(Mid mid) override;
    IoStatus sync_removals() override;
    bool has_message(Mid mid) const override;

  private:
    using FileStore::FileStore;
    int home_slot(Mid mid) const override { return hashed_slot(mid); }
    IoStatus write_one(const Message& message, int slot) override;  // O_TMPFILE + linkat
    IoStatus drain(bool sync);  // unlinks what is queued; with sync, fsyncs dirty directories
    void reclaim_loop();

    std::atomic<bool> tmpfile_ok_{true};     // false once O_TMPFILE proved unsupported
    std::atomic<bool> empty_path_ok_{true};  // false once linkat(AT_EMPTY_PATH) was refused
    std::mutex drain_mu_;                    // one drain at a time: take, unlink, fsync
    mutable std::mutex reclaim_mu_;
    std::condition_variable reclaim_cv_;
    std::unordered_set<Mid> reclaim_queue_;  // removed for has_message() already
    std::unordered_set<Mid> reclaiming_;     // taken by the running drain (drain_mu_)
    bool stopping_ = false;
    std::thread reclaimer_;
};

}  // namespace esad::spool
