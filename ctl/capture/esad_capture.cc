// esad-capture: the small privileged helper behind `esactl packetcapture start`
// (docs/capture.md). It is the only esad program that ever holds CAP_NET_RAW, and only until
// its capture socket is open: esad itself never captures and never gains a capability.
//
//   esad-capture --dir DIR --filter BPF [--interface any] [--max-size BYTES]
//                [--duration SECONDS] [--keep N] [--min-free BYTES]
//
// 1. Opens the capture with libpcap (needs CAP_NET_RAW: root, or the file capability the
//    package gives this program) and compiles the BPF filter.
// 2. Gives up every privilege: as root it becomes the owner of DIR (the esad user), then it
//    drops all capabilities and sets no_new_privs.
// 3. Holds DIR/capture.lock (one capture at a time), removes the oldest capture-*.pcapng
//    files so that with the new one at most --keep remain, and writes
//    DIR/capture-YYYYmmddTHHMMSS.pcapng (0640).
// 4. Prints one line on stdout, "ok PATH" or "error MESSAGE" (exit 1), and closes stdout:
//    esactl waits for that line.
// 5. Captures until SIGTERM/SIGINT, the size limit (the file never exceeds --max-size), the
//    duration limit, a write error, or until the file system's free space falls below
//    --min-free (so a capture can never fill the disk the spool needs; the mail goes on).
//    DIR/capture.status (JSON, rewritten every second and at the end) says what it is doing
//    and why it stopped; `esactl packetcapture status` shows it.
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <pcap/pcap.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/capture_files.h"
#include "common/payloads/capture.h"
#include "ctl/capture/pcapng_writer.h"

namespace {

using nlohmann::json;
namespace payloads = esad::payloads;

volatile sig_atomic_t g_stop = 0;
void on_signal(int) {
    g_stop = 1;
}

struct Options {
    std::string dir;
    std::string filter;
    std::string interface = "any";
    uint64_t max_size = 100ull << 20;
    uint64_t duration = 600;
    uint64_t keep = 10;
    uint64_t min_free = 256ull << 20;
};

int fail(const std::string& message) {
    std::printf("error %s\n", message.c_str());
    std::fflush(stdout);
    return 1;
}

bool parse_u64(const char* text, uint64_t* out) {
    if (!text || !*text) return false;
    char* end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(text, &end, 10);
    if (errno || *end || text[0] == '-') return false;
    *out = v;
    return true;
}

bool drop_privileges(const std::string& dir, std::string* error) {
    if (geteuid() == 0) {
        struct stat st {};
        if (stat(dir.c_str(), &st) != 0) {
            *error = "cannot stat " + dir + ": " + std::strerror(errno);
            return false;
        }
        if (st.st_uid != 0 &&
            (setgroups(0, nullptr) != 0 || setgid(st.st_gid) != 0 || setuid(st.st_uid) != 0)) {
            *error =
                std::string("cannot switch to the owner of ") + dir + ": " + std::strerror(errno);
            return false;
        }
    }
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    if (syscall(SYS_capset, &header, data) != 0) {
        *error = std::string("cannot drop capabilities: ") + std::strerror(errno);
        return false;
    }
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    return true;
}

void write_status(const std::string& dir, const payloads::CaptureStatus& status) {
    std::string tmp = dir + "/capture.status.tmp";
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) return;
    std::string text = json(status).dump(2) + "\n";
    bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    fchmod(fd, 0640);
    close(fd);
    if (ok)
        rename(tmp.c_str(), (dir + "/capture.status").c_str());
    else
        unlink(tmp.c_str());
}

uint64_t free_bytes(const std::string& dir) {
    struct statvfs vfs {};
    if (statvfs(dir.c_str(), &vfs) != 0) return UINT64_MAX;
    return static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
}

struct Capture {
    esad::capture::PcapngWriter* writer = nullptr;
    uint64_t max_size = 0;
    uint64_t packets = 0;
    std::string stop_reason;
};

void on_packet(u_char* user, const pcap_pkthdr* h, const u_char* bytes) {
    auto* c = reinterpret_cast<Capture*>(user);
    if (!c->stop_reason.empty()) return;
    uint64_t block = esad::capture::PcapngWriter::packet_block_size(h->caplen);
    if (c->writer->bytes() + block > c->max_size) {
        c->stop_reason = "size limit";
        return;
    }
    if (!c->writer->packet(static_cast<uint64_t>(h->ts.tv_sec),
                           static_cast<uint32_t>(h->ts.tv_usec), bytes, h->caplen, h->len)) {
        c->stop_reason = std::string("write error: ") + std::strerror(c->writer->errno_value());
        return;
    }
    ++c->packets;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
        bool ok = v != nullptr;
        if (a == "--dir" && v)
            o.dir = v;
        else if (a == "--filter" && v)
            o.filter = v;
        else if (a == "--interface" && v)
            o.interface = v;
        else if (a == "--max-size")
            ok = parse_u64(v, &o.max_size) && o.max_size >= 4096;
        else if (a == "--duration")
            ok = parse_u64(v, &o.duration) && o.duration >= 1;
        else if (a == "--keep")
            ok = parse_u64(v, &o.keep) && o.keep >= 1;
        else if (a == "--min-free")
            ok = parse_u64(v, &o.min_free);
        else
            ok = false;
        if (!ok)
            return fail(
                "usage: esad-capture --dir DIR --filter BPF [--interface IF] "
                "[--max-size BYTES>=4096] [--duration S] [--keep N] [--min-free BYTES]");
        ++i;
    }
    if (o.dir.empty()) return fail("--dir is required");

    char errbuf[PCAP_ERRBUF_SIZE] = {};
    pcap_t* p = pcap_create(o.interface.c_str(), errbuf);
    if (!p) return fail(std::string("cannot open interface ") + o.interface + ": " + errbuf);
    // Immediate mode (each packet readable at once) uses fixed-size ring frames of about the
    // snap length: 65,535 octets covers loopback's 64 KiB segments, and a 32 MiB ring holds
    // ~500 of them, so a helper that loses the CPU for a while on a busy machine does not
    // drop packets (with 256 KiB frames and libpcap's 2 MiB default the ring held 8).
    pcap_set_snaplen(p, 65535);
    pcap_set_buffer_size(p, 32 << 20);
    pcap_set_immediate_mode(p, 1);
    pcap_set_timeout(p, 200);
    int rc = pcap_activate(p);
    if (rc < 0) {
        std::string why = pcap_geterr(p);
        if (rc == PCAP_ERROR_PERM_DENIED || why.find("ermission") != std::string::npos ||
            why.find("not permitted") != std::string::npos)
            return fail("packet capture needs CAP_NET_RAW (" + why +
                        "): run esactl packetcapture as root, or give esad-capture the "
                        "capability (setcap cap_net_raw+ep; see docs/capture.md)");
        return fail("cannot capture on " + o.interface + ": " + why);
    }
    bpf_program prog{};
    if (pcap_compile(p, &prog, o.filter.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0)
        return fail("bad capture filter '" + o.filter + "': " + pcap_geterr(p));
    if (pcap_setfilter(p, &prog) != 0)
        return fail(std::string("cannot set the filter: ") + pcap_geterr(p));
    pcap_freecode(&prog);

    std::string error;
    if (!drop_privileges(o.dir, &error)) return fail(error);
    umask(0027);

    std::string lock_path = o.dir + "/capture.lock";
    int lock = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (lock < 0) return fail("cannot open " + lock_path + ": " + std::strerror(errno));
    if (flock(lock, LOCK_EX | LOCK_NB) != 0)
        return fail("a packet capture is already running (esactl packetcapture status)");

    std::vector<std::string> old = esad::capture_file_names(o.dir);
    for (size_t i = 0; i + o.keep <= old.size(); ++i)
        unlink((o.dir + "/" + old[i]).c_str());

    std::time_t started = std::time(nullptr);
    struct tm tm_utc {};
    gmtime_r(&started, &tm_utc);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%S", &tm_utc);
    std::string name, path;
    int fd = -1;
    for (int n = 0; fd < 0 && n < 100; ++n) {
        name = std::string("capture-") + stamp + (n ? "-" + std::to_string(n) : "") + ".pcapng";
        path = o.dir + "/" + name;
        fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
        if (fd < 0 && errno != EEXIST)
            return fail("cannot create " + path + ": " + std::strerror(errno));
    }
    if (fd < 0) return fail("cannot create a capture file in " + o.dir);
    fchmod(fd, 0640);

    esad::capture::PcapngWriter writer(fd, pcap_datalink(p),
                                       static_cast<uint32_t>(pcap_snapshot(p)), o.interface);
    if (!writer.start())
        return fail("cannot write " + path + ": " + std::strerror(writer.errno_value()));
    if (pcap_setnonblock(p, 1, errbuf) != 0) return fail(std::string("pcap: ") + errbuf);
    int pfd = pcap_get_selectable_fd(p);
    if (pfd < 0) return fail("the capture has no pollable descriptor");

    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGHUP, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);

    Capture c;
    c.writer = &writer;
    c.max_size = o.max_size;
    auto status = [&](bool running) {
        pcap_stat ps{};
        pcap_stats(p, &ps);
        std::time_t now = std::time(nullptr);
        payloads::CaptureStatus s;
        s.pid = getpid();
        s.running = running;
        s.file = name;
        s.path = path;
        s.interface = o.interface;
        s.filter = o.filter;
        s.started = started;
        s.elapsed = now - started;
        s.bytes = writer.bytes();
        s.packets = c.packets;
        s.dropped = ps.ps_drop;
        s.max_size = o.max_size;
        s.duration = o.duration;
        s.min_free = o.min_free;
        if (!running) {
            s.stopped = now;
            s.stop_reason = c.stop_reason;
        }
        write_status(o.dir, s);
    };
    status(true);
    std::printf("ok %s\n", path.c_str());
    std::fflush(stdout);
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (devnull >= 0) {
        dup2(devnull, STDOUT_FILENO);
        close(devnull);
    }

    std::time_t last_status = started;
    while (c.stop_reason.empty()) {
        if (g_stop) {
            // Packets the kernel already holds belong to the capture: take them first.
            pcap_dispatch(p, -1, on_packet, reinterpret_cast<u_char*>(&c));
            if (c.stop_reason.empty()) c.stop_reason = "stop requested";
            break;
        }
        pollfd pf{pfd, POLLIN, 0};
        int n = poll(&pf, 1, 250);
        if (n < 0 && errno != EINTR) {
            c.stop_reason = std::string("poll: ") + std::strerror(errno);
            break;
        }
        if (n > 0 && pcap_dispatch(p, -1, on_packet, reinterpret_cast<u_char*>(&c)) < 0) {
            c.stop_reason = std::string("capture error: ") + pcap_geterr(p);
            break;
        }
        std::time_t now = std::time(nullptr);
        if (c.stop_reason.empty() && static_cast<uint64_t>(now - started) >= o.duration)
            c.stop_reason = "duration limit";
        if (now != last_status) {
            last_status = now;
            if (!writer.flush() && c.stop_reason.empty())
                c.stop_reason = std::string("write error: ") + std::strerror(writer.errno_value());
            uint64_t free_now = free_bytes(o.dir);
            if (c.stop_reason.empty() && free_now < o.min_free)
                c.stop_reason = "disk nearly full: " + std::to_string(free_now >> 20) +
                                " MiB free, below the " + std::to_string(o.min_free >> 20) +
                                " MiB kept for the spool";
            if (c.stop_reason.empty()) status(true);
        }
    }
    if (!writer.flush() && c.stop_reason.find("write error") == std::string::npos)
        c.stop_reason += std::string(" (write error: ") + std::strerror(writer.errno_value()) + ")";
    fsync(fd);
    close(fd);
    status(false);
    pcap_close(p);
    return 0;
}
