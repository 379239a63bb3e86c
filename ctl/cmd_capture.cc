// esactl packetcapture start|stop|status|list (docs/capture.md).
//
// `start` asks the daemon for the capture directory and the default SMTP filter, then runs
// the esad-capture helper (found as $ESAD_CAPTURE_BIN, next to esactl, or in esad's
// libexec directory) in its own session, and waits for its one-line answer: "ok PATH" or
// "error MESSAGE" (printed, exit 1: e.g. no CAP_NET_RAW). `stop` sends the helper SIGTERM
// (only after checking that the pid is an esad-capture process) and waits until its status
// file says it stopped. `status` and `list` print what the daemon reads from the directory.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fstream>
#include <ostream>
#include <thread>

#include "common/config.h"
#include "common/format.h"
#include "common/payloads/capture.h"
#include "ctl/commands.h"

#ifndef ESAD_CAPTURE_HELPER
#define ESAD_CAPTURE_HELPER "/usr/libexec/esad/esad-capture"
#endif

namespace esad::ctl {

namespace {

using nlohmann::json;

// Packets the kernel dropped because the helper fell behind: the file has gaps.
std::string dropped_text(const payloads::CaptureStatus& c) {
    if (!c.dropped) return "";
    return " (" + thousands(c.dropped) + " dropped by the kernel: the capture has gaps)";
}

constexpr const char* kUsage =
    "packetcapture start [--host H] [--port P]... [--filter BPF] [--max-size MB] "
    "[--duration S] [--interface IF] | stop | status | list";

int usage(Context& ctx) {
    ctx.err << "esactl: usage: " << kUsage << "\n";
    return kExitUsage;
}

bool parse_number(const std::string& text, uint64_t* out) {
    if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos ||
        text.size() > 12)
        return false;
    *out = std::stoull(text);
    return true;
}

std::string helper_path() {
    if (const char* env = std::getenv("ESAD_CAPTURE_BIN"); env && *env) return env;
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        std::string dir(self, static_cast<size_t>(n));
        dir = dir.substr(0, dir.rfind('/'));
        std::string candidate = dir + "/esad-capture";
        if (access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    return ESAD_CAPTURE_HELPER;
}

// Runs the helper detached (its own session, reparented to init) and returns its answer
// line, or an error text starting with "error ".
std::string spawn_helper(const std::vector<std::string>& args) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return std::string("error pipe: ") + strerror(errno);
    std::string path = helper_path();
    pid_t child = fork();
    if (child < 0) return std::string("error fork: ") + strerror(errno);
    if (child == 0) {
        setsid();
        if (fork() != 0) _exit(0);
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, STDIN_FILENO);
        dup2(devnull, STDERR_FILENO);
        dup2(fds[1], STDOUT_FILENO);
        std::vector<char*> argv;
        argv.push_back(const_cast<char*>(path.c_str()));
        for (const auto& a : args)
            argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        execv(path.c_str(), argv.data());
        std::string msg =
            "error cannot run the capture helper " + path + ": " + strerror(errno) + "\n";
        [[maybe_unused]] ssize_t w = write(STDOUT_FILENO, msg.data(), msg.size());
        _exit(1);
    }
    close(fds[1]);
    int status = 0;
    waitpid(child, &status, 0);
    std::string line;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    char buf[512];
    while (line.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
        pollfd pf{fds[0], POLLIN, 0};
        if (poll(&pf, 1, 200) <= 0) continue;
        ssize_t n = read(fds[0], buf, sizeof buf);
        if (n <= 0) break;
        line.append(buf, static_cast<size_t>(n));
    }
    close(fds[0]);
    if (line.find('\n') == std::string::npos)
        return "error the capture helper " + path + " exited without starting a capture";
    return line.substr(0, line.find('\n'));
}

std::string size_text(uint64_t bytes) {
    return thousands(bytes) + " bytes";
}

void print_keylog(std::ostream& o, const payloads::KeylogInfo& k) {
    o << "TLS key log:    ";
    if (k.enabled) {
        std::string domains;
        for (const auto& x : k.domains)
            domains += (domains.empty() ? "" : ", ") + x;
        o << "ON for " << domains << " (domaindebug): TLS session secrets are written to " << k.path
          << "\n";
    } else {
        o << "off (on only for domains under domaindebug)\n";
    }
}

void print_status(std::ostream& o, const payloads::PacketcaptureReply& d) {
    if (!d.capture) {
        o << "Packet capture: not running (no capture yet)\n";
    } else {
        const payloads::CaptureStatus& c = *d.capture;
        o << "Packet capture: "
          << (c.running ? std::string("running")
                        : "stopped (" + c.stop_reason.value_or("unknown") + ")")
          << "\n";
        o << "File:           " << c.path << "\n";
        o << "Filter:         " << c.filter << "\n";
        o << "Size:           " << size_text(c.bytes) << " (limit " << size_text(c.max_size)
          << ")\n";
        o << "Packets:        " << thousands(c.packets) << dropped_text(c) << "\n";
        o << "Elapsed:        " << c.elapsed << "s (limit " << c.duration << "s)\n";
    }
    print_keylog(o, d.keylog);
}

bool running(const payloads::PacketcaptureReply& d) {
    return d.capture && d.capture->running;
}

int capture_status(Context& ctx, payloads::PacketcaptureReply* d, json* raw = nullptr) {
    return call_daemon(ctx, "packetcapture", {{"action", "status"}}, d, raw);
}

int cmd_start(Context& ctx, const std::vector<std::string>& args) {
    std::string host, filter, interface = "any";
    std::vector<std::string> ports;
    uint64_t max_mb = 0, duration = 0;
    bool have_max = false, have_duration = false;
    for (size_t i = 1; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (i + 1 >= args.size()) return usage(ctx);
        const std::string& v = args[++i];
        uint64_t n = 0;
        if (a == "--host") {
            host = v;
        } else if (a == "--port") {
            if (!parse_number(v, &n) || n < 1 || n > 65535) return usage(ctx);
            ports.push_back(v);
        } else if (a == "--filter") {
            filter = v;
        } else if (a == "--interface") {
            interface = v;
        } else if (a == "--max-size") {
            if (!parse_number(v, &max_mb) || max_mb < 1) return usage(ctx);
            have_max = true;
        } else if (a == "--duration") {
            std::optional<uint64_t> s = parse_duration(v);
            if (!s || *s < 1) return usage(ctx);
            duration = *s;
            have_duration = true;
        } else {
            return usage(ctx);
        }
    }
    if (host.find_first_of(" ()'\"") != std::string::npos) {
        ctx.err << "esactl: --host takes one host name or address\n";
        return kExitUsage;
    }
    payloads::PacketcaptureReply d;
    if (int rc = capture_status(ctx, &d); rc != kExitOk) return rc;
    if (running(d)) {
        ctx.err << "esactl: a packet capture is already running: " << d.capture->path
                << " (esactl packetcapture stop)\n";
        return kExitFailed;
    }
    std::string expr;
    if (ports.empty()) {
        expr = d.default_filter;
    } else {
        for (const auto& p : ports)
            expr += (expr.empty() ? "" : " or ") + std::string("tcp port ") + p;
    }
    expr = "(" + expr + ")";
    if (!host.empty()) expr += " and host " + host;
    if (!filter.empty()) expr += " and (" + filter + ")";
    uint64_t max_size = have_max ? max_mb * 1024 * 1024 : d.max_size;
    if (!have_duration) duration = d.duration;
    std::string answer =
        spawn_helper({"--dir", d.dir, "--filter", expr, "--interface", interface, "--max-size",
                      std::to_string(max_size), "--duration", std::to_string(duration), "--keep",
                      std::to_string(d.keep), "--min-free", std::to_string(d.min_free)});
    if (answer.rfind("ok ", 0) != 0) {
        std::string msg = answer.rfind("error ", 0) == 0 ? answer.substr(6) : answer;
        if (ctx.json)
            ctx.out << json{{"error", {{"code", "capture_failed"}, {"message", msg}}}}.dump(2)
                    << "\n";
        ctx.err << "esactl: " << msg << "\n";
        return kExitFailed;
    }
    std::string path = answer.substr(3);
    if (ctx.json) {
        ctx.out << json{{"started", true},      {"path", path},         {"filter", expr},
                        {"max_size", max_size}, {"duration", duration}, {"keylog", d.keylog}}
                       .dump(2)
                << "\n";
        return kExitOk;
    }
    std::ostream& o = ctx.out;
    o << "Packet capture started: " << path << "\n";
    o << "Filter:         " << expr << "\n";
    o << "Limits:         " << size_text(max_size) << ", " << duration << "s\n";
    print_keylog(o, d.keylog);
    return kExitOk;
}

bool is_capture_process(int64_t pid) {
    std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
    std::string name;
    std::getline(comm, name);
    return name == "esad-capture";
}

int cmd_stop(Context& ctx) {
    payloads::PacketcaptureReply d;
    json raw;
    if (int rc = capture_status(ctx, &d); rc != kExitOk) return rc;
    if (!running(d)) {
        ctx.err << "esactl: no packet capture is running\n";
        return kExitFailed;
    }
    int64_t pid = d.capture->pid;
    if (pid <= 0 || !is_capture_process(pid)) {
        ctx.err << "esactl: process " << pid << " is not an esad-capture process\n";
        return kExitFailed;
    }
    if (kill(static_cast<pid_t>(pid), SIGTERM) != 0) {
        ctx.err << "esactl: cannot stop the capture (pid " << pid << "): " << strerror(errno)
                << (errno == EPERM ? "; run esactl as root or as the user that started it" : "")
                << "\n";
        return kExitFailed;
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (std::chrono::steady_clock::now() < deadline) {
        if (int rc = capture_status(ctx, &d, &raw); rc != kExitOk) return rc;
        if (!running(d)) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (running(d)) {
        ctx.err << "esactl: the capture (pid " << pid << ") did not stop within 15 s\n";
        return kExitFailed;
    }
    if (ctx.json) {
        ctx.out << raw.dump(2) << "\n";
        return kExitOk;
    }
    payloads::CaptureStatus s = d.capture.value_or(payloads::CaptureStatus{});
    ctx.out << "Packet capture stopped: " << s.path << " (" << thousands(s.packets) << " packets, "
            << size_text(s.bytes) << ")" << dropped_text(s) << "\n";
    return kExitOk;
}

int cmd_packetcapture(Context& ctx, const std::vector<std::string>& args) {
    if (args.empty()) return usage(ctx);
    const std::string& action = args[0];
    if (action == "start") return cmd_start(ctx, args);
    if (args.size() != 1) return usage(ctx);
    if (action == "stop") return cmd_stop(ctx);
    if (action != "status" && action != "list") return usage(ctx);
    payloads::PacketcaptureReply d;
    json raw;
    if (int rc = call_daemon(ctx, "packetcapture", {{"action", action}}, &d, &raw); rc != kExitOk)
        return rc;
    if (ctx.json) {
        ctx.out << raw.dump(2) << "\n";
        return kExitOk;
    }
    std::ostream& o = ctx.out;
    if (action == "status") {
        print_status(o, d);
        return kExitOk;
    }
    o << "Captures in " << d.dir << " (at most " << d.keep << " kept):\n";
    const auto captures = d.captures.value_or(std::vector<payloads::CaptureFile>{});
    if (captures.empty()) {
        o << "No packet captures.\n";
    } else {
        for (const auto& f : captures) {
            std::string name = f.file;
            if (name.size() < 40) name.append(40 - name.size(), ' ');
            std::string bytes = thousands(f.bytes);
            if (bytes.size() < 14) bytes.insert(0, 14 - bytes.size(), ' ');
            o << name << bytes << " bytes\n";
        }
    }
    if (d.keylog.bytes > 0)
        o << "TLS key log: " << d.keylog.path << " (" << size_text(d.keylog.bytes) << ")\n";
    return kExitOk;
}

}  // namespace

std::vector<Command> capture_commands() {
    return {{"packetcapture",
             "start [--host H] [--port P] [--filter BPF] [--max-size MB] [--duration S] | stop | "
             "status | list",
             "capture SMTP traffic to a pcapng file (TLS key log for domaindebug domains)",
             cmd_packetcapture}};
}

}  // namespace esad::ctl
