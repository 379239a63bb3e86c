// hashed_store — the hashed file-per-message backend; see file_store.h.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "common/thread_policy.h"
#include "daemon/spool/file_store.h"

namespace esad::spool {

IoStatus HashedStore::open(StoreOptions options, std::unique_ptr<Store>& out) {
    std::unique_ptr<HashedStore> s(new HashedStore(std::move(options)));
    if (IoStatus st = s->open_dirs(true); !st.ok()) return st;
    HashedStore* raw = s.get();
    s->reclaimer_ = std::thread([raw] {
        run_as_background_thread();
        raw->reclaim_loop();
    });
    out = std::move(s);
    return IoStatus::success();
}

HashedStore::~HashedStore() {
    if (!reclaimer_.joinable()) return;
    {
        std::lock_guard<std::mutex> lock(reclaim_mu_);
        stopping_ = true;
    }
    reclaim_cv_.notify_one();
    reclaimer_.join();
}

IoStatus HashedStore::write_one(const Message& message, int slot) {
    if (!tmpfile_ok_.load(std::memory_order_relaxed)) return write_renamed(message, slot);
    const Mid mid = message.envelope.mid;
    const std::string name = mid_name(mid);
    const std::string label = slot_label(slot, name);
    int err = inject(FaultPoint::kCreate, mid);
    if (err != 0) return IoStatus::failure(err, "create " + label);
    UniqueFd fd(::openat(slot_fd(slot), ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600));
    if (!fd.valid()) {
        if (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL) {
            tmpfile_ok_.store(false, std::memory_order_relaxed);
            return write_renamed(message, slot);
        }
        return IoStatus::failure(errno, "create " + label);
    }
    // Until linkat the file has no name: on any failure closing it is the whole cleanup.
    if ((err = write_and_sync(fd.get(), message, true)) != 0) {
        return IoStatus::failure(err, "write " + label);
    }
    err = inject(FaultPoint::kRename, mid);
    if (err == 0) {
        // Needs CAP_DAC_READ_SEARCH (root); otherwise the /proc name of the descriptor.
        if (empty_path_ok_.load(std::memory_order_relaxed) &&
            ::linkat(fd.get(), "", slot_fd(slot), name.c_str(), AT_EMPTY_PATH) == 0) {
            err = 0;
        } else if (empty_path_ok_.load(std::memory_order_relaxed) && errno != ENOENT) {
            err = errno;
        } else {
            empty_path_ok_.store(false, std::memory_order_relaxed);
            char path[32];
            std::snprintf(path, sizeof path, "/proc/self/fd/%d", fd.get());
            err = ::linkat(AT_FDCWD, path, slot_fd(slot), name.c_str(), AT_SYMLINK_FOLLOW) == 0
                      ? 0
                      : errno;
        }
    }
    // EEXIST: a MID collision is an error, never an overwrite (REQ-D11).
    if (err != 0) return IoStatus::failure(err, "link " + label);
    if ((err = fd.close_checked()) != 0) {
        ::unlinkat(slot_fd(slot), name.c_str(), 0);
        return IoStatus::failure(err, "close " + label);
    }
    return IoStatus::success();
}

IoStatus HashedStore::remove_message(Mid mid) {
    {
        std::lock_guard<std::mutex> lock(reclaim_mu_);
        reclaim_queue_.insert(mid);
    }
    reclaim_cv_.notify_one();
    return IoStatus::success();
}

IoStatus HashedStore::drain(bool sync) {
    std::lock_guard<std::mutex> drain_lock(drain_mu_);
    {
        std::lock_guard<std::mutex> lock(reclaim_mu_);
        reclaiming_.swap(reclaim_queue_);
    }
    IoStatus result;
    for (Mid mid : reclaiming_) {
        if (int err = unlink_message(mid); err != 0 && result.ok()) {
            result = IoStatus::failure(err, "unlink queue file " + mid_name(mid));
        }
    }
    {
        std::lock_guard<std::mutex> lock(reclaim_mu_);
        reclaiming_.clear();
    }
    if (!sync) return result;
    // Under drain_mu_: a caller of sync_removals() that saw a file gone waits for the running
    // drain, then makes its unlinks durable here.
    IoStatus synced = FileStore::sync_removals();
    return result.ok() ? synced : result;
}

IoStatus HashedStore::sync_removals() {
    return drain(true);
}

bool HashedStore::has_message(Mid mid) const {
    {
        // Queued for removal: gone as far as the journal is concerned (its compaction drains
        // the queue in sync_removals() before it drops the records).
        std::lock_guard<std::mutex> lock(reclaim_mu_);
        if (reclaim_queue_.count(mid) != 0 || reclaiming_.count(mid) != 0) return false;
    }
    return FileStore::has_message(mid);
}

void HashedStore::reclaim_loop() {
    for (;;) {
        {
            std::unique_lock<std::mutex> lock(reclaim_mu_);
            reclaim_cv_.wait(lock, [this] { return stopping_ || !reclaim_queue_.empty(); });
            if (reclaim_queue_.empty()) return;  // stopping, nothing left
        }
        // No directory fsync here: it would force a journal commit per drain for nothing, as
        // a lost unlink is harmless until the journal drops the records (sync_removals()).
        // Errors stay queued nowhere: a file not unlinked is removed again at recovery.
        drain(false);
    }
}

}  // namespace esad::spool
