// file_store — the parts both file-per-message layouts share; see file_store.h.
#include "daemon/spool/file_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>

#include "daemon/spool/crc32c.h"

namespace esad::spool {
namespace {

constexpr std::size_t kProbeSize = 4096;
constexpr char kHex[] = "0123456789abcdef";

std::string slot_name(int slot) {
    return {kHex[(slot >> 4) & 0xF], kHex[slot & 0xF]};
}

// "ab" → 0xab; -1 for anything else.
int parse_slot_name(std::string_view name) {
    auto digit = [](char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
    };
    if (name.size() != 2 || digit(name[0]) < 0 || digit(name[1]) < 0) return -1;
    return digit(name[0]) * 16 + digit(name[1]);
}

// rename() that refuses to replace an existing target, so a MID collision is an error and
// never an overwrite (REQ-D11). Falls back to link+unlink where RENAME_NOREPLACE is missing.
int rename_noreplace(int from_dir, const char* from, int to_dir, const char* to) {
    if (::renameat2(from_dir, from, to_dir, to, RENAME_NOREPLACE) == 0) return 0;
    if (errno != EINVAL && errno != ENOSYS) return errno;
    if (::linkat(from_dir, from, to_dir, to, 0) != 0) return errno;
    ::unlinkat(from_dir, from, 0);
    return 0;
}

// Validates one queue file (see check_record). Symlinks are never followed; a hard-linked
// file is corrupt.
RecordCheck check_file(int dir_fd, const std::string& name, Mid mid, const RecoveryOptions& options,
                       std::string& buf) {
    struct stat st {};
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        return RecordCheck::skip(IoStatus::failure(errno, "stat").reason());
    }
    if (!S_ISREG(st.st_mode)) return RecordCheck::skip("not a regular file (never followed)");
    if (st.st_nlink != 1) {
        // Another name (a backup tool's hard link, an operator's copy) can change the content
        // behind the spool: never deliver it, quarantine it where an operator looks.
        return RecordCheck::corrupt(
            DecodeStatus::kMalformed,
            "hard-linked: " + std::to_string(st.st_nlink) +
                " names share this file, so its content is not the spool's alone");
    }
    UniqueFd fd(
        ::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
    if (!fd.valid()) return RecordCheck::skip(IoStatus::failure(errno, "open").reason());
    if (::fstat(fd.get(), &st) != 0) {
        return RecordCheck::skip(IoStatus::failure(errno, "fstat").reason());
    }
    if (!S_ISREG(st.st_mode)) return RecordCheck::skip("not a regular file");
    return check_record(fd.get(), 0, static_cast<std::uint64_t>(st.st_size), mid, options, buf);
}

}  // namespace

RecordCheck RecordCheck::corrupt(DecodeStatus status, std::string reason) {
    RecordCheck c;
    c.kind = Kind::kCorrupt;
    c.status = status;
    c.reason = std::move(reason);
    return c;
}

RecordCheck RecordCheck::skip(std::string reason) {
    RecordCheck c;
    c.kind = Kind::kSkip;
    c.reason = std::move(reason);
    return c;
}

RecordCheck check_record(int fd, std::uint64_t base, std::uint64_t size, Mid mid,
                         const RecoveryOptions& options, std::string& buf) {
    // Envelope: read a chunk, more only if the envelope is larger.
    std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(size, options.read_chunk));
    EnvelopeDecodeResult env;
    for (;;) {
        if (int err = read_exact_at(fd, base, want, buf)) {
            return RecordCheck::skip(IoStatus::failure(err, "read").reason());
        }
        env = decode_envelope(buf, size);
        if (env.status != DecodeStatus::kTruncated || env.bytes_needed == 0 || want >= size) {
            break;
        }
        if (env.bytes_needed > size) {
            env.status = DecodeStatus::kTruncated;
            env.reason = "a record extends past the end of the file";
            break;
        }
        want = static_cast<std::size_t>(
            std::min<std::uint64_t>(size, std::max<std::uint64_t>(env.bytes_needed, 2 * want)));
    }
    if (env.status != DecodeStatus::kOk) return RecordCheck::corrupt(env.status, env.reason);
    if (env.envelope.mid != mid) {
        return RecordCheck::corrupt(DecodeStatus::kMalformed,
                                    "MID in file does not match its name");
    }
    // Trailer, and optionally the whole-file checksum, streamed chunk by chunk.
    std::optional<std::uint32_t> crc;
    if (options.verify_content) {
        Crc32c sum;
        const std::uint64_t end = size - kTrailerSize;
        for (std::uint64_t off = 0; off < end;) {
            const auto n = static_cast<std::size_t>(
                std::min<std::uint64_t>(end - off, std::max<std::size_t>(options.read_chunk, 1)));
            if (int err = read_exact_at(fd, base + off, n, buf)) {
                return RecordCheck::skip(IoStatus::failure(err, "read").reason());
            }
            sum.update(buf);
            off += n;
        }
        crc = sum.value();
    }
    if (int err = read_exact_at(fd, base + size - kTrailerSize, kTrailerSize, buf)) {
        return RecordCheck::skip(IoStatus::failure(err, "read").reason());
    }
    std::string reason;
    const DecodeStatus ts = check_trailer(buf, size, crc, &reason);
    if (ts != DecodeStatus::kOk) return RecordCheck::corrupt(ts, reason);
    RecordCheck ok;
    ok.envelope = std::move(env.envelope);
    ok.size = size;
    return ok;
}

FileStore::~FileStore() = default;

IoStatus FileStore::open_dirs(bool create_subdirs) {
    const std::string& state = options_.state_dir;
    if (state.empty()) return IoStatus::failure(EINVAL, "empty state_dir");
    UniqueFd state_fd;
    if (int err = open_dir(AT_FDCWD, state, state_fd)) {
        return IoStatus::failure(err, "open " + state);
    }
    spool_path_ = state + "/spool";
    if (IoStatus st = ensure_dir(state_fd.get(), "spool", spool_path_); !st.ok()) return st;
    if (int err = open_dir(state_fd.get(), "spool", spool_fd_)) {
        return IoStatus::failure(err, "open " + spool_path_);
    }
    struct Sub {
        const char* name;
        UniqueFd* fd;
    };
    for (Sub sub :
         {Sub{"tmp", &tmp_fd_}, Sub{"queue", &slots_[kTop]}, Sub{"corrupt", &corrupt_fd_}}) {
        const std::string label = spool_path_ + "/" + sub.name;
        if (IoStatus st = ensure_dir(spool_fd_.get(), sub.name, label); !st.ok()) return st;
        if (int err = open_dir(spool_fd_.get(), sub.name, *sub.fd)) {
            return IoStatus::failure(err, "open " + label);
        }
    }
    for (int slot = 0; slot < kTop; ++slot) {
        const std::string name = slot_name(slot);
        const std::string label = spool_path_ + "/queue/" + name;
        if (create_subdirs) {
            if (IoStatus st = ensure_dir(slot_fd(kTop), name, label); !st.ok()) return st;
        }
        // Without create_subdirs (flat), whatever is not a subdirectory there is left to
        // scan(), which reports it.
        if (int err = open_dir(slot_fd(kTop), name, slots_[slot]); err != 0 && create_subdirs) {
            return IoStatus::failure(err, "open " + label);
        }
    }
    // New directory entries (the subdirectories themselves) must survive a crash too.
    for (int fd : {spool_fd_.get(), slot_fd(kTop)}) {
        if (int err = fsync_fd(fd)) return IoStatus::failure(err, "fsync " + spool_path_);
    }
    lock_fd_.reset(
        ::openat(spool_fd_.get(), "lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!lock_fd_.valid()) return IoStatus::failure(errno, "open " + spool_path_ + "/lock");
    if (::flock(lock_fd_.get(), LOCK_EX | LOCK_NB) != 0) {
        return IoStatus::failure(errno, "lock " + spool_path_ + "/lock (another daemon?)");
    }
    return IoStatus::success();
}

std::string FileStore::slot_label(int slot, std::string_view name) const {
    std::string label = "queue/";
    if (slot != kTop) label.append(slot_name(slot)).append("/");
    label.append(name);
    return label;
}

int FileStore::at_message(Mid mid, const std::function<int(int slot)>& op, int* slot) const {
    const int home = home_slot(mid);
    const int other = home == kTop ? hashed_slot(mid) : kTop;
    int err = op(home);
    int tried = home;
    if (err == ENOENT && slots_[other].valid()) {
        err = op(other);
        tried = other;
    }
    if (slot != nullptr) *slot = tried;
    return err;
}

void FileStore::mark_dirty(int slot) {
    std::lock_guard<std::mutex> lock(dirty_mu_);
    dirty_.set(static_cast<std::size_t>(slot));
}

int FileStore::unlink_message(Mid mid) {
    const std::string name = mid_name(mid);
    int slot = kTop;
    const int err = at_message(
        mid, [&](int s) { return ::unlinkat(slot_fd(s), name.c_str(), 0) == 0 ? 0 : errno; },
        &slot);
    if (err == ENOENT) return 0;
    if (err == 0) {
        mark_dirty(slot);
        bump(stats_.removed);
    }
    return err;
}

IoStatus FileStore::sync_removals() {
    std::lock_guard<std::mutex> sync_lock(sync_mu_);
    std::bitset<kSlots> dirty;
    {
        std::lock_guard<std::mutex> lock(dirty_mu_);
        std::swap(dirty, dirty_);
    }
    IoStatus result;
    for (int slot = 0; slot < kSlots; ++slot) {
        if (!dirty.test(static_cast<std::size_t>(slot)) || !slots_[slot].valid()) continue;
        if (int err = fsync_dir(slot_fd(slot)); err != 0 && result.ok()) {
            result = IoStatus::failure(err, "fsync " + slot_label(slot, ""));
        }
    }
    if (dirty.any()) bump(stats_.removal_batches);
    return result;
}

int FileStore::inject(FaultPoint point, Mid mid) const {
    return options_.fault_hook ? options_.fault_hook(point, mid) : 0;
}

void FileStore::mark_fsync_failed() {
    bump(stats_.fsync_failures);
    healthy_.store(false, std::memory_order_release);
}

int FileStore::fsync_dir(int fd) {
    bump(stats_.dir_fsyncs);
    int err = inject(FaultPoint::kDirFsync, 0);
    if (err == 0) err = fsync_fd(fd);
    if (err != 0) mark_fsync_failed();
    return err;
}

int FileStore::write_and_sync(int fd, const Message& message, bool data_only) {
    const Mid mid = message.envelope.mid;
    const EncodedParts parts = encode_parts(message);
    int err = inject(FaultPoint::kWrite, mid);
    if (err == 0) err = write_all(fd, parts.head);
    if (err == 0) err = write_all(fd, message.content);
    if (err == 0) err = write_all(fd, parts.tail);
    if (err != 0) return err;
    bump(stats_.file_fsyncs);
    err = inject(FaultPoint::kFileFsync, mid);
    if (err == 0) err = data_only ? fdatasync_fd(fd) : fsync_fd(fd);
    if (err != 0) mark_fsync_failed();  // the data may be gone from the page cache: never retry
    return err;
}

IoStatus FileStore::write_renamed(const Message& message, int slot) {
    const Mid mid = message.envelope.mid;
    const std::string name = mid_name(mid);
    const std::string tmp_name = name + ".tmp";
    const std::string label = "tmp/" + tmp_name;
    int err = inject(FaultPoint::kCreate, mid);
    UniqueFd fd;
    if (err == 0) {
        fd.reset(::openat(tmp_fd_.get(), tmp_name.c_str(),
                          O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
        if (!fd.valid()) err = errno;
    }
    // Not created (EEXIST included: that file is not ours to remove).
    if (err != 0) return IoStatus::failure(err, "create " + label);

    const char* op = "write";
    err = write_and_sync(fd.get(), message, false);
    if (err == 0) {
        op = "close";
        err = fd.close_checked();
    }
    if (err == 0) {
        op = "rename";
        err = inject(FaultPoint::kRename, mid);
        if (err == 0) {
            err = rename_noreplace(tmp_fd_.get(), tmp_name.c_str(), slot_fd(slot), name.c_str());
        }
    }
    if (err == 0) return IoStatus::success();
    fd.reset();
    ::unlinkat(tmp_fd_.get(), tmp_name.c_str(), 0);
    if (std::string_view(op) == "rename") {
        return IoStatus::failure(err, "rename " + label + " to " + slot_label(slot, name));
    }
    return IoStatus::failure(err, std::string(op) + " " + label);
}

void FileStore::commit_batch(std::vector<PendingMessage>& batch) {
    std::vector<std::size_t> written;
    written.reserve(batch.size());
    std::bitset<kSlots> touched;
    for (std::size_t i = 0; i < batch.size(); ++i) {
        PendingMessage& pm = batch[i];
        const Envelope& env = pm.message.envelope;
        if (env.mid == 0 || env.recipients.empty()) {
            pm.result = IoStatus::failure(
                EINVAL, "commit " + mid_name(env.mid) + ": no MID or no recipient");
            continue;
        }
        const int slot = home_slot(env.mid);
        pm.result = write_one(pm.message, slot);
        if (!pm.result.ok()) continue;
        written.push_back(i);
        touched.set(static_cast<std::size_t>(slot));
    }
    // Group commit: one fsync per touched directory makes the batch's names durable.
    int failed[kSlots] = {};
    for (int slot = 0; slot < kSlots; ++slot) {
        if (touched.test(static_cast<std::size_t>(slot))) failed[slot] = fsync_dir(slot_fd(slot));
    }
    for (std::size_t i : written) {
        const Mid mid = batch[i].message.envelope.mid;
        const int slot = home_slot(mid);
        if (failed[slot] == 0) continue;
        const std::string name = mid_name(mid);
        ::unlinkat(slot_fd(slot), name.c_str(), 0);  // answered 451: do not deliver
        batch[i].result =
            IoStatus::failure(failed[slot], "fsync " + slot_label(slot, "") + " for " + name);
    }
    bump(stats_.batches);
    for (const PendingMessage& pm : batch)
        bump(pm.result.ok() ? stats_.commits_ok : stats_.commits_failed);
}

SpaceCheck FileStore::space_ok(std::uint64_t max_message_size) const {
    SpaceCheck out;
    struct statvfs vfs {};
    if (::fstatvfs(spool_fd_.get(), &vfs) != 0) {
        out.status = IoStatus::failure(errno, "statvfs " + spool_path_);
        out.reason = out.status.reason();
        return out;
    }
    out.free_bytes = static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    out.free_inodes = vfs.f_favail;
    const std::uint64_t wanted = max_message_size + max_message_size / 2;
    out.required_bytes = std::max(options_.min_free_bytes, wanted);
    if (out.free_bytes < out.required_bytes) {
        out.reason = "free space " + std::to_string(out.free_bytes) + " bytes < required " +
                     std::to_string(out.required_bytes);
        return out;
    }
    if (vfs.f_files != 0 && out.free_inodes < options_.min_free_inodes) {
        out.reason = "free inodes " + std::to_string(out.free_inodes) + " < required " +
                     std::to_string(options_.min_free_inodes);
        return out;
    }
    out.ok = true;
    return out;
}

IoStatus FileStore::probe() {
    std::lock_guard<std::mutex> lock(probe_mu_);
    static constexpr char kName[] = ".probe";
    UniqueFd fd(::openat(tmp_fd_.get(), kName,
                         O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd.valid()) return IoStatus::failure(errno, "create tmp/.probe");
    int err = write_all(fd.get(), std::string(kProbeSize, 'p'));
    const char* op = "write";
    if (err == 0) {
        op = "fsync";
        err = inject(FaultPoint::kProbe, 0);
        if (err == 0) err = fsync_fd(fd.get());
    }
    if (err == 0) {
        op = "close";
        err = fd.close_checked();
    }
    fd.reset();
    if (::unlinkat(tmp_fd_.get(), kName, 0) != 0 && err == 0) {
        op = "unlink";
        err = errno;
    }
    if (err != 0) return IoStatus::failure(err, std::string(op) + " tmp/.probe");
    bump(stats_.probes_ok);
    healthy_.store(true, std::memory_order_release);
    return IoStatus::success();
}

LoadStatus FileStore::open_message(Mid mid, MessageRange& out, std::string& reason) const {
    const std::string name = mid_name(mid);
    int slot = kTop;
    const int err = at_message(
        mid,
        [&](int s) {
            out.fd.reset(::openat(slot_fd(s), name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
            return out.fd.valid() ? 0 : errno;
        },
        &slot);
    const std::string label = slot_label(slot, name);
    if (err != 0) {
        reason = IoStatus::failure(err, "open " + label).reason();
        return err == ENOENT ? LoadStatus::kMissing : LoadStatus::kIoError;
    }
    struct stat st {};
    if (::fstat(out.fd.get(), &st) != 0) {
        reason = IoStatus::failure(errno, "stat " + label).reason();
        out.fd.reset();
        return LoadStatus::kIoError;
    }
    if (!S_ISREG(st.st_mode)) {
        reason = label + " is not a regular file";
        out.fd.reset();
        return LoadStatus::kCorrupt;
    }
    out.offset = 0;
    out.size = static_cast<std::uint64_t>(st.st_size);
    return LoadStatus::kOk;
}

LoadResult load_message(const Store& store, Mid mid) {
    LoadResult out;
    MessageRange range;
    out.status = store.open_message(mid, range, out.reason);
    if (out.status != LoadStatus::kOk) return out;
    out.status = LoadStatus::kIoError;
    const std::string label = "queue file " + mid_name(mid);
    std::string bytes;
    if (int err = read_exact_at(range.fd.get(), range.offset, static_cast<std::size_t>(range.size),
                                bytes)) {
        out.reason = IoStatus::failure(err, "read " + label).reason();
        return out;
    }
    return decode_loaded(mid, bytes, label);
}

LoadResult decode_loaded(Mid mid, std::string_view bytes, const std::string& label) {
    LoadResult out;
    DecodeResult dec = decode(bytes);
    if (dec.status != DecodeStatus::kOk) {
        out.status = LoadStatus::kCorrupt;
        out.reason = label + ": " + std::string(to_string(dec.status)) + ": " + dec.reason;
        return out;
    }
    if (dec.message.envelope.mid != mid) {
        out.status = LoadStatus::kCorrupt;
        out.reason = label + ": MID in file does not match its name";
        return out;
    }
    out.status = LoadStatus::kOk;
    out.message = std::move(dec.message);
    return out;
}

LoadResult FileStore::load_content(Mid mid) const {
    return load_message(*this, mid);
}

bool FileStore::has_message(Mid mid) const {
    const std::string name = mid_name(mid);
    return at_message(mid, [&](int s) {
               struct stat st {};
               return ::fstatat(slot_fd(s), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 ? 0
                                                                                         : errno;
           }) == 0;
}

IoStatus FileStore::quarantine_at(int slot, const std::string& name, std::string* moved_to) {
    std::lock_guard<std::mutex> lock(quarantine_mu_);
    std::string target = name;
    int err = 0;
    for (int n = 1; n < 1000; ++n) {
        err = rename_noreplace(slot_fd(slot), name.c_str(), corrupt_fd_.get(), target.c_str());
        if (err != EEXIST) break;
        target = name + "." + std::to_string(n);
    }
    if (err != 0) {
        return IoStatus::failure(err, "move " + slot_label(slot, name) + " to corrupt/");
    }
    bump(stats_.quarantined);
    mark_dirty(slot);
    if (moved_to != nullptr) *moved_to = target;
    return IoStatus::success();
}

IoStatus FileStore::sync_corrupt_dir() {
    if (int err = fsync_dir(corrupt_fd_.get())) return IoStatus::failure(err, "fsync corrupt/");
    return IoStatus::success();
}

IoStatus FileStore::quarantine(Mid mid, std::string* moved_to) {
    const std::string name = mid_name(mid);
    IoStatus moved;
    const int err = at_message(mid, [&](int s) {
        moved = quarantine_at(s, name, moved_to);
        return moved.err;
    });
    if (err != 0) return moved;
    // The file must be in corrupt/ before it is durably gone from the queue.
    if (IoStatus st = sync_corrupt_dir(); !st.ok()) return st;
    return sync_removals();
}

IoStatus FileStore::scan(const RecoveryOptions& options, StoreScan& out,
                         const std::function<void(StoredMessage&&)>& visit) {
    // 1. Stale temporaries: never committed, never answered 250.
    std::vector<std::string> names;
    if (int err = list_dir(tmp_fd_.get(), names)) return IoStatus::failure(err, "list tmp/");
    for (const std::string& n : names) {
        if (::unlinkat(tmp_fd_.get(), n.c_str(), 0) == 0) {
            ++out.stale_tmp_removed;
        } else {
            out.skipped.push_back({"tmp/" + n, IoStatus::failure(errno, "unlink").reason()});
        }
    }

    // 2. MIDs already quarantined must never be reused either.
    names.clear();
    if (int err = list_dir(corrupt_fd_.get(), names)) {
        return IoStatus::failure(err, "list corrupt/");
    }
    for (const std::string& n : names) {
        Mid mid = 0;
        if (parse_mid_name(std::string_view(n).substr(0, 16), mid)) {
            out.max_mid_seen = std::max(out.max_mid_seen, mid);
        }
    }

    // 3. Both layouts: queue/<MID> and queue/<xx>/<MID>, checked in ascending MID order.
    struct Entry {
        Mid mid;
        int slot;
    };
    std::vector<Entry> entries;
    auto collect = [&](int slot) -> IoStatus {
        std::vector<std::string> listed;
        if (int err = list_dir(slot_fd(slot), listed)) {
            return IoStatus::failure(err, "list " + slot_label(slot, ""));
        }
        for (const std::string& n : listed) {
            Mid mid = 0;
            if (slot == kTop && parse_slot_name(n) >= 0 && slots_[parse_slot_name(n)].valid()) {
                continue;  // a hashed subdirectory, listed on its own
            }
            if (!parse_mid_name(n, mid)) {
                out.skipped.push_back({slot_label(slot, n), "name is not a MID"});
            } else if (slot != kTop && hashed_slot(mid) != slot) {
                out.skipped.push_back({slot_label(slot, n), "MID in the wrong subdirectory"});
            } else {
                entries.push_back({mid, slot});
            }
        }
        return IoStatus::success();
    };
    for (int slot = 0; slot < kSlots; ++slot) {
        if (!slots_[slot].valid()) continue;
        if (IoStatus st = collect(slot); !st.ok()) return st;
    }
    std::sort(entries.begin(), entries.end(),
              [](const Entry& a, const Entry& b) { return a.mid < b.mid; });

    std::string buf;
    bool quarantined = false;
    for (std::size_t i = 0; i < entries.size(); ++i) {
        const auto [mid, slot] = entries[i];
        const std::string name = mid_name(mid);
        out.max_mid_seen = std::max(out.max_mid_seen, mid);
        if (i > 0 && entries[i - 1].mid == mid) {
            // Only an operator's copy makes two: deliver one, keep the other untouched.
            out.skipped.push_back({slot_label(slot, name), "the same MID is also elsewhere"});
            continue;
        }
        RecordCheck fc = check_file(slot_fd(slot), name, mid, options, buf);
        if (fc.kind == RecordCheck::Kind::kSkip) {
            out.skipped.push_back({slot_label(slot, name), fc.reason});
            continue;
        }
        const std::string rel = slot_label(slot, name).substr(6);  // without "queue/"
        if (fc.kind == RecordCheck::Kind::kCorrupt) {
            QuarantinedFile q{rel, "", fc.status, fc.reason};
            if (IoStatus st = quarantine_at(slot, name, &q.moved_to); !st.ok()) {
                q.reason += "; " + st.reason();
            }
            quarantined = true;
            out.quarantined.push_back(std::move(q));
            continue;
        }
        visit(StoredMessage{std::move(fc.envelope), fc.size});
    }
    if (quarantined) {
        if (IoStatus st = sync_corrupt_dir(); !st.ok()) return st;
    }
    // Removals of the previous run may still be unsynced: the next sync_removals() (before
    // the journal drops their records) covers every queue directory.
    std::lock_guard<std::mutex> lock(dirty_mu_);
    dirty_.set();
    return IoStatus::success();
}

StoreStats AtomicStoreStats::snapshot() const {
    auto get = [](const std::atomic<std::uint64_t>& a) {
        return a.load(std::memory_order_relaxed);
    };
    StoreStats s;
    s.batches = get(batches);
    s.commits_ok = get(commits_ok);
    s.commits_failed = get(commits_failed);
    s.file_fsyncs = get(file_fsyncs);
    s.dir_fsyncs = get(dir_fsyncs);
    s.fsync_failures = get(fsync_failures);
    s.removed = get(removed);
    s.removal_batches = get(removal_batches);
    s.quarantined = get(quarantined);
    s.probes_ok = get(probes_ok);
    s.maintenance_wakeups = get(maintenance_wakeups);
    return s;
}

StoreStats FileStore::stats() const {
    return stats_.snapshot();
}

// --- FlatStore ---

IoStatus FlatStore::open(StoreOptions options, std::unique_ptr<Store>& out) {
    std::unique_ptr<FlatStore> s(new FlatStore(std::move(options)));
    if (IoStatus st = s->open_dirs(false); !st.ok()) return st;
    out = std::move(s);
    return IoStatus::success();
}

IoStatus FlatStore::write_one(const Message& message, int slot) {
    return write_renamed(message, slot);
}

IoStatus FlatStore::remove_message(Mid mid) {
    if (int err = unlink_message(mid)) {
        return IoStatus::failure(err, "unlink queue file " + mid_name(mid));
    }
    return IoStatus::success();
}

}  // namespace esad::spool
