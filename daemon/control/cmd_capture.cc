// See cmd_capture.h.
#include "daemon/control/cmd_capture.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "common/capture_files.h"
#include "common/host_port.h"
#include "common/payloads/capture.h"
#include "daemon/loop/work.h"

namespace esad::control {

namespace {

using nlohmann::json;

std::vector<uint16_t> default_ports(const Config& c) {
    std::set<uint16_t> ports = {25, c.delivery.port};
    if (auto hp = parse_host_port(c.listener.address)) ports.insert(*hp->port);
    return {ports.begin(), ports.end()};
}

// Reads DIR/capture.status; nullopt when there is none. A "running" capture whose helper
// process is gone (killed, crashed) is reported as stopped; a file that is not a capture
// status (damaged, or written by another version) as stopped, with the reason.
std::optional<payloads::CaptureStatus> read_status(const std::string& dir) {
    std::ifstream in(dir + "/capture.status");
    if (!in) return std::nullopt;
    std::string error;
    json j = json::parse(in, nullptr, false);
    std::optional<payloads::CaptureStatus> s;
    if (j.is_discarded())
        error = "not JSON";
    else
        s = payloads::try_parse<payloads::CaptureStatus>(j, &error);
    if (!s) {
        payloads::CaptureStatus bad;
        bad.stop_reason = "unreadable " + dir + "/capture.status (" + error + ")";
        return bad;
    }
    if (s->running) {
        if (s->pid <= 0 || (kill(static_cast<pid_t>(s->pid), 0) != 0 && errno == ESRCH)) {
            s->running = false;
            s->stop_reason = "the capture process exited unexpectedly";
        } else {
            // Size as it is now: the status file is rewritten once a second.
            struct stat st {};
            if (stat(s->path.c_str(), &st) == 0 && static_cast<uint64_t>(st.st_size) > s->bytes)
                s->bytes = static_cast<uint64_t>(st.st_size);
            s->elapsed = static_cast<int64_t>(std::time(nullptr)) - s->started;
        }
    }
    return s;
}

std::vector<payloads::CaptureFile> list_captures(const std::string& dir) {
    std::vector<payloads::CaptureFile> out;
    for (const auto& n : capture_file_names(dir)) {
        struct stat st {};
        std::string path = dir + "/" + n;
        if (stat(path.c_str(), &st) != 0) continue;
        out.push_back(
            {n, path, static_cast<uint64_t>(st.st_size), static_cast<int64_t>(st.st_mtime)});
    }
    return out;
}

uint64_t file_size(const std::string& path) {
    struct stat st {};
    return stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

}  // namespace

std::string capture_dir(const Config& config) {
    return config.daemon.state_dir + "/captures";
}

std::string default_capture_filter(const Config& config) {
    std::string filter;
    for (uint16_t p : default_ports(config))
        filter += (filter.empty() ? "" : " or ") + std::string("tcp port ") + std::to_string(p);
    return filter;
}

std::unique_ptr<KeyLog> KeyLog::open(const std::string& dir, std::string* error) {
    auto k = std::unique_ptr<KeyLog>(new KeyLog());
    // 2770: members of esad's group who may run esad-capture (with its file capability)
    // write their captures here as themselves; setgid keeps the files in esad's group so
    // the daemon can list them. Under esad.service (RestrictSUIDSGID=) esad may not set
    // the setgid bit: tmpfiles.d makes the directory, and a right one is left alone.
    struct stat st {};
    bool ready =
        stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 02770;
    if (!ready &&
        ((mkdir(dir.c_str(), 02770) != 0 && errno != EEXIST) || chmod(dir.c_str(), 02770) != 0)) {
        *error = "cannot create " + dir + ": " + strerror(errno);
        return nullptr;
    }
    // Session secrets: never world-readable, whatever the umask.
    std::string path = dir + "/tls_keylog.current";
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0 || fchmod(fd, 0640) != 0) {
        *error = "cannot create " + path + ": " + strerror(errno);
        if (fd >= 0) close(fd);
        return nullptr;
    }
    close(fd);
    k->logger_ = logs::open_log_file(dir, "tls_keylog", "TLS key log", &k->path_, error);
    if (!k->logger_) return nullptr;
    return k;
}

KeyLog::~KeyLog() {
    if (logger_) logger_->flush();
}

void KeyLog::write(const char* line) {
    logger_->info("{}", line);
}

tls::Engine::KeylogSink keylog_sink_for(const CaptureCommandsEnv& env, const std::string& domain) {
    if (!env.keylog || !env.domain_debug || !env.domain_debug->contains(domain)) return {};
    KeyLog* k = env.keylog;
    return [k](const char* line) { k->write(line); };
}

void register_capture_commands(ControlServer& server, CaptureCommandsEnv env) {
    server.add_handler("packetcapture", [env](const Request& req, std::shared_ptr<Responder> r) {
        std::string error;
        auto args = payloads::try_parse<payloads::PacketcaptureArgs>(req.args, &error);
        if (!args) {
            r->error("bad_args", error);
            return;
        }
        if (args->action != "status" && args->action != "list") {
            r->error("bad_args", "action must be status or list");
            return;
        }
        const Config& c = *env.config;
        auto reply = std::make_shared<payloads::PacketcaptureReply>();
        reply->dir = capture_dir(c);
        reply->default_filter = default_capture_filter(c);
        reply->default_ports = default_ports(c);
        reply->keep = c.capture.keep;
        reply->max_size = c.capture.max_size_bytes;
        reply->duration = c.capture.duration_s;
        reply->min_free = c.capture.min_free_bytes;
        if (env.domain_debug && env.keylog)
            for (const auto& e : env.domain_debug->list())
                reply->keylog.domains.push_back(e.domain);
        reply->keylog.enabled = !reply->keylog.domains.empty();
        reply->keylog.path = env.keylog ? env.keylog->path() : "";
        bool list = args->action == "list";
        loop::queue_work(
            env.loop,
            [reply, list] {
                reply->capture = read_status(reply->dir);
                reply->keylog.bytes = file_size(reply->keylog.path);
                if (list) reply->captures = list_captures(reply->dir);
            },
            [reply, r] { r->ok(json(*reply)); });
    });
}

}  // namespace esad::control
