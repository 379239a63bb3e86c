// See cmd_tools.h.
#include "daemon/control/cmd_tools.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <map>
#include <random>

#include "common/escape.h"
#include "common/host_port.h"
#include "common/payloads/smtpping.h"
#include "common/payloads/telnet.h"
#include "daemon/delivery/smtp_probe.h"
#include "daemon/delivery/telnet_relay.h"
#include "daemon/loop/graveyard.h"
#include "daemon/loop/tcp_connect.h"

namespace esad::control {

using nlohmann::json;

namespace {

constexpr size_t kMaxHostLength = 255;
constexpr size_t kMaxAddressLength = 512;
constexpr uint64_t kWatchIntervalMs = 1000;
// A probe waits at most this long for any one step (delivery's RFC 5321 minutes are meant
// for queued mail, not for an operator at a prompt).
constexpr smtp::Millis kProbeConnectTimeout{30 * 1000};
constexpr smtp::Millis kProbeStepTimeout{60 * 1000};

// A string argument, or "" when absent or not a string.
std::string str_arg(const json& args, const char* key) {
    auto it = args.find(key);
    return it != args.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The destination control for a domain: the domain, then its parent domains, then
// "default" (the lookup delivery_manager.cc does for its TLS policy).
const DestinationControl& destination_for(const Config& config, const std::string& domain) {
    auto it = config.destinations.find(domain);
    if (it != config.destinations.end()) return it->second;
    for (size_t dot = domain.find('.'); dot != std::string::npos; dot = domain.find('.', dot + 1)) {
        auto parent = config.destinations.find(domain.substr(dot + 1));
        if (parent != config.destinations.end()) return parent->second;
    }
    return config.destinations.at("default");
}

// An IP literal as is, else a valid DNS name normalized; false otherwise.
bool normalize_host(const std::string& in, std::string* out) {
    if (in.size() > kMaxHostLength) return false;
    if (loop::is_ip_literal(in)) {
        *out = in;
        return true;
    }
    return dns::normalize_dns_name(in, out);
}

std::string rfc5322_date() {
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S %z", &tm);
    return buf;
}

bool is_ascii(const std::string& s) {
    return std::all_of(s.begin(), s.end(),
                       [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

// A probe stage as the payload, peer text escaped.
payloads::SmtppingStage stage_payload(const delivery::ProbeStage& s) {
    payloads::SmtppingStage p;
    p.stage = s.name;
    p.ms = s.ms;
    p.ok = s.ok;
    p.ip = s.ip;
    p.port = s.port;
    p.text = escape_for_log(s.text, 1024);
    for (const auto& l : s.reply)
        p.reply.push_back(escape_for_log(l, 1024));
    if (s.name == "tls" && s.ok) {
        p.protocol = escape_for_log(s.protocol, 64);
        p.cipher = escape_for_log(s.cipher, 128);
        p.verified = s.verified;
    }
    return p;
}

// A result without a transaction: `why` says what stopped the probe before one ran.
payloads::SmtppingResult not_sent(const std::string& why) {
    payloads::SmtppingResult r;
    r.outcome = "not-sent";
    r.reply = {why};
    return r;
}

// Owns the running telnet sessions and probes. Handlers reach it through a shared_ptr;
// sessions reach it through weak_ptrs, so a late callback after shutdown finds nothing.
class ToolSessions : public std::enable_shared_from_this<ToolSessions> {
  public:
    explicit ToolSessions(ToolCommandsEnv env) : env_(env), rng_(std::random_device{}()) {
        std::string error;
        tls::ClientOptions plain;  // reports verification, never fails on it
        plain.ca_file = env_.config->delivery.tls_ca_file;
        tls_plain_ = tls::make_client_context(plain, &error);
        tls::ClientOptions verify;
        verify.verify = true;
        verify.ca_file = env_.config->delivery.tls_ca_file;
        tls_verify_ = tls::make_client_context(verify, &error);
        if (!tls_plain_ || !tls_verify_) spdlog::error("smtpping: TLS client context: {}", error);
    }

    ~ToolSessions() {
        // Silent teardown: sessions and probes close their handles without callbacks.
        for (auto& [id, t] : telnets_)
            if (t.relay) t.relay.reset();
        for (auto& [id, p] : probes_)
            if (p.probe) p.probe->cancel();
    }

    void telnet(const Request& req, std::shared_ptr<Responder> r);
    void telnet_send(const Request& req, std::shared_ptr<Responder> r);
    void telnet_close(const Request& req, std::shared_ptr<Responder> r);
    void smtpping(const Request& req, std::shared_ptr<Responder> r);

  private:
    struct Telnet {
        std::shared_ptr<Responder> responder;
        std::shared_ptr<delivery::TelnetRelay> relay;  // null while the name is resolved
        std::string host;
        uint16_t port = 0;
    };
    struct Probe {
        std::shared_ptr<Responder> responder;
        std::shared_ptr<delivery::SmtpProbe> probe;  // null while routing
        std::string rcpt;
        uint64_t started_at = 0;  // uv_now
    };

    void start_relay(const std::string& token, std::vector<std::string> ips);
    void resolve(const std::string& host,
                 std::function<void(std::vector<std::string>, std::string)> done);
    void start_probe(uint64_t id, std::vector<delivery::Candidate> candidates);
    void end_probe(uint64_t id, payloads::SmtppingResult result);
    void retire_telnet(const std::string& token);
    void retire_probe(uint64_t id);
    void watch();
    void arm_watch();
    std::string new_token();

    ToolCommandsEnv env_;
    std::shared_ptr<tls::ClientContext> tls_plain_, tls_verify_;
    std::mt19937_64 rng_;
    std::map<std::string, Telnet> telnets_;
    std::map<uint64_t, Probe> probes_;
    std::map<uint64_t, smtp::TlsPolicy> probe_policy_;
    std::map<uint64_t, smtp::Transaction> probe_tx_;
    uint64_t next_probe_ = 1;
    // Retired sessions live until the next loop iteration: never freed on their own stack.
    loop::Graveyard graveyard_{env_.loop};
    loop::HandlePtr<loop::Timer> watch_;
};

std::string ToolSessions::new_token() {
    return fmt::format("{:016x}", rng_());
}

void ToolSessions::arm_watch() {
    if (!watch_) {
        std::weak_ptr<ToolSessions> weak = weak_from_this();
        watch_ = loop::Timer::create(env_.loop, [weak] {
            if (auto self = weak.lock()) self->watch();
        });
        watch_->unref();  // the sessions' own handles keep the loop alive, not this check
    }
    watch_->start(kWatchIntervalMs, kWatchIntervalMs);
}

// Closes what a control client left behind when it went away.
void ToolSessions::watch() {
    std::vector<std::string> gone_telnets;
    for (auto& [token, t] : telnets_)
        if (!t.responder->connected()) gone_telnets.push_back(token);
    std::vector<uint64_t> gone_probes;
    for (auto& [id, p] : probes_)
        if (!p.responder->connected()) gone_probes.push_back(id);
    for (const auto& token : gone_telnets) {
        auto it = telnets_.find(token);
        if (it == telnets_.end()) continue;
        if (it->second.relay)
            it->second.relay->close("control client went away");  // retires through on_closed
        else
            retire_telnet(token);
    }
    for (uint64_t id : gone_probes) {
        auto it = probes_.find(id);
        if (it == probes_.end()) continue;
        spdlog::info("smtpping: {}: control client went away, cancelled", it->second.rcpt);
        if (it->second.probe) it->second.probe->cancel();
        retire_probe(id);
    }
    if (telnets_.empty() && probes_.empty() && watch_) watch_->stop();
}

void ToolSessions::retire_telnet(const std::string& token) {
    auto it = telnets_.find(token);
    if (it == telnets_.end()) return;
    graveyard_.bury(std::move(it->second.relay));
    telnets_.erase(it);
}

void ToolSessions::retire_probe(uint64_t id) {
    auto it = probes_.find(id);
    if (it == probes_.end()) return;
    graveyard_.bury(std::move(it->second.probe));
    probes_.erase(it);
    probe_policy_.erase(id);
    probe_tx_.erase(id);
}

void ToolSessions::resolve(const std::string& host,
                           std::function<void(std::vector<std::string>, std::string)> done) {
    if (loop::is_ip_literal(host)) {
        done({host}, "");
        return;
    }
    if (!env_.resolver) {
        done({}, host + ": no resolver");
        return;
    }
    env_.resolver->resolve_addresses(
        host, dns::IpPreference::kPreferV4, [host, done](const dns::AddressResult& a) {
            if (a.status == dns::DnsStatus::kOk && !a.addresses.empty()) {
                std::vector<std::string> ips;
                for (const auto& rec : a.addresses)
                    ips.push_back(rec.ip);
                done(std::move(ips), "");
            } else if (a.status == dns::DnsStatus::kTemporary) {
                done({}, host + ": temporary DNS failure: " + escape_for_log(a.error, 200));
            } else if (a.status == dns::DnsStatus::kCancelled) {
                done({}, host + ": lookup cancelled");
            } else {
                done({}, host + ": hostname nor servname provided, or not known");
            }
        });
}

// ---- telnet -------------------------------------------------------------------------------

void ToolSessions::telnet(const Request& req, std::shared_ptr<Responder> r) {
    std::string error;
    auto args = payloads::try_parse<payloads::TelnetArgs>(req.args, &error);
    if (!args) {
        r->error("bad_args", "Invalid arguments when processing telnet: " + error);
        return;
    }
    if (args->host.empty()) {
        r->error("bad_args", "Invalid arguments when processing telnet: a host is required");
        return;
    }
    std::string host;
    if (!normalize_host(args->host, &host)) {
        r->error("bad_args", "Invalid arguments when processing telnet: '" +
                                 escape_for_log(args->host, 100) +
                                 "' is not a host name or IP address");
        return;
    }
    int64_t port = args->port.value_or(env_.config->delivery.port);
    if (port < 1 || port > 65535) {
        r->error("bad_args", "Invalid arguments when processing telnet: port must be 1-65535");
        return;
    }
    if (telnets_.size() >= kMaxTelnetSessions) {
        r->error("unavailable",
                 "too many telnet sessions (at most " + std::to_string(kMaxTelnetSessions) + ")");
        return;
    }
    std::string token = new_token();
    telnets_[token] = Telnet{r, nullptr, host, static_cast<uint16_t>(port)};
    arm_watch();
    spdlog::info("telnet: {} port {} requested by an operator", host, port);
    std::weak_ptr<ToolSessions> weak = weak_from_this();
    resolve(host, [weak, token](std::vector<std::string> ips, std::string error) {
        auto self = weak.lock();
        if (!self) return;
        auto it = self->telnets_.find(token);
        if (it == self->telnets_.end()) return;  // the client went away meanwhile
        if (ips.empty()) {
            it->second.responder->error("not_found", error);
            self->retire_telnet(token);
            return;
        }
        self->start_relay(token, std::move(ips));
    });
}

void ToolSessions::start_relay(const std::string& token, std::vector<std::string> ips) {
    Telnet& t = telnets_.at(token);
    std::shared_ptr<Responder> r = t.responder;
    std::weak_ptr<ToolSessions> weak = weak_from_this();
    std::string host = t.host;
    uint16_t port = t.port;
    delivery::TelnetRelay::Callbacks cb;
    cb.on_trying = [r](const std::string& ip) {
        payloads::TelnetTrying e;
        e.ip = ip;
        r->stream(e);
    };
    cb.on_connect_failed = [r](const std::string& ip, const std::string& error) {
        payloads::TelnetConnectFailed e;
        e.ip = ip;
        e.message = error;
        r->stream(e);
    };
    cb.on_connected = [r, token, host, port](const std::string& ip, const std::string& local) {
        payloads::TelnetConnected e;
        e.ip = ip;
        e.port = port;
        e.host = host;
        e.source = local;
        e.session = token;
        r->stream(e);
    };
    cb.on_line = [r](std::string_view line) {
        payloads::TelnetLine e;
        e.text = escape_for_log(line, 4 * 4096);
        r->stream(e);
    };
    cb.on_closed = [r, weak, token, host, port](const std::string& reason) {
        auto self = weak.lock();
        bool connected = false;
        if (self) {
            auto it = self->telnets_.find(token);
            if (it != self->telnets_.end() && it->second.relay)
                connected = it->second.relay->connected();
        }
        payloads::TelnetClosed e;
        e.reason = reason;
        e.connected = connected;
        r->stream(e);
        r->end();
        spdlog::info("telnet: {} port {}: {}", host, port, reason);
        if (self) self->retire_telnet(token);
    };
    t.relay = std::make_shared<delivery::TelnetRelay>(env_.loop, std::move(ips), port,
                                                      env_.config->delivery.source_address,
                                                      delivery::TelnetLimits{}, std::move(cb));
    auto relay = t.relay;  // start() may end the session (no address could be tried)
    relay->start();
}

void ToolSessions::telnet_send(const Request& req, std::shared_ptr<Responder> r) {
    std::string error;
    auto args = payloads::try_parse<payloads::TelnetSendArgs>(req.args, &error);
    if (!args || !args->line) {
        r->error("bad_args", "telnet_send needs a session and a line");
        return;
    }
    const std::string& token = args->session;
    auto it = telnets_.find(token);
    if (it == telnets_.end() || !it->second.relay) {
        r->error("not_found", "no telnet session " + escape_for_log(token, 40));
        return;
    }
    const std::string& line = *args->line;
    auto relay = it->second.relay;
    if (!relay->send_line(line, &error)) {
        r->error("bad_args", error);
        return;
    }
    r->ok(payloads::TelnetSendReply{line.size() + 2});
}

void ToolSessions::telnet_close(const Request& req, std::shared_ptr<Responder> r) {
    std::string error;
    auto args = payloads::try_parse<payloads::TelnetCloseArgs>(req.args, &error);
    if (!args) {
        r->error("bad_args", "telnet_close needs a session: " + error);
        return;
    }
    const std::string token = args->session;
    auto it = telnets_.find(token);
    if (it == telnets_.end()) {
        r->error("not_found", "no telnet session " + escape_for_log(token, 40));
        return;
    }
    if (it->second.relay) {
        auto relay = it->second.relay;
        relay->close("Connection closed.");
    } else {
        it->second.responder->error("unavailable", "telnet closed before it connected");
        retire_telnet(token);
    }
    r->ok(json::object());
}

// ---- smtpping -----------------------------------------------------------------------------

void ToolSessions::smtpping(const Request& req, std::shared_ptr<Responder> r) {
    const json& args = req.args;
    std::string rcpt = str_arg(args, "rcpt");
    size_t at = rcpt.rfind('@');
    std::string domain;
    if (rcpt.size() > kMaxAddressLength || at == std::string::npos || at == 0 ||
        !dns::normalize_dns_name(rcpt.substr(at + 1), &domain)) {
        r->error("bad_args", "smtpping needs a recipient address local@domain");
        return;
    }
    const Config& config = *env_.config;
    std::string from = str_arg(args, "from");
    if (from.empty()) from = "postmaster@" + config.daemon.hostname;
    if (from.size() > kMaxAddressLength || from.find('@') == std::string::npos) {
        r->error("bad_args", "--from needs an address local@domain");
        return;
    }
    std::string host_arg = str_arg(args, "host");
    std::string host;
    uint16_t port = config.delivery.port;
    if (!host_arg.empty()) {
        std::optional<HostPort> hp = parse_host_port(host_arg, PortRule::kOptional);
        if (!hp || hp->port == 0 || !normalize_host(hp->host, &host)) {
            r->error("bad_args", "--host must be HOST or HOST:PORT ([IPv6]:PORT)");
            return;
        }
        port = hp->port.value_or(port);
    }
    if (probes_.size() >= kMaxProbes) {
        r->error("unavailable",
                 "too many smtpping probes running (at most " + std::to_string(kMaxProbes) + ")");
        return;
    }

    const std::string& policy_text = destination_for(config, domain).tls;
    smtp::TlsPolicy policy =
        smtp::parse_tls_policy(policy_text).value_or(smtp::TlsPolicy::kPreferred);
    std::string message_id = fmt::format("<smtpping.{:x}.{:08x}@{}>", std::time(nullptr),
                                         static_cast<uint32_t>(rng_()), config.daemon.hostname);
    std::string content = "Date: " + rfc5322_date() + "\r\nFrom: <" + from + ">\r\nTo: <" + rcpt +
                          ">\r\nSubject: esad smtpping test\r\nMessage-ID: " + message_id +
                          "\r\nX-Esad-Smtpping: probe\r\nMIME-Version: 1.0\r\n"
                          "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
                          "This is a test message sent by `esactl smtpping` from esad on " +
                          config.daemon.hostname +
                          ".\r\nIt was generated for a delivery-path test and never spooled.\r\n";
    smtp::Transaction tx;
    tx.mid = 0;
    tx.sender = from;
    tx.recipients.push_back({0, rcpt});
    tx.smtputf8 = !is_ascii(from) || !is_ascii(rcpt);
    tx.content = std::make_shared<const std::string>(std::move(content));

    std::string route = !host.empty()                                     ? "host"
                        : (env_.router && env_.router->route_for(domain)) ? "smtproutes"
                                                                          : "mx";
    uint64_t id = next_probe_++;
    probes_[id] = Probe{r, nullptr, rcpt, uv_now(env_.loop)};
    probe_policy_[id] = policy;
    probe_tx_[id] = std::move(tx);
    arm_watch();
    spdlog::info("smtpping: {} from {} via {} requested by an operator", escape_for_log(rcpt, 200),
                 escape_for_log(from, 200), route == "host" ? host : route);
    r->stream(payloads::SmtppingStart{rcpt, from, domain, route, host,
                                      std::string(smtp::to_string(policy)), message_id});

    std::weak_ptr<ToolSessions> weak = weak_from_this();
    uint64_t t0 = uv_now(env_.loop);
    auto dns_done = [weak, id, t0](bool ok, std::vector<delivery::Candidate> candidates,
                                   std::string text) {
        auto self = weak.lock();
        if (!self) return;
        auto it = self->probes_.find(id);
        if (it == self->probes_.end()) return;
        payloads::SmtppingStage dns;
        dns.stage = "dns";
        dns.ms = uv_now(self->env_.loop) - t0;
        dns.ok = ok;
        dns.text = text;
        for (const auto& c : candidates)
            dns.candidates.push_back({c.ip, c.port, c.mx_name});
        it->second.responder->stream(dns);
        if (!ok) {
            self->end_probe(id, not_sent(text));
            return;
        }
        self->start_probe(id, std::move(candidates));
    };

    if (!host.empty()) {
        resolve(host, [dns_done, host, port](std::vector<std::string> ips, std::string error) {
            std::vector<delivery::Candidate> cands;
            for (auto& ip : ips)
                cands.push_back({ip, port, host});
            bool ok = !cands.empty();
            std::string text = ok ? std::to_string(ips.size()) + " address(es) for " + host : error;
            dns_done(ok, std::move(cands), std::move(text));
        });
        return;
    }
    if (!env_.router) {
        dns_done(false, {}, "no router");
        return;
    }
    env_.router->route(domain, [dns_done, domain, route](delivery::RouteResult rr) {
        using S = delivery::RouteResult::Status;
        if (rr.status == S::kOk && !rr.candidates.empty()) {
            std::string text = domain + " via " + (route == "smtproutes" ? "smtproutes" : "MX") +
                               ": " + std::to_string(rr.candidates.size()) + " candidate(s)";
            dns_done(true, std::move(rr.candidates), std::move(text));
        } else if (rr.status == S::kDiscard) {
            dns_done(false, {},
                     domain + " is routed to /dev/null: delivery would discard the message");
        } else {
            std::string text = rr.enhanced + " " + rr.reason;
            if (!rr.detail.empty()) text += " (" + escape_for_log(rr.detail, 300) + ")";
            dns_done(false, {}, text);
        }
    });
}

void ToolSessions::start_probe(uint64_t id, std::vector<delivery::Candidate> candidates) {
    const Config& config = *env_.config;
    delivery::ProbeEnv penv;
    penv.loop = env_.loop;
    penv.tls_plain = tls_plain_;
    penv.tls_verify = tls_verify_;
    penv.helo_name = config.daemon.hostname;
    penv.source_address = config.delivery.source_address;
    smtp::ClientTimeouts& t = penv.timeouts;
    t.connect = std::min(t.connect, kProbeConnectTimeout);
    for (smtp::Millis* m : {&t.greeting, &t.helo, &t.starttls, &t.tls_handshake, &t.mail, &t.rcpt,
                            &t.data_init, &t.data_block, &t.data_done, &t.rset, &t.quit})
        *m = std::min(*m, kProbeStepTimeout);
    if (!tls_plain_ || !tls_verify_) {
        end_probe(id, not_sent("no TLS client context (see the daemon log)"));
        return;
    }
    Probe& p = probes_.at(id);
    std::shared_ptr<Responder> r = p.responder;
    std::weak_ptr<ToolSessions> weak = weak_from_this();
    delivery::SmtpProbe::Callbacks cb;
    cb.on_stage = [r](const delivery::ProbeStage& s) { r->stream(stage_payload(s)); };
    cb.on_done = [weak, id](const delivery::ProbeResult& res) {
        auto self = weak.lock();
        if (!self) return;
        payloads::SmtppingResult result;
        result.delivered = res.delivered;
        result.outcome = res.outcome;
        // The reply as the peer sent it ("550 5.1.1 ..."); a local failure has no code.
        for (const auto& l : res.reply.lines)
            result.reply.push_back(escape_for_log(
                res.reply.code != 0 ? std::to_string(res.reply.code) + " " + l : l, 1024));
        result.transaction = {res.reply.code, res.reply.enhanced, res.tls, res.ip};
        self->end_probe(id, std::move(result));
    };
    p.probe = std::make_shared<delivery::SmtpProbe>(
        penv, std::move(candidates), probe_policy_.at(id), probe_tx_.at(id), std::move(cb));
    auto probe = p.probe;
    probe->start();
}

void ToolSessions::end_probe(uint64_t id, payloads::SmtppingResult result) {
    auto it = probes_.find(id);
    if (it == probes_.end()) return;
    result.total_ms = uv_now(env_.loop) - it->second.started_at;
    it->second.responder->stream(result);
    it->second.responder->end();
    spdlog::info("smtpping: {}: {} {}", escape_for_log(it->second.rcpt, 200), result.outcome,
                 result.reply.empty() ? std::string() : result.reply.front());
    retire_probe(id);
}

}  // namespace

void register_tool_commands(ControlServer& server, ToolCommandsEnv env) {
    auto tools = std::make_shared<ToolSessions>(env);
    server.add_handler("telnet", [tools](const Request& q, std::shared_ptr<Responder> r) {
        tools->telnet(q, std::move(r));
    });
    server.add_handler("telnet_send", [tools](const Request& q, std::shared_ptr<Responder> r) {
        tools->telnet_send(q, std::move(r));
    });
    server.add_handler("telnet_close", [tools](const Request& q, std::shared_ptr<Responder> r) {
        tools->telnet_close(q, std::move(r));
    });
    server.add_handler("smtpping", [tools](const Request& q, std::shared_ptr<Responder> r) {
        tools->smtpping(q, std::move(r));
    });
}

}  // namespace esad::control
