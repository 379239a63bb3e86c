// journal — see journal.h.
#include "daemon/spool/journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <unordered_map>

#include "daemon/spool/crc32c.h"
#include "daemon/spool/store.h"

namespace esad::spool {
namespace {

constexpr char kFileName[] = "journal";
constexpr std::size_t kPayloadSize = 8 + 4 + 1 + 1;
constexpr std::size_t kRecordSize = 4 + 4 + kPayloadSize;
constexpr std::uint64_t kRoomStep = 256 * 1024;

std::uint32_t get_le32(std::string_view s, std::size_t pos) {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
        v |= static_cast<std::uint32_t>(static_cast<unsigned char>(s[pos + i])) << (8 * i);
    }
    return v;
}

std::string le32(std::uint32_t v) {
    return le64(v).substr(0, 4);
}

bool valid_state(std::uint8_t s) {
    return s >= 1 && s <= 3;
}
bool valid_kind(std::uint8_t k) {
    return k <= 5;
}

}  // namespace

std::string_view to_string(RcptState s) {
    switch (s) {
        case RcptState::kDelivered:
            return "delivered";
        case RcptState::kHardBounced:
            return "hard_bounced";
        case RcptState::kDeleted:
            return "deleted";
    }
    return "unknown";
}

std::string_view to_string(BounceKind k) {
    switch (k) {
        case BounceKind::kNone:
            return "none";
        case BounceKind::kDns:
            return "dns";
        case BounceKind::k5xx:
            return "5xx";
        case BounceKind::kExpired:
            return "expired";
        case BounceKind::kFilter:
            return "filter";
        case BounceKind::kOther:
            return "other";
    }
    return "unknown";
}

std::string encode_journal_record(const JournalRecord& r) {
    std::string payload = le64(r.mid) + le32(r.rid);
    payload.push_back(static_cast<char>(r.state));
    payload.push_back(static_cast<char>(r.kind));
    return le32(static_cast<std::uint32_t>(payload.size())) + le32(crc32c(payload)) + payload;
}

JournalScan parse_journal(std::string_view bytes) {
    JournalScan scan;
    if (bytes.size() < kJournalMagic.size() ||
        bytes.substr(0, kJournalMagic.size()) != kJournalMagic) {
        scan.ignored_bytes = bytes.size();
        scan.tail_reason =
            bytes.size() < kJournalMagic.size() ? "journal header truncated" : "bad journal magic";
        return scan;
    }
    std::size_t pos = kJournalMagic.size();
    while (pos < bytes.size()) {
        if (bytes[pos] == '\0' && bytes.find_first_not_of('\0', pos) == std::string_view::npos) {
            scan.room_bytes = bytes.size() - pos;  // no record starts with a zero byte
            break;
        }
        const std::size_t left = bytes.size() - pos;
        if (left < 8) {
            scan.tail_reason = "torn record header";
            break;
        }
        const std::uint32_t len = get_le32(bytes, pos);
        if (len != kPayloadSize) {
            scan.tail_reason = "bad record length " + std::to_string(len);
            break;
        }
        if (left - 8 < len) {
            scan.tail_reason = "torn record";
            break;
        }
        const std::string_view payload = bytes.substr(pos + 8, len);
        if (crc32c(payload) != get_le32(bytes, pos + 4)) {
            scan.tail_reason = "record checksum mismatch";
            break;
        }
        const auto state = static_cast<std::uint8_t>(payload[12]);
        const auto kind = static_cast<std::uint8_t>(payload[13]);
        if (!valid_state(state) || !valid_kind(kind)) {
            scan.tail_reason = "bad record values";
            break;
        }
        scan.records.push_back(JournalRecord{get_le64(payload, 0), get_le32(payload, 8),
                                             static_cast<RcptState>(state),
                                             static_cast<BounceKind>(kind)});
        pos += 8 + len;
    }
    scan.valid_bytes = pos;
    if (pos < bytes.size() && scan.room_bytes == 0) {
        // A torn or corrupt tail: the zeros after its last byte are still room.
        const std::size_t last = bytes.find_last_not_of('\0');
        scan.room_bytes = bytes.size() - std::max(pos, last + 1);
    }
    scan.ignored_bytes = bytes.size() - pos - scan.room_bytes;
    return scan;
}

IoStatus Journal::open(const std::string& dir, std::uint64_t compact_threshold_bytes,
                       std::unique_ptr<Journal>& out, JournalScan* scan) {
    UniqueFd dfd;
    if (int err = open_dir(AT_FDCWD, dir, dfd)) return IoStatus::failure(err, "open " + dir);
    std::unique_ptr<Journal> j(
        new Journal(std::move(dfd), dir + "/" + kFileName, compact_threshold_bytes));
    std::lock_guard<std::mutex> lock(j->mu_);
    std::string bytes;
    int err = read_small_file(j->dir_fd_.get(), kFileName, bytes);
    if (err == ENOENT) {
        if (IoStatus st = atomic_replace(j->dir_fd_.get(), kFileName, kJournalMagic, j->label_);
            !st.ok()) {
            return st;
        }
        bytes.assign(kJournalMagic);
        err = 0;
    }
    if (err == EFBIG) {
        // Larger than read_small_file's cap: read it with pread instead.
        UniqueFd fd(::openat(j->dir_fd_.get(), kFileName, O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
        struct stat st {};
        if (!fd.valid() || ::fstat(fd.get(), &st) != 0) {
            return IoStatus::failure(errno, "read " + j->label_);
        }
        err = read_exact_at(fd.get(), 0, static_cast<std::size_t>(st.st_size), bytes);
    }
    if (err != 0) return IoStatus::failure(err, "read " + j->label_);
    JournalScan found = parse_journal(bytes);
    if (found.valid_bytes == 0) {
        // The header is written atomically at creation, so a bad one is real damage: refuse
        // rather than silently forget every recorded outcome.
        return IoStatus::failure(EBADMSG, j->label_ + ": " + found.tail_reason);
    }
    if (IoStatus st = j->reopen_locked(); !st.ok()) return st;
    if (found.ignored_bytes > 0) {
        // Cut the torn tail so that records appended from now on are readable.
        if (::ftruncate(j->fd_->get(), static_cast<off_t>(found.valid_bytes)) != 0) {
            return IoStatus::failure(errno, "truncate " + j->label_);
        }
        if (int e = fsync_fd(j->fd_->get())) return IoStatus::failure(e, "fsync " + j->label_);
    }
    j->size_ = found.valid_bytes;
    j->filled_ = found.valid_bytes + (found.ignored_bytes > 0 ? 0 : found.room_bytes);
    if (scan != nullptr) *scan = std::move(found);
    out = std::move(j);
    return IoStatus::success();
}

IoStatus Journal::reopen_locked() {
    auto fd = std::make_shared<UniqueFd>(
        ::openat(dir_fd_.get(), kFileName, O_RDWR | O_NOFOLLOW | O_CLOEXEC));
    if (!fd->valid()) return IoStatus::failure(errno, "open " + label_);
    fd_ = std::move(fd);
    return IoStatus::success();
}

IoStatus Journal::rewrite_locked(const std::function<bool(Mid)>& keep,
                                 const std::function<IoStatus()>& before_replace) {
    std::string bytes;
    if (int err = read_exact_at(fd_->get(), 0, static_cast<std::size_t>(size_), bytes)) {
        return IoStatus::failure(err, "read " + label_);
    }
    const JournalScan scan = parse_journal(bytes);
    std::string fresh(kJournalMagic);
    std::unordered_map<Mid, bool> kept;  // keep() may be a stat(): ask once per MID
    for (const JournalRecord& r : scan.records) {
        if (keep) {
            auto [it, fresh_mid] = kept.try_emplace(r.mid, false);
            if (fresh_mid) it->second = keep(r.mid);
            if (!it->second) continue;
        }
        fresh += encode_journal_record(r);
    }
    if (before_replace) {
        if (IoStatus st = before_replace(); !st.ok()) return st;
    }
    if (IoStatus st = atomic_replace(dir_fd_.get(), kFileName, fresh, label_); !st.ok()) {
        return st;
    }
    if (IoStatus st = reopen_locked(); !st.ok()) {
        broken_ = true;
        return st;
    }
    size_ = filled_ = fresh.size();
    broken_ = false;
    return IoStatus::success();
}

IoStatus Journal::append(std::span<const JournalRecord> records) {
    std::string buf;
    buf.reserve(records.size() * kRecordSize);
    for (const JournalRecord& r : records)
        buf += encode_journal_record(r);
    std::lock_guard<std::mutex> lock(mu_);
    if (broken_) {
        if (IoStatus st = rewrite_locked(nullptr, nullptr); !st.ok()) return st;
    }
    if (size_ + buf.size() > filled_) {
        const std::uint64_t want = (size_ + buf.size() + kRoomStep - 1) / kRoomStep * kRoomStep;
        if (write_zeros(fd_->get(), filled_, want) == 0) {
            filled_ = want;
        } else if (::ftruncate(fd_->get(), static_cast<off_t>(filled_)) != 0) {
            // No room to be had (ENOSPC): the records extend the file as they come.
        }
    }
    iovec iov{buf.data(), buf.size()};
    if (int err = pwritev_all(fd_->get(), &iov, 1, size_)) {
        // A partial record in the middle would hide every later one: cut it off.
        if (::ftruncate(fd_->get(), static_cast<off_t>(size_)) != 0) broken_ = true;
        filled_ = size_;
        return IoStatus::failure(err, "append " + label_);
    }
    size_ += buf.size();
    filled_ = std::max(filled_, size_);
    return IoStatus::success();
}

IoStatus Journal::sync() {
    std::shared_ptr<UniqueFd> fd;
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (broken_) {
            // Never fsync the same data twice: rewrite into a new, fsync'd file instead.
            IoStatus st = rewrite_locked(nullptr, nullptr);
            if (st.ok()) ++syncs_;
            return st;
        }
        fd = fd_;
    }
    int err;
    do {
        err = ::fdatasync(fd->get()) == 0 ? 0 : errno;
    } while (err == EINTR);
    std::lock_guard<std::mutex> lock(mu_);
    if (err != 0) {
        if (fd_ == fd) broken_ = true;
        return IoStatus::failure(err, "fdatasync " + label_);
    }
    ++syncs_;
    return IoStatus::success();
}

IoStatus Journal::compact(const std::function<bool(Mid)>& keep,
                          const std::function<IoStatus()>& before_replace) {
    std::lock_guard<std::mutex> lock(mu_);
    return rewrite_locked(keep, before_replace);
}

std::uint64_t Journal::size_bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return size_;
}

bool Journal::needs_compaction() const {
    return size_bytes() > threshold_;
}

bool Journal::broken() const {
    std::lock_guard<std::mutex> lock(mu_);
    return broken_;
}

std::uint64_t Journal::sync_count() const {
    std::lock_guard<std::mutex> lock(mu_);
    return syncs_;
}

IoStatus compact_journal(Store& store, Journal& journal) {
    return journal.compact([&store](Mid mid) { return store.has_message(mid); },
                           [&store] { return store.sync_removals(); });
}

}  // namespace esad::spool
