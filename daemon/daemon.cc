// See daemon.h.
#include "daemon/daemon.h"

#include <grp.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "daemon/control/cmd_status.h"
#include "daemon/logs/daemon_log.h"
#include "esad_version.h"

namespace esad {

namespace {
bool ensure_dir(const std::string& dir, mode_t mode, std::string* error) {
    std::string partial;
    size_t pos = 0;
    while (pos != std::string::npos) {
        pos = dir.find('/', pos + 1);
        partial = dir.substr(0, pos);
        if (partial.empty()) continue;
        if (mkdir(partial.c_str(), mode) != 0 && errno != EEXIST) {
            *error = "cannot create " + partial + ": " + strerror(errno);
            return false;
        }
    }
    return true;
}
}  // namespace

Daemon::Daemon(Config config, std::string config_path)
    : config_(std::move(config)), config_path_(std::move(config_path)), notifier_(&loop_) {
    uv_loop_init(&loop_);
    state_.hostname = config_.daemon.hostname;
    state_.started = std::time(nullptr);
}

Daemon::~Daemon() {
    control_.reset();
    signals_.clear();
    int rc = loop::drain_and_close(&loop_);
    if (rc != 0) spdlog::error("event loop closed with handles still open: {}", uv_strerror(rc));
}

bool Daemon::start(std::string* error) {
    if (!ensure_dir(config_.daemon.state_dir, 0750, error)) return false;

    control::PeerPolicy policy;
    policy.daemon_uid = getuid();
    if (!config_.daemon.control_group.empty()) {
        // getgrnam is a file read, done once at startup before the loop runs.
        if (struct group* g = getgrnam(config_.daemon.control_group.c_str())) {
            policy.has_group = true;
            policy.group = g->gr_gid;
        } else {
            *error = "daemon.control_group: no group named '" + config_.daemon.control_group + "'";
            return false;
        }
    }
    control_ =
        std::make_unique<control::ControlServer>(&loop_, config_.daemon.control_socket, policy);
    control::register_status_commands(*control_, state_);
    control_->add_handler("reload",
                          [this](const control::Request&, std::shared_ptr<control::Responder> r) {
                              nlohmann::json result = reload();
                              if (result.contains("errors"))
                                  r->error("bad_config", result["errors"].dump());
                              else
                                  r->ok(result);
                          });
    if (!control_->start(error)) return false;

    for (int sig : {SIGTERM, SIGINT}) {
        signals_.push_back(loop::Signal::create(&loop_, sig, [this](int signum) {
            spdlog::info("received {}, shutting down", strsignal(signum));
            stop();
        }));
    }
    signals_.push_back(loop::Signal::create(&loop_, SIGHUP, [this](int) {
        spdlog::info("received SIGHUP, reloading configuration");
        reload();
    }));
    signal(SIGPIPE, SIG_IGN);
    return true;
}

void Daemon::stop() {
    if (stopping_) return;
    stopping_ = true;
    notifier_.stopping();
    notifier_.stop_watchdog();
    if (control_) control_->stop();
    signals_.clear();
}

nlohmann::json Daemon::reload() {
    notifier_.reloading();
    ++state_.reloads;
    nlohmann::json result = {{"config", config_path_.empty() ? config_.origin : config_path_}};
    ConfigResult loaded =
        config_path_.empty() ? ConfigResult{default_config(), {}} : load_config_file(config_path_);
    if (!loaded.ok()) {
        nlohmann::json errors = nlohmann::json::array();
        for (const auto& e : loaded.errors) {
            spdlog::error("reload: {}", e.to_string(config_path_));
            errors.push_back(e.to_string(config_path_));
        }
        spdlog::error("reload: configuration rejected, keeping the running one");
        notifier_.status("Running (last reload failed)");
        result["errors"] = errors;
        return result;
    }
    Config next = std::move(*loaded.config);
    if (config_path_.empty()) {
        next.daemon = config_.daemon;  // embedded defaults: keep what startup resolved
        next.logging.dir = config_.logging.dir;
    }
    std::vector<std::string> restart = restart_only_changes(config_, next);
    for (const auto& key : restart)
        spdlog::warn("reload: {} changed; it takes effect after a restart", key);
    std::string error;
    if (!logs::setup_daemon_log(next.logging.daemon_log, next.logging.level, &error))
        spdlog::error("reload: {}", error);
    // Keep restart-only settings as they are running now, take everything else.
    Config applied = next;
    applied.daemon = config_.daemon;
    applied.listener.address = config_.listener.address;
    applied.listener.tls_cert = config_.listener.tls_cert;
    applied.listener.tls_key = config_.listener.tls_key;
    applied.dns = config_.dns;
    applied.logging.dir = config_.logging.dir;
    config_ = std::move(applied);
    spdlog::info("reload: configuration reloaded from {}", config_.origin);
    notifier_.status("Running");
    result["restart_required"] = restart;
    return result;
}

int Daemon::run() {
    std::string error;
    if (!start(&error)) {
        spdlog::critical("startup failed: {}", error);
        stop();
        return 1;
    }
    spdlog::info("esad {} started: control socket {}", ESAD_VERSION, config_.daemon.control_socket);
    std::string summary = "Running; control " + config_.daemon.control_socket;
    notifier_.ready(summary);
    notifier_.start_watchdog();
    uv_run(&loop_, UV_RUN_DEFAULT);
    stop();
    control_.reset();
    int rc = loop::drain_and_close(&loop_);
    if (rc != 0) {
        spdlog::critical("event loop did not close cleanly: {}", uv_strerror(rc));
        uv_print_all_handles(&loop_, stderr);
        return 1;
    }
    uv_loop_init(&loop_);  // the destructor closes it again
    spdlog::info("esad stopped");
    return 0;
}

}  // namespace esad
