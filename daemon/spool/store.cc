// store — see store.h for the layout and the commit protocol.
#include "daemon/spool/store.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>

namespace esad::spool {
namespace {

constexpr char kHex[] = "0123456789abcdef";
constexpr std::size_t kProbeSize = 4096;

// rename() that refuses to replace an existing target, so a MID collision is an error and
// never an overwrite (REQ-D11). Falls back to link+unlink where RENAME_NOREPLACE is missing.
int rename_noreplace(int from_dir, const char* from, int to_dir, const char* to) {
    if (::renameat2(from_dir, from, to_dir, to, RENAME_NOREPLACE) == 0) return 0;
    if (errno != EINVAL && errno != ENOSYS) return errno;
    if (::linkat(from_dir, from, to_dir, to, 0) != 0) return errno;
    ::unlinkat(from_dir, from, 0);
    return 0;
}

void bump(std::atomic<std::uint64_t>& counter, std::uint64_t n = 1) {
    counter.fetch_add(n, std::memory_order_relaxed);
}

}  // namespace

std::string_view to_string(LoadStatus s) {
    switch (s) {
        case LoadStatus::kOk:
            return "ok";
        case LoadStatus::kMissing:
            return "missing";
        case LoadStatus::kIoError:
            return "io_error";
        case LoadStatus::kCorrupt:
            return "corrupt";
    }
    return "unknown";
}

std::string mid_name(Mid mid) {
    std::string s(16, '0');
    for (int i = 15; i >= 0; --i, mid >>= 4)
        s[i] = kHex[mid & 0xFu];
    return s;
}

bool parse_mid_name(std::string_view name, Mid& mid) {
    if (name.size() != 16) return false;
    Mid v = 0;
    for (char c : name) {
        int d;
        if (c >= '0' && c <= '9') {
            d = c - '0';
        } else if (c >= 'a' && c <= 'f') {
            d = c - 'a' + 10;
        } else {
            return false;
        }
        v = (v << 4) | static_cast<Mid>(d);
    }
    if (v == 0) return false;
    mid = v;
    return true;
}

IoStatus Store::open(StoreOptions options, std::unique_ptr<Store>& out) {
    std::unique_ptr<Store> s(new Store(std::move(options)));
    const std::string& state = s->options_.state_dir;
    if (state.empty()) return IoStatus::failure(EINVAL, "empty state_dir");
    UniqueFd state_fd;
    if (int err = open_dir(AT_FDCWD, state, state_fd)) {
        return IoStatus::failure(err, "open " + state);
    }
    s->spool_path_ = state + "/spool";
    if (IoStatus st = ensure_dir(state_fd.get(), "spool", s->spool_path_); !st.ok()) return st;
    if (int err = open_dir(state_fd.get(), "spool", s->spool_fd_)) {
        return IoStatus::failure(err, "open " + s->spool_path_);
    }
    struct Sub {
        const char* name;
        UniqueFd* fd;
    };
    for (Sub sub :
         {Sub{"tmp", &s->tmp_fd_}, Sub{"queue", &s->queue_fd_}, Sub{"corrupt", &s->corrupt_fd_}}) {
        const std::string label = s->spool_path_ + "/" + sub.name;
        if (IoStatus st = ensure_dir(s->spool_fd_.get(), sub.name, label); !st.ok()) return st;
        if (int err = open_dir(s->spool_fd_.get(), sub.name, *sub.fd)) {
            return IoStatus::failure(err, "open " + label);
        }
    }
    // New directory entries (the subdirectories themselves) must survive a crash too.
    if (int err = fsync_fd(s->spool_fd_.get())) {
        return IoStatus::failure(err, "fsync " + s->spool_path_);
    }
    s->lock_fd_.reset(
        ::openat(s->spool_fd_.get(), "lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!s->lock_fd_.valid()) return IoStatus::failure(errno, "open " + s->spool_path_ + "/lock");
    if (::flock(s->lock_fd_.get(), LOCK_EX | LOCK_NB) != 0) {
        return IoStatus::failure(errno, "lock " + s->spool_path_ + "/lock (another daemon?)");
    }
    out = std::move(s);
    return IoStatus::success();
}

Store::~Store() = default;

int Store::inject(FaultPoint point, Mid mid) const {
    return options_.fault_hook ? options_.fault_hook(point, mid) : 0;
}

void Store::mark_fsync_failed() {
    bump(stats_.fsync_failures);
    healthy_.store(false, std::memory_order_release);
}

int Store::fsync_dir(int fd) {
    bump(stats_.dir_fsyncs);
    int err = inject(FaultPoint::kDirFsync, 0);
    if (err == 0) err = fsync_fd(fd);
    if (err != 0) mark_fsync_failed();
    return err;
}

IoStatus Store::write_temp(const Message& message, const std::string& tmp_name) {
    const Mid mid = message.envelope.mid;
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

    auto fail = [&](int e, const char* op) {
        fd.reset();
        ::unlinkat(tmp_fd_.get(), tmp_name.c_str(), 0);
        return IoStatus::failure(e, std::string(op) + " " + label);
    };
    const EncodedParts parts = encode_parts(message);
    err = inject(FaultPoint::kWrite, mid);
    if (err == 0) err = write_all(fd.get(), parts.head);
    if (err == 0) err = write_all(fd.get(), message.content);
    if (err == 0) err = write_all(fd.get(), parts.tail);
    if (err != 0) return fail(err, "write");

    bump(stats_.file_fsyncs);
    err = inject(FaultPoint::kFileFsync, mid);
    if (err == 0) err = fsync_fd(fd.get());
    if (err != 0) {
        mark_fsync_failed();  // the data may be gone from the page cache: never retry
        return fail(err, "fsync");
    }
    if ((err = fd.close_checked()) != 0) return fail(err, "close");
    return IoStatus::success();
}

void Store::commit_batch(std::vector<PendingMessage>& batch) {
    bump(stats_.batches);
    std::vector<std::size_t> renamed;
    renamed.reserve(batch.size());
    for (std::size_t i = 0; i < batch.size(); ++i) {
        PendingMessage& pm = batch[i];
        const Envelope& env = pm.message.envelope;
        const std::string name = mid_name(env.mid);
        if (env.mid == 0 || env.recipients.empty()) {
            pm.result = IoStatus::failure(EINVAL, "commit " + name + ": no MID or no recipient");
            continue;
        }
        const std::string tmp_name = name + ".tmp";
        pm.result = write_temp(pm.message, tmp_name);
        if (!pm.result.ok()) continue;
        int err = inject(FaultPoint::kRename, env.mid);
        if (err == 0) {
            err = rename_noreplace(tmp_fd_.get(), tmp_name.c_str(), queue_fd_.get(), name.c_str());
        }
        if (err != 0) {
            ::unlinkat(tmp_fd_.get(), tmp_name.c_str(), 0);
            pm.result = IoStatus::failure(err, "rename tmp/" + tmp_name + " to queue/" + name);
            continue;
        }
        renamed.push_back(i);
    }
    if (!renamed.empty()) {
        // Group commit: one directory fsync makes every rename of the batch durable.
        if (int err = fsync_dir(queue_fd_.get())) {
            for (std::size_t i : renamed) {
                const std::string name = mid_name(batch[i].message.envelope.mid);
                ::unlinkat(queue_fd_.get(), name.c_str(), 0);  // answered 451: do not deliver
                batch[i].result = IoStatus::failure(err, "fsync queue/ for " + name);
            }
        }
    }
    for (const PendingMessage& pm : batch)
        bump(pm.result.ok() ? stats_.commits_ok : stats_.commits_failed);
}

SpaceCheck Store::space_ok(std::uint64_t max_message_size) const {
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

IoStatus Store::probe() {
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

LoadResult Store::load_content(Mid mid) const {
    LoadResult out;
    const std::string name = mid_name(mid);
    UniqueFd fd(::openat(queue_fd_.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd.valid()) {
        out.status = errno == ENOENT ? LoadStatus::kMissing : LoadStatus::kIoError;
        out.reason = IoStatus::failure(errno, "open queue/" + name).reason();
        return out;
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
        out.reason = IoStatus::failure(errno, "stat queue/" + name).reason();
        return out;
    }
    if (!S_ISREG(st.st_mode)) {
        out.status = LoadStatus::kCorrupt;
        out.reason = "queue/" + name + " is not a regular file";
        return out;
    }
    std::string bytes;
    if (int err = read_exact_at(fd.get(), 0, static_cast<std::size_t>(st.st_size), bytes)) {
        out.reason = IoStatus::failure(err, "read queue/" + name).reason();
        return out;
    }
    DecodeResult dec = decode(bytes);
    if (dec.status != DecodeStatus::kOk) {
        out.status = LoadStatus::kCorrupt;
        out.reason =
            "queue/" + name + ": " + std::string(to_string(dec.status)) + ": " + dec.reason;
        return out;
    }
    if (dec.message.envelope.mid != mid) {
        out.status = LoadStatus::kCorrupt;
        out.reason = "queue/" + name + ": MID in file does not match its name";
        return out;
    }
    out.status = LoadStatus::kOk;
    out.message = std::move(dec.message);
    return out;
}

LoadStatus Store::open_message(Mid mid, MessageRange& out, std::string& reason) const {
    const std::string name = mid_name(mid);
    UniqueFd fd(::openat(queue_fd_.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd.valid()) {
        const int err = errno;
        reason = IoStatus::failure(err, "open queue/" + name).reason();
        return err == ENOENT ? LoadStatus::kMissing : LoadStatus::kIoError;
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
        const int err = errno;
        reason = IoStatus::failure(err, "stat queue/" + name).reason();
        return LoadStatus::kIoError;
    }
    if (!S_ISREG(st.st_mode)) {
        reason = "queue/" + name + " is not a regular file";
        return LoadStatus::kCorrupt;
    }
    out.fd = std::move(fd);
    out.offset = 0;
    out.size = static_cast<std::uint64_t>(st.st_size);
    return LoadStatus::kOk;
}

IoStatus Store::remove_message(Mid mid) {
    const std::string name = mid_name(mid);
    if (::unlinkat(queue_fd_.get(), name.c_str(), 0) != 0 && errno != ENOENT) {
        return IoStatus::failure(errno, "unlink queue/" + name);
    }
    bump(stats_.removed);
    return IoStatus::success();
}

IoStatus Store::sync_queue_dir() {
    if (int err = fsync_dir(queue_fd_.get())) return IoStatus::failure(err, "fsync queue/");
    return IoStatus::success();
}

IoStatus Store::sync_corrupt_dir() {
    if (int err = fsync_dir(corrupt_fd_.get())) return IoStatus::failure(err, "fsync corrupt/");
    return IoStatus::success();
}

bool Store::has_message(Mid mid) const {
    struct stat st {};
    return ::fstatat(queue_fd_.get(), mid_name(mid).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

IoStatus Store::quarantine_file(const std::string& queue_name, bool sync, std::string* moved_to) {
    std::lock_guard<std::mutex> lock(quarantine_mu_);
    std::string target = queue_name;
    int err = 0;
    for (int n = 1; n < 1000; ++n) {
        err = rename_noreplace(queue_fd_.get(), queue_name.c_str(), corrupt_fd_.get(),
                               target.c_str());
        if (err != EEXIST) break;
        target = queue_name + "." + std::to_string(n);
    }
    if (err != 0) return IoStatus::failure(err, "move queue/" + queue_name + " to corrupt/");
    bump(stats_.quarantined);
    if (moved_to != nullptr) *moved_to = target;
    if (sync) {
        // The file must be in corrupt/ before it is durably gone from queue/.
        if (IoStatus st = sync_corrupt_dir(); !st.ok()) return st;
        if (IoStatus st = sync_queue_dir(); !st.ok()) return st;
    }
    return IoStatus::success();
}

StoreStats Store::stats() const {
    auto get = [](const std::atomic<std::uint64_t>& a) {
        return a.load(std::memory_order_relaxed);
    };
    StoreStats s;
    s.batches = get(stats_.batches);
    s.commits_ok = get(stats_.commits_ok);
    s.commits_failed = get(stats_.commits_failed);
    s.file_fsyncs = get(stats_.file_fsyncs);
    s.dir_fsyncs = get(stats_.dir_fsyncs);
    s.fsync_failures = get(stats_.fsync_failures);
    s.removed = get(stats_.removed);
    s.quarantined = get(stats_.quarantined);
    s.probes_ok = get(stats_.probes_ok);
    return s;
}

}  // namespace esad::spool
