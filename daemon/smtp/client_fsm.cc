// See client_fsm.h for the contract.
#include "daemon/smtp/client_fsm.h"

#include "daemon/smtp/mime_downgrade.h"

#include <algorithm>
#include <utility>

namespace esad::smtp {

namespace {

bool tls_required(TlsPolicy policy) {
    return policy == TlsPolicy::kRequired || policy == TlsPolicy::kRequiredVerify;
}

bool tls_verify(TlsPolicy policy) {
    return policy == TlsPolicy::kPreferredVerify || policy == TlsPolicy::kRequiredVerify;
}

// An address we are willing to put between angle brackets on the wire. The injection side
// validated it; this is the last line against command injection from a damaged spool.
bool sendable_address(std::string_view address, bool allow_empty) {
    if (address.empty()) return allow_empty;
    if (address.size() > 254) return false;  // the path with its brackets is <= 256 octets
    for (const char c : address) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f || c == '<' || c == '>') return false;
    }
    return true;
}

std::string_view wait_description(ClientState state) {
    switch (state) {
        case ClientState::kConnecting:
            return "connecting";
        case ClientState::kBanner:
            return "waiting for the greeting";
        case ClientState::kEhlo:
        case ClientState::kEhloAfterTls:
            return "waiting for the EHLO reply";
        case ClientState::kHelo:
            return "waiting for the HELO reply";
        case ClientState::kStartTls:
            return "waiting for the STARTTLS reply";
        case ClientState::kTlsHandshake:
            return "during the TLS handshake";
        case ClientState::kReady:
            return "while idle";
        case ClientState::kMailFrom:
            return "waiting for the MAIL FROM reply";
        case ClientState::kRcptTo:
            return "waiting for the RCPT TO reply";
        case ClientState::kData:
            return "waiting for the DATA reply";
        case ClientState::kDataBody:
            return "while sending the message content";
        case ClientState::kDataDone:
            return "waiting for the reply to the end of data";
        case ClientState::kRset:
            return "waiting for the RSET reply";
        case ClientState::kQuit:
            return "waiting for the QUIT reply";
        case ClientState::kClosed:
            break;
    }
    return "after close";
}

}  // namespace

std::string_view to_string(ClientState state) {
    switch (state) {
        case ClientState::kConnecting:
            return "Connecting";
        case ClientState::kBanner:
            return "Banner";
        case ClientState::kEhlo:
            return "Ehlo";
        case ClientState::kHelo:
            return "Helo";
        case ClientState::kStartTls:
            return "StartTls";
        case ClientState::kTlsHandshake:
            return "TlsHandshake";
        case ClientState::kEhloAfterTls:
            return "EhloAfterTls";
        case ClientState::kReady:
            return "Ready";
        case ClientState::kMailFrom:
            return "MailFrom";
        case ClientState::kRcptTo:
            return "RcptTo";
        case ClientState::kData:
            return "Data";
        case ClientState::kDataBody:
            return "DataBody";
        case ClientState::kDataDone:
            return "DataDone";
        case ClientState::kRset:
            return "Rset";
        case ClientState::kQuit:
            return "Quit";
        case ClientState::kClosed:
            return "Closed";
    }
    return "Unknown";
}

std::string_view to_string(TlsPolicy policy) {
    switch (policy) {
        case TlsPolicy::kNone:
            return "none";
        case TlsPolicy::kPreferred:
            return "preferred";
        case TlsPolicy::kRequired:
            return "required";
        case TlsPolicy::kPreferredVerify:
            return "preferred-verify";
        case TlsPolicy::kRequiredVerify:
            return "required-verify";
    }
    return "unknown";
}

std::optional<TlsPolicy> parse_tls_policy(std::string_view text) {
    for (auto p : {TlsPolicy::kNone, TlsPolicy::kPreferred, TlsPolicy::kRequired,
                   TlsPolicy::kPreferredVerify, TlsPolicy::kRequiredVerify}) {
        if (text == to_string(p)) return p;
    }
    return std::nullopt;
}

std::string_view to_string(RecipientOutcome outcome) {
    switch (outcome) {
        case RecipientOutcome::kDelivered:
            return "delivered";
        case RecipientOutcome::kSoft:
            return "soft";
        case RecipientOutcome::kHard:
            return "hard";
        case RecipientOutcome::kDeferred:
            return "deferred";
    }
    return "unknown";
}

std::string_view to_string(MessageOutcome outcome) {
    switch (outcome) {
        case MessageOutcome::kDelivered:
            return "delivered";
        case MessageOutcome::kSoft:
            return "soft";
        case MessageOutcome::kHard:
            return "hard";
        case MessageOutcome::kNoRecipients:
            return "no-recipients";
    }
    return "unknown";
}

std::string_view to_string(HostOutcome outcome) {
    return outcome == HostOutcome::kReached ? "reached" : "not-reached";
}

std::optional<Millis> state_timeout(ClientState state, const ClientTimeouts& t) {
    switch (state) {
        case ClientState::kConnecting:
            return t.connect;
        case ClientState::kBanner:
            return t.greeting;
        case ClientState::kEhlo:
        case ClientState::kHelo:
        case ClientState::kEhloAfterTls:
            return t.helo;
        case ClientState::kStartTls:
            return t.starttls;
        case ClientState::kTlsHandshake:
            return t.tls_handshake;
        case ClientState::kMailFrom:
            return t.mail;
        case ClientState::kRcptTo:
            return t.rcpt;
        case ClientState::kData:
            return t.data_init;
        case ClientState::kDataBody:
            return t.data_block;
        case ClientState::kDataDone:
            return t.data_done;
        case ClientState::kRset:
            return t.rset;
        case ClientState::kQuit:
            return t.quit;
        case ClientState::kReady:
        case ClientState::kClosed:
            break;
    }
    return std::nullopt;
}

ClientSession::ClientSession(ClientConfig config)
    : config_(std::move(config)), parser_(config_.reply_limits) {
    if (config_.content_chunk == 0) config_.content_chunk = 64 * 1024;
}

HostOutcome ClientSession::host_outcome() const {
    return greeting_ && !tls_required_failed_ ? HostOutcome::kReached : HostOutcome::kNotReached;
}

std::vector<ClientAction> ClientSession::take_actions() {
    std::vector<ClientAction> out;
    out.swap(actions_);
    return out;
}

std::optional<Millis> ClientSession::next_deadline() const {
    if (state_ == ClientState::kConnecting && !started_) return std::nullopt;
    auto timeout = state_timeout(state_, config_.timeouts);
    if (!timeout) return std::nullopt;
    return wait_start_ + *timeout;
}

// ---- inputs -------------------------------------------------------------------------------

void ClientSession::start(Millis now) {
    if (started_ || state_ != ClientState::kConnecting) return;
    started_ = true;
    wait_start_ = now;
    trace("connecting to " + sanitize_text(config_.mx_name, 255) + " (tls " +
          std::string(to_string(config_.tls)) + ")");
}

void ClientSession::on_connected(Millis now) {
    if (state_ != ClientState::kConnecting) return;
    started_ = true;
    enter(ClientState::kBanner, now);
}

void ClientSession::on_bytes(std::string_view data, Millis now) {
    if (data.empty()) return;
    if (state_ == ClientState::kClosed || state_ == ClientState::kConnecting) return;
    if (state_ == ClientState::kTlsHandshake) {
        trace("discarded " + std::to_string(data.size()) + " plaintext octets during TLS setup");
        return;
    }
    while (!data.empty()) {
        data.remove_prefix(parser_.feed(data));
        if (parser_.failed()) {
            protocol_error(to_string(parser_.error()), now);
            return;
        }
        if (!parser_.has_reply()) return;  // all consumed, reply incomplete
        const Response reply = parser_.take_reply();
        trace_reply(reply);
        on_reply(reply, now);
        if (state_ == ClientState::kClosed) return;
        if (state_ == ClientState::kTlsHandshake) {
            // CVE-2021-38371: nothing the server sent after its 220 may be read as a reply
            // to a command sent inside TLS.
            if (!data.empty()) {
                trace("discarded " + std::to_string(data.size()) +
                      " plaintext octets after the STARTTLS reply");
            }
            return;
        }
    }
}

void ClientSession::on_content_sent(Millis now) {
    // Writes complete in order: a completion owed to a transaction that already ended (its
    // final dot was answered before the write finished) is consumed here and never credited
    // to the transaction now sending.
    if (stale_content_writes_ > 0) {
        --stale_content_writes_;
        return;
    }
    if (state_ != ClientState::kDataBody || !current_ || !current_->awaiting_write) return;
    current_->awaiting_write = false;
    if (current_->final_dot_sent) {
        enter(ClientState::kDataDone, now);
    } else {
        send_next_chunk(now);
    }
}

void ClientSession::on_content(std::string_view chunk, bool last, Millis now) {
    if (state_ != ClientState::kDataBody || !current_ || !current_->awaiting_content) return;
    current_->awaiting_content = false;
    send_chunk(chunk, last, now);
}

void ClientSession::on_whole_content(std::shared_ptr<const std::string> content, Millis now) {
    if (state_ != ClientState::kReady || !current_ || !current_->awaiting_whole) return;
    current_->awaiting_whole = false;
    current_->tx.content = std::move(content);
    current_->tx.pull = false;
    current_->tx.content_size = 0;
    continue_transaction(now);
}

void ClientSession::on_content_failed(std::string_view reason, Millis now) {
    if (!current_) return;
    const ReplySummary why =
        local_summary("4.3.0", "message content unreadable: " + sanitize_text(reason, 200));
    if (state_ == ClientState::kReady && current_->awaiting_whole) {
        trace("transaction MID " + std::to_string(current_->tx.mid) +
              " not started: " + why.lines.front());
        report(MessageOutcome::kSoft, why, ReplyScope::kMessage, RecipientOutcome::kSoft);
        return enter(ClientState::kReady, now);
    }
    if (state_ != ClientState::kDataBody || !current_->awaiting_content) return;
    // Mid-DATA nothing but the final dot could end the message, and it must not be sent:
    // drop the connection (no QUIT, it would be content); the server discards the message.
    trace("content of MID " + std::to_string(current_->tx.mid) +
          " failed, dropping the connection");
    fail_session(why, ReplyScope::kMessage, false, now);
}

void ClientSession::on_tls_established(Millis now, bool verified) {
    if (state_ != ClientState::kTlsHandshake) return;
    parser_.reset();
    tls_active_ = true;
    tls_verified_ = verified;
    caps_ = EhloCapabilities{};  // RFC 3207 §4.2: forget everything learned before TLS
    esmtp_ = false;
    trace(std::string("TLS established, certificate ") + (verified ? "verified" : "not verified"));
    if (config_.tls == TlsPolicy::kRequiredVerify && !verified) {
        tls_required_failure("4.7.5", "certificate verification failed", true, now);
        return;
    }
    enter(ClientState::kEhloAfterTls, now);
}

void ClientSession::on_tls_failed(std::string_view reason, Millis now) {
    if (state_ != ClientState::kTlsHandshake) return;
    tls_handshake_failure("handshake failed: " + sanitize_text(reason, 200), now);
}

bool ClientSession::on_timeout(Millis now) {
    const auto deadline = next_deadline();
    if (!deadline || now < *deadline) return false;
    const std::string what = "timeout " + std::string(wait_description(state_));
    trace(what);
    switch (state_) {
        case ClientState::kConnecting:
            fail_session(local_summary("4.4.1", "connection timed out"), ReplyScope::kSite, false,
                         now);
            break;
        case ClientState::kBanner:
            fail_session(local_summary("4.4.2", what), ReplyScope::kSite, false, now);
            break;
        case ClientState::kTlsHandshake:
            tls_handshake_failure("handshake timed out", now);
            break;
        default:
            fail_session(local_summary("4.4.2", what), ReplyScope::kSession, false, now);
            break;
    }
    return true;
}

void ClientSession::on_disconnected(Millis now, std::string_view detail) {
    if (state_ == ClientState::kClosed) return;
    const std::string d = detail.empty() ? std::string("connection closed by the server")
                                         : sanitize_text(detail, 200);
    trace("disconnected: " + d);
    switch (state_) {
        case ClientState::kConnecting:
            fail_session(local_summary("4.4.1", "connection failed: " + d), ReplyScope::kSite,
                         false, now);
            break;
        case ClientState::kBanner:
            fail_session(local_summary("4.4.2", "lost connection before the greeting: " + d),
                         ReplyScope::kSite, false, now);
            break;
        case ClientState::kTlsHandshake:
            tls_handshake_failure("connection lost during the handshake: " + d, now);
            break;
        case ClientState::kQuit:
            enter(ClientState::kClosed, now);
            break;
        default:
            fail_session(
                local_summary(
                    "4.4.2", "lost connection " + std::string(wait_description(state_)) + ": " + d),
                ReplyScope::kSession, false, now);
            break;
    }
}

bool ClientSession::submit(Transaction tx, Millis now) {
    if (state_ == ClientState::kClosed || state_ == ClientState::kQuit || quit_requested_ ||
        pending_) {
        return false;
    }
    pending_ = std::move(tx);
    if (state_ == ClientState::kReady && !current_) start_transaction(now);
    return true;
}

void ClientSession::quit(Millis now) {
    if (state_ == ClientState::kClosed || quit_requested_) return;
    quit_requested_ = true;
    switch (state_) {
        case ClientState::kReady:
            // A transaction waiting for its whole content QUITs once it is over.
            if (!current_) enter(ClientState::kQuit, now);
            break;
        case ClientState::kConnecting:
        case ClientState::kBanner:
        case ClientState::kEhlo:
        case ClientState::kHelo:
        case ClientState::kStartTls:
        case ClientState::kTlsHandshake:
        case ClientState::kEhloAfterTls:
            // Nothing to deliver: no point finishing the handshake just to say QUIT.
            if (!pending_) enter(ClientState::kClosed, now);
            break;
        default:
            break;  // QUIT once the transaction (and RSET) is over
    }
}

// ---- the state machine --------------------------------------------------------------------

void ClientSession::enter(ClientState next, Millis now) {
    if (next != state_) {
        trace("state " + std::string(to_string(state_)) + " -> " + std::string(to_string(next)));
    }
    state_ = next;
    wait_start_ = now;
    switch (next) {
        case ClientState::kConnecting:
        case ClientState::kBanner:
        case ClientState::kDataDone:
            break;
        case ClientState::kEhlo:
        case ClientState::kEhloAfterTls:
            send_command("EHLO " + config_.helo_name);
            break;
        case ClientState::kHelo:
            send_command("HELO " + config_.helo_name);
            break;
        case ClientState::kStartTls:
            tls_attempted_ = true;
            send_command("STARTTLS");
            break;
        case ClientState::kTlsHandshake:
            parser_.reset();
            awaiting_.clear();  // nothing sent before the switch is answered inside TLS
            trace("TLS handshake with sni " + sanitize_text(config_.mx_name, 255));
            actions_.push_back(StartTlsHandshake{config_.mx_name, tls_verify(config_.tls),
                                                 config_.tls == TlsPolicy::kRequiredVerify});
            break;
        case ClientState::kReady:
            finish_current();
            if (pending_) {
                start_transaction(now);
            } else if (quit_requested_) {
                enter(ClientState::kQuit, now);
            }
            break;
        case ClientState::kMailFrom: {
            Current& cur = *current_;
            const Transaction& tx = cur.tx;
            std::string mail = "MAIL FROM:<" + tx.sender + ">";
            if (esmtp_) {
                if (caps_.size_advertised) {
                    const std::uint64_t size = tx.content_size != 0 ? tx.content_size
                                               : tx.content         ? tx.content->size()
                                                                    : 0;
                    mail += " SIZE=" + std::to_string(size);
                }
                if (tx.eight_bit && caps_.eight_bit_mime) mail += " BODY=8BITMIME";
                if (tx.smtputf8 && caps_.smtputf8) mail += " SMTPUTF8";
            }
            std::vector<std::string> lines{std::move(mail)};
            if (cur.pipelined) {
                for (std::size_t i : cur.sendable) {
                    lines.push_back("RCPT TO:<" + tx.recipients[i].address + ">");
                }
                cur.next_rcpt = cur.sendable.size();
                lines.emplace_back("DATA");
            }
            send_batch(lines);
            break;
        }
        case ClientState::kRcptTo: {
            Current& cur = *current_;
            if (!cur.pipelined && cur.next_rcpt < cur.sendable.size()) {
                const std::size_t i = cur.sendable[cur.next_rcpt++];
                send_command("RCPT TO:<" + cur.tx.recipients[i].address + ">");
            }
            break;
        }
        case ClientState::kData:
            if (!current_->pipelined) send_command("DATA");
            break;
        case ClientState::kDataBody:
            send_next_chunk(now);
            break;
        case ClientState::kRset:
            finish_current();
            send_command("RSET");
            break;
        case ClientState::kQuit:
            send_command("QUIT");
            break;
        case ClientState::kClosed:
            finish_current();
            current_.reset();
            actions_.push_back(CloseConnection{});
            break;
    }
}

void ClientSession::on_reply(const Response& reply, Millis now) {
    switch (state_) {
        case ClientState::kBanner:
            return on_greeting(reply, now);
        case ClientState::kEhlo:
        case ClientState::kHelo:
        case ClientState::kEhloAfterTls:
            return on_hello(reply, now);
        case ClientState::kStartTls:
            return on_starttls(reply, now);
        case ClientState::kMailFrom:
            return on_mail(reply, now);
        case ClientState::kRcptTo:
            return on_rcpt(reply, now);
        case ClientState::kData:
            return on_data(reply, now);
        case ClientState::kDataBody:
            if (current_->final_dot_sent) {
                // The reply raced the write completion of the last chunk: that completion
                // is still to come and belongs to this transaction.
                if (current_->awaiting_write) ++stale_content_writes_;
                current_->awaiting_write = false;
                enter(ClientState::kDataDone, now);
                return on_data_done(reply, now);
            } else {
                // A reply in the middle of the content: the server gave up on the message.
                const ReplyClass cls = classify(reply, ReplyStage::kDataEnd);
                if (reply.code == 421 || cls.outcome == ReplyOutcome::kTransient) {
                    return fail_session(summarize(reply), cls.scope, false, now);
                }
                if (cls.outcome == ReplyOutcome::kPermanent) {
                    return fail_session(summarize(reply), cls.scope, false, now,
                                        MessageOutcome::kHard);
                }
                return protocol_error("reply received while sending the content", now);
            }
        case ClientState::kDataDone:
            return on_data_done(reply, now);
        case ClientState::kRset:
            if (reply.klass() == 2) return enter(ClientState::kReady, now);
            return fail_session(summarize(reply), ReplyScope::kSession, reply.code != 421, now);
        case ClientState::kQuit:
            return enter(ClientState::kClosed, now);
        case ClientState::kConnecting:
        case ClientState::kTlsHandshake:
        case ClientState::kReady:
        case ClientState::kClosed:
            break;
    }
    // No command is outstanding. A 421 is a server closing an idle connection.
    if (reply.code == 421) return fail_session(summarize(reply), ReplyScope::kSession, false, now);
    protocol_error("unexpected reply " + std::to_string(reply.code), now);
}

void ClientSession::on_greeting(const Response& reply, Millis now) {
    const ReplyClass cls = classify(reply, ReplyStage::kGreeting);
    switch (cls.outcome) {
        case ReplyOutcome::kSuccess:
            greeting_ = true;
            return enter(ClientState::kEhlo, now);
        case ReplyOutcome::kProtocolError:
            return protocol_error("unexpected greeting " + std::to_string(reply.code), now);
        case ReplyOutcome::kTransient:
        case ReplyOutcome::kPermanent:
            // RFC 5321 §3.1: a server that refuses us at the greeting waits for QUIT.
            return fail_session(summarize(reply), cls.scope, true, now);
    }
}

void ClientSession::on_hello(const Response& reply, Millis now) {
    const bool helo = state_ == ClientState::kHelo;
    const ReplyClass cls = classify(reply, helo ? ReplyStage::kHelo : ReplyStage::kEhlo);
    switch (cls.outcome) {
        case ReplyOutcome::kSuccess:
            if (helo) {
                caps_ = EhloCapabilities{};
                esmtp_ = false;
            } else {
                caps_ = parse_ehlo(reply);
                esmtp_ = true;
            }
            return after_hello(now);
        case ReplyOutcome::kProtocolError:
            return protocol_error("unexpected reply " + std::to_string(reply.code) + " to " +
                                      (helo ? "HELO" : "EHLO"),
                                  now);
        case ReplyOutcome::kPermanent:
            if (!helo) return enter(ClientState::kHelo, now);  // REQ-5321-23
            [[fallthrough]];
        case ReplyOutcome::kTransient:
            return fail_session(summarize(reply), cls.scope, true, now);
    }
}

void ClientSession::after_hello(Millis now) {
    if (!tls_active_ && config_.tls != TlsPolicy::kNone && !tls_attempted_) {
        if (caps_.starttls) return enter(ClientState::kStartTls, now);
        if (tls_required(config_.tls)) {
            return tls_required_failure("4.7.4", "STARTTLS not offered by the server", true, now);
        }
    }
    enter(ClientState::kReady, now);
}

void ClientSession::on_starttls(const Response& reply, Millis now) {
    const ReplyClass cls = classify(reply, ReplyStage::kStartTls);
    if (cls.outcome == ReplyOutcome::kSuccess) return enter(ClientState::kTlsHandshake, now);
    if (reply.code == 421) return fail_session(summarize(reply), cls.scope, true, now);
    if (cls.outcome == ReplyOutcome::kProtocolError) {
        return protocol_error("unexpected reply " + std::to_string(reply.code) + " to STARTTLS",
                              now);
    }
    const std::string detail =
        "STARTTLS unexpected response: " + std::to_string(reply.code) +
        (reply.lines.empty() ? std::string() : " " + sanitize_text(reply.lines.front(), 200));
    if (tls_required(config_.tls)) return tls_required_failure("4.7.5", detail, true, now);
    trace("TLS failed, continuing without TLS: " + detail);
    actions_.push_back(TlsFailed{detail, false});
    enter(ClientState::kReady, now);  // the EHLO capabilities stay valid
}

void ClientSession::on_mail(const Response& reply, Millis now) {
    const ReplyClass cls = classify(reply, ReplyStage::kMail);
    if (reply.code == 421) return fail_session(summarize(reply), cls.scope, true, now);
    switch (cls.outcome) {
        case ReplyOutcome::kSuccess:
            return enter(ClientState::kRcptTo, now);
        case ReplyOutcome::kProtocolError:
            return protocol_error("unexpected reply " + std::to_string(reply.code) + " to MAIL",
                                  now);
        case ReplyOutcome::kTransient:
        case ReplyOutcome::kPermanent: {
            const bool hard = cls.outcome == ReplyOutcome::kPermanent;
            report(hard ? MessageOutcome::kHard : MessageOutcome::kSoft, summarize(reply),
                   cls.scope, hard ? RecipientOutcome::kHard : RecipientOutcome::kSoft);
            // With PIPELINING the RCPT and DATA replies are still to come: drain them.
            return enter(current_->pipelined ? ClientState::kRcptTo : ClientState::kRset, now);
        }
    }
}

void ClientSession::on_rcpt(const Response& reply, Millis now) {
    const ReplyClass cls = classify(reply, ReplyStage::kRcpt);
    if (reply.code == 421) return fail_session(summarize(reply), cls.scope, true, now);
    if (cls.outcome == ReplyOutcome::kProtocolError) {
        return protocol_error("unexpected reply " + std::to_string(reply.code) + " to RCPT", now);
    }
    Current& cur = *current_;
    const std::size_t i = cur.sendable[cur.rcpt_replies++];
    if (!cur.reported) {
        RecipientResult& r = cur.results[i];
        r.reply = summarize(reply);
        if (cls.outcome == ReplyOutcome::kSuccess) {
            cur.status[i] = RcptStatus::kAccepted;
            ++cur.accepted;
        } else {
            cur.status[i] = RcptStatus::kDecided;
            r.outcome = cls.too_many_recipients                   ? RecipientOutcome::kDeferred
                        : cls.outcome == ReplyOutcome::kTransient ? RecipientOutcome::kSoft
                                                                  : RecipientOutcome::kHard;
        }
        if (cls.too_many_recipients && !cur.pipelined) {
            // The server will take no more in this transaction: do not ask.
            for (std::size_t k = cur.rcpt_replies; k < cur.sendable.size(); ++k) {
                const std::size_t j = cur.sendable[k];
                cur.status[j] = RcptStatus::kDecided;
                cur.results[j].outcome = RecipientOutcome::kDeferred;
                cur.results[j].reply = local_summary("4.5.3",
                                                     "not attempted: too many recipients in this "
                                                     "transaction, retry in a new transaction");
            }
            cur.rcpt_replies = cur.next_rcpt = cur.sendable.size();
        }
    }
    if (cur.rcpt_replies < cur.sendable.size()) {
        if (cur.pipelined) {
            wait_start_ = now;  // the deadline runs per reply
            return;
        }
        return enter(ClientState::kRcptTo, now);
    }
    after_rcpts(now);
}

void ClientSession::after_rcpts(Millis now) {
    Current& cur = *current_;
    if (cur.pipelined) return enter(ClientState::kData, now);  // DATA was sent already
    if (cur.accepted == 0) {
        // RFC 5321 §3.3: no DATA without an accepted recipient.
        const auto first = std::find_if(cur.status.begin(), cur.status.end(),
                                        [](RcptStatus s) { return s == RcptStatus::kDecided; });
        const ReplySummary why =
            first == cur.status.end()
                ? local_summary("4.0.0", "no recipient accepted")
                : cur.results[static_cast<std::size_t>(first - cur.status.begin())].reply;
        report(MessageOutcome::kNoRecipients, why, ReplyScope::kRecipient, RecipientOutcome::kSoft);
        return enter(ClientState::kRset, now);
    }
    enter(ClientState::kData, now);
}

void ClientSession::on_data(const Response& reply, Millis now) {
    const ReplyClass cls = classify(reply, ReplyStage::kData);
    if (reply.code == 421) return fail_session(summarize(reply), cls.scope, true, now);
    Current& cur = *current_;
    switch (cls.outcome) {
        case ReplyOutcome::kSuccess:
            if (cur.reported || cur.accepted == 0) {
                // RFC 2920 §3.1: a 354 to a pipelined DATA without recipients gets an empty
                // message, whose reply is ignored, then RSET.
                if (!cur.reported) {
                    report(MessageOutcome::kNoRecipients,
                           local_summary("4.0.0", "no recipient accepted"), ReplyScope::kRecipient,
                           RecipientOutcome::kSoft);
                }
                cur.discard_final = true;
                send_command(".");
                return enter(ClientState::kDataDone, now);
            }
            return enter(ClientState::kDataBody, now);
        case ReplyOutcome::kProtocolError:
            return protocol_error("unexpected reply " + std::to_string(reply.code) + " to DATA",
                                  now);
        case ReplyOutcome::kTransient:
        case ReplyOutcome::kPermanent: {
            if (!cur.reported) {
                if (cur.accepted == 0) {
                    report(MessageOutcome::kNoRecipients, summarize(reply), ReplyScope::kRecipient,
                           RecipientOutcome::kSoft);
                } else {
                    const bool hard = cls.outcome == ReplyOutcome::kPermanent;
                    report(hard ? MessageOutcome::kHard : MessageOutcome::kSoft, summarize(reply),
                           cls.scope, hard ? RecipientOutcome::kHard : RecipientOutcome::kSoft);
                }
            }
            return enter(ClientState::kRset, now);
        }
    }
}

void ClientSession::on_data_done(const Response& reply, Millis now) {
    Current& cur = *current_;
    if (cur.discard_final) {
        if (reply.code == 421)
            return fail_session(summarize(reply), ReplyScope::kSession, true, now);
        return enter(ClientState::kRset, now);
    }
    const ReplyClass cls = classify(reply, ReplyStage::kDataEnd);
    if (cls.outcome == ReplyOutcome::kProtocolError) {
        return protocol_error("unexpected reply " + std::to_string(reply.code) + " to end of data",
                              now);
    }
    cur.final_answered = true;  // answered: no duplicate doubt
    if (reply.code == 421) return fail_session(summarize(reply), cls.scope, true, now);
    switch (cls.outcome) {
        case ReplyOutcome::kSuccess:
            report(MessageOutcome::kDelivered, summarize(reply), cls.scope,
                   RecipientOutcome::kDelivered);
            break;
        case ReplyOutcome::kTransient:
            report(MessageOutcome::kSoft, summarize(reply), cls.scope, RecipientOutcome::kSoft);
            break;
        case ReplyOutcome::kPermanent:
        case ReplyOutcome::kProtocolError:
            report(MessageOutcome::kHard, summarize(reply), cls.scope, RecipientOutcome::kHard);
            break;
    }
    enter(ClientState::kReady, now);
}

ClientSession::Current::Current() = default;

std::optional<ReplySummary> ClientSession::convert_to_7bit_if_needed(Transaction& tx) {
    if (caps_.eight_bit_mime || !tx.content || tx.smtputf8) return std::nullopt;
    if (!tx.eight_bit && !has_8bit(*tx.content)) return std::nullopt;
    // RFC 6152 §3: never raw 8-bit to a 7-bit server; convert, or refuse with 5.6.3.
    DowngradeResult down = downgrade_to_7bit(*tx.content);
    if (down.status == DowngradeStatus::kImpossible) {
        return local_summary(
            "5.6.3",
            "8-bit content for a server without 8BITMIME, not convertible: " + down.reason);
    }
    if (down.status == DowngradeStatus::kConverted) {
        trace("MID " + std::to_string(tx.mid) +
              ": 8-bit content converted to 7-bit MIME (the server has no 8BITMIME)");
        tx.content = std::make_shared<const std::string>(std::move(down.content));
        tx.content_size = 0;
    }
    tx.eight_bit = false;
    return std::nullopt;
}

void ClientSession::start_transaction(Millis now) {
    current_.emplace();
    Current& cur = *current_;
    cur.tx = std::move(*pending_);
    pending_.reset();
    const Transaction& tx = cur.tx;
    cur.results.resize(tx.recipients.size());
    cur.status.assign(tx.recipients.size(), RcptStatus::kWaiting);
    for (std::size_t i = 0; i < tx.recipients.size(); ++i) {
        cur.results[i].rid = tx.recipients[i].rid;
        if (sendable_address(tx.recipients[i].address, false)) {
            cur.sendable.push_back(i);
        } else {
            cur.status[i] = RcptStatus::kDecided;
            cur.results[i].outcome = RecipientOutcome::kHard;
            cur.results[i].reply = local_summary("5.1.3", "invalid recipient address");
        }
    }
    // Refusals decided before a command is sent; the session stays ready.
    std::optional<ReplySummary> refusal;
    if (!sendable_address(tx.sender, true)) {
        refusal = local_summary("5.1.7", "invalid sender address");
    } else if (tx.smtputf8 && !caps_.smtputf8) {
        refusal = local_summary("5.6.7", "SMTPUTF8 is required but not supported by the server");
    }
    if (refusal) {
        trace("transaction MID " + std::to_string(tx.mid) + " refused: " + refusal->lines.front());
        report(MessageOutcome::kHard, *refusal, ReplyScope::kMessage, RecipientOutcome::kHard);
        return enter(ClientState::kReady, now);
    }
    if (tx.pull && !caps_.eight_bit_mime && !tx.smtputf8) {
        // The 7-bit check and conversion read the whole content: ask for all of it first.
        cur.awaiting_whole = true;
        actions_.push_back(NeedContent{tx.mid, 0, 0, true});
        return;
    }
    continue_transaction(now);
}

void ClientSession::continue_transaction(Millis now) {
    Current& cur = *current_;
    const Transaction& tx = cur.tx;
    // The conversion to 7-bit runs before the SIZE check, which then sees the size really sent.
    std::optional<ReplySummary> refusal;
    const auto size = [&tx] {
        return tx.content_size != 0 ? tx.content_size : tx.content ? tx.content->size() : 0;
    };
    if ((refusal = convert_to_7bit_if_needed(cur.tx))) {
        // 8-bit content that cannot be made 7-bit for this server
    } else if (caps_.size_advertised && caps_.size_limit != 0 && size() > caps_.size_limit) {
        refusal = local_summary("5.3.4", "message size " + std::to_string(size()) +
                                             " exceeds the server's limit of " +
                                             std::to_string(caps_.size_limit));
    }
    if (refusal) {
        trace("transaction MID " + std::to_string(tx.mid) + " refused: " + refusal->lines.front());
        report(MessageOutcome::kHard, *refusal, ReplyScope::kMessage, RecipientOutcome::kHard);
        return enter(ClientState::kReady, now);
    }
    if (cur.sendable.empty()) {
        report(MessageOutcome::kNoRecipients, local_summary("5.1.3", "no valid recipient"),
               ReplyScope::kRecipient, RecipientOutcome::kHard);
        return enter(ClientState::kReady, now);
    }
    cur.started = true;
    cur.pipelined = caps_.pipelining;
    TransactionStarted started{tx.mid, {}};
    for (std::size_t i : cur.sendable)
        started.rids.push_back(tx.recipients[i].rid);
    actions_.push_back(std::move(started));
    enter(ClientState::kMailFrom, now);
}

void ClientSession::send_next_chunk(Millis now) {
    Current& cur = *current_;
    if (cur.tx.pull) {
        cur.awaiting_content = true;
        wait_start_ = now;  // the data-block timer also covers reading the piece
        actions_.push_back(NeedContent{cur.tx.mid, cur.content_offset, config_.content_chunk});
        return;
    }
    static const std::string kEmpty;
    const std::string& content = cur.tx.content ? *cur.tx.content : kEmpty;
    const std::size_t n = std::min(config_.content_chunk, content.size() - cur.content_offset);
    send_chunk(std::string_view(content).substr(cur.content_offset, n),
               cur.content_offset + n == content.size(), now);
}

void ClientSession::send_chunk(std::string_view raw, bool last, Millis now) {
    Current& cur = *current_;
    SendContent chunk;
    cur.encoder.encode(raw, chunk.bytes);
    cur.content_offset += raw.size();
    if (last) {
        cur.encoder.finish(chunk.bytes);
        chunk.last = true;
        cur.final_dot_sent = true;
    }
    const std::string text = "[" + std::to_string(chunk.bytes.size()) + " octets of content" +
                             (chunk.last ? ", final dot]" : "]");
    if (chunk.last)
        command_sent(text);
    else
        trace("> " + text);
    cur.awaiting_write = true;
    wait_start_ = now;  // the data-block timer runs per chunk
    actions_.push_back(std::move(chunk));
}

// ---- reports and failures -----------------------------------------------------------------

void ClientSession::report(MessageOutcome message, const ReplySummary& why, ReplyScope scope,
                           RecipientOutcome rest) {
    if (!current_ || current_->reported) return;
    Current& cur = *current_;
    cur.reported = true;
    for (std::size_t i = 0; i < cur.results.size(); ++i) {
        if (cur.status[i] == RcptStatus::kDecided) continue;
        RecipientResult& r = cur.results[i];
        if (message == MessageOutcome::kDelivered) {
            r.outcome = cur.status[i] == RcptStatus::kAccepted ? RecipientOutcome::kDelivered
                                                               : RecipientOutcome::kSoft;
        } else {
            r.outcome = rest;
        }
        r.reply = why;
        cur.status[i] = RcptStatus::kDecided;
    }
    TransactionReport rep;
    rep.mid = cur.tx.mid;
    rep.outcome = message;
    rep.reply = why;
    rep.scope = scope;
    rep.recipients = cur.results;
    rep.started = cur.started;
    rep.possible_duplicate = cur.final_dot_sent && !cur.final_answered && !cur.discard_final;
    rep.tls_handshake_failed = tls_handshake_failed_;
    rep.tls = tls_active_;
    rep.tls_verified = tls_verified_;
    rep.host = host_outcome();
    trace("report MID " + std::to_string(rep.mid) + " " + std::string(to_string(message)) +
          (rep.possible_duplicate ? " (possible duplicate)" : ""));
    actions_.push_back(std::move(rep));
    ++reported_count_;
}

void ClientSession::report_pending(const ReplySummary& why, ReplyScope scope) {
    if (!pending_) return;
    // Reuse report(): make the waiting transaction current without starting it.
    std::optional<Current> saved = std::move(current_);
    current_.emplace();
    current_->tx = std::move(*pending_);
    pending_.reset();
    current_->results.resize(current_->tx.recipients.size());
    current_->status.assign(current_->tx.recipients.size(), RcptStatus::kWaiting);
    for (std::size_t i = 0; i < current_->results.size(); ++i) {
        current_->results[i].rid = current_->tx.recipients[i].rid;
    }
    report(MessageOutcome::kSoft, why, scope, RecipientOutcome::kSoft);
    current_ = std::move(saved);
}

void ClientSession::fail_session(const ReplySummary& why, ReplyScope scope, bool send_quit,
                                 Millis now, MessageOutcome message) {
    if (state_ == ClientState::kClosed) return;
    trace("session ends: " + (why.lines.empty() ? std::string() : why.lines.front()));
    report(message, why, scope,
           message == MessageOutcome::kHard ? RecipientOutcome::kHard : RecipientOutcome::kSoft);
    report_pending(why, scope);
    if (send_quit) send_command("QUIT");
    enter(ClientState::kClosed, now);
}

void ClientSession::protocol_error(std::string_view what, Millis now) {
    fail_session(local_summary("4.5.0", "protocol error: " + std::string(what)),
                 ReplyScope::kSession, false, now);
}

void ClientSession::tls_required_failure(std::string_view enhanced, std::string_view detail,
                                         bool send_quit, Millis now) {
    tls_required_failed_ = true;
    trace("TLS was required but could not be successfully negotiated: " + std::string(detail));
    actions_.push_back(TlsFailed{std::string(detail), true});
    fail_session(local_summary(enhanced,
                               "TLS was required but could not be successfully "
                               "negotiated: " +
                                   std::string(detail)),
                 ReplyScope::kSite, send_quit, now);
}

void ClientSession::tls_handshake_failure(std::string_view detail, Millis now) {
    if (tls_required(config_.tls)) return tls_required_failure("4.7.5", detail, false, now);
    tls_handshake_failed_ = true;
    actions_.push_back(TlsFailed{std::string(detail), false});
    fail_session(local_summary("4.7.5", "TLS " + std::string(detail)), ReplyScope::kSession, false,
                 now);
}

void ClientSession::finish_current() {
    if (current_ && current_->reported) current_.reset();
}

// ---- output helpers -----------------------------------------------------------------------

void ClientSession::send_command(std::string_view line) {
    command_sent(line);
    actions_.push_back(SendCommands{std::string(line) + "\r\n"});
}

void ClientSession::send_batch(const std::vector<std::string>& lines) {
    SendCommands batch;
    for (const auto& line : lines) {
        command_sent(line);
        batch.bytes += line;
        batch.bytes += "\r\n";
    }
    actions_.push_back(std::move(batch));
}

void ClientSession::command_sent(std::string_view line) {
    // "[n octets of content, final dot]" and "." (the dot for a 354 without recipients) both
    // end the content.
    const bool dot = line == "." || line.substr(0, 1) == "[";
    std::string verb = dot ? std::string(".") : sanitize_text(line.substr(0, line.find(' ')), 16);
    std::string text = sanitize_text(line);
    trace("> " + text);
    awaiting_.push_back(verb);
    actions_.push_back(CommandSent{std::move(verb), std::move(text)});
}

void ClientSession::trace(std::string line) {
    actions_.push_back(ClientTrace{std::move(line)});
}

void ClientSession::trace_reply(const Response& reply) {
    ReplyReceived event;
    event.code = reply.code;
    event.greeting = state_ == ClientState::kBanner;
    if (!event.greeting && !awaiting_.empty()) {
        event.answers = std::move(awaiting_.front());
        awaiting_.pop_front();
    }
    const std::size_t n = std::min(reply.lines.size(), kMaxReportLines);
    for (std::size_t i = 0; i < n; ++i) {
        const bool last = i + 1 == reply.lines.size();
        event.lines.push_back(std::to_string(reply.code) + (last ? " " : "-") +
                              sanitize_text(reply.lines[i]));
    }
    if (reply.lines.size() > n) {
        event.lines.push_back("... (" + std::to_string(reply.lines.size() - n) + " more lines)");
    }
    for (const auto& line : event.lines)
        trace("< " + line);
    actions_.push_back(std::move(event));
}

}  // namespace esad::smtp
