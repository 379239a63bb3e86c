// See server_fsm.h for the contract.
#include "daemon/smtp/server_fsm.h"

#include <algorithm>

#include "common/ascii.h"
#include "common/escape.h"
#include "common/header_fields.h"
#include "daemon/smtp/command.h"

namespace esad::smtp {

namespace {

constexpr std::size_t kMaxHeloName = 255;
constexpr std::size_t kMaxEcho = 64;
constexpr std::size_t kMaxMessageId = 256;

// Keeps characters that are safe inside a Received: header token; others become '_'.
std::string header_token(std::string_view s, std::size_t max) {
    std::string out;
    for (char c : s.substr(0, max)) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '.' || c == '-' || c == ':' || c == '[' ||
                        c == ']' || c == '_';
        out += ok ? c : '_';
    }
    return out;
}

// Printable ASCII (UTF-8 allowed for addresses) minus anything that could break a line.
std::string header_text(std::string_view s, std::size_t max) {
    std::string out;
    for (char c : s.substr(0, max)) {
        const auto u = static_cast<unsigned char>(c);
        out += (u < 0x20 || u == 0x7f) ? '_' : c;
    }
    return out;
}

}  // namespace

std::string_view to_string(State state) {
    switch (state) {
        case State::kInit:
            return "init";
        case State::kNeedHelo:
            return "need_helo";
        case State::kReady:
            return "ready";
        case State::kMail:
            return "mail";
        case State::kRcpt:
            return "rcpt";
        case State::kData:
            return "data";
        case State::kCommitting:
            return "committing";
        case State::kTlsHandshake:
            return "tls_handshake";
        case State::kClosed:
            return "closed";
    }
    return "?";
}

ServerSession::ServerSession(ServerConfig config) : config_(std::move(config)) {
    tls_active_ = config_.tls_active;
}

// ---- state and output helpers ------------------------------------------------------------

void ServerSession::enter(State next, Millis now) {
    if (next == state_) return;
    actions_.push_back(Transition{state_, next});
    state_ = next;
    switch (next) {
        case State::kNeedHelo:
        case State::kReady:
        case State::kMail:
        case State::kRcpt:
            wait_started_ = now;
            break;
        case State::kData:
            data_started_ = now;
            data_progress_ = now;
            break;
        case State::kTlsHandshake:
            tls_started_ = now;
            break;
        case State::kInit:
        case State::kCommitting:
        case State::kClosed:
            break;
    }
}

void ServerSession::reply(std::string text) {
    actions_.push_back(Reply{std::move(text)});
}

void ServerSession::reply(int code, std::string_view enhanced, std::string_view text) {
    std::string s = std::to_string(code);
    s += ' ';
    s += enhanced;
    s += ' ';
    s += text;
    s += "\r\n";
    reply(std::move(s));
}

void ServerSession::close_with(int code, std::string_view enhanced, std::string_view text) {
    reply(code, enhanced, config_.hostname + " " + std::string(text));
    actions_.push_back(Close{});
    // Close ends the session; kClosed is entered without a deadline.
    actions_.push_back(Transition{state_, State::kClosed});
    state_ = State::kClosed;
    in_.clear();
}

void ServerSession::protocol_error(int code, std::string_view enhanced, std::string_view text) {
    reply(code, enhanced, text);
    if (++errors_ >= config_.limits.max_errors) {
        close_with(421, "4.7.0", "Error: too many errors");
    }
}

void ServerSession::error_reply(const SmtpError& error) {
    protocol_error(error.code, error.enhanced, error.text);
}

void ServerSession::junk() {
    if (++junk_ > config_.limits.max_junk_commands) {
        close_with(421, "4.7.0", "Error: too many commands without a message");
    }
}

void ServerSession::reset_transaction(std::string_view reason) {
    if (in_transaction() || state_ == State::kData) actions_.push_back(Rset{std::string(reason)});
    envelope_ = Envelope{};
    rcpt_attempted_ = false;
    content_.clear();
    content_.shrink_to_fit();
}

// ---- public events -----------------------------------------------------------------------

void ServerSession::start(Millis now, Greeting greeting) {
    if (state_ != State::kInit) return;
    switch (greeting) {
        case Greeting::kReady:
            reply("220 " + config_.hostname + " ESMTP esad\r\n");
            enter(State::kNeedHelo, now);
            process(now);  // anything fed before start() (early talker) is handled in order
            return;
        case Greeting::kSpoolUnavailable:
            close_with(421, "4.3.2", "Service not available, try again later");
            return;
        case Greeting::kTooManyConnections:
            close_with(421, "4.7.0", "Too many connections, try again later");
            return;
        case Greeting::kSuspended:
            close_with(421, "4.3.2", "Receiving suspended, try again later");
            return;
    }
}

void ServerSession::feed(std::string_view bytes, Millis now) {
    switch (state_) {
        case State::kClosed:
        case State::kTlsHandshake:  // plaintext after STARTTLS: discarded (CVE-2011-0411)
            return;
        case State::kInit:
            // Early talker before start(): keep what fits, handled after the greeting.
            in_.append(bytes.substr(
                0, std::min(bytes.size(),
                            config_.limits.max_pending_input -
                                std::min(in_.size(), config_.limits.max_pending_input))));
            return;
        case State::kCommitting:
            // Only buffered; bounded so a client cannot make us hold unbounded input.
            if (overflow_ || in_.size() + bytes.size() > config_.limits.max_pending_input) {
                overflow_ = true;  // answered with 421 after the commit reply
                in_.clear();
                return;
            }
            in_.append(bytes);
            return;
        default:
            in_.append(bytes);
            process(now);
            return;
    }
}

void ServerSession::on_tls_established(Millis now) {
    if (state_ != State::kTlsHandshake) return;
    tls_active_ = true;
    // RFC 3207 §4.2: forget everything learned before TLS.
    helo_.clear();
    esmtp_ = false;
    reset_transaction("STARTTLS");
    in_.clear();
    discarding_ = false;
    enter(State::kNeedHelo, now);
}

void ServerSession::on_tls_failed() {
    if (state_ == State::kClosed) return;
    actions_.push_back(Close{});
    actions_.push_back(Transition{state_, State::kClosed});
    state_ = State::kClosed;
    in_.clear();
}

bool ServerSession::on_commit_result(const CommitResult& result, Millis now) {
    if (state_ != State::kCommitting) return false;
    switch (result.kind) {
        case CommitResult::Kind::kQueued:
            reply(250, "2.0.0", "Ok: queued as " + escape_for_log(result.mid, kMaxEcho));
            ++messages_;
            junk_ = 0;
            break;
        case CommitResult::Kind::kNoSpace:
            reply(452, "4.3.1", "Insufficient system storage");
            break;
        case CommitResult::Kind::kIoError:
            reply(451, "4.3.0", "Error: queue file write error, try again later");
            break;
    }
    envelope_ = Envelope{};
    rcpt_attempted_ = false;
    content_.clear();
    enter(State::kReady, now);
    if (shutdown_pending_) {
        close_with(421, "4.3.2", "Service shutting down");
    } else if (overflow_) {
        close_with(421, "4.5.0", "Error: too much pipelined input");
    } else {
        process(now);
    }
    return true;
}

std::optional<Millis> ServerSession::deadline() const {
    const auto& l = config_.limits;
    switch (state_) {
        case State::kNeedHelo:
        case State::kReady:
        case State::kMail:
        case State::kRcpt:
            return wait_started_ + l.command_timeout;
        case State::kData:
            return std::min(data_started_ + l.data_total_timeout,
                            data_progress_ + l.data_block_timeout);
        case State::kTlsHandshake:
            return tls_started_ + l.tls_handshake_timeout;
        case State::kInit:
        case State::kCommitting:
        case State::kClosed:
            return std::nullopt;
    }
    return std::nullopt;
}

bool ServerSession::on_timeout(Millis now) {
    const auto d = deadline();
    if (!d || now < *d) return false;
    if (state_ == State::kTlsHandshake) {
        on_tls_failed();  // mid-handshake: a plaintext reply would be garbage
    } else {
        close_with(421, "4.4.2", "Error: timeout exceeded");
    }
    return true;
}

void ServerSession::shutdown(Millis /*now*/) {
    switch (state_) {
        case State::kClosed:
            return;
        case State::kData:
        case State::kCommitting:
            // A transaction whose content is under way finishes: the client gets its 250
            // (after the commit) or refusal, then 421 (the daemon's shutdown_timeout bounds it).
            shutdown_pending_ = true;
            return;
        case State::kInit:
        case State::kTlsHandshake:
            on_tls_failed();
            return;
        default:
            close_with(421, "4.3.2", "Service shutting down");
            return;
    }
}

std::vector<Action> ServerSession::take_actions() {
    std::vector<Action> out;
    out.swap(actions_);
    return out;
}

// ---- command input -----------------------------------------------------------------------

void ServerSession::process(Millis now) {
    const std::size_t max_content = config_.limits.max_line_length - 2;
    std::size_t pos = 0;
    while (pos < in_.size()) {
        if (state_ == State::kData) {
            pos += consume_data(std::string_view(in_).substr(pos), now);
            continue;
        }
        if (state_ != State::kNeedHelo && state_ != State::kReady && state_ != State::kMail &&
            state_ != State::kRcpt) {
            break;  // committing (keep buffering), TLS handshake or closed
        }
        if (discarding_) {
            // Skip the tail of an over-long line, up to and including its CRLF.
            std::size_t i = pos;
            for (; i < in_.size(); ++i) {
                const char c = in_[i];
                if (discard_saw_cr_ && c == '\n') {
                    discarding_ = false;
                    discard_saw_cr_ = false;
                    ++i;
                    break;
                }
                discard_saw_cr_ = (c == '\r');
            }
            pos = i;
            continue;
        }
        const std::size_t crlf = in_.find("\r\n", pos);
        if (crlf == std::string::npos) {
            // No complete line yet. Refuse it as soon as it can no longer fit.
            const std::size_t have = in_.size() - pos;
            if (have > max_content + 1 || (have == max_content + 1 && in_.back() != '\r')) {
                discarding_ = true;
                discard_saw_cr_ = in_.back() == '\r';
                pos = in_.size();
                wait_started_ = now;
                protocol_error(500, "5.5.6", "Error: line too long");
            }
            break;
        }
        const std::string_view line = std::string_view(in_).substr(pos, crlf - pos);
        pos = crlf + 2;
        if (line.size() > max_content) {
            wait_started_ = now;
            protocol_error(500, "5.5.6", "Error: line too long");
            continue;
        }
        handle_line(line, pos < in_.size(), now);
        if (state_ == State::kTlsHandshake) pos = in_.size();  // CVE-2011-0411
    }
    if (state_ == State::kClosed) {
        in_.clear();
    } else {
        in_.erase(0, std::min(pos, in_.size()));
    }
    if (state_ == State::kCommitting && in_.size() > config_.limits.max_pending_input) {
        overflow_ = true;  // answered with 421 after the commit reply
        in_.clear();
    }
}

void ServerSession::handle_line(std::string_view line, bool more_pending, Millis now) {
    wait_started_ = now;  // a complete command restarts the command deadline
    if (line.find_first_of("\r\n") != std::string_view::npos) {
        protocol_error(500, "5.5.2", "Error: bare CR or LF not permitted in commands");
        return;
    }
    if (line_has_invalid_octets(line)) {
        protocol_error(500, "5.5.2", "Error: invalid characters in command");
        return;
    }
    const Command cmd = parse_command(line);

    if (config_.limits.reject_unauth_pipelining && more_pending) {
        const bool group_end = cmd.verb == Verb::kEhlo || cmd.verb == Verb::kHelo ||
                               cmd.verb == Verb::kData || cmd.verb == Verb::kQuit ||
                               cmd.verb == Verb::kNoop || cmd.verb == Verb::kVrfy ||
                               cmd.verb == Verb::kStartTls;
        if (!esmtp_ || group_end) {
            close_with(554, "5.5.0", "Error: SMTP protocol synchronization");
            return;
        }
    }

    const bool greeted = state_ != State::kNeedHelo;
    switch (cmd.verb) {
        case Verb::kEhlo:
            do_helo(cmd.arg, true, now);
            return;
        case Verb::kHelo:
            do_helo(cmd.arg, false, now);
            return;
        case Verb::kMail:
            if (!greeted) return protocol_error(503, "5.5.1", "Error: send HELO/EHLO first");
            if (state_ != State::kReady) {
                return protocol_error(503, "5.5.1", "Error: nested MAIL command");
            }
            return do_mail(cmd.arg, now);
        case Verb::kRcpt:
            if (!in_transaction()) return protocol_error(503, "5.5.1", "Error: need MAIL command");
            return do_rcpt(cmd.arg, now);
        case Verb::kData:
            if (state_ == State::kMail && rcpt_attempted_) {
                return protocol_error(554, "5.5.1", "Error: no valid recipients");
            }
            if (state_ != State::kRcpt) {
                return protocol_error(503, "5.5.1", "Error: need RCPT command");
            }
            return do_data(cmd.arg, now);
        case Verb::kRset:
            if (!cmd.arg.empty()) return protocol_error(501, "5.5.4", "Syntax: RSET");
            reset_transaction("RSET");
            if (greeted) enter(State::kReady, now);
            reply(250, "2.0.0", "Ok");
            return junk();
        case Verb::kNoop:
            reply(250, "2.0.0", "Ok");
            return junk();
        case Verb::kVrfy:
            if (cmd.arg.empty()) return protocol_error(501, "5.5.4", "Syntax: VRFY address");
            reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery");
            return junk();
        case Verb::kHelp:
            reply(214, "2.0.0",
                  (config_.tls_available && !tls_active_)
                      ? "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS"
                      : "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP");
            return junk();
        case Verb::kQuit:
            reply(221, "2.0.0", config_.hostname + " closing connection");
            actions_.push_back(Close{});
            actions_.push_back(Transition{state_, State::kClosed});
            state_ = State::kClosed;
            return;
        case Verb::kStartTls:
            return do_starttls(cmd.arg, now);
        case Verb::kNotImplemented:
            return protocol_error(502, "5.5.1", "Error: command not implemented");
        case Verb::kUnknown:
            return protocol_error(500, "5.5.2", "Error: command not recognized");
    }
}

void ServerSession::do_helo(std::string_view arg, bool esmtp, Millis now) {
    const std::string_view verb = esmtp ? "EHLO" : "HELO";
    if (arg.empty())
        return protocol_error(501, "5.5.4", "Syntax: " + std::string(verb) + " hostname");
    // Only the first word names the client; some clients append junk after it.
    const std::string_view name = arg.substr(0, arg.find_first_of(" \t"));
    for (char c : name) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x21 || u > 0x7e) {
            return protocol_error(501, "5.5.2",
                                  "Error: invalid " + std::string(verb) + " argument");
        }
    }
    if (name.size() > kMaxHeloName) {
        return protocol_error(501, "5.5.4", "Error: " + std::string(verb) + " argument too long");
    }
    reset_transaction(verb);  // RFC 5321 §4.1.4: EHLO/HELO resets the transaction
    helo_ = std::string(name);
    esmtp_ = esmtp;
    enter(State::kReady, now);
    if (!esmtp) {
        reply("250 " + config_.hostname + "\r\n");
        return;
    }
    std::vector<std::string> lines{config_.hostname, "PIPELINING",
                                   "SIZE " + std::to_string(config_.limits.max_message_size)};
    if (config_.tls_available && !tls_active_) lines.emplace_back("STARTTLS");
    lines.emplace_back("ENHANCEDSTATUSCODES");
    lines.emplace_back("8BITMIME");
    lines.emplace_back("SMTPUTF8");
    std::string text;
    for (std::size_t i = 0; i < lines.size(); ++i) {
        text += i + 1 < lines.size() ? "250-" : "250 ";
        text += lines[i];
        text += "\r\n";
    }
    reply(std::move(text));
}

void ServerSession::do_mail(std::string_view arg, Millis now) {
    const auto& l = config_.limits;
    if (messages_ >= l.max_messages) {
        return close_with(421, "4.7.0", "Error: too many messages in one session");
    }
    if (!istarts_with(arg, "FROM:")) {
        return protocol_error(501, "5.5.4", "Syntax: MAIL FROM:<address>");
    }
    const auto split = split_path_and_params(arg.substr(5));
    if (!split) return protocol_error(501, "5.1.7", "Bad sender address syntax");
    if (!split->params.empty() && !esmtp_) {
        return protocol_error(555, "5.5.4", "Error: parameters require EHLO");
    }
    const MailParamsResult params = parse_mail_params(split->params);
    if (!params.ok()) return error_reply(params.error);
    const PathResult path = parse_path(split->path, {PathRole::kSender, params.params->smtputf8});
    if (!path.ok()) return error_reply(path.error);
    if (params.params->size && *params.params->size > l.max_message_size) {
        return reply(552, "5.3.4", "Message size exceeds fixed maximum message size");
    }
    if (config_.spool_admit) {
        switch (config_.spool_admit(params.params->size.value_or(0))) {
            case SpoolAdmit::kOk:
                break;
            case SpoolAdmit::kInsufficientStorage:
                return reply(452, "4.3.1", "Insufficient system storage");
            case SpoolAdmit::kTemporaryFailure:
                return reply(451, "4.3.0", "Error: queue not available, try again later");
            case SpoolAdmit::kUnavailable:
                return close_with(421, "4.3.2", "Service not available, try again later");
        }
    }
    envelope_ = Envelope{};
    envelope_.sender = *path.mailbox;
    envelope_.params = *params.params;
    envelope_.helo = helo_;
    envelope_.esmtp = esmtp_;
    envelope_.tls = tls_active_;
    rcpt_attempted_ = false;
    actions_.push_back(MailFrom{path.mailbox->path()});
    enter(State::kMail, now);
    reply(250, "2.1.0", "Ok");
}

void ServerSession::do_rcpt(std::string_view arg, Millis now) {
    const auto& l = config_.limits;
    rcpt_attempted_ = true;
    if (!istarts_with(arg, "TO:")) {
        return protocol_error(501, "5.5.4", "Syntax: RCPT TO:<address>");
    }
    const auto split = split_path_and_params(arg.substr(3));
    if (!split) return protocol_error(501, "5.1.3", "Bad recipient address syntax");
    if (auto e = check_rcpt_params(split->params)) return error_reply(*e);
    const PathResult path =
        parse_path(split->path, {PathRole::kRecipient, envelope_.params.smtputf8});
    if (!path.ok()) return error_reply(path.error);
    if (path.mailbox->domain_is_literal && !l.allow_literal_recipients) {
        return protocol_error(553, "5.1.3", "Address literal recipients not permitted");
    }
    if (!config_.relay_allowed) {
        actions_.push_back(RcptRejected{escape_for_log(path.mailbox->path(), 256), "5.7.1"});
        return protocol_error(554, "5.7.1", "Relaying denied");  // probing counts
    }
    if (envelope_.recipients.size() >= l.max_recipients) {
        return protocol_error(452, "4.5.3", "Too many recipients");
    }
    const std::size_t rid = envelope_.recipients.size();
    envelope_.recipients.push_back(*path.mailbox);
    actions_.push_back(RcptTo{rid, path.mailbox->path()});
    enter(State::kRcpt, now);
    reply(250, "2.1.5", "Ok");
}

void ServerSession::do_data(std::string_view arg, Millis now) {
    if (!arg.empty()) return protocol_error(501, "5.5.4", "Syntax: DATA");
    content_.clear();
    d_bol_ = true;  // the DATA line's CRLF counts: ".\r\n" at once is an empty message
    d_dot_line_ = false;
    d_pending_cr_ = false;
    d_line_len_ = 0;
    d_bare_ = d_nul_ = d_too_long_ = d_oversize_ = false;
    reply("354 End data with <CR><LF>.<CR><LF>\r\n");  // RFC 2034: no code on 3xx
    actions_.push_back(DataStart{});
    enter(State::kData, now);
}

void ServerSession::do_starttls(std::string_view arg, Millis now) {
    if (tls_active_) return protocol_error(503, "5.5.1", "Error: TLS already active");
    if (!config_.tls_available) {
        return protocol_error(502, "5.5.1", "Error: command not implemented");
    }
    if (!arg.empty()) return protocol_error(501, "5.5.4", "Syntax: STARTTLS");
    if (state_ == State::kNeedHelo) return protocol_error(503, "5.5.1", "Error: send EHLO first");
    if (in_transaction()) {
        return protocol_error(503, "5.5.1", "Error: MAIL transaction in progress");
    }
    reply(220, "2.0.0", "Ready to start TLS");
    actions_.push_back(StartTls{});
    enter(State::kTlsHandshake, now);
    // process() drops the rest of the buffered input once it sees kTlsHandshake.
}

// ---- DATA --------------------------------------------------------------------------------

void ServerSession::data_run(std::string_view run) {
    d_bol_ = false;
    d_line_len_ += run.size();
    if (d_line_len_ > config_.limits.max_data_line) d_too_long_ = true;
    data_store(run);
}

void ServerSession::data_store(std::string_view run) {
    if (d_oversize_) return;
    if (content_.size() + run.size() > config_.limits.max_message_size) {
        d_oversize_ = true;  // keep reading to the end, stop storing
        content_.clear();
        content_.shrink_to_fit();
        return;
    }
    content_.append(run);
}

void ServerSession::data_octet(char c) {
    if (c == '\0') d_nul_ = true;
    data_run(std::string_view(&c, 1));
}

bool ServerSession::data_end_of_line(Millis now) {
    if (d_dot_line_ && d_line_len_ == 0) return true;  // CRLF "." CRLF
    data_store("\r\n");
    d_bol_ = true;
    d_dot_line_ = false;
    d_line_len_ = 0;
    data_progress_ = now;
    return false;
}

std::size_t ServerSession::consume_data(std::string_view v, Millis now) {
    std::size_t i = 0;
    while (i < v.size()) {
        // Fast path: the middle of a line up to the next CR, LF or NUL.
        if (!d_pending_cr_ && !d_bol_) {
            std::size_t j = i;
            while (j < v.size() && v[j] != '\r' && v[j] != '\n' && v[j] != '\0')
                ++j;
            if (j > i) {
                data_run(v.substr(i, j - i));
                i = j;
                continue;
            }
        }
        const char c = v[i++];
        if (d_pending_cr_) {
            d_pending_cr_ = false;
            if (c == '\n') {
                if (data_end_of_line(now)) {
                    finish_data(now);
                    return i;
                }
                continue;
            }
            d_bare_ = true;  // CR not followed by LF
            data_octet('\r');
        }
        if (c == '\r') {
            d_pending_cr_ = true;
            continue;
        }
        if (c == '\n') {
            d_bare_ = true;  // LF without CR: never a line end
            data_octet('\n');
            continue;
        }
        if (d_bol_ && c == '.') {
            // Leading dot: unstuff it (or it is the terminator, decided at CRLF).
            d_bol_ = false;
            d_dot_line_ = true;  // the dot itself does not count against the line limit
            d_line_len_ = 0;
            continue;
        }
        data_octet(c);
    }
    return v.size();
}

void ServerSession::finish_data(Millis now) {
    const auto& l = config_.limits;
    std::optional<SmtpError> refusal;
    if (d_oversize_) {
        refusal = SmtpError{552, "5.3.4", "Message size exceeds fixed maximum message size"};
    } else if (d_bare_) {
        refusal = SmtpError{554, "5.6.11", "Bare CR or LF not permitted"};
    } else if (d_nul_) {
        refusal = SmtpError{554, "5.6.0", "NUL character not permitted in message"};
    } else if (d_too_long_) {
        refusal = SmtpError{
            554, "5.6.0",
            "Message line too long (max " + std::to_string(l.max_data_line) + " octets plus CRLF)"};
    } else if (count_received_headers(content_) > l.max_hops) {
        refusal = SmtpError{554, "5.4.6", "Too many hops (mail loop?)"};
    }
    if (refusal) {
        reply(refusal->code, refusal->enhanced, refusal->text);
        reset_transaction(refusal->enhanced + " " + refusal->text);
        enter(State::kReady, now);
        if (shutdown_pending_) close_with(421, "4.3.2", "Service shutting down");
        return;
    }
    if (auto id = find_message_id(content_, kMaxMessageId)) {
        actions_.push_back(MessageIdSeen{std::move(*id)});
    }
    CommitMessage commit;
    commit.envelope = std::move(envelope_);
    commit.content = std::move(content_);
    envelope_ = Envelope{};
    content_.clear();
    actions_.push_back(std::move(commit));
    enter(State::kCommitting, now);
}

// ---- free functions ----------------------------------------------------------------------

// A line that is not a field ends the header section here: the body starts there.
std::size_t count_received_headers(std::string_view content) {
    std::size_t n = 0;
    for_each_field(content, [&](const HeaderField& f) {
        if (iequals(f.name, "Received")) ++n;
        return !f.name.empty();
    });
    return n;
}

std::optional<std::string> find_message_id(std::string_view content, std::size_t max) {
    std::optional<std::string> out;
    for_each_field(content, [&](const HeaderField& f) {
        if (iequals(f.name, "Message-ID")) out = unfold(f.value, max);
        return !out && !f.name.empty();
    });
    return out;
}

std::string received_protocol(const Envelope& envelope) {
    std::string with = envelope.params.smtputf8 ? "UTF8SMTP" : (envelope.esmtp ? "ESMTP" : "SMTP");
    if (envelope.tls) with += "S";
    return with;
}

std::string make_received_header(const ReceivedFields& f) {
    std::string h = "Received: from ";
    h += f.client_helo.empty() ? std::string("unknown") : header_token(f.client_helo, 255);
    h += " (";
    h += f.client_rdns.empty() ? std::string("unknown") : header_token(f.client_rdns, 255);
    h += " [";
    h += header_token(f.client_ip, 64);
    h += "])\r\n\tby ";
    h += header_token(f.by_host, 255);
    h += " (esad) with ";
    h += header_token(f.with, 16);
    if (!f.id.empty()) {
        h += " id ";
        h += header_token(f.id, 64);
    }
    h += "\r\n\t";
    if (!f.for_path.empty()) {
        h += "for ";
        h += header_text(f.for_path, 300);
        h += "; ";
    } else {
        h += "; ";
    }
    h += header_text(f.date, 64);
    h += "\r\n";
    return h;
}

}  // namespace esad::smtp
