// recovery — see recovery.h.
#include "daemon/spool/recovery.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "daemon/spool/crc32c.h"

namespace esad::spool {
namespace {

using FinalSet = std::vector<std::pair<Mid, std::uint32_t>>;  // sorted (MID, RID)

// Lists a directory's entry names (not "." / ".."); the fd is not consumed.
int list_dir(int dir_fd, std::vector<std::string>& names) {
    const int dup_fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dup_fd < 0) return errno;
    DIR* dir = ::fdopendir(dup_fd);
    if (dir == nullptr) {
        const int err = errno;
        ::close(dup_fd);
        return err;
    }
    errno = 0;
    while (dirent* e = ::readdir(dir)) {
        const std::string_view n = e->d_name;
        if (n != "." && n != "..") names.emplace_back(n);
        errno = 0;
    }
    const int err = errno;
    ::closedir(dir);
    return err;
}

struct FileCheck {
    enum class Kind { kOk, kCorrupt, kSkip } kind = Kind::kOk;
    DecodeStatus status = DecodeStatus::kOk;
    std::string reason;
    Envelope envelope;
    std::uint64_t size = 0;
};

FileCheck corrupt(DecodeStatus status, std::string reason) {
    FileCheck c;
    c.kind = FileCheck::Kind::kCorrupt;
    c.status = status;
    c.reason = std::move(reason);
    return c;
}

FileCheck skip(std::string reason) {
    FileCheck c;
    c.kind = FileCheck::Kind::kSkip;
    c.reason = std::move(reason);
    return c;
}

FileCheck check_file(int queue_fd, const std::string& name, Mid mid, const RecoveryOptions& options,
                     std::string& buf) {
    struct stat st {};
    if (::fstatat(queue_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        return skip(IoStatus::failure(errno, "stat").reason());
    }
    if (!S_ISREG(st.st_mode)) return skip("not a regular file (never followed)");
    if (st.st_nlink != 1) {
        // Another name (a backup tool's hard link, an operator's copy) can change the content
        // behind the spool: never deliver it, quarantine it where an operator looks.
        return corrupt(DecodeStatus::kMalformed,
                       "hard-linked: " + std::to_string(st.st_nlink) +
                           " names share this file, so its content is not the spool's alone");
    }
    UniqueFd fd(::openat(queue_fd, name.c_str(),
                         O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
    if (!fd.valid()) return skip(IoStatus::failure(errno, "open").reason());
    if (::fstat(fd.get(), &st) != 0) return skip(IoStatus::failure(errno, "fstat").reason());
    if (!S_ISREG(st.st_mode)) return skip("not a regular file");
    const auto size = static_cast<std::uint64_t>(st.st_size);

    // Envelope: read a chunk, more only if the envelope is larger.
    std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(size, options.read_chunk));
    EnvelopeDecodeResult env;
    for (;;) {
        if (int err = read_exact_at(fd.get(), 0, want, buf)) {
            return skip(IoStatus::failure(err, "read").reason());
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
    if (env.status != DecodeStatus::kOk) return corrupt(env.status, env.reason);
    if (env.envelope.mid != mid) {
        return corrupt(DecodeStatus::kMalformed, "MID in file does not match its name");
    }
    // Trailer, and optionally the whole-file checksum, streamed chunk by chunk.
    std::optional<std::uint32_t> crc;
    if (options.verify_content) {
        Crc32c sum;
        const std::uint64_t end = size - kTrailerSize;
        for (std::uint64_t off = 0; off < end;) {
            const auto n = static_cast<std::size_t>(
                std::min<std::uint64_t>(end - off, std::max<std::size_t>(options.read_chunk, 1)));
            if (int err = read_exact_at(fd.get(), off, n, buf)) {
                return skip(IoStatus::failure(err, "read").reason());
            }
            sum.update(buf);
            off += n;
        }
        crc = sum.value();
    }
    if (int err = read_exact_at(fd.get(), size - kTrailerSize, kTrailerSize, buf)) {
        return skip(IoStatus::failure(err, "read").reason());
    }
    std::string reason;
    const DecodeStatus ts = check_trailer(buf, size, crc, &reason);
    if (ts != DecodeStatus::kOk) return corrupt(ts, reason);
    FileCheck ok;
    ok.envelope = std::move(env.envelope);
    ok.size = size;
    return ok;
}

bool is_final(const FinalSet& finals, Mid mid, std::uint32_t rid) {
    return std::binary_search(finals.begin(), finals.end(), std::make_pair(mid, rid));
}

}  // namespace

IoStatus recover(Store& store, Journal& journal, const JournalScan& scan, MidAllocator& mids,
                 const RecoveryOptions& options, RecoveryReport& report) {
    report = RecoveryReport{};
    // 1. Stale temporaries: never committed, never answered 250.
    std::vector<std::string> names;
    if (int err = list_dir(store.tmp_fd(), names)) return IoStatus::failure(err, "list tmp/");
    for (const std::string& n : names) {
        if (::unlinkat(store.tmp_fd(), n.c_str(), 0) == 0) {
            ++report.stale_tmp_removed;
        } else {
            report.skipped.push_back({"tmp/" + n, IoStatus::failure(errno, "unlink").reason()});
        }
    }

    // 2. The journal's final states, sorted for lookup.
    FinalSet finals;
    finals.reserve(scan.records.size());
    for (const JournalRecord& r : scan.records) {
        finals.emplace_back(r.mid, r.rid);
        report.max_mid_seen = std::max(report.max_mid_seen, r.mid);
    }
    std::sort(finals.begin(), finals.end());
    finals.erase(std::unique(finals.begin(), finals.end()), finals.end());
    report.journal_records = scan.records.size();
    report.journal_ignored_bytes = scan.ignored_bytes;
    report.journal_tail_reason = scan.tail_reason;

    // 3. MIDs already quarantined must never be reused either.
    names.clear();
    if (int err = list_dir(store.corrupt_fd(), names)) {
        return IoStatus::failure(err, "list corrupt/");
    }
    for (const std::string& n : names) {
        Mid mid = 0;
        if (parse_mid_name(std::string_view(n).substr(0, 16), mid)) {
            report.max_mid_seen = std::max(report.max_mid_seen, mid);
        }
    }

    // 4. The queue.
    names.clear();
    if (int err = list_dir(store.queue_fd(), names)) return IoStatus::failure(err, "list queue/");
    std::sort(names.begin(), names.end());
    std::string buf;
    for (const std::string& n : names) {
        Mid mid = 0;
        if (!parse_mid_name(n, mid)) {
            report.skipped.push_back({"queue/" + n, "name is not a MID"});
            continue;
        }
        report.max_mid_seen = std::max(report.max_mid_seen, mid);
        FileCheck fc = check_file(store.queue_fd(), n, mid, options, buf);
        if (fc.kind == FileCheck::Kind::kSkip) {
            report.skipped.push_back({"queue/" + n, fc.reason});
            continue;
        }
        if (fc.kind == FileCheck::Kind::kCorrupt) {
            QuarantinedFile q{n, "", fc.status, fc.reason};
            if (IoStatus st = store.quarantine_file(n, false, &q.moved_to); !st.ok()) {
                q.reason += "; " + st.reason();
            }
            report.quarantined.push_back(std::move(q));
            continue;
        }
        RecoveredMessage m;
        m.file_size = fc.size;
        m.total_recipients = static_cast<std::uint32_t>(fc.envelope.recipients.size());
        std::vector<Recipient>& rcpts = fc.envelope.recipients;
        rcpts.erase(
            std::remove_if(rcpts.begin(), rcpts.end(),
                           [&](const Recipient& r) { return is_final(finals, mid, r.rid); }),
            rcpts.end());
        if (rcpts.empty()) {
            // Every outcome is journaled: finish the removal the crash interrupted.
            if (IoStatus st = store.remove_message(mid); !st.ok()) {
                report.skipped.push_back({"queue/" + n, st.reason()});
            } else {
                ++report.completed_removed;
            }
            continue;
        }
        rcpts.shrink_to_fit();
        m.envelope = std::move(fc.envelope);
        report.live_recipients += m.envelope.recipients.size();
        report.messages.push_back(std::move(m));
    }
    if (!report.quarantined.empty()) {
        if (IoStatus st = store.sync_corrupt_dir(); !st.ok()) return st;
    }

    // 5. Journal compaction: keep only live messages' records. The queue/ sync first makes
    // the removals and quarantine moves durable before their records go (sync also when
    // nothing changed here: earlier runtime removals may still be unsynced).
    auto live = [&report](Mid mid) {
        auto it =
            std::lower_bound(report.messages.begin(), report.messages.end(), mid,
                             [](const RecoveredMessage& m, Mid v) { return m.envelope.mid < v; });
        return it != report.messages.end() && it->envelope.mid == mid;
    };
    // A full file system defers the compaction (the old journal stays whole and valid) and
    // the MID reservation: the daemon must start on a full spool, since delivering is what
    // frees space.
    if (IoStatus st = journal.compact(live, [&store] { return store.sync_queue_dir(); });
        !st.ok()) {
        if (st.error_class() != ErrorClass::kNoSpace) return st;
        report.journal_compaction_error = st.reason();
    }

    // 6. New MIDs start above everything seen.
    if (IoStatus st = mids.observe(report.max_mid_seen); !st.ok()) {
        if (st.error_class() != ErrorClass::kNoSpace) return st;
        report.mid_reservation_error = st.reason();
    }
    return IoStatus::success();
}

IoStatus open_spool(SpoolOptions options, Spool& spool, RecoveryReport& report) {
    Spool s;
    if (IoStatus st = Store::open(std::move(options.store), s.store); !st.ok()) return st;
    JournalScan scan;
    if (IoStatus st =
            Journal::open(s.store->spool_path(), options.journal_compact_bytes, s.journal, &scan);
        !st.ok()) {
        return st;
    }
    if (IoStatus st = MidAllocator::open(s.store->spool_path(), options.mid_block, s.mids);
        !st.ok()) {
        return st;
    }
    if (IoStatus st = recover(*s.store, *s.journal, scan, *s.mids, options.recovery, report);
        !st.ok()) {
        return st;
    }
    if (report.mid_reservation_error.empty() && !s.mids->available())
        report.mid_reservation_error = s.mids->last_refill_error().reason();
    spool = std::move(s);
    return IoStatus::success();
}

}  // namespace esad::spool
