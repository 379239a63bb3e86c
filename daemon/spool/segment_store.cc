// segment_store — the log-structured spool backend; see segment_store.h.
#include "daemon/spool/segment_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>

#include "common/thread_policy.h"
#include "daemon/spool/crc32c.h"

namespace esad::spool {
namespace {

constexpr std::size_t kTombSize = 12;
constexpr std::size_t kCopyChunk = 1 << 20;
// A segment's room is prefilled with zeros this much at a time (see SegmentStore::prefill).
constexpr std::uint64_t kPrefillBytes = 1 << 20;
constexpr std::string_view kSegSuffix = ".seg";
constexpr std::string_view kDeadSuffix = ".dead";

std::string le32(std::uint32_t v) {
    std::string s(4, '\0');
    for (int i = 0; i < 4; ++i)
        s[static_cast<std::size_t>(i)] = static_cast<char>((v >> (8 * i)) & 0xFFu);
    return s;
}

std::uint32_t get_le32(std::string_view s, std::size_t pos) {
    std::uint32_t v = 0;
    for (int i = 3; i >= 0; --i)
        v = (v << 8) | static_cast<unsigned char>(s[pos + static_cast<std::size_t>(i)]);
    return v;
}

std::string seg_name(std::uint64_t seq, std::string_view suffix) {
    std::string name = mid_name(seq);
    name.append(suffix);
    return name;
}

std::string seg_label(std::uint64_t seq, std::string_view suffix = kSegSuffix) {
    std::string label = "segments/";
    label.append(seg_name(seq, suffix));
    return label;
}

// "<16 hex>.seg" / "<16 hex>.dead" → seq and which; false for anything else.
bool parse_seg_name(std::string_view name, std::uint64_t& seq, bool& dead) {
    if (name.size() < 17) return false;
    const std::string_view suffix = name.substr(16);
    if (suffix != kSegSuffix && suffix != kDeadSuffix) return false;
    dead = suffix == kDeadSuffix;
    return parse_mid_name(name.substr(0, 16), seq);
}

std::string tombstone(Mid mid) {
    std::string t = le64(mid);
    t += le32(crc32c(t));
    return t;
}

// Adds every valid tombstone of one .dead file to `dead` (a torn entry is skipped).
void read_tombstones(int dir_fd, const std::string& name, std::unordered_set<Mid>& dead) {
    std::string bytes;
    if (read_small_file(dir_fd, name, bytes) != 0) return;
    for (std::size_t pos = 0; pos + kTombSize <= bytes.size(); pos += kTombSize) {
        const std::string_view t(bytes.data() + pos, kTombSize);
        if (crc32c(t.substr(0, 8)) == get_le32(t, 8)) dead.insert(get_le64(t, 0));
    }
}

struct SegmentFiles {
    std::vector<std::uint64_t> segs;     // ascending
    std::vector<std::uint64_t> dead;     // .dead files
    std::vector<std::string> strangers;  // neither
};

int list_segments(int dir_fd, SegmentFiles& out) {
    std::vector<std::string> names;
    if (int err = list_dir(dir_fd, names)) return err;
    for (const std::string& n : names) {
        std::uint64_t seq = 0;
        bool dead = false;
        if (!parse_seg_name(n, seq, dead)) {
            out.strangers.push_back(n);
        } else {
            (dead ? out.dead : out.segs).push_back(seq);
        }
    }
    std::sort(out.segs.begin(), out.segs.end());
    return 0;
}

// True when [off, size) of fd holds only zero bytes (the prefilled room of a segment).
int zeros_to_end(int fd, std::uint64_t off, std::uint64_t size, bool& zeros) {
    std::string window;
    zeros = true;
    for (std::uint64_t pos = off; pos < size && zeros;) {
        const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(size - pos, kCopyChunk));
        if (int err = read_exact_at(fd, pos, n, window)) return err;
        zeros = window.find_first_not_of('\0') == std::string::npos;
        pos += n;
    }
    return 0;
}

// Walks the frames of one segment. at_frame(offset, mid, length) for each valid frame whose
// record fits; at_gap(offset, end) for bytes with no valid frame, `end` being the next valid
// frame or the end of the file. Zero bytes from where a frame is expected to the end of the
// file are the segment's prefilled room, not a gap: `data_end` is where they start (else
// `size`). Returns 0 or errno.
int walk_frames(int fd, std::uint64_t size,
                const std::function<void(std::uint64_t, Mid, std::uint64_t)>& at_frame,
                const std::function<void(std::uint64_t, std::uint64_t)>& at_gap,
                std::uint64_t* data_end = nullptr) {
    std::string frame;
    std::string window;
    std::uint64_t off = 0;
    if (data_end) *data_end = size;
    while (off < size) {
        Mid mid = 0;
        std::uint64_t len = 0;
        if (size - off >= kFrameSize) {
            if (int err = read_exact_at(fd, off, kFrameSize, frame)) return err;
            if (decode_frame(frame, mid, len) && len <= size - off - kFrameSize) {
                at_frame(off, mid, len);
                off += kFrameSize + len;
                continue;
            }
        }
        bool zeros = false;
        if (int err = zeros_to_end(fd, off, size, zeros)) return err;
        if (zeros) {
            if (data_end) *data_end = off;
            return 0;
        }
        // Resynchronise: the next magic followed by a valid frame whose record fits.
        std::uint64_t next = size;
        for (std::uint64_t pos = off + 1; pos < size && next == size;) {
            const auto n =
                static_cast<std::size_t>(std::min<std::uint64_t>(size - pos, kCopyChunk));
            if (int err = read_exact_at(fd, pos, n, window)) return err;
            for (std::size_t i = window.find(kSegmentMagic[0]); i != std::string::npos;
                 i = window.find(kSegmentMagic[0], i + 1)) {
                const std::uint64_t at = pos + i;
                if (size - at < kFrameSize) break;
                if (int err = read_exact_at(fd, at, kFrameSize, frame)) return err;
                if (decode_frame(frame, mid, len) && len <= size - at - kFrameSize) {
                    next = at;
                    break;
                }
            }
            pos += n;
        }
        at_gap(off, next);
        off = next;
    }
    return 0;
}

}  // namespace

std::string encode_frame(Mid mid, std::uint64_t length) {
    std::string f(kSegmentMagic);
    f += le64(mid);
    f += le64(length);
    f += le32(crc32c(f));
    return f;
}

bool decode_frame(std::string_view bytes, Mid& mid, std::uint64_t& length) {
    if (bytes.size() < kFrameSize || bytes.substr(0, 8) != kSegmentMagic) return false;
    if (crc32c(bytes.substr(0, 24)) != get_le32(bytes, 24)) return false;
    mid = get_le64(bytes, 8);
    length = get_le64(bytes, 16);
    return mid != 0;
}

struct SegmentStore::Copy {
    Mid mid;
    Loc from;
    std::string bytes;  // frame + record
    std::uint64_t at = 0;
};

IoStatus SegmentStore::open(StoreOptions options, std::unique_ptr<Store>& out) {
    StoreOptions inner = options;
    inner.layout = Layout::kHashed;
    std::unique_ptr<SegmentStore> s(new SegmentStore(std::move(options)));
    if (IoStatus st = Store::open(std::move(inner), s->files_); !st.ok()) return st;
    const std::string& spool = s->files_->spool_path();
    UniqueFd spool_fd;
    if (int err = open_dir(AT_FDCWD, spool, spool_fd)) {
        return IoStatus::failure(err, "open " + spool);
    }
    if (IoStatus st = ensure_dir(spool_fd.get(), "segments", spool + "/segments"); !st.ok()) {
        return st;
    }
    if (int err = open_dir(spool_fd.get(), "segments", s->seg_dir_)) {
        return IoStatus::failure(err, "open " + spool + "/segments");
    }
    if (int err = open_dir(spool_fd.get(), "corrupt", s->corrupt_fd_)) {
        return IoStatus::failure(err, "open " + spool + "/corrupt");
    }
    if (int err = fsync_fd(spool_fd.get())) return IoStatus::failure(err, "fsync " + spool);
    // Segments already there (a running daemon scans before it commits; a tool that commits
    // without scanning must not reuse their names).
    SegmentFiles files;
    if (int err = list_segments(s->seg_dir_.get(), files)) {
        return IoStatus::failure(err, "list segments/");
    }
    if (!files.segs.empty()) s->next_seq_ = files.segs.back() + 1;
    SegmentStore* raw = s.get();
    s->maintainer_ = std::thread([raw] {
        run_as_background_thread();
        raw->maintenance_loop();
    });
    out = std::move(s);
    return IoStatus::success();
}

SegmentStore::~SegmentStore() {
    if (!maintainer_.joinable()) return;
    {
        std::lock_guard<std::mutex> lock(wake_mu_);
        stopping_ = true;
    }
    wake_cv_.notify_one();
    maintainer_.join();
}

int SegmentStore::inject(FaultPoint point, Mid mid) const {
    return options_.fault_hook ? options_.fault_hook(point, mid) : 0;
}

void SegmentStore::mark_fsync_failed() {
    stats_.fsync_failures.fetch_add(1, std::memory_order_relaxed);
    healthy_.store(false, std::memory_order_release);
}

int SegmentStore::fsync_segments_dir() {
    stats_.dir_fsyncs.fetch_add(1, std::memory_order_relaxed);
    int err = inject(FaultPoint::kDirFsync, 0);
    if (err == 0) err = fsync_fd(seg_dir_.get());
    if (err != 0) mark_fsync_failed();
    return err;
}

bool SegmentStore::healthy() const {
    return healthy_.load(std::memory_order_acquire) && files_->healthy();
}

IoStatus SegmentStore::probe() {
    IoStatus st = files_->probe();
    if (st.ok()) healthy_.store(true, std::memory_order_release);
    return st;
}

SpaceCheck SegmentStore::space_ok(std::uint64_t max_message_size) const {
    SpaceCheck check = files_->space_ok(max_message_size);
    const bool was_short = space_short_.exchange(!check.ok);
    if (!check.ok && !was_short) wake();  // retire a finished current segment now
    return check;
}

std::shared_ptr<SegmentStore::Segment> SegmentStore::find_segment(std::uint64_t seq) const {
    auto it = segments_.find(seq);
    return it == segments_.end() ? nullptr : it->second;
}

IoStatus SegmentStore::ensure_current(std::uint64_t incoming) {
    std::shared_ptr<Segment> cur;
    {
        std::lock_guard<std::mutex> lock(mu_);
        cur = current_;
    }
    if (cur && (cur->size == 0 || cur->size + incoming <= options_.segment_bytes)) {
        return IoStatus::success();
    }
    auto seg = std::make_shared<Segment>();
    {
        std::lock_guard<std::mutex> lock(mu_);
        seg->seq = next_seq_++;
    }
    const std::string name = seg_name(seg->seq, kSegSuffix);
    if (int err = inject(FaultPoint::kCreate, 0)) {
        return IoStatus::failure(err, "create " + seg_label(seg->seq));
    }
    seg->fd.reset(::openat(seg_dir_.get(), name.c_str(),
                           O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!seg->fd.valid()) return IoStatus::failure(errno, "create " + seg_label(seg->seq));
    if (int err = seg->open_reader(seg_dir_.get(), name)) {
        ::unlinkat(seg_dir_.get(), name.c_str(), 0);
        return IoStatus::failure(err, "open " + seg_label(seg->seq));
    }
    // The name must be durable before anything in the segment is acknowledged.
    if (int err = fsync_segments_dir()) {
        ::unlinkat(seg_dir_.get(), name.c_str(), 0);
        return IoStatus::failure(err, "fsync segments/ for " + seg_label(seg->seq));
    }
    std::lock_guard<std::mutex> lock(mu_);
    segments_[seg->seq] = seg;
    current_ = std::move(seg);
    if (cur) wake();  // the old current may be reclaimable or compactable now
    return IoStatus::success();
}

void SegmentStore::prefill(std::uint64_t need) {
    Segment& seg = *current_;
    if (need <= seg.filled) return;
    std::uint64_t want = (need + kPrefillBytes - 1) / kPrefillBytes * kPrefillBytes;
    want = std::min(want, std::max(need, options_.segment_bytes));
    if (write_zeros(seg.fd.get(), seg.filled, want) != 0) {
        // No room to be had (ENOSPC): appends extend the file as they come.
        if (::ftruncate(seg.fd.get(), static_cast<off_t>(seg.filled)) != 0) {
            // Zeros past the data are the prefilled room to scan() either way.
        }
        return;
    }
    seg.filled = want;
}

int SegmentStore::append(Mid mid, const std::string_view* pieces, std::size_t n,
                         std::uint64_t& at) {
    Segment& seg = *current_;
    std::vector<iovec> iov(n);
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < n; ++i) {
        iov[i] = {const_cast<char*>(pieces[i].data()), pieces[i].size()};
        total += pieces[i].size();
    }
    int err = inject(FaultPoint::kWrite, mid);
    // The record first, its frame (pieces[0]) last: a write cut short by a crash leaves no
    // frame in front of a partial record, only bytes that scan() drops as a torn tail.
    if (err == 0) err = pwritev_all(seg.fd.get(), iov.data() + 1, n - 1, at + kFrameSize);
    if (err == 0) err = pwritev_all(seg.fd.get(), iov.data(), 1, at);
    if (err != 0) {
        // Nothing of a failed message may stay where the next one goes.
        if (::ftruncate(seg.fd.get(), static_cast<off_t>(at)) != 0) {
            // Its bytes stay but the next message overwrites them from `at`.
        }
        seg.filled = std::min(seg.filled, at);
        return err;
    }
    at += total;
    seg.filled = std::max(seg.filled, at);
    return 0;
}

int SegmentStore::sync_current(std::uint64_t start, Mid first_mid) {
    Segment& seg = *current_;
    stats_.file_fsyncs.fetch_add(1, std::memory_order_relaxed);
    int err = inject(FaultPoint::kFileFsync, first_mid);
    if (err == 0) err = fdatasync_fd(seg.fd.get());
    if (err == 0) return 0;
    // fsyncgate: what was written may be gone from the page cache; never retry, never append
    // after it. The cut makes the failed records unreachable; the next batch gets a new segment.
    mark_fsync_failed();
    seg.filled = std::min(seg.filled, start);
    if (::ftruncate(seg.fd.get(), static_cast<off_t>(start)) != 0) {
        // The records stay behind: answered 451, they may still be delivered after a restart
        // (a duplicate at worst, never a loss).
    }
    std::lock_guard<std::mutex> lock(mu_);
    current_.reset();
    return err;
}

void SegmentStore::index_insert(Mid mid, const Loc& loc) {
    index_[mid] = loc;
    if (auto seg = find_segment(loc.seq)) {
        ++seg->live_count;
        seg->live_bytes += kFrameSize + loc.size;
    }
}

void SegmentStore::commit_batch(std::vector<PendingMessage>& batch) {
    std::lock_guard<std::mutex> append_lock(append_mu_);
    std::uint64_t incoming = 0;
    for (const PendingMessage& pm : batch)
        incoming += kFrameSize + pm.message.content.size();
    IoStatus ready = ensure_current(std::min(incoming, options_.segment_bytes));
    struct Written {
        std::size_t i;
        Loc loc;
    };
    std::vector<Written> written;
    written.reserve(batch.size());
    std::uint64_t start = 0;
    std::uint64_t at = 0;
    if (ready.ok()) start = at = current_->size;
    std::unordered_set<Mid> in_batch;
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
        bool exists;
        {
            std::lock_guard<std::mutex> lock(mu_);
            exists = index_.count(env.mid) != 0 || legacy_.count(env.mid) != 0;
        }
        // EEXIST: a MID collision is an error, never an overwrite (REQ-D11).
        if (exists || !in_batch.insert(env.mid).second) {
            pm.result = IoStatus::failure(EEXIST, "commit " + name + ": MID already stored");
            continue;
        }
        int err = inject(FaultPoint::kCreate, env.mid);
        if (err == 0) err = inject(FaultPoint::kRename, env.mid);
        const EncodedParts parts = encode_parts(pm.message);
        const std::uint64_t len = parts.head.size() + pm.message.content.size() + parts.tail.size();
        const std::string frame = encode_frame(env.mid, len);
        const std::string_view pieces[] = {frame, parts.head, pm.message.content, parts.tail};
        const std::uint64_t offset = at;
        prefill(at + kFrameSize + len);
        if (err == 0) err = append(env.mid, pieces, 4, at);
        if (err != 0) {
            pm.result = IoStatus::failure(err, "write " + name + " to " + seg_label(current_->seq));
            continue;
        }
        written.push_back({i, Loc{current_->seq, offset + kFrameSize, len}});
    }
    if (!written.empty()) {
        const std::uint64_t seq = current_->seq;
        // Group commit: one fdatasync makes the whole batch durable.
        if (int err = sync_current(start, batch[written.front().i].message.envelope.mid)) {
            for (const Written& w : written)
                batch[w.i].result = IoStatus::failure(err, "fdatasync " + seg_label(seq));
        } else {
            std::lock_guard<std::mutex> lock(mu_);
            current_->size = at;
            for (const Written& w : written)
                index_insert(batch[w.i].message.envelope.mid, w.loc);
        }
    }
    stats_.batches.fetch_add(1, std::memory_order_relaxed);
    for (const PendingMessage& pm : batch)
        (pm.result.ok() ? stats_.commits_ok : stats_.commits_failed)
            .fetch_add(1, std::memory_order_relaxed);
}

LoadStatus SegmentStore::open_message(Mid mid, MessageRange& out, std::string& reason) const {
    std::shared_ptr<Segment> seg;
    Loc loc;
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (legacy_.count(mid) != 0) return files_->open_message(mid, out, reason);
        auto it = index_.find(mid);
        if (it != index_.end()) {
            loc = it->second;
            seg = find_segment(loc.seq);
        }
    }
    if (!seg) {
        reason = "message " + mid_name(mid) + " is not in the spool";
        return LoadStatus::kMissing;
    }
    out.fd.reset(::fcntl(seg->rfd.get(), F_DUPFD_CLOEXEC, 0));
    if (!out.fd.valid()) {
        reason = IoStatus::failure(errno, "dup " + seg_label(loc.seq)).reason();
        return LoadStatus::kIoError;
    }
    out.offset = loc.offset;
    out.size = loc.size;
    return LoadStatus::kOk;
}

LoadResult SegmentStore::load_content(Mid mid) const {
    return load_message(*this, mid);
}

bool SegmentStore::has_message(Mid mid) const {
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (index_.count(mid) != 0) return true;
        if (legacy_.count(mid) == 0) return false;
    }
    return files_->has_message(mid);
}

IoStatus SegmentStore::remove_message(Mid mid) {
    bool notify = false;
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (legacy_.erase(mid) == 0) {
            auto it = index_.find(mid);
            if (it == index_.end()) return IoStatus::success();  // already gone
            const Loc loc = it->second;
            index_.erase(it);
            pending_dead_[loc.seq].push_back(mid);
            if (auto seg = find_segment(loc.seq)) {
                --seg->live_count;
                seg->live_bytes -= kFrameSize + loc.size;
                notify = maintenance_due(*seg);
            }
            stats_.removed.fetch_add(1, std::memory_order_relaxed);
            mid = 0;
        }
    }
    if (notify) wake();
    if (mid != 0) return files_->remove_message(mid);
    return IoStatus::success();
}

IoStatus SegmentStore::sync_removals() {
    std::lock_guard<std::mutex> tomb_lock(tomb_mu_);
    std::map<std::uint64_t, std::vector<Mid>> pending;
    {
        std::lock_guard<std::mutex> lock(mu_);
        pending.swap(pending_dead_);
    }
    IoStatus result;
    std::map<std::uint64_t, std::vector<Mid>> failed;
    for (auto& [seq, mids] : pending) {
        bool exists;
        bool had_file;
        {
            std::lock_guard<std::mutex> lock(mu_);
            exists = segments_.count(seq) != 0;
            had_file = dead_files_.count(seq) != 0;
        }
        if (!exists) continue;  // reclaimed: its unlink is durable, so are these removals
        std::string bytes;
        bytes.reserve(mids.size() * kTombSize);
        for (Mid mid : mids)
            bytes += tombstone(mid);
        const std::string name = seg_name(seq, kDeadSuffix);
        UniqueFd fd(::openat(seg_dir_.get(), name.c_str(),
                             O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
        int err = fd.valid() ? 0 : errno;
        if (err == 0) err = write_all(fd.get(), bytes);
        if (err == 0) {
            stats_.file_fsyncs.fetch_add(1, std::memory_order_relaxed);
            err = fdatasync_fd(fd.get());
            if (err != 0) mark_fsync_failed();
        }
        if (err != 0) {
            // Written again (not merely synced again) by the next sync_removals().
            if (result.ok())
                result = IoStatus::failure(err, "write " + seg_label(seq, kDeadSuffix));
            failed[seq] = std::move(mids);
            continue;
        }
        if (!had_file) {
            std::lock_guard<std::mutex> lock(mu_);
            dead_files_.insert(seq);
            dir_dirty_ = true;
        }
    }
    bool dirty;
    {
        std::lock_guard<std::mutex> lock(mu_);
        for (auto& [seq, mids] : failed) {
            auto& v = pending_dead_[seq];
            v.insert(v.end(), mids.begin(), mids.end());
        }
        dirty = dir_dirty_;
        dir_dirty_ = false;
    }
    if (dirty) {
        if (int err = fsync_segments_dir()) {
            std::lock_guard<std::mutex> lock(mu_);
            dir_dirty_ = true;
            if (result.ok()) result = IoStatus::failure(err, "fsync segments/");
        }
    }
    if (!pending.empty()) stats_.removal_batches.fetch_add(1, std::memory_order_relaxed);
    IoStatus files = files_->sync_removals();
    return result.ok() ? files : result;
}

IoStatus SegmentStore::copy_out(int fd, std::uint64_t offset, std::uint64_t size,
                                const std::string& name, std::string* moved_to) {
    std::string target = name;
    UniqueFd out;
    for (int n = 1; n < 1000 && !out.valid(); ++n) {
        out.reset(::openat(corrupt_fd_.get(), target.c_str(),
                           O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
        if (!out.valid() && errno != EEXIST) break;
        if (!out.valid()) target = name + "." + std::to_string(n);
    }
    if (!out.valid()) return IoStatus::failure(errno, "create corrupt/" + target);
    std::string buf;
    int err = 0;
    for (std::uint64_t off = 0; off < size && err == 0;) {
        const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(size - off, kCopyChunk));
        err = read_exact_at(fd, offset + off, n, buf);
        if (err == 0) err = write_all(out.get(), buf);
        off += n;
    }
    if (err == 0) err = fsync_fd(out.get());
    if (err == 0) err = out.close_checked();
    if (err == 0) err = fsync_fd(corrupt_fd_.get());
    if (err != 0) {
        ::unlinkat(corrupt_fd_.get(), target.c_str(), 0);
        return IoStatus::failure(err, "copy to corrupt/" + target);
    }
    stats_.quarantined.fetch_add(1, std::memory_order_relaxed);
    if (moved_to != nullptr) *moved_to = target;
    return IoStatus::success();
}

IoStatus SegmentStore::quarantine(Mid mid, std::string* moved_to) {
    std::shared_ptr<Segment> seg;
    Loc loc;
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (legacy_.count(mid) != 0) {
            legacy_.erase(mid);
            seg = nullptr;
        } else {
            auto it = index_.find(mid);
            if (it == index_.end()) {
                return IoStatus::failure(ENOENT, "quarantine " + mid_name(mid));
            }
            loc = it->second;
            seg = find_segment(loc.seq);
        }
    }
    if (!seg) return files_->quarantine(mid, moved_to);
    if (IoStatus st = copy_out(seg->fd.get(), loc.offset, loc.size, mid_name(mid), moved_to);
        !st.ok()) {
        return st;
    }
    // The copy is durable; now the record must never be delivered, even after a crash.
    remove_message(mid);
    return sync_removals();
}

IoStatus SegmentStore::scan(const RecoveryOptions& options, StoreScan& out,
                            const std::function<void(StoredMessage&&)>& visit) {
    struct Found {
        StoredMessage msg;
        Loc loc;
        bool legacy = false;
    };
    std::vector<Found> found;
    // 1. Message files a file layout left in queue/ (and the file layouts' housekeeping).
    if (IoStatus st = files_->scan(options, out,
                                   [&](StoredMessage&& sm) {
                                       found.push_back({std::move(sm), {}, true});
                                   });
        !st.ok()) {
        return st;
    }
    // 2. Tombstones.
    SegmentFiles files;
    if (int err = list_segments(seg_dir_.get(), files)) {
        return IoStatus::failure(err, "list segments/");
    }
    for (const std::string& n : files.strangers)
        out.skipped.push_back({"segments/" + n, "not a segment name"});
    std::unordered_set<Mid> dead;
    std::unordered_set<std::uint64_t> dead_files;
    for (std::uint64_t seq : files.dead) {
        if (!std::binary_search(files.segs.begin(), files.segs.end(), seq)) {
            // Its segment is gone (the unlink was made durable first): nothing left to cover.
            ::unlinkat(seg_dir_.get(), seg_name(seq, kDeadSuffix).c_str(), 0);
            continue;
        }
        read_tombstones(seg_dir_.get(), seg_name(seq, kDeadSuffix), dead);
        dead_files.insert(seq);
    }
    // 3. Every segment, frame by frame.
    std::map<std::uint64_t, std::shared_ptr<Segment>> segments;
    std::vector<std::pair<std::uint64_t, Mid>> corrupt_records;  // tombstoned below
    std::string buf;
    for (std::size_t si = 0; si < files.segs.size(); ++si) {
        const std::uint64_t seq = files.segs[si];
        const bool newest = si + 1 == files.segs.size();
        auto seg = std::make_shared<Segment>();
        seg->seq = seq;
        const std::string name = seg_name(seq, kSegSuffix);
        seg->fd.reset(::openat(seg_dir_.get(), name.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
        struct stat st {};
        if (!seg->fd.valid() || ::fstat(seg->fd.get(), &st) != 0 ||
            seg->open_reader(seg_dir_.get(), name) != 0) {
            out.skipped.push_back({seg_label(seq), IoStatus::failure(errno, "open").reason()});
            continue;
        }
        if (!S_ISREG(st.st_mode)) {
            out.skipped.push_back({seg_label(seq), "not a regular file"});
            continue;
        }
        const auto size = static_cast<std::uint64_t>(st.st_size);
        std::uint64_t cut = size;  // cut the segment here (bad bytes with nothing after them)
        std::uint64_t data_end = size;
        const int err = walk_frames(
            seg->fd.get(), size,
            [&](std::uint64_t off, Mid mid, std::uint64_t len) {
                out.max_mid_seen = std::max(out.max_mid_seen, mid);
                if (dead.count(mid) != 0) return;
                RecordCheck rc =
                    check_record(seg->fd.get(), off + kFrameSize, len, mid, options, buf);
                if (rc.kind == RecordCheck::Kind::kOk) {
                    found.push_back({StoredMessage{std::move(rc.envelope), len},
                                     Loc{seq, off + kFrameSize, len}, false});
                    return;
                }
                std::string where = seg_label(seq) + "@" + std::to_string(off);
                if (rc.kind == RecordCheck::Kind::kSkip) {
                    out.skipped.push_back({where, rc.reason});
                    return;
                }
                QuarantinedFile q{where, "", rc.status, rc.reason};
                if (IoStatus cs =
                        copy_out(seg->fd.get(), off, kFrameSize + len, mid_name(mid), &q.moved_to);
                    !cs.ok()) {
                    q.reason += "; " + cs.reason();
                } else {
                    corrupt_records.emplace_back(seq, mid);
                }
                out.quarantined.push_back(std::move(q));
            },
            [&](std::uint64_t off, std::uint64_t end) {
                std::string where = seg_label(seq) + "@" + std::to_string(off);
                if (end == size) cut = off;
                if (end == size && newest) {
                    // An unfinished batch's torn tail: never acknowledged.
                    out.skipped.push_back(
                        {where, "torn tail of " + std::to_string(end - off) + " bytes cut off"});
                    return;
                }
                QuarantinedFile q{where, "", DecodeStatus::kMalformed,
                                  std::to_string(end - off) + " bytes without a valid frame"};
                std::string name = seg_name(seq, kSegSuffix) + "@" + std::to_string(off);
                if (IoStatus cs = copy_out(seg->fd.get(), off, end - off, name, &q.moved_to);
                    !cs.ok()) {
                    q.reason += "; " + cs.reason();
                    if (end == size) cut = size;  // not copied: leave the bytes alone
                }
                out.quarantined.push_back(std::move(q));
            },
            &data_end);
        if (err != 0) {
            out.skipped.push_back({seg_label(seq), IoStatus::failure(err, "read").reason()});
            cut = data_end = size;
        }
        seg->filled = size;
        if (cut < size && ::ftruncate(seg->fd.get(), static_cast<off_t>(cut)) == 0) {
            fdatasync_fd(seg->fd.get());
            seg->filled = cut;
        }
        seg->size = std::min(cut, data_end);
        segments[seq] = std::move(seg);
    }
    // 4. Ascending MID; a MID twice (a compaction copy the crash interrupted): the newest copy.
    std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) {
        if (a.msg.envelope.mid != b.msg.envelope.mid)
            return a.msg.envelope.mid < b.msg.envelope.mid;
        if (a.legacy != b.legacy) return a.legacy;  // a segment copy wins over a queue/ file
        return a.loc.seq < b.loc.seq;
    });
    std::vector<Found*> keep;
    keep.reserve(found.size());
    for (std::size_t i = 0; i < found.size(); ++i) {
        const Mid mid = found[i].msg.envelope.mid;
        out.max_mid_seen = std::max(out.max_mid_seen, mid);
        if (i + 1 < found.size() && found[i + 1].msg.envelope.mid == mid) {
            if (found[i].legacy) {
                out.skipped.push_back({mid_name(mid), "also in a segment: the queue file is left"});
            }
            continue;
        }
        keep.push_back(&found[i]);
    }
    {
        std::lock_guard<std::mutex> lock(mu_);
        segments_ = std::move(segments);
        current_.reset();
        if (!segments_.empty()) next_seq_ = std::max(next_seq_, segments_.rbegin()->first + 1);
        index_.clear();
        legacy_.clear();
        index_.reserve(keep.size());
        for (Found* f : keep) {
            if (f->legacy) {
                legacy_.insert(f->msg.envelope.mid);
            } else {
                index_insert(f->msg.envelope.mid, f->loc);
            }
        }
        for (auto [seq, mid] : corrupt_records)
            pending_dead_[seq].push_back(mid);
        dead_files_ = std::move(dead_files);
        dir_dirty_ = true;
    }
    for (Found* f : keep)
        visit(std::move(f->msg));
    wake();
    return IoStatus::success();
}

IoStatus SegmentStore::compact(std::uint64_t seq, Maintenance& done) {
    std::shared_ptr<Segment> old;
    std::vector<Copy> copies;
    {
        std::lock_guard<std::mutex> lock(mu_);
        old = find_segment(seq);
        if (!old || old == current_) return IoStatus::success();
        for (const auto& [mid, loc] : index_) {
            if (loc.seq == seq) copies.push_back({mid, loc, {}, 0});
        }
    }
    std::uint64_t bytes = 0;
    for (Copy& c : copies) {
        if (int err = read_exact_at(old->fd.get(), c.from.offset - kFrameSize,
                                    static_cast<std::size_t>(kFrameSize + c.from.size), c.bytes)) {
            return IoStatus::failure(err, "read " + seg_label(seq));
        }
        bytes += c.bytes.size();
    }
    std::lock_guard<std::mutex> append_lock(append_mu_);
    if (IoStatus st = ensure_current(std::min(bytes, options_.segment_bytes)); !st.ok()) return st;
    const std::uint64_t target = current_->seq;
    const std::uint64_t start = current_->size;
    std::uint64_t at = start;
    prefill(start + bytes);
    for (Copy& c : copies) {
        c.at = at;
        const std::string_view bytes_of(c.bytes);
        const std::string_view pieces[] = {bytes_of.substr(0, kFrameSize),
                                           bytes_of.substr(kFrameSize)};
        if (int err = append(c.mid, pieces, 2, at)) {
            ::ftruncate(current_->fd.get(), static_cast<off_t>(start));
            current_->filled = std::min(current_->filled, start);
            return IoStatus::failure(err, "copy to " + seg_label(target));
        }
    }
    if (!copies.empty()) {
        if (int err = sync_current(start, copies.front().mid)) {
            return IoStatus::failure(err, "fdatasync " + seg_label(target));
        }
    }
    std::lock_guard<std::mutex> lock(mu_);
    current_->size = at;
    for (const Copy& c : copies) {
        const Loc to{target, c.at + kFrameSize, c.from.size};
        auto it = index_.find(c.mid);
        if (it == index_.end() || it->second.seq != seq) {
            // Removed while it was copied: the new copy needs its own tombstone.
            pending_dead_[target].push_back(c.mid);
            continue;
        }
        --old->live_count;
        old->live_bytes -= kFrameSize + c.from.size;
        index_.erase(it);
        index_insert(c.mid, to);
    }
    ++done.compacted;
    done.copied += copies.size();
    return IoStatus::success();
}

IoStatus SegmentStore::reclaim(std::uint64_t seq, Maintenance& done) {
    std::lock_guard<std::mutex> tomb_lock(tomb_mu_);
    {
        std::lock_guard<std::mutex> lock(mu_);
        auto seg = find_segment(seq);
        if (!seg || seg == current_ || seg->live_count != 0) return IoStatus::success();
        segments_.erase(seq);
        pending_dead_.erase(seq);
        dead_files_.erase(seq);
    }
    if (::unlinkat(seg_dir_.get(), seg_name(seq, kSegSuffix).c_str(), 0) != 0 && errno != ENOENT) {
        return IoStatus::failure(errno, "unlink " + seg_label(seq));
    }
    // The segment must be durably gone before its tombstones are.
    if (int err = fsync_segments_dir()) return IoStatus::failure(err, "fsync segments/");
    // Also one a failed tombstone write (ENOSPC) created but never recorded.
    ::unlinkat(seg_dir_.get(), seg_name(seq, kDeadSuffix).c_str(), 0);
    ++done.reclaimed;
    return IoStatus::success();
}

void SegmentStore::reclaim_oldest(const std::vector<std::uint64_t>& dead, std::uint64_t failed,
                                  Maintenance& done) {
    std::vector<std::uint64_t> prefix;
    {
        std::lock_guard<std::mutex> lock(mu_);
        for (const auto& [seq, seg] : segments_) {
            if (seq > failed || !std::binary_search(dead.begin(), dead.end(), seq)) break;
            prefix.push_back(seq);
        }
        for (const auto& [seq, mids] : pending_dead_)
            if (!mids.empty() && !std::binary_search(prefix.begin(), prefix.end(), seq)) return;
    }
    for (std::uint64_t seq : prefix)
        if (!reclaim(seq, done).ok()) return;
}

IoStatus SegmentStore::maintain(Maintenance* done) {
    std::lock_guard<std::mutex> maintain_lock(maintain_mu_);
    Maintenance local;
    Maintenance& d = done != nullptr ? *done : local;
    {
        // A fully dead current segment of some size is retired (the next commit starts a new
        // one); a small one stays, so a queue that empties often does not churn segments,
        // unless space is short: then its bytes are what lets mail in again.
        std::lock_guard<std::mutex> append_lock(append_mu_);
        std::lock_guard<std::mutex> lock(mu_);
        if (current_ && maintenance_due(*current_)) current_.reset();
    }
    std::vector<std::uint64_t> dead, sparse;
    {
        std::lock_guard<std::mutex> lock(mu_);
        for (const auto& [seq, seg] : segments_) {
            if (seg == current_ || !maintenance_due(*seg)) continue;
            (seg->live_count == 0 ? dead : sparse).push_back(seq);
        }
    }
    IoStatus result;
    std::uint64_t failed = UINT64_MAX;  // the oldest segment whose compaction failed
    for (std::uint64_t seq : sparse) {
        IoStatus st = compact(seq, d);
        if (st.ok()) {
            dead.push_back(seq);
        } else {
            failed = std::min(failed, seq);
            if (result.ok()) result = st;
        }
    }
    if (dead.empty()) return result;
    // A segment's .dead file goes with it, and the journal may already have forgotten the
    // outcomes its tombstones stand for. So every tombstone still in memory is made durable
    // first: among them those of messages finished while compact() copied them, whose only
    // tombstone would otherwise be the one in the old segment's .dead file (the copy would
    // come back after a crash).
    std::sort(dead.begin(), dead.end());
    if (IoStatus st = sync_removals(); !st.ok()) {
        // A full disk refuses the tombstone writes, and a full spool must still free what its
        // delivered messages hold: the oldest wholly finished segments may go without their
        // tombstones when no other segment waits for one. Nothing older holds a copy of their
        // messages, and the unlink is their tombstone.
        reclaim_oldest(dead, failed, d);
        return result.ok() ? st : result;
    }
    // Oldest first, and none newer than a segment that could not be compacted: a tombstone in
    // X.dead also covers the older copy a compaction interrupted by a crash left in an older
    // segment, so X.dead must not go while that segment stays.
    for (std::uint64_t seq : dead) {
        if (seq > failed) break;
        if (IoStatus st = reclaim(seq, d); !st.ok()) {
            if (result.ok()) result = st;
            break;
        }
    }
    return result;
}

std::vector<std::uint64_t> SegmentStore::segment_seqs() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::uint64_t> seqs;
    for (const auto& [seq, seg] : segments_)
        seqs.push_back(seq);
    return seqs;
}

// What maintain() acts on (mu_ held). A finished segment is unlinked; the current one only
// when it is big enough to be worth a new one or space is short. A mostly finished segment
// at least two older than the current one is compacted. A removal wakes maintenance only
// for these: in steady traffic nearly every removal is from the current segment, whose live
// bytes are a small part of it, and waking a thread for each would do nothing each time.
bool SegmentStore::maintenance_due(const Segment& seg) const {
    if (&seg == current_.get())
        return seg.live_count == 0 && seg.size > 0 &&
               (seg.size >= options_.segment_bytes / 4 || space_short_);
    if (seg.live_count == 0) return true;
    const std::uint64_t cur = current_ ? current_->seq : next_seq_;
    return seg.seq + 2 <= cur && seg.live_bytes * 4 <= seg.size;
}

void SegmentStore::wake() const {
    stats_.maintenance_wakeups.fetch_add(1, std::memory_order_relaxed);
    {
        std::lock_guard<std::mutex> lock(wake_mu_);
        wake_ = true;
    }
    wake_cv_.notify_one();
}

void SegmentStore::maintenance_loop() {
    for (;;) {
        {
            std::unique_lock<std::mutex> lock(wake_mu_);
            wake_cv_.wait_for(lock, std::chrono::seconds(5), [this] { return stopping_ || wake_; });
            if (stopping_) return;
            wake_ = false;
        }
        // Failures leave the segment for the next round (an unhealthy disk is probed by the
        // daemon meanwhile); nothing acknowledged depends on maintenance.
        maintain(nullptr);
    }
}

StoreStats SegmentStore::stats() const {
    StoreStats s = stats_.snapshot();
    add_inner_stats(s, files_->stats());
    return s;
}

int SegmentStore::read_records(const std::string& spool_path,
                               const std::function<void(Mid, std::string_view)>& visit) {
    UniqueFd dir;
    if (int err = open_dir(AT_FDCWD, spool_path + "/segments", dir)) return err;
    SegmentFiles files;
    if (int err = list_segments(dir.get(), files)) return err;
    std::unordered_set<Mid> dead;
    for (std::uint64_t seq : files.dead)
        read_tombstones(dir.get(), seg_name(seq, kDeadSuffix), dead);
    std::map<Mid, std::string> newest;
    for (std::uint64_t seq : files.segs) {
        UniqueFd fd(::openat(dir.get(), seg_name(seq, kSegSuffix).c_str(),
                             O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
        struct stat st {};
        if (!fd.valid() || ::fstat(fd.get(), &st) != 0) continue;
        walk_frames(
            fd.get(), static_cast<std::uint64_t>(st.st_size),
            [&](std::uint64_t off, Mid mid, std::uint64_t len) {
                if (dead.count(mid) != 0) return;
                std::string bytes;
                if (read_exact_at(fd.get(), off + kFrameSize, static_cast<std::size_t>(len),
                                  bytes) == 0) {
                    newest[mid] = std::move(bytes);
                }
            },
            [](std::uint64_t, std::uint64_t) {});
    }
    for (const auto& [mid, bytes] : newest)
        visit(mid, bytes);
    return 0;
}

}  // namespace esad::spool
