// rocks_store — the spool backend kept in an embedded RocksDB ([spool] layout = "rocksdb"),
// built only where the library was found (ESAD_HAVE_ROCKSDB); no file per message.
//
// Layout under <state_dir>/spool/:
//   rocksdb/             the database (0700): key = MID as 8 bytes big-endian (so key order is
//                        MID order), value = the message in record_codec format, the same
//                        bytes the file layouts keep in a queue file
//   corrupt/, tmp/, queue/, lock: owned by an inner HashedStore, which also keeps serving the
//                        messages a file layout left in queue/ (a switch loses nothing)
//
// commit_batch: every valid message of the batch goes into ONE rocksdb::WriteBatch written with
// WriteOptions::sync, so the write-ahead log's single fdatasync is the group commit. A MID
// already stored fails with EEXIST (never an overwrite). A failed write fails the whole batch
// (ENOSPC → kNoSpace) and turns the store unhealthy unless it was plain ENOSPC (a failed sync
// is never retried: fsyncgate); RocksDB refuses writes after such an error until Resume(),
// which the next commit or probe() calls. probe() is a synced put + delete of a probe key.
// Fault hook: kCreate, kRename and kWrite per message (that message fails), kFileFsync once per
// batch (the batch fails unwritten and the store is unhealthy), kProbe in probe().
//
// Removal: remove_message() is a Delete without sync (lazy: has_message() turns false at
// once); sync_removals() makes every earlier one durable with FlushWAL(sync). quarantine()
// writes the value to corrupt/<MID> durably (file + directory fsync), then deletes the key with
// sync. scan() walks the keys in order (the inner store's queue/ files are merged in MID order,
// a MID in both is taken from the database), validates each value, quarantines what does not
// decode, reports keys that are not MIDs in `skipped`.
//
// RocksDB is tuned small: 16 MiB memtables (two at most), an 8 MiB block cache, two background
// jobs, and no info LOG file (see rocks_store.cc).
//
// Threading: as store.h. Commits serialize (commit_slots() 1: RocksDB joins concurrent writers
// itself, one committer keeps the EEXIST check race-free); reads and deletes run concurrently.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <unordered_set>

#include "daemon/spool/file_store.h"

namespace rocksdb {
class DB;
class Status;
}  // namespace rocksdb

namespace esad::spool {

class RocksStore final : public Store {
  public:
    static IoStatus open(StoreOptions options, std::unique_ptr<Store>& out);
    ~RocksStore() override;  // closes the database

    Layout layout() const override { return Layout::kRocksdb; }
    std::size_t commit_slots() const override { return 1; }
    void commit_batch(std::vector<PendingMessage>& batch) override;
    SpaceCheck space_ok(std::uint64_t max_message_size) const override;
    bool healthy() const override;
    IoStatus probe() override;
    LoadResult load_content(Mid mid) const override;
    // The value copied into a memfd (the database has no file range to hand out).
    LoadStatus open_message(Mid mid, MessageRange& out, std::string& reason) const override;
    IoStatus remove_message(Mid mid) override;
    IoStatus sync_removals() override;
    bool has_message(Mid mid) const override;
    IoStatus quarantine(Mid mid, std::string* moved_to) override;
    IoStatus scan(const RecoveryOptions& options, StoreScan& out,
                  const std::function<void(StoredMessage&&)>& visit) override;
    StoreStats stats() const override;
    const std::string& spool_path() const override { return files_->spool_path(); }

    // Read-only listing for tools (no lock taken, the daemon may be running: opened as a
    // RocksDB secondary instance): every key of <spool_path>/rocksdb that is a MID, in MID
    // order, as (MID, encoded message). Returns 0, or an errno when the database cannot be
    // opened (ENOENT when there is none).
    static int read_records(const std::string& spool_path,
                            const std::function<void(Mid, std::string_view)>& visit);
    // The database key of a MID (8 bytes, big-endian).
    static std::string key_of(Mid mid);

  private:
    explicit RocksStore(StoreOptions options);
    int inject(FaultPoint point, Mid mid) const;
    // A failed write: the store is unhealthy (unless the disk was only full) and the database
    // must be resumed before it takes writes again.
    IoStatus write_failed(const rocksdb::Status& s, const std::string& what);
    // Under commit_mu_: RocksDB's Resume() after an earlier failed write.
    IoStatus resume();
    // Reads a MID's value from the database; kMissing when it has no such key.
    LoadStatus get(Mid mid, std::string& value, std::string& reason) const;
    bool is_legacy(Mid mid) const;
    // corrupt/<name> (or <name>.<n> when taken) holds `bytes` durably.
    IoStatus copy_to_corrupt(const std::string& name, std::string_view bytes,
                             std::string* moved_to);

    StoreOptions options_;
    std::unique_ptr<Store> files_;  // directories, lock, corrupt/, space, legacy queue/ files
    UniqueFd corrupt_fd_;
    std::unique_ptr<rocksdb::DB> db_;
    std::atomic<bool> healthy_{true};
    std::atomic<bool> needs_resume_{false};

    std::mutex commit_mu_;  // commits, probes and resumes one at a time
    std::mutex quarantine_mu_;
    mutable std::mutex legacy_mu_;
    std::unordered_set<Mid> legacy_;  // messages served by files_ (found by scan())

    mutable AtomicStoreStats stats_;
};

}  // namespace esad::spool
