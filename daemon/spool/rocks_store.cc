// rocks_store — the RocksDB spool backend; see rocks_store.h.
#include "daemon/spool/rocks_store.h"

#include <fcntl.h>
#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <filesystem>
#include <optional>

#include "daemon/spool/crc32c.h"

namespace esad::spool {
namespace {

constexpr char kDbDir[] = "rocksdb";
// Not 8 bytes, so never a MID; scan() removes one a crash left behind.
constexpr std::string_view kProbeKey = "probe";
constexpr std::size_t kProbeSize = 4096;

// RocksDB's own LOG file is not written: its lines are no use to an operator, and on a full
// disk a failed LOG write makes the library abort on the next one.
class NoLog final : public rocksdb::Logger {
  public:
    using rocksdb::Logger::Logv;
    void Logv(const char*, va_list) override {}
};

rocksdb::Options db_options() {
    rocksdb::Options o;
    o.info_log = std::make_shared<NoLog>();
    o.create_if_missing = true;
    o.write_buffer_size = 16u << 20;
    o.max_write_buffer_number = 2;
    o.max_background_jobs = 2;
    o.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
    rocksdb::BlockBasedTableOptions table;
    table.block_cache = rocksdb::NewLRUCache(8u << 20);
    // A commit looks every new MID up (EEXIST): the filter answers "absent" without a read.
    table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
    return o;
}

// RocksDB reports no errno; ENOSPC has its own subcode, EDQUOT only its text.
int errno_of(const rocksdb::Status& s) {
    if (s.IsNoSpace()) return ENOSPC;
    if (s.ToString().find(std::strerror(EDQUOT)) != std::string::npos) return EDQUOT;
    return EIO;
}

IoStatus failure(const rocksdb::Status& s, const std::string& what) {
    return IoStatus::failure(errno_of(s), what + " (" + s.ToString() + ")");
}

bool mid_of(const rocksdb::Slice& key, Mid& mid) {
    if (key.size() != 8) return false;
    Mid v = 0;
    for (std::size_t i = 0; i < 8; ++i)
        v = (v << 8) | static_cast<unsigned char>(key[i]);
    if (v == 0) return false;
    mid = v;
    return true;
}

std::string key_label(const rocksdb::Slice& key) {
    return std::string(kDbDir) + "/" + key.ToString(true);
}

// Validates one stored value as check_record() validates a file: envelope, its MID, sizes,
// trailer and (with verify_content) the whole checksum.
RecordCheck check_value(Mid mid, std::string_view value, const RecoveryOptions& options) {
    EnvelopeDecodeResult env = decode_envelope(value, value.size());
    if (env.status != DecodeStatus::kOk) return RecordCheck::corrupt(env.status, env.reason);
    if (env.envelope.mid != mid) {
        return RecordCheck::corrupt(DecodeStatus::kMalformed,
                                    "MID in the value does not match its key");
    }
    const std::size_t body = value.size() - kTrailerSize;
    std::optional<std::uint32_t> crc;
    if (options.verify_content) crc = crc32c(value.substr(0, body));
    std::string reason;
    const DecodeStatus ts = check_trailer(value.substr(body), value.size(), crc, &reason);
    if (ts != DecodeStatus::kOk) return RecordCheck::corrupt(ts, reason);
    RecordCheck ok;
    ok.envelope = std::move(env.envelope);
    ok.size = value.size();
    return ok;
}

}  // namespace

std::string RocksStore::key_of(Mid mid) {
    std::string key(8, '\0');
    for (int i = 7; i >= 0; --i, mid >>= 8)
        key[static_cast<std::size_t>(i)] = static_cast<char>(mid & 0xFFu);
    return key;
}

RocksStore::RocksStore(StoreOptions options) : options_(std::move(options)) {}

RocksStore::~RocksStore() {
    if (db_) db_->Close().PermitUncheckedError();
    db_.reset();  // before files_ lets the spool lock go
}

IoStatus RocksStore::open(StoreOptions options, std::unique_ptr<Store>& out) {
    StoreOptions inner = options;
    inner.layout = Layout::kHashed;
    std::unique_ptr<RocksStore> s(new RocksStore(std::move(options)));
    if (IoStatus st = Store::open(std::move(inner), s->files_); !st.ok()) return st;
    const std::string& spool = s->files_->spool_path();
    UniqueFd spool_fd;
    if (int err = open_dir(AT_FDCWD, spool, spool_fd)) {
        return IoStatus::failure(err, "open " + spool);
    }
    const std::string db_path = spool + "/" + kDbDir;
    if (IoStatus st = ensure_dir(spool_fd.get(), kDbDir, db_path); !st.ok()) return st;
    if (int err = open_dir(spool_fd.get(), "corrupt", s->corrupt_fd_)) {
        return IoStatus::failure(err, "open " + spool + "/corrupt");
    }
    if (int err = fsync_fd(spool_fd.get())) return IoStatus::failure(err, "fsync " + spool);
    rocksdb::DB* raw = nullptr;
    const rocksdb::Status st = rocksdb::DB::Open(db_options(), db_path, &raw);
    if (!st.ok()) return failure(st, "open " + db_path);
    s->db_.reset(raw);
    out = std::move(s);
    return IoStatus::success();
}

int RocksStore::inject(FaultPoint point, Mid mid) const {
    return options_.fault_hook ? options_.fault_hook(point, mid) : 0;
}

IoStatus RocksStore::write_failed(const rocksdb::Status& s, const std::string& what) {
    IoStatus st = failure(s, what);
    needs_resume_.store(true, std::memory_order_release);
    // Whether the data or only its sync failed, RocksDB does not say: anything but a full disk
    // counts as a failed sync, never retried on the same data.
    if (st.err != ENOSPC) {
        stats_.fsync_failures.fetch_add(1, std::memory_order_relaxed);
        healthy_.store(false, std::memory_order_release);
    }
    return st;
}

IoStatus RocksStore::resume() {
    if (!needs_resume_.load(std::memory_order_acquire)) return IoStatus::success();
    const rocksdb::Status s = db_->Resume();
    // Busy: RocksDB recovers from a full disk by itself once space is back; until then a
    // write fails with the error that stopped it.
    if (s.IsBusy()) return IoStatus::success();
    if (!s.ok()) return failure(s, "resume rocksdb/ after a failed write");
    needs_resume_.store(false, std::memory_order_release);
    return IoStatus::success();
}

bool RocksStore::healthy() const {
    return healthy_.load(std::memory_order_acquire) && files_->healthy();
}

SpaceCheck RocksStore::space_ok(std::uint64_t max_message_size) const {
    return files_->space_ok(max_message_size);
}

bool RocksStore::is_legacy(Mid mid) const {
    std::lock_guard<std::mutex> lock(legacy_mu_);
    return legacy_.count(mid) != 0;
}

LoadStatus RocksStore::get(Mid mid, std::string& value, std::string& reason) const {
    const rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), key_of(mid), &value);
    if (s.IsNotFound()) {
        reason = "message " + mid_name(mid) + " is not in the spool";
        return LoadStatus::kMissing;
    }
    if (!s.ok()) {
        reason = failure(s, "read " + mid_name(mid) + " from rocksdb/").reason();
        return LoadStatus::kIoError;
    }
    return LoadStatus::kOk;
}

void RocksStore::commit_batch(std::vector<PendingMessage>& batch) {
    std::lock_guard<std::mutex> commit_lock(commit_mu_);
    const IoStatus ready = resume();
    rocksdb::WriteBatch wb;
    std::vector<std::size_t> written;
    written.reserve(batch.size());
    std::unordered_set<Mid> in_batch;
    std::string existing;
    std::string reason;
    for (std::size_t i = 0; i < batch.size(); ++i) {
        PendingMessage& pm = batch[i];
        const Envelope& env = pm.message.envelope;
        const std::string name = mid_name(env.mid);
        if (env.mid == 0 || env.recipients.empty()) {
            pm.result = IoStatus::failure(EINVAL, "commit " + name + ": no MID or no recipient");
            continue;
        }
        if (!ready.ok()) {
            pm.result = ready;
            continue;
        }
        // EEXIST: a MID collision is an error, never an overwrite (REQ-D11).
        const LoadStatus found =
            is_legacy(env.mid) ? LoadStatus::kOk : get(env.mid, existing, reason);
        if (found == LoadStatus::kIoError) {
            pm.result = IoStatus::failure(EIO, "commit " + name + ": " + reason);
            continue;
        }
        if (found == LoadStatus::kOk || !in_batch.insert(env.mid).second) {
            pm.result = IoStatus::failure(EEXIST, "commit " + name + ": MID already stored");
            continue;
        }
        int err = inject(FaultPoint::kCreate, env.mid);
        if (err == 0) err = inject(FaultPoint::kRename, env.mid);
        if (err == 0) err = inject(FaultPoint::kWrite, env.mid);
        if (err != 0) {
            pm.result = IoStatus::failure(err, "write " + name + " to rocksdb/");
            continue;
        }
        const std::string key = key_of(env.mid);
        const EncodedParts parts = encode_parts(pm.message);
        const rocksdb::Slice key_slice(key);
        const rocksdb::Slice pieces[] = {parts.head, pm.message.content, parts.tail};
        const rocksdb::Status put =
            wb.Put(rocksdb::SliceParts(&key_slice, 1), rocksdb::SliceParts(pieces, 3));
        if (!put.ok()) {
            pm.result = failure(put, "write " + name + " to rocksdb/");
            continue;
        }
        written.push_back(i);
    }
    if (!written.empty()) {
        // Group commit: one synced write-ahead-log append makes the whole batch durable.
        stats_.file_fsyncs.fetch_add(1, std::memory_order_relaxed);
        IoStatus st;
        if (int err = inject(FaultPoint::kFileFsync, batch[written.front()].message.envelope.mid)) {
            stats_.fsync_failures.fetch_add(1, std::memory_order_relaxed);
            healthy_.store(false, std::memory_order_release);
            st = IoStatus::failure(err, "sync rocksdb/ write-ahead log");
        } else {
            rocksdb::WriteOptions wo;
            wo.sync = true;
            const rocksdb::Status s = db_->Write(wo, &wb);
            if (!s.ok()) st = write_failed(s, "write batch to rocksdb/");
        }
        if (!st.ok()) {
            for (std::size_t i : written)
                batch[i].result = st;
        }
    }
    stats_.batches.fetch_add(1, std::memory_order_relaxed);
    for (const PendingMessage& pm : batch)
        (pm.result.ok() ? stats_.commits_ok : stats_.commits_failed)
            .fetch_add(1, std::memory_order_relaxed);
}

IoStatus RocksStore::probe() {
    std::lock_guard<std::mutex> commit_lock(commit_mu_);
    if (IoStatus st = resume(); !st.ok()) return st;
    if (int err = inject(FaultPoint::kProbe, 0)) {
        return IoStatus::failure(err, "probe rocksdb/");
    }
    rocksdb::WriteOptions wo;
    wo.sync = true;
    rocksdb::Status s = db_->Put(wo, kProbeKey, std::string(kProbeSize, 'p'));
    if (s.ok()) s = db_->Delete(wo, kProbeKey);
    if (!s.ok()) {
        needs_resume_.store(true, std::memory_order_release);
        return failure(s, "probe rocksdb/");
    }
    if (!files_->healthy()) {
        if (IoStatus st = files_->probe(); !st.ok()) return st;
    }
    stats_.probes_ok.fetch_add(1, std::memory_order_relaxed);
    healthy_.store(true, std::memory_order_release);
    return IoStatus::success();
}

LoadResult RocksStore::load_content(Mid mid) const {
    if (is_legacy(mid)) return files_->load_content(mid);
    LoadResult out;
    std::string value;
    out.status = get(mid, value, out.reason);
    if (out.status != LoadStatus::kOk) return out;
    return decode_loaded(mid, value, "rocksdb/ value " + mid_name(mid));
}

LoadStatus RocksStore::open_message(Mid mid, MessageRange& out, std::string& reason) const {
    if (is_legacy(mid)) return files_->open_message(mid, out, reason);
    std::string value;
    if (LoadStatus ls = get(mid, value, reason); ls != LoadStatus::kOk) return ls;
    out.fd.reset(::memfd_create("esad-message", MFD_CLOEXEC));
    int err = out.fd.valid() ? 0 : errno;
    if (err == 0) err = write_all(out.fd.get(), value);
    if (err != 0) {
        out.fd.reset();
        reason =
            IoStatus::failure(err, "copy rocksdb/ value " + mid_name(mid) + " to a memfd").reason();
        return LoadStatus::kIoError;
    }
    out.offset = 0;
    out.size = value.size();
    return LoadStatus::kOk;
}

bool RocksStore::has_message(Mid mid) const {
    if (is_legacy(mid)) return files_->has_message(mid);
    std::string value;
    std::string reason;
    // An unreadable value is still there.
    return get(mid, value, reason) != LoadStatus::kMissing;
}

IoStatus RocksStore::remove_message(Mid mid) {
    {
        std::lock_guard<std::mutex> lock(legacy_mu_);
        if (legacy_.erase(mid) != 0) return files_->remove_message(mid);
    }
    // Lazy: written to the log now, made durable by sync_removals().
    const rocksdb::Status s = db_->Delete(rocksdb::WriteOptions(), key_of(mid));
    if (!s.ok()) {
        needs_resume_.store(true, std::memory_order_release);
        return failure(s, "delete " + mid_name(mid) + " from rocksdb/");
    }
    stats_.removed.fetch_add(1, std::memory_order_relaxed);
    return IoStatus::success();
}

IoStatus RocksStore::sync_removals() {
    stats_.file_fsyncs.fetch_add(1, std::memory_order_relaxed);
    const rocksdb::Status s = db_->FlushWAL(true);
    IoStatus result;
    if (!s.ok()) {
        result = write_failed(s, "sync rocksdb/ write-ahead log");
    } else {
        stats_.removal_batches.fetch_add(1, std::memory_order_relaxed);
    }
    IoStatus files = files_->sync_removals();
    return result.ok() ? files : result;
}

IoStatus RocksStore::copy_to_corrupt(const std::string& name, std::string_view bytes,
                                     std::string* moved_to) {
    std::lock_guard<std::mutex> lock(quarantine_mu_);
    std::string target = name;
    for (int n = 1; n < 1000; ++n) {
        if (::faccessat(corrupt_fd_.get(), target.c_str(), F_OK, AT_SYMLINK_NOFOLLOW) != 0 &&
            errno == ENOENT) {
            break;
        }
        target = name + "." + std::to_string(n);
    }
    if (IoStatus st = atomic_replace(corrupt_fd_.get(), target, bytes, "corrupt/" + target);
        !st.ok()) {
        return st;
    }
    stats_.quarantined.fetch_add(1, std::memory_order_relaxed);
    if (moved_to != nullptr) *moved_to = target;
    return IoStatus::success();
}

IoStatus RocksStore::quarantine(Mid mid, std::string* moved_to) {
    {
        std::lock_guard<std::mutex> lock(legacy_mu_);
        if (legacy_.erase(mid) != 0) return files_->quarantine(mid, moved_to);
    }
    std::string value;
    std::string reason;
    const LoadStatus ls = get(mid, value, reason);
    if (ls == LoadStatus::kMissing) return IoStatus::failure(ENOENT, "quarantine " + reason);
    if (ls != LoadStatus::kOk) return IoStatus::failure(EIO, "quarantine " + reason);
    if (IoStatus st = copy_to_corrupt(mid_name(mid), value, moved_to); !st.ok()) return st;
    // The copy is durable; now the value must never be delivered, even after a crash.
    rocksdb::WriteOptions wo;
    wo.sync = true;
    const rocksdb::Status s = db_->Delete(wo, key_of(mid));
    if (!s.ok()) return write_failed(s, "delete quarantined " + mid_name(mid) + " from rocksdb/");
    return IoStatus::success();
}

IoStatus RocksStore::scan(const RecoveryOptions& options, StoreScan& out,
                          const std::function<void(StoredMessage&&)>& visit) {
    // 1. Message files a file layout left in queue/ (and the file layouts' housekeeping),
    //    merged below into the database's MID order.
    std::vector<StoredMessage> files;
    if (IoStatus st =
            files_->scan(options, out, [&](StoredMessage&& sm) { files.push_back(std::move(sm)); });
        !st.ok()) {
        return st;
    }
    std::unordered_set<Mid> legacy;
    std::size_t next_file = 0;
    // Visits the queue/ files below `mid`; one with `mid` itself is left (the value wins).
    auto files_before = [&](Mid mid) {
        for (; next_file < files.size() && files[next_file].envelope.mid <= mid; ++next_file) {
            StoredMessage& f = files[next_file];
            if (f.envelope.mid == mid) {
                out.skipped.push_back(
                    {"queue/" + mid_name(mid), "also in rocksdb/: the queue file is left"});
                continue;
            }
            legacy.insert(f.envelope.mid);
            visit(std::move(f));
        }
    };
    // 2. The database, in key (= MID) order.
    const std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
    rocksdb::WriteOptions synced;
    synced.sync = true;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
        const rocksdb::Slice key = it->key();
        Mid mid = 0;
        if (key == kProbeKey) {
            db_->Delete(synced, kProbeKey).PermitUncheckedError();  // a crash during probe()
            continue;
        }
        if (!mid_of(key, mid)) {
            out.skipped.push_back({key_label(key), "key is not a MID"});
            continue;
        }
        out.max_mid_seen = std::max(out.max_mid_seen, mid);
        const std::string_view value(it->value().data(), it->value().size());
        RecordCheck rc = check_value(mid, value, options);
        if (rc.kind == RecordCheck::Kind::kOk) {
            files_before(mid);
            visit(StoredMessage{std::move(rc.envelope), rc.size});
            continue;
        }
        QuarantinedFile q{key_label(key), "", rc.status, rc.reason};
        if (IoStatus cs = copy_to_corrupt(mid_name(mid), value, &q.moved_to); !cs.ok()) {
            q.reason += "; " + cs.reason();
        } else if (const rocksdb::Status ds = db_->Delete(synced, key); !ds.ok()) {
            q.reason += "; " + failure(ds, "delete from rocksdb/").reason();
        }
        out.quarantined.push_back(std::move(q));
    }
    if (!it->status().ok()) return failure(it->status(), "read rocksdb/");
    files_before(~Mid{0});
    std::lock_guard<std::mutex> lock(legacy_mu_);
    legacy_ = std::move(legacy);
    return IoStatus::success();
}

StoreStats RocksStore::stats() const {
    StoreStats s = stats_.snapshot();
    const StoreStats f = files_->stats();
    add_inner_stats(s, f);
    s.dir_fsyncs += f.dir_fsyncs;  // corrupt/ fsyncs: the database has no directory of its own
    return s;
}

int RocksStore::read_records(const std::string& spool_path,
                             const std::function<void(Mid, std::string_view)>& visit) {
    const std::string db_path = spool_path + "/" + kDbDir;
    struct stat st {};
    if (::stat((db_path + "/CURRENT").c_str(), &st) != 0) return errno;
    // A secondary instance reads beside a running primary; it needs a directory of its own.
    std::string secondary = "/tmp/esad-rocks-XXXXXX";
    if (::mkdtemp(secondary.data()) == nullptr) return errno;
    rocksdb::Options o = db_options();
    o.create_if_missing = false;
    o.max_open_files = -1;
    rocksdb::DB* raw = nullptr;
    int err = 0;
    if (!rocksdb::DB::OpenAsSecondary(o, db_path, secondary, &raw).ok()) {
        err = EIO;
    } else {
        const std::unique_ptr<rocksdb::DB> db(raw);
        db->TryCatchUpWithPrimary().PermitUncheckedError();
        const std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
        for (it->SeekToFirst(); it->Valid(); it->Next()) {
            Mid mid = 0;
            if (mid_of(it->key(), mid)) visit(mid, {it->value().data(), it->value().size()});
        }
        if (!it->status().ok()) err = EIO;
    }
    std::error_code ec;
    std::filesystem::remove_all(secondary, ec);
    return err;
}

}  // namespace esad::spool
