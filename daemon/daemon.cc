// See daemon.h.
#include "daemon/daemon.h"

#include <grp.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "common/make_dirs.h"
#include "daemon/control/cmd_capture.h"
#include "daemon/control/cmd_queue.h"
#include "daemon/control/cmd_status.h"
#include "daemon/control/cmd_tools.h"
#include "daemon/delivery/content_budget.h"
#include "daemon/logs/daemon_log.h"
#include "daemon/loop/privileges.h"
#include "daemon/loop/work.h"
#include "daemon/spool/counters.h"
#include "esad_version.h"

namespace esad {

namespace {
// Whether the process may chown its files to `gid`: its own group or a supplementary one.
bool in_group(gid_t gid) {
    if (getegid() == gid) return true;
    int n = getgroups(0, nullptr);
    if (n <= 0) return false;
    std::vector<gid_t> groups(static_cast<size_t>(n));
    n = getgroups(n, groups.data());
    for (int i = 0; i < n; ++i)
        if (groups[static_cast<size_t>(i)] == gid) return true;
    return false;
}
// Accepted by the configuration for forward compatibility, not acted on yet: say so
// rather than let an operator believe a limit is enforced.
void warn_unimplemented(const Config& c) {
    for (const auto& [name, d] : c.destinations)
        if (d.max_recipients_per_hour)
            spdlog::warn(
                "destinations.{}.max_recipients_per_hour is not enforced by this "
                "version of esad",
                name);
}
}  // namespace

Daemon::Daemon(Config config, std::string config_path)
    : config_(std::move(config)), config_path_(std::move(config_path)), notifier_(&loop_) {
    loop_rc_ = uv_loop_init(&loop_);
    if (loop_rc_ != 0) return;  // run() reports it; the destructor leaves the loop alone
    if (int rc = loop::LoopLoad::enable(&loop_); rc != 0)
        spdlog::warn("event loop load accounting unavailable: {}", uv_strerror(rc));
    state_.hostname = config_.daemon.hostname;
    state_.refresh_gauges = [this] { refresh_gauges(); };
    state_.started = std::time(nullptr);
}

Daemon::~Daemon() {
    shutdown_timer_.reset();
    listener_.reset();
    delivery_.reset();
    if (resolver_) resolver_->close();
    resolver_.reset();
    control_.reset();
    log_commands_.reset();
    metrics_.reset();
    signals_.clear();
    if (loop_rc_ != 0) return;  // never opened, or run() closed it
    int rc = loop::drain_and_close(&loop_);
    if (rc != 0) spdlog::error("event loop closed with handles still open: {}", uv_strerror(rc));
}

bool Daemon::start(std::string* error) {
    listen_fds_ = loop::take_listen_fds();
    warn_unimplemented(config_);
    if (!make_dirs(config_.daemon.state_dir, 0750, error)) return false;

    control::PeerPolicy policy;
    policy.daemon_uid = getuid();
    std::optional<loop::UserIds> run_as;  // root with [daemon] user: bind first, then drop
    if (getuid() == 0 && !config_.daemon.user.empty()) {
        if (!(run_as = loop::lookup_user(config_.daemon.user, error))) return false;
        policy.daemon_uid = run_as->uid;
    }
    if (!config_.daemon.control_group.empty()) {
        // getgrnam is a file read, done once at startup before the loop runs.
        if (struct group* g = getgrnam(config_.daemon.control_group.c_str())) {
            policy.has_group = true;
            policy.group = g->gr_gid;
        } else {
            *error = "daemon.control_group: no group named '" + config_.daemon.control_group + "'";
            exit_code_ = 2;
            return false;
        }
        // Giving the socket and its directory to the group needs root or membership: say
        // so now instead of running with a socket the group's members cannot reach.
        if (getuid() != 0 && !in_group(policy.group)) {
            *error = "daemon.control_group: esad runs as uid " + std::to_string(getuid()) +
                     ", which is not a member of group '" + config_.daemon.control_group +
                     "', so it cannot give the control socket to that group. Make it a " +
                     "member; under systemd: a drop-in with SupplementaryGroups=" +
                     config_.daemon.control_group + " (systemctl edit esad; docs/systemd.md)";
            exit_code_ = 2;
            return false;
        }
    }
    control_ =
        std::make_unique<control::ControlServer>(&loop_, config_.daemon.control_socket, policy);
    control::register_status_commands(*control_, state_);
    control::QueueCommandsEnv qenv;
    qenv.state = &state_;
    qenv.manager = [this] { return delivery_.get(); };
    qenv.resolver = nullptr;  // set below once created
    qenv.router = nullptr;
    control_->add_handler("reload",
                          [this](const control::Request&, std::shared_ptr<control::Responder> r) {
                              ReloadOutcome result = reload();
                              if (!result.errors.empty())
                                  r->error("bad_config", nlohmann::json(result.errors).dump());
                              else
                                  r->ok(result.reply);
                          });
    if (!(listen_fds_.control >= 0 ? control_->start_from_fd(listen_fds_.control, error)
                                   : control_->start(error)))
        return false;
    if (!config_.metrics.address.empty()) {
        metrics_ = std::make_unique<control::MetricsServer>(
            &loop_, state_, [this] { return delivery_.get(); }, config_.metrics.top_hosts);
        if (!metrics_->start(config_.metrics.address, error)) return false;
    }
    if (run_as) {
        if (listen_fds_.smtp < 0 &&
            (listen_fds_.smtp = loop::bind_tcp_socket(config_.listener.address, error)) < 0)
            return false;
        const std::string& sock = config_.daemon.control_socket;
        std::string sock_dir =
            sock.rfind('/') == std::string::npos ? "" : sock.substr(0, sock.rfind('/'));
        if (!loop::hand_over_paths(*run_as,
                                   {config_.daemon.state_dir, sock_dir, config_.logging.dir},
                                   {sock, config_.logging.daemon_log}, error) ||
            !loop::drop_privileges(config_.daemon.user, error))
            return false;
    }

    mail_log_ = logs::MailLog::open(config_.logging.dir, config_.logging.mail_log, error);
    if (!mail_log_) return false;
    domain_debug_ =
        logs::DomainDebug::open(config_.logging.dir, config_.logging.domain_debug, error);
    if (!domain_debug_) return false;
    // Captures are a troubleshooting aid: without the directory esad still delivers.
    std::string keylog_error;
    key_log_ = control::KeyLog::open(control::capture_dir(config_), &keylog_error);
    if (!key_log_) spdlog::warn("packet capture: {}; no TLS key log", keylog_error);
    capture_env_.loop = &loop_;
    capture_env_.config = &config_;
    capture_env_.domain_debug = domain_debug_.get();
    capture_env_.keylog = key_log_.get();
    control::register_capture_commands(*control_, capture_env_);
    state_.rates = &rates_;
    control::LogCommandsEnv lenv;
    lenv.loop = &loop_;
    lenv.state = &state_;
    lenv.manager = [this] { return delivery_.get(); };
    lenv.logs_dir = config_.logging.dir;
    lenv.domain_debug = domain_debug_.get();
    lenv.rates = &rates_;
    log_commands_ = control::register_log_commands(*control_, std::move(lenv));

    dns::ResolverOptions ro;
    ro.servers = config_.dns.servers;
    ro.timeout_ms = static_cast<int>(config_.dns.timeout_ms);
    resolver_ = dns::Resolver::create(&loop_, ro, error);
    if (!resolver_) return false;
    delivery::RouterOptions rto;
    rto.default_port = config_.delivery.port;
    rto.allow_loopback = config_.dns.allow_loopback;
    rto.own_names = {config_.daemon.hostname};
    router_ = std::make_unique<delivery::Router>(resolver_.get(), rto);
    if (!load_routes(config_, error)) return false;
    qenv.resolver = resolver_.get();
    qenv.router = router_.get();
    qenv.loop = &loop_;
    qenv.store = [this] { return spool_.store.get(); };
    qenv.set_redirect = [this](std::optional<dns::Route> r) {
        router_->set_redirect(std::move(r));
    };
    qenv.work_queue = [this] {
        return committer_ ? control::WorkQueueInfo{committer_->pending_messages(),
                                                   committer_->batches_in_flight()}
                          : control::WorkQueueInfo{};
    };
    control::register_queue_commands(*control_, qenv);
    control::ToolCommandsEnv tenv;
    tenv.loop = &loop_;
    tenv.state = &state_;
    tenv.config = &config_;
    tenv.resolver = resolver_.get();
    tenv.router = router_.get();
    control::register_tool_commands(*control_, tenv);

    // Recovery reads every queue file: a worker does it while the control socket answers.
    auto options = std::make_shared<spool::SpoolOptions>();
    options->store.state_dir = config_.daemon.state_dir;
    options->store.min_free_bytes = config_.daemon.spool_min_free_bytes;
    spool::parse_layout(config_.spool.layout, options->store.layout);  // validated by config
    auto report = std::make_shared<spool::RecoveryReport>();
    auto status = std::make_shared<spool::IoStatus>();
    auto opened = std::make_shared<spool::Spool>();
    spdlog::info("spool: recovering {}/spool (layout {})", config_.daemon.state_dir,
                 config_.spool.layout);
    loop::queue_work(
        &loop_,
        [options, report, status, opened] {
            *status = spool::open_spool(*options, *opened, *report);
        },
        [this, report, status, opened] {
            spool_ = std::move(*opened);
            spool_.recent = std::make_unique<spool::RecentCache>(config_.spool.recent_cache);
            on_recovered(*status, *report);
        });

    auto on_stop = [this](int signum) {
        spdlog::info("received {}, shutting down", strsignal(signum));
        stop();
    };
    auto on_hup = [this](int) {
        spdlog::info("received SIGHUP, reloading configuration");
        reload();
    };
    for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
        auto handle = loop::Signal::create(
            &loop_, sig,
            sig == SIGHUP ? loop::Signal::Callback(on_hup) : loop::Signal::Callback(on_stop),
            error);
        if (!handle) return false;
        signals_.push_back(std::move(handle));
    }
    signal(SIGPIPE, SIG_IGN);
    return true;
}

void Daemon::on_recovered(const spool::IoStatus& status, spool::RecoveryReport& report) {
    if (stopping_) return;
    if (!status.ok()) {
        spdlog::critical("spool: cannot open: {}", status.reason());
        exit_code_ = 1;
        stop();
        return;
    }
    for (const auto& q : report.quarantined) {
        spdlog::error("spool: quarantined {} to corrupt/{}: {} ({})", q.name, q.moved_to,
                      spool::to_string(q.status), q.reason);
        mail_log_->warning(
            fmt::format("Spool file {} moved to corrupt/{}: {}", q.name, q.moved_to, q.reason));
    }
    for (const auto& sk : report.skipped)
        spdlog::warn("spool: skipped {}: {}", sk.path, sk.reason);
    if (!report.journal_compaction_error.empty())
        spdlog::warn("spool: journal compaction deferred (file system full): {}",
                     report.journal_compaction_error);
    if (!report.mid_reservation_error.empty())
        spdlog::error(
            "spool: no MID reservation (file system full), new mail is refused with 4xx until "
            "space returns: {}",
            report.mid_reservation_error);
    state_.corrupt_files = report.quarantined.size();
    committer_ =
        std::make_unique<inject::Committer>(&loop_, spool_, config_.listener.max_message_size);
    delivery_ = std::make_unique<delivery::DeliveryManager>(&loop_, state_, *mail_log_, spool_,
                                                            *committer_, *router_, config_);
    if (!delivery_->tls_error().empty()) {
        spdlog::critical(
            "delivery: cannot build the TLS client context ([delivery] tls_ca_file "
            "\"{}\"): {}",
            config_.delivery.tls_ca_file, delivery_->tls_error());
        exit_code_ = 1;
        stop();
        return;
    }
    delivery_->set_trace([this](const std::string& d, uint64_t dcid, const std::string& l) {
        if (domain_debug_) domain_debug_->trace(d, dcid, l);
    });
    delivery_->set_keylog(
        [this](const std::string& d) { return control::keylog_sink_for(capture_env_, d); });
    for (const auto& m : report.messages)
        delivery_->add_message(m.envelope, m.file_size);
    if (report.max_mid_seen > state_.current_mid) state_.current_mid = report.max_mid_seen;
    spdlog::info(
        "spool: recovered {} messages, {} recipients ({} stale temp files removed, {} "
        "quarantined, {} completed removed)",
        report.messages.size(), report.live_recipients, report.stale_tmp_removed,
        report.quarantined.size(), report.completed_removed);
    report.messages.clear();
    report.messages.shrink_to_fit();

    // Lifetime counters survive restarts.
    spool::CounterMap saved;
    spool::IoStatus cs = spool::load_counters(spool_.store->spool_path(), saved);
    if (!cs.ok()) spdlog::warn("spool: lifetime counters not restored: {}", cs.reason());
    for (size_t i = 0; i < kCounterCount; ++i) {
        auto it = saved.find(std::string(kCounterInfo[i].key));
        if (it != saved.end())
            state_.counters.set_lifetime_base(static_cast<Counter>(i), it->second);
    }
    loop_load_ = std::make_unique<loop::LoopLoad>(&loop_);
    counters_timer_ = loop::Timer::create(&loop_, [this] { save_counters(); });
    counters_timer_->start(10000, 10000);
    counters_timer_->unref();

    committer_->on_space(
        [this](const spool::SpaceCheck& c) { state_.spool_free_bytes = c.free_bytes; });
    committer_->start();
    state_.recovering = false;

    std::string error;
    if (!start_listener(&error)) {
        spdlog::critical("startup failed: {}", error);
        exit_code_ = 1;
        stop();
        return;
    }
    loop::drop_capabilities();  // CAP_NET_BIND_SERVICE (systemd's ambient set) only binds
    running_status_ =
        "Running; SMTP " + state_.listener_address + ", control " + config_.daemon.control_socket;
    ready_ = true;
    notifier_.ready(running_status_);
    notifier_.start_watchdog();
}

// The listener settings a reload may change; new sessions see them, sessions already open
// keep the limits they started with.
void Daemon::apply_listener_limits() {
    const ListenerConfig& lc = config_.listener;
    inject_env_.hostname = config_.daemon.hostname;
    smtp::ServerLimits& l = inject_env_.limits;
    l.max_message_size = lc.max_message_size;
    l.max_recipients = lc.max_recipients;
    l.max_hops = lc.max_hops;
    l.max_data_line = lc.max_line_length;
    l.max_errors = lc.max_errors;
    l.command_timeout = smtp::Millis(uint64_t{lc.command_timeout_s} * 1000);
    l.data_total_timeout = smtp::Millis(uint64_t{lc.data_timeout_s} * 1000);
    l.data_block_timeout = std::min(smtp::ServerLimits{}.data_block_timeout, l.data_total_timeout);
    // STARTTLS then silence: the handshake gets no longer than any other command.
    l.tls_handshake_timeout = l.command_timeout;
    if (committer_) committer_->set_max_message_size(lc.max_message_size);
    if (listener_) listener_->set_limits(lc.max_connections, lc.max_connections_per_client);
}

bool Daemon::start_listener(std::string* error) {
    const ListenerConfig& lc = config_.listener;
    inject_env_.loop = &loop_;
    inject_env_.state = &state_;
    inject_env_.committer = committer_.get();
    inject_env_.mail_log = mail_log_.get();
    apply_listener_limits();
    inject_env_.on_queued = [this](const spool::Envelope& e, uint64_t size) {
        delivery_->add_message(e, size);
    };
    if (!lc.tls_cert.empty()) {
        std::string tls_error;
        inject_env_.tls = tls::make_server_context(lc.tls_cert, lc.tls_key, &tls_error);
        if (!inject_env_.tls) {
            *error = "listener TLS: " + tls_error;
            return false;
        }
    }
    std::string cidr_error;
    std::optional<CidrList> relay = CidrList::parse(lc.relay_from, &cidr_error);
    if (!relay) {
        *error = "listener.relay_from: " + cidr_error;
        return false;
    }
    listener_ = std::make_unique<inject::Listener>(
        inject_env_, std::move(*relay), lc.max_connections, lc.max_connections_per_client);
    bool listening = listen_fds_.smtp >= 0
                         ? listener_->start_from_fd(std::exchange(listen_fds_.smtp, -1), error)
                         : listener_->start(lc.address, error);
    if (!listening) return false;
    state_.listener_address = listener_->bound_address();
    return true;
}

bool Daemon::load_routes(const Config& config, std::string* error) {
    if (config.routes.file.empty()) {
        router_->set_routes(nullptr);
        return true;
    }
    std::ifstream in(config.routes.file);
    if (!in) {
        *error = "routes.file: cannot read " + config.routes.file + ": " + strerror(errno);
        return false;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    dns::RoutesParseResult parsed = dns::parse_routes(ss.str());
    if (!parsed.ok()) {
        *error = "routes.file " + config.routes.file + ": " + parsed.errors.front().to_string();
        return false;
    }
    spdlog::info("routes: {} entries from {}", parsed.table.routes().size(), config.routes.file);
    router_->set_routes(std::make_shared<const dns::RouteTable>(std::move(parsed.table)));
    return true;
}

void Daemon::refresh_gauges() {
    if (!delivery_) return;
    const queue::GlobalStats& t = delivery_->scheduler().totals();
    state_.active_recipients = t.active();
    state_.attempted_recipients = t.attempted;
    state_.destinations = delivery_->scheduler().domain_count();
    state_.spool_bytes = delivery_->queued_bytes();
    int64_t oldest = 0;
    queue::Scheduler& sch = delivery_->scheduler();
    for (queue::DomainId d = 0; d < sch.domain_count(); ++d) {
        queue::DomainGauges g = sch.gauges(d);
        if (g.oldest_received != queue::kNever && (oldest == 0 || g.oldest_received < oldest))
            oldest = g.oldest_received;
    }
    state_.oldest_message_unix_ms = delivery_->clock().to_wall(oldest);  // 0 stays 0
    if (committer_) {
        state_.commit_batches = committer_->stats().batches;
        state_.commit_messages = committer_->stats().messages;
        state_.commit_largest_batch = committer_->stats().largest_batch;
    }
    if (committer_) {
        state_.spool_healthy = committer_->healthy();
        state_.spool_below_floor = !committer_->last_space().ok;
        state_.mids_available = spool_.mids->available();
    }
    if (spool_.store) {
        spool::StoreStats st = spool_.store->stats();
        state_.file_fsyncs = st.file_fsyncs;
        state_.dir_fsyncs = st.dir_fsyncs;
    }
    state_.journal_flushes = delivery_->stats().journal_flushes;
    const delivery::ContentBudget& budget = delivery_->content_budget();
    state_.content_budget = budget.capacity();
    state_.content_in_use = budget.in_use();
    state_.content_peak = budget.peak();
    state_.content_waiting = budget.waiting();
    if (loop_load_) {
        state_.loop_busy[0] = loop_load_->window().busy(1);
        state_.loop_busy[1] = loop_load_->window().busy(10);
        state_.loop_busy[2] = loop_load_->window().busy(60);
    }
}

void Daemon::save_counters() {
    if (saving_counters_ || !spool_.store) return;
    saving_counters_ = true;
    auto map = std::make_shared<spool::CounterMap>();
    for (size_t i = 0; i < kCounterCount; ++i)
        (*map)[std::string(kCounterInfo[i].key)] =
            state_.counters.lifetime(static_cast<Counter>(i));
    std::string dir = spool_.store->spool_path();
    loop::queue_work(
        &loop_,
        [map, dir] {
            spool::IoStatus st = spool::save_counters(dir, *map);
            if (!st.ok()) spdlog::warn("spool: cannot save counters: {}", st.reason());
        },
        [this] { saving_counters_ = false; });
}

void Daemon::stop() {
    if (stopping_) return;
    stopping_ = true;
    notifier_.stopping();
    notifier_.stop_watchdog();
    if (listener_) listener_->stop();
    if (delivery_) delivery_->stop();
    if (resolver_) resolver_->cancel_all();
    if (committer_) committer_->stop();
    counters_timer_.reset();
    loop_load_.reset();
    if (log_commands_) log_commands_->stop();
    if (control_) control_->stop();
    if (metrics_) metrics_->stop();
    signals_.clear();
    if (spool_.store) {
        saving_counters_ = false;
        save_counters();
    }
    // Injection sessions in DATA read the message to its end and get their commit reply,
    // then 421; idle ones get 421 now. Delivery transactions finish and QUIT. Whatever still runs
    // at the deadline is cut: nothing acknowledged is lost (an unfinished delivery stays queued),
    // the process just stops waiting for slow peers. Unreferenced: when everything finished
    // earlier, the timer does not hold the loop.
    shutdown_timer_ = loop::Timer::create(&loop_, [this] {
        spdlog::warn("shutdown: {} s deadline passed, closing the remaining connections",
                     config_.daemon.shutdown_timeout_s);
        if (listener_) listener_->abort_sessions();
        if (delivery_) delivery_->abort_sessions();
        // Connections that already said 421/QUIT but whose peer never reads the reply.
        if (size_t n = loop::close_draining_streams(&loop_))
            spdlog::warn("shutdown: closed {} connections whose peer did not read", n);
    });
    // The loop's cached time may be seconds old when a long callback delivered the signal
    // (a busy machine): counted from it, the deadline would pass at once and cut the
    // sessions still finishing their transaction.
    uv_update_time(&loop_);
    shutdown_timer_->start(config_.daemon.shutdown_timeout_s * 1000);
    shutdown_timer_->unref();
}

// Every reload path, applied or rejected, ends with end_reload(): systemd keeps a unit that
// sent RELOADING=1 in "reloading" until READY=1 comes, and STATUS= gets its summary back.
Daemon::ReloadOutcome Daemon::reload() {
    // Before READY=1 (spool recovery), RELOADING=1/READY=1 would end the start-up early.
    if (ready_ && !stopping_) notifier_.reloading();
    ++state_.reloads;
    ReloadOutcome result;
    result.reply.config = config_path_.empty() ? config_.origin : config_path_;
    ConfigResult loaded =
        config_path_.empty() ? ConfigResult{default_config(), {}} : load_config_file(config_path_);
    if (!loaded.ok()) {
        for (const auto& e : loaded.errors) {
            spdlog::error("reload: {}", e.to_string(config_path_));
            result.errors.push_back(e.to_string(config_path_));
        }
        spdlog::error("reload: configuration rejected, keeping the running one");
        end_reload("; last reload failed, see the log");
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
    // relay_from is checked before anything is applied: a bad list keeps the old one whole.
    std::string cidr_error;
    std::optional<CidrList> relay = CidrList::parse(next.listener.relay_from, &cidr_error);
    if (!relay) {
        spdlog::error("reload: listener.relay_from: {}; configuration rejected", cidr_error);
        end_reload("; last reload failed, see the log");
        result.errors.push_back(std::string("listener.relay_from: ").append(cidr_error));
        return result;
    }
    // Keep restart-only settings as they are running now, take everything else.
    Config applied = next;
    applied.daemon = config_.daemon;
    applied.spool.layout = config_.spool.layout;
    applied.daemon.hostname = next.daemon.hostname;  // HELO name and Received: (live)
    applied.listener.address = config_.listener.address;
    applied.listener.tls_cert = config_.listener.tls_cert;
    applied.listener.tls_key = config_.listener.tls_key;
    applied.dns = config_.dns;
    applied.logging.dir = config_.logging.dir;
    applied.metrics.address = config_.metrics.address;
    config_ = std::move(applied);
    apply_listener_limits();
    if (spool_.recent) spool_.recent->set_capacity(config_.spool.recent_cache);
    if (listener_) listener_->set_relay_from(std::move(*relay));
    if (metrics_) metrics_->set_top_hosts(config_.metrics.top_hosts);
    if (router_) {
        std::string route_error;
        if (!load_routes(config_, &route_error))
            spdlog::error("reload: {} (keeping the old routes)", route_error);
    }
    warn_unimplemented(config_);
    if (delivery_) delivery_->apply_config(config_);
    if (domain_debug_) domain_debug_->set_configured(config_.logging.domain_debug);
    spdlog::info("reload: configuration reloaded from {}", config_.origin);
    end_reload(restart.empty() ? "" : "; restart pending for changed settings");
    result.reply.restart_required = std::move(restart);
    return result;
}

void Daemon::end_reload(const std::string& note) {
    if (ready_ && !stopping_) notifier_.ready(running_status_ + note);
}

int Daemon::run() {
    if (loop_rc_ != 0) {
        spdlog::critical("startup failed: cannot create the event loop: {}", uv_strerror(loop_rc_));
        return 1;
    }
    std::string error;
    if (!start(&error)) {
        spdlog::critical("startup failed: {}", error);
        stop();
        return exit_code_ != 0 ? exit_code_ : 1;  // 2: a setting to fix, not to retry
    }
    spdlog::info("esad {} started: control socket {}", ESAD_VERSION, config_.daemon.control_socket);
    uv_run(&loop_, UV_RUN_DEFAULT);
    stop();
    // Sessions still flushing their last reply finish here; then every handle is closed.
    uv_run(&loop_, UV_RUN_DEFAULT);
    shutdown_timer_.reset();
    listener_.reset();
    delivery_.reset();
    if (resolver_) resolver_->close();
    control_.reset();
    log_commands_.reset();
    metrics_.reset();
    if (mail_log_) mail_log_->flush();
    if (domain_debug_) domain_debug_->flush();
    int rc = loop::drain_and_close(&loop_);
    if (rc != 0) {
        spdlog::critical("event loop did not close cleanly: {}", uv_strerror(rc));
        uv_print_all_handles(&loop_, stderr);
        return 1;
    }
    loop_rc_ = UV_EBADF;  // closed: the destructor must not close it again
    spdlog::info("esad stopped");
    return exit_code_;
}

}  // namespace esad
