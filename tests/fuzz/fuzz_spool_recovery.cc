// Fuzz target: startup recovery on an arbitrary spool (daemon/spool/recovery.*): message
// files and the journal hold fuzzed bytes (and sometimes a valid message), under valid,
// extreme (ffffffffffffffff) and invalid names.
// Properties: open_spool never crashes; every recovered message was a valid file under its
// own MID name; every quarantined file left queue/; afterwards the MID allocator either
// hands out a MID above everything seen or refuses (it never wraps to 0 or reuses one).
#include <dirent.h>
#include <fcntl.h>
#include <fuzzer/FuzzedDataProvider.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "daemon/spool/recovery.h"

using namespace esad::spool;

namespace {
std::string g_state;

void remove_tree(const std::string& path) {
    if (DIR* d = opendir(path.c_str())) {
        while (dirent* e = readdir(d)) {
            const std::string name = e->d_name;
            if (name == "." || name == "..") continue;
            const std::string child = path + "/" + name;
            struct stat st {};
            if (lstat(child.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
                remove_tree(child);
            else
                unlink(child.c_str());
        }
        closedir(d);
    }
    rmdir(path.c_str());
}

void write_file(const std::string& path, const std::string& bytes) {
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) abort();
    if (!bytes.empty() && write(fd, bytes.data(), bytes.size()) != ssize_t(bytes.size())) abort();
    close(fd);
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    const char* base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string templ = std::string(base) + "/esad-fuzz-recovery.XXXXXX";
    if (!mkdtemp(templ.data())) abort();
    g_state = templ;
    atexit([] { remove_tree(g_state); });
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider in(data, size);
    remove_tree(g_state + "/spool");
    mkdir(g_state.c_str(), 0700);
    mkdir((g_state + "/spool").c_str(), 0700);
    mkdir((g_state + "/spool/queue").c_str(), 0700);

    const size_t files = in.ConsumeIntegralInRange<size_t>(0, 4);
    for (size_t i = 0; i < files; ++i) {
        std::string name;
        Mid mid = 0;
        switch (in.ConsumeIntegralInRange<int>(0, 3)) {
            case 0:
                mid = in.ConsumeIntegralInRange<Mid>(1, 64);
                break;
            case 1:
                mid = UINT64_MAX - in.ConsumeIntegralInRange<Mid>(0, 2);
                break;
            case 2:
                mid = in.ConsumeIntegral<Mid>();
                break;
            default:
                name = in.ConsumeRandomLengthString(20);
                break;
        }
        if (name.empty()) name = mid_name(mid);
        if (name.empty() || name.find('/') != std::string::npos ||
            name.find('\0') != std::string::npos || name == "." || name == "..")
            continue;
        std::string bytes;
        if (mid != 0 && in.ConsumeBool()) {
            Message m;
            m.envelope.mid = mid;
            m.envelope.sender = "a@b.example";
            const size_t n = in.ConsumeIntegralInRange<size_t>(1, 3);
            for (size_t r = 0; r < n; ++r)
                m.envelope.recipients.push_back({uint32_t(r), "r@d.example", "d.example"});
            m.content = in.ConsumeRandomLengthString(64);
            bytes = encode(m);
            if (in.ConsumeBool() && !bytes.empty())
                bytes[in.ConsumeIntegralInRange<size_t>(0, bytes.size() - 1)] ^= 1;
        } else {
            bytes = in.ConsumeRandomLengthString(256);
        }
        write_file(g_state + "/spool/queue/" + name, bytes);
    }
    if (in.ConsumeBool()) {
        std::string journal(kJournalMagic);
        const size_t n = in.ConsumeIntegralInRange<size_t>(0, 4);
        for (size_t i = 0; i < n; ++i) {
            JournalRecord r;
            r.mid = in.ConsumeBool() ? in.ConsumeIntegralInRange<Mid>(1, 64)
                                     : in.ConsumeIntegral<Mid>();
            r.rid = in.ConsumeIntegralInRange<uint32_t>(0, 3);
            r.state = static_cast<RcptState>(in.ConsumeIntegralInRange<int>(1, 3));
            journal += encode_journal_record(r);
        }
        journal += in.ConsumeRemainingBytesAsString();
        write_file(g_state + "/spool/journal", journal);
    }

    SpoolOptions opt;
    opt.store.state_dir = g_state;
    // The files are planted flat (queue/<name>); recovery's validation is the same for both
    // layouts, and the flat store does not create 256 subdirectories per input.
    opt.store.layout = Layout::kFlat;
    opt.store.min_free_bytes = 0;
    opt.store.min_free_inodes = 0;
    opt.mid_block = 4;
    Spool spool;
    RecoveryReport report;
    const IoStatus st = open_spool(opt, spool, report);
    if (!st.ok()) return 0;
    Mid prev = 0;
    for (const RecoveredMessage& m : report.messages) {
        if (m.envelope.mid <= prev) abort();  // ascending, unique
        prev = m.envelope.mid;
        if (m.envelope.mid > report.max_mid_seen) abort();
        if (m.envelope.recipients.empty()) abort();
        struct stat sb {};
        if (stat((g_state + "/spool/queue/" + mid_name(m.envelope.mid)).c_str(), &sb) != 0) abort();
    }
    for (const QuarantinedFile& q : report.quarantined) {
        struct stat sb {};
        if (!q.moved_to.empty() && stat((g_state + "/spool/queue/" + q.name).c_str(), &sb) == 0)
            abort();
    }
    Mid next = 0;
    if (spool.mids->next(next).ok() && (next == 0 || next <= report.max_mid_seen)) abort();
    return 0;
}
