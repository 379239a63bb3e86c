// esactl telnet and smtpping (esa-reference §7.2, §7.3; schemas in daemon/control/cmd_tools.h).
//
// telnet HOST [PORT]: the daemon connects (from the delivery source address) and streams
// what the peer sends; esactl prints it and relays its stdin, line by line, as telnet_send
// requests on the same control connection. stdin and the socket are multiplexed with
// poll(2) here (ctl/client.h does one blocking request at a time). When stdin is not a
// terminal (scripts, tests) each line waits for the peer's next line — the banner for the
// first — or kPaceMs of silence, so a piped conversation follows the server instead of
// racing it. After stdin's end esactl waits for the peer to close, or for kEofGraceMs of
// silence, then closes the session. A line holding ^] closes it too. Exit: 0 once
// connected, 1 when no connection could be made, 3 when esad is unreachable.
//
// smtpping [--from ADDR] [--host HOST[:PORT]] RCPT: prints the stages the daemon streams,
// each with its latency, then the result. Exit 0 when the final reply was 2xx, 1 otherwise.
#include "ctl/cmd_tools.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <iomanip>
#include <map>
#include <ostream>
#include <sstream>

#include "common/host_port.h"
#include "common/payloads/smtpping.h"
#include "common/payloads/telnet.h"

namespace esad::ctl {

namespace {

using nlohmann::json;

constexpr int64_t kPaceMs = 2000;
constexpr int64_t kEofGraceMs = 3000;
constexpr size_t kMaxInputLine = 4096;
// The daemon bounds every probe step to a minute; wait a little longer than that.
constexpr double kProbeReadTimeoutS = 90;

int64_t mono_ms() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

int usage(Context& ctx, const std::string& text) {
    ctx.err << "esactl: usage: " << text << "\n";
    return kExitUsage;
}

// One control connection driven without blocking on a single fd: requests go out whole,
// replies are collected by pump() when poll says the socket is readable.
class Channel {
  public:
    ~Channel() {
        if (fd_ >= 0) ::close(fd_);
    }
    bool connect(const std::string& path, std::string* error) {
        fd_ = connect_control_socket(path, error);
        return fd_ >= 0;
    }
    int fd() const { return fd_; }
    // Sends a request; returns its id, or -1 (with *error) when the socket failed.
    int64_t send(const std::string& cmd, const json& args, std::string* error) {
        control::Request req;
        req.id = next_id_++;
        req.cmd = cmd;
        req.args = args;
        std::string wire = control::encode_request(req);
        size_t off = 0;
        while (off < wire.size()) {
            ssize_t n = ::send(fd_, wire.data() + off, wire.size() - off, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                *error = std::string("send: ") + strerror(errno);
                return -1;
            }
            off += static_cast<size_t>(n);
        }
        return req.id;
    }
    // Reads what the socket has (call when poll reported it readable) into complete
    // replies. false with *error when esad closed the connection or sent garbage.
    bool pump(std::deque<control::Reply>* out, std::string* error) {
        char buf[65536];
        ssize_t n = ::read(fd_, buf, sizeof buf);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
        if (n <= 0) {
            *error =
                n == 0 ? "esad closed the connection" : std::string("read: ") + strerror(errno);
            return false;
        }
        buffer_.append(buf, static_cast<size_t>(n));
        size_t nl;
        while ((nl = buffer_.find('\n')) != std::string::npos) {
            auto reply = control::parse_reply(std::string_view(buffer_).substr(0, nl));
            buffer_.erase(0, nl + 1);
            if (!reply) {
                *error = "esad sent a reply this esactl does not understand";
                return false;
            }
            out->push_back(std::move(*reply));
        }
        if (buffer_.size() > control::kMaxLineBytes) {
            *error = "reply from esad too large";
            return false;
        }
        return true;
    }

  private:
    int fd_ = -1;
    int64_t next_id_ = 1;
    std::string buffer_;
};

// ---- telnet -------------------------------------------------------------------------------

struct TelnetState {
    std::string session;
    bool connected = false;
    bool closed = false;  // "closed" event seen
    bool ended = false;   // end of the stream
    bool stdin_open = true;
    bool close_sent = false;
    std::string input;                // stdin bytes not yet split into lines
    std::deque<std::string> pending;  // lines waiting to be sent (pacing)
    int64_t last_peer_ms = 0;
    int64_t last_send_ms = 0;
    uint64_t peer_lines = 0;
    uint64_t peer_lines_at_send = 0;
    bool sent_any = false;
};

int cmd_telnet(Context& ctx, const std::vector<std::string>& args) {
    const char* kUsage = "telnet HOST [PORT]";
    if (args.empty() || args.size() > 2) return usage(ctx, kUsage);
    payloads::TelnetArgs req;
    req.host = args[0];
    if (args.size() == 2) {
        std::optional<uint16_t> port = parse_port(args[1], 1);
        if (!port) return usage(ctx, kUsage + std::string(" (PORT: 1-65535)"));
        req.port = *port;
    }
    Channel ch;
    std::string error;
    if (!ch.connect(ctx.socket_path, &error)) {
        ctx.err << "esactl: " << error << "\n";
        return kExitUnreachable;
    }
    int64_t stream_id = ch.send("telnet", req, &error);
    if (stream_id < 0) {
        ctx.err << "esactl: " << error << "\n";
        return kExitUnreachable;
    }
    const bool interactive = isatty(STDIN_FILENO) == 1;
    TelnetState st;
    const int64_t started = mono_ms();
    bool first_reply = false;
    int exit_code = kExitOk;

    auto send_line = [&](const std::string& line) {
        if (ch.send("telnet_send", payloads::TelnetSendArgs{st.session, line}, &error) < 0)
            return false;
        st.sent_any = true;
        st.last_send_ms = mono_ms();
        st.peer_lines_at_send = st.peer_lines;
        return true;
    };
    auto close_session = [&]() {
        if (st.close_sent || st.closed || st.session.empty()) return true;
        st.close_sent = true;
        return ch.send("telnet_close", payloads::TelnetCloseArgs{st.session}, &error) >= 0;
    };

    while (!st.ended) {
        int64_t now = mono_ms();
        // Pacing: send queued stdin lines when the peer answered or was quiet long enough.
        while (st.connected && !st.closed && !st.pending.empty()) {
            bool answered = st.peer_lines > st.peer_lines_at_send;
            bool quiet = now - std::max(st.last_send_ms, st.last_peer_ms) >= kPaceMs;
            if (!interactive && !answered && !quiet) break;
            if (!send_line(st.pending.front())) {
                ctx.err << "esactl: " << error << "\n";
                return kExitUnreachable;
            }
            st.pending.pop_front();
        }
        if (st.connected && !st.closed && !st.stdin_open && st.pending.empty() &&
            now - std::max(st.last_send_ms, st.last_peer_ms) >= kEofGraceMs) {
            if (!close_session()) {
                ctx.err << "esactl: " << error << "\n";
                return kExitUnreachable;
            }
        }

        pollfd fds[2] = {{ch.fd(), POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
        nfds_t nfds = st.connected && !st.closed && st.stdin_open ? 2 : 1;
        int timeout = -1;
        if (!first_reply && ctx.timeout_s > 0)
            timeout = static_cast<int>(
                std::max<int64_t>(0, started + static_cast<int64_t>(ctx.timeout_s * 1000) - now));
        if (st.connected && !st.closed &&
            (!st.pending.empty() || (!st.stdin_open && !st.close_sent))) {
            int64_t due = std::max(st.last_send_ms, st.last_peer_ms) +
                          (st.pending.empty() ? kEofGraceMs : kPaceMs);
            int wait = static_cast<int>(std::max<int64_t>(0, due - now) + 1);
            timeout = timeout < 0 ? wait : std::min(timeout, wait);
        }
        int rc = ::poll(fds, nfds, timeout);
        if (rc < 0) {
            if (errno == EINTR) continue;
            ctx.err << "esactl: poll: " << strerror(errno) << "\n";
            return kExitFailed;
        }
        if (rc == 0 && !first_reply && ctx.timeout_s > 0 &&
            mono_ms() - started >= ctx.timeout_s * 1000) {
            ctx.err << "esactl: timed out waiting for esad\n";
            return kExitUnreachable;
        }
        if (nfds == 2 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            char buf[4096];
            ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                st.stdin_open = false;
                if (!st.input.empty()) st.pending.push_back(std::move(st.input));
                st.input.clear();
            } else {
                st.input.append(buf, static_cast<size_t>(n));
                size_t nl;
                while ((nl = st.input.find('\n')) != std::string::npos ||
                       st.input.size() > kMaxInputLine) {
                    size_t cut = nl == std::string::npos ? kMaxInputLine : nl;
                    std::string line = st.input.substr(0, cut);
                    st.input.erase(0, nl == std::string::npos ? cut : cut + 1);
                    if (!line.empty() && line.back() == '\r') line.pop_back();
                    if (line.find('\x1d') != std::string::npos) {  // ^]: the escape character
                        st.stdin_open = false;
                        st.pending.clear();
                        if (!close_session()) {
                            ctx.err << "esactl: " << error << "\n";
                            return kExitUnreachable;
                        }
                        break;
                    }
                    if (!control::valid_utf8(line)) {
                        ctx.err << "esactl: line not sent: not valid UTF-8\n";
                        continue;
                    }
                    st.pending.push_back(std::move(line));
                }
            }
        }
        if (!(fds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        std::deque<control::Reply> replies;
        bool alive = ch.pump(&replies, &error);
        for (const auto& reply : replies) {
            if (reply.id != stream_id) {
                // Answers to telnet_send / telnet_close: only failures are worth a word.
                if (!reply.ok) ctx.err << "esactl: " << reply.error_message << "\n";
                continue;
            }
            first_reply = true;
            if (!reply.ok) {
                ctx.err << "esactl: " << reply.error_message << "\n";
                return reply.error_code == "bad_args" ? kExitUsage : kExitFailed;
            }
            if (reply.end) {
                st.ended = true;
                break;
            }
            const json& d = reply.data;
            if (ctx.json) ctx.out << d.dump() << "\n" << std::flush;
            const std::string event = d.is_object() && d.contains("event") && d["event"].is_string()
                                          ? d["event"].get<std::string>()
                                          : std::string();
            std::string why;
            if (event.empty()) return malformed_reply(ctx, "telnet", "event: expected a string");
            if (event == "trying") {
                auto e = payloads::try_parse<payloads::TelnetTrying>(d, &why);
                if (!e) return malformed_reply(ctx, "telnet", why);
                if (!ctx.json) ctx.out << "Trying " << e->ip << "...\n" << std::flush;
            } else if (event == "connect_failed") {
                auto e = payloads::try_parse<payloads::TelnetConnectFailed>(d, &why);
                if (!e) return malformed_reply(ctx, "telnet", why);
                if (!ctx.json)
                    ctx.err << "telnet: connect to address " << e->ip << ": " << e->message << "\n";
            } else if (event == "connected") {
                auto e = payloads::try_parse<payloads::TelnetConnected>(d, &why);
                if (!e) return malformed_reply(ctx, "telnet", why);
                st.connected = true;
                st.session = e->session;
                st.last_peer_ms = st.last_send_ms = mono_ms();
                if (!ctx.json)
                    ctx.out << "Connected to " << e->host << ".\n"
                            << "Escape character is '^]'.\n"
                            << std::flush;
            } else if (event == "line") {
                auto e = payloads::try_parse<payloads::TelnetLine>(d, &why);
                if (!e) return malformed_reply(ctx, "telnet", why);
                ++st.peer_lines;
                st.last_peer_ms = mono_ms();
                if (!ctx.json) ctx.out << e->text << "\n" << std::flush;
            } else if (event == "closed") {
                auto e = payloads::try_parse<payloads::TelnetClosed>(d, &why);
                if (!e) return malformed_reply(ctx, "telnet", why);
                st.closed = true;
                if (!st.connected) {
                    exit_code = kExitFailed;
                    if (!ctx.json) ctx.err << e->reason << "\n";
                } else if (!ctx.json) {
                    ctx.out << e->reason << "\n" << std::flush;
                }
            }  // a later event kind is not this esactl's business (--json shows it)
        }
        if (!alive && !st.ended) {
            ctx.err << "esactl: " << error << "\n";
            return kExitUnreachable;
        }
    }
    return st.connected ? kExitOk : (exit_code == kExitOk ? kExitFailed : exit_code);
}

// ---- smtpping -----------------------------------------------------------------------------

std::string stage_label(const std::string& name) {
    static const std::map<std::string, std::string> kLabels = {
        {"dns", "DNS"},   {"connect", "Connect"},   {"banner", "Banner"}, {"ehlo", "EHLO"},
        {"helo", "HELO"}, {"starttls", "STARTTLS"}, {"tls", "TLS"},       {"mail", "MAIL"},
        {"rcpt", "RCPT"}, {"data", "DATA"},         {"final", "Final"},   {"rset", "RSET"},
        {"quit", "QUIT"}, {"note", "Note"},         {"reply", "Reply"}};
    auto it = kLabels.find(name);
    return it != kLabels.end() ? it->second : name;
}

void print_stage(std::ostream& o, const payloads::SmtppingStage& s) {
    const std::string& name = s.stage;
    std::ostringstream head;
    head << "  " << std::left << std::setw(10) << stage_label(name);
    if (name == "note")
        head << std::setw(10) << "";
    else
        head << std::right << std::setw(6) << s.ms << " ms  ";
    const std::string indent(head.str().size(), ' ');
    o << head.str();
    if (name == "connect") {
        o << s.ip << " port " << s.port << (s.ok ? " from " : ": ") << s.text << "\n";
    } else if (name == "tls") {
        if (s.ok)
            o << s.protocol << " " << s.cipher << ", certificate "
              << (s.verified ? "verified" : "not verified") << "\n";
        else
            o << s.text << "\n";
    } else if (name == "dns") {
        o << s.text << "\n";
        for (const auto& c : s.candidates)
            o << indent << c.ip << " port " << c.port << " (" << c.mx << ")\n";
    } else if (!s.reply.empty()) {
        o << s.reply[0];
        if ((name == "ehlo" || name == "helo") && s.reply.size() > 1) {
            o << " (+" << s.reply.size() - 1 << " lines)\n";
        } else {
            o << "\n";
            for (size_t i = 1; i < s.reply.size(); ++i)
                o << indent << s.reply[i] << "\n";
        }
    } else {
        o << s.text << "\n";
    }
}

int cmd_smtpping(Context& ctx, const std::vector<std::string>& args) {
    const char* kUsage = "smtpping [--from ADDR] [--host HOST[:PORT]] RCPT";
    json req = json::object();
    std::vector<std::string> rest;
    for (size_t i = 0; i < args.size(); ++i) {
        if ((args[i] == "--from" || args[i] == "--host") && i + 1 < args.size()) {
            req[args[i].substr(2)] = args[i + 1];
            ++i;
        } else if (args[i].rfind("--", 0) == 0) {
            return usage(ctx, kUsage);
        } else {
            rest.push_back(args[i]);
        }
    }
    if (rest.size() != 1) return usage(ctx, kUsage);
    req["rcpt"] = rest[0];

    Client client;
    std::string error;
    double timeout = ctx.timeout_s <= 0 ? 0 : std::max(ctx.timeout_s, kProbeReadTimeoutS);
    if (!client.connect(ctx.socket_path, timeout, &error)) {
        ctx.err << "esactl: " << error << "\n";
        return kExitUnreachable;
    }
    auto reply = client.call("smtpping", req, &error);
    json doc = {{"stages", json::array()}};
    bool delivered = false;
    while (true) {
        if (!reply) {
            ctx.err << "esactl: " << error << "\n";
            return kExitUnreachable;
        }
        if (!reply->ok) {
            ctx.err << "esactl: " << reply->error_message << "\n";
            return reply->error_code == "bad_args" ? kExitUsage : kExitFailed;
        }
        if (reply->end) break;
        const json& d = reply->data;
        std::string event = d.value("event", "");
        std::ostream& o = ctx.out;
        // --json prints the data lines as the daemon sent them; the text from the payloads.
        if (event == "start") {
            doc["start"] = d;
            const auto start = d.get<payloads::SmtppingStart>();
            if (!ctx.json) {
                o << "Starting SMTP test to " << start.rcpt << " from " << start.from << "\n";
                o << "Route: " << start.route << (start.host.empty() ? "" : " " + start.host)
                  << "   TLS policy: " << start.tls_policy << "   Message-ID: " << start.message_id
                  << "\n";
            }
        } else if (event == "stage") {
            doc["stages"].push_back(d);
            if (!ctx.json) print_stage(o, d.get<payloads::SmtppingStage>());
        } else if (event == "result") {
            doc["result"] = d;
            const auto result = d.get<payloads::SmtppingResult>();
            delivered = result.delivered;
            if (!ctx.json) {
                const std::string first = result.reply.empty() ? "" : result.reply.front();
                o << "Result: "
                  << (delivered ? "delivered" : "not delivered (" + result.outcome + ")") << " in "
                  << result.total_ms << " ms: " << first << "\n";
                o << "The test message was not spooled: it was sent once, now, and nothing was "
                     "queued or retried.\n";
            }
        }
        o << std::flush;
        reply = client.next(&error);
    }
    if (ctx.json) ctx.out << doc.dump(2) << "\n";
    return delivered ? kExitOk : kExitFailed;
}

}  // namespace

std::vector<Command> tool_commands() {
    return {
        {"telnet", "HOST [PORT]",
         "connect from the daemon's delivery address and talk to HOST (default: delivery port)",
         cmd_telnet},
        {"smtpping", "[--from ADDR] [--host HOST[:PORT]] RCPT",
         "send a test message now through the delivery path, timing each stage (not spooled)",
         cmd_smtpping},
    };
}

}  // namespace esad::ctl
