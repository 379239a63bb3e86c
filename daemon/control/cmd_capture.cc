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
#include "daemon/loop/work.h"

namespace esad::control {

namespace {

using nlohmann::json;

std::vector<uint16_t> default_ports(const Config& c) {
    std::set<uint16_t> ports = {25, c.delivery.port};
    if (auto hp = parse_host_port(c.listener.address)) ports.insert(*hp->port);
    return {ports.begin(), ports.end()};
}

// Reads DIR/capture.status; null when there is none. A "running" capture whose helper
// process is gone (killed, crashed) is reported as stopped.
json read_status(const std::string& dir) {
    std::ifstream in(dir + "/capture.status");
    if (!in) return nullptr;
    json s = json::parse(in, nullptr, false);
    if (s.is_discarded() || !s.is_object()) return nullptr;
    if (s.value("running", false)) {
        auto pid = s.value("pid", int64_t{0});
        if (pid <= 0 || (kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)) {
            s["running"] = false;
            s["stop_reason"] = "the capture process exited unexpectedly";
        } else {
            // Size as it is now: the status file is rewritten once a second.
            struct stat st {};
            if (stat(s.value("path", "").c_str(), &st) == 0 &&
                static_cast<uint64_t>(st.st_size) > s.value("bytes", uint64_t{0}))
                s["bytes"] = static_cast<uint64_t>(st.st_size);
            s["elapsed"] =
                static_cast<int64_t>(std::time(nullptr)) - s.value("started", int64_t{0});
        }
    }
    return s;
}

json list_captures(const std::string& dir) {
    json out = json::array();
    std::vector<std::string> names = capture_file_names(dir);
    for (const auto& n : names) {
        struct stat st {};
        std::string path = dir + "/" + n;
        if (stat(path.c_str(), &st) != 0) continue;
        out.push_back({{"file", n},
                       {"path", path},
                       {"bytes", static_cast<uint64_t>(st.st_size)},
                       {"modified", static_cast<int64_t>(st.st_mtime)}});
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
        std::string action = req.args.value("action", "status");
        if (action != "status" && action != "list") {
            r->error("bad_args", "action must be status or list");
            return;
        }
        const Config& c = *env.config;
        json keylog_domains = json::array();
        if (env.domain_debug && env.keylog)
            for (const auto& e : env.domain_debug->list())
                keylog_domains.push_back(e.domain);
        auto data =
            std::make_shared<json>(json{{"dir", capture_dir(c)},
                                        {"default_filter", default_capture_filter(c)},
                                        {"default_ports", default_ports(c)},
                                        {"keep", c.capture.keep},
                                        {"max_size", c.capture.max_size_bytes},
                                        {"duration", c.capture.duration_s},
                                        {"min_free", c.capture.min_free_bytes},
                                        {"keylog",
                                         {{"enabled", !keylog_domains.empty()},
                                          {"domains", keylog_domains},
                                          {"path", env.keylog ? env.keylog->path() : ""}}}});
        std::string dir = capture_dir(c);
        bool list = action == "list";
        loop::queue_work(
            env.loop,
            [data, dir, list] {
                (*data)["capture"] = read_status(dir);
                (*data)["keylog"]["bytes"] =
                    file_size((*data)["keylog"]["path"].get<std::string>());
                if (list) (*data)["captures"] = list_captures(dir);
            },
            [data, r] { r->ok(*data); });
    });
}

}  // namespace esad::control
