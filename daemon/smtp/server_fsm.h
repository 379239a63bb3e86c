// The injection listener's ESMTP server, as a pure state machine: bytes and events in,
// actions out. No sockets, no libuv, no OpenSSL, no clock reads (time is passed in as a
// monotonic millisecond count, e.g. uv_now()). The glue (inject/) owns the connection.
//
// Driving it (one ServerSession per accepted connection):
//   ServerSession s(config);
//   s.start(now, Greeting::kReady);   // 220 banner; kSpoolUnavailable / kTooManyConnections
//                                     // greet with 421 and close instead
//   s.feed(bytes, now);               // plaintext bytes read from the client (after TLS is
//                                     // up: the decrypted bytes)
//   for (auto& a : s.take_actions()) ...   // execute IN ORDER, see "Actions" below
//   s.deadline() -> optional<Millis>;  arm one timer for it after every call; when it fires
//   s.on_timeout(now);                 // 421 4.4.2 + Close if the deadline really passed
//   s.on_tls_established(now) / s.on_tls_failed()   after a StartTls action
//   s.on_commit_result(CommitResult::queued(mid) | no_space() | io_error(), now)
//   s.shutdown(now);                   // graceful stop: 421 4.3.2 + Close
//
// Actions (std::variant Action; the order is the order of events on the wire):
//   Reply{text}         complete reply with CRLF (multi-line for EHLO); write it.
//   Close{}             flush the replies written so far, then close. Nothing follows.
//   StartTls{}          the "220 2.0.0 Ready to start TLS" reply precedes it: flush it in
//                       plaintext, then start the server handshake. The FSM has already
//                       discarded every byte pipelined after the STARTTLS line
//                       (CVE-2011-0411) and discards whatever feed() gives it until
//                       on_tls_established(); the glue routes socket bytes to TLS from now.
//                       After the handshake the session needs a new EHLO (RFC 3207 §4.2).
//   CommitMessage{envelope, content}   DATA ended cleanly. content is un-dot-stuffed,
//                       CRLF-terminated lines, WITHOUT our Received: header: the glue
//                       prepends make_received_header(...) (it knows the MID and the date).
//                       The session now waits in kCommitting: no reply is sent and pipelined
//                       input is only buffered (up to limits.max_pending_input) until the
//                       glue calls on_commit_result(); only then "250 2.0.0 Ok: queued as
//                       <MID>" (or 452 4.3.1 / 451 4.3.0, never 5xx) is sent and the buffered
//                       commands run.
//   Log events, for ESA mail_logs (peer text is bounded; the glue escapes it):
//     MailFrom{address}   "<a@b>" or "<>" (<= 256 octets) - MAIL accepted (log "Start MID")
//     RcptTo{rid, address}   RCPT accepted; rid counts accepted recipients from 0
//     DataStart{}         354 sent
//     MessageIdSeen{id}   Message-ID header value of the content (unfolded, <= 256 octets),
//                         emitted just before CommitMessage when the header exists
//     Rset{reason}        a transaction (after MAIL) was dropped without a commit: reason is
//                         "RSET", "EHLO", "HELO", or the reply text of a refused DATA.
//     Transition{from, to}   state change, for trace logs.
//     RcptRejected{address, enhanced}   a recipient refused by policy (554 5.7.1 relaying
//                         denied), counted as ESA "Rejected Recipients".
//
// Replies and limits (ServerLimits):
//   unknown command 500 5.5.2; recognised but unimplemented (EXPN, AUTH, BDAT...) 502 5.5.1;
//   bad syntax 501 5.5.4; bad sequence 503 5.5.1; bad address 501 5.1.7 (sender) /
//   501 5.1.3 (recipient); 8-bit address without SMTPUTF8 553 5.6.7; unknown MAIL/RCPT
//   parameter 555 5.5.4; VRFY 252 2.5.0; HELP 214 2.0.0; DATA when every RCPT failed
//   554 5.5.1. Protocol errors (500/501/502/503/553/555) and refused recipients (554
//   relaying denied, 452 too many recipients) count; at max_errors the session
//   adds "421 4.7.0 ... too many errors" and closes. NOOP/RSET/VRFY/HELP count as junk;
//   over max_junk_commands without a queued message -> 421 4.7.0 and close.
//   Framing: only CRLF ends a line. A command line holding a bare CR, bare LF, NUL or
//   another control character -> 500 5.5.2. A command line over max_line_length (1000
//   incl. CRLF) -> "500 5.5.6 Error: line too long" as soon as it is detected; the rest of
//   that line is discarded.
//   DATA: only CRLF "." CRLF ends it (never "\n.\n", "\n.\r\n", "\r.\r", "\r\n.\n"...).
//   Leading dots are unstuffed. The whole body is always read to its end, then refused:
//     content over max_message_size        552 5.3.4 Message size exceeds fixed limit
//     bare CR or bare LF anywhere           554 5.6.11 Bare CR or LF not permitted
//     NUL octet                             554 5.6.0 NUL character not permitted
//     a line over max_data_line             554 5.6.0 Message line too long
//                                           (the transparency dot and CRLF do not count)
//     more than max_hops Received: headers  554 5.4.6 Too many hops
//   (checked in that order). Memory: content stops growing past max_message_size.
//   MAIL: SIZE= over max_message_size -> 552 5.3.4; then config.spool_admit(SIZE or 0):
//   kInsufficientStorage -> 452 4.3.1, kTemporaryFailure -> 451 4.3.0 (e.g. no MID can be
//   allocated), kUnavailable -> 421 4.3.2 and close.
//   RCPT: not relay_allowed -> 554 5.7.1 Relaying denied; address literal recipient
//   (unless allow_literal_recipients) -> 553 5.1.3; beyond max_recipients -> 452 4.5.3.
//   max_messages per session -> 421 4.7.0 at the next MAIL.
//   reject_unauth_pipelining (off by default): a command that must end a pipelining group
//   (EHLO HELO DATA QUIT NOOP VRFY STARTTLS), or any command when PIPELINING was not
//   advertised, followed by more input -> 554 5.5.0 SMTP protocol synchronization, close.
//
// Deadlines (RFC 5321 §4.5.3.2, reliability.md §1 item 9): measured from when the state or
// command began, never extended by single bytes. Waiting for a command: command_timeout
// from the end of the previous command (or the greeting). In DATA: the earlier of
// data_total_timeout from the 354 and data_block_timeout from the last complete line.
// TLS handshake: tls_handshake_timeout from STARTTLS (then Close without a reply: the
// channel is mid-handshake). kCommitting has no deadline (the glue owns the commit).
// Expiry -> "421 4.4.2 <host> Error: timeout exceeded" and Close.
//
// shutdown(): idle or between commands (no content yet) -> 421 4.3.2 and Close now; in DATA
// -> the content is read to its end (DATA deadlines still apply), then as while committing:
// the transaction's reply (250 after the commit, or its refusal) first, then 421 4.3.2 and
// Close.
//
// All peer text echoed in replies is escaped (escape_for_log) and bounded.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/address.h"

namespace esad::smtp {

// Monotonic time in milliseconds since an arbitrary epoch (uv_now()).
using Millis = std::chrono::milliseconds;

enum class State {
    kInit,          // constructed, start() not called yet
    kNeedHelo,      // greeted (or TLS just started): EHLO/HELO required before MAIL
    kReady,         // EHLO/HELO done, no transaction
    kMail,          // MAIL accepted, no recipient accepted yet
    kRcpt,          // at least one recipient accepted
    kData,          // reading the message content
    kCommitting,    // CommitMessage emitted, waiting for on_commit_result()
    kTlsHandshake,  // StartTls emitted, waiting for on_tls_established()
    kClosed,        // Close emitted; every further input is ignored
};
std::string_view to_string(State state);

struct ServerLimits {
    std::uint64_t max_message_size = 10 * 1024 * 1024;  // content octets, advertised as SIZE
    std::size_t max_recipients = 1000;
    std::size_t max_line_length = 1000;  // incl. CRLF; command lines
    // DATA line content octets, excluding CRLF and a leading transparency dot (RFC 5321
    // §4.5.3.1.6 does not count it). Above 998 on purpose: mail relayed by Postfix or Exim
    // may carry longer lines; the delivery side folds them to 998 (dot_codec.h).
    std::size_t max_data_line = 65536;
    std::size_t max_errors = 10;
    std::size_t max_junk_commands = 100;
    std::size_t max_messages = 10000;           // per session
    std::size_t max_hops = 100;                 // Received: headers allowed (more is a loop)
    std::size_t max_pending_input = 64 * 1024;  // bytes buffered while committing
    Millis command_timeout{5 * 60 * 1000};
    Millis data_block_timeout{3 * 60 * 1000};
    Millis data_total_timeout{10 * 60 * 1000};
    Millis tls_handshake_timeout{5 * 60 * 1000};
    bool allow_literal_recipients = false;  // RCPT TO:<u@[10.0.0.1]> (SSRF risk)
    bool reject_unauth_pipelining = false;
};

// Answer of the spool pre-check at MAIL (REQ-D5 / REQ-D6).
enum class SpoolAdmit { kOk, kInsufficientStorage, kTemporaryFailure, kUnavailable };

struct ServerConfig {
    std::string hostname = "localhost";  // ours: banner, EHLO, 221/421 texts
    bool relay_allowed = false;          // client IP is inside listener.relay_from
    bool tls_available = false;          // a certificate is configured: offer STARTTLS
    bool tls_active = false;             // session already encrypted (implicit TLS)
    ServerLimits limits;
    // Called at MAIL with the declared SIZE (0 when none). Empty: always kOk.
    std::function<SpoolAdmit(std::uint64_t declared_size)> spool_admit;
};

enum class Greeting {
    kReady,               // 220 <host> ESMTP esad
    kSpoolUnavailable,    // 421 4.3.2 <host> Service not available, try again later
    kTooManyConnections,  // 421 4.7.0 <host> Too many connections, try again later
    kSuspended,           // 421 4.3.2 <host> Receiving suspended, try again later
};

struct Envelope {
    Mailbox sender;                   // is_null for "<>"
    std::vector<Mailbox> recipients;  // accepted ones, in order; index == RID
    MailParams params;                // SIZE (declared), BODY, SMTPUTF8
    std::string helo;                 // client's EHLO/HELO name (printable ASCII, <= 255)
    bool esmtp = false;               // EHLO (not HELO)
    bool tls = false;                 // received over TLS
};

// Actions.
struct Reply {
    std::string text;
};
struct Close {};
struct StartTls {};
struct CommitMessage {
    Envelope envelope;
    std::string content;
};
struct MailFrom {
    std::string address;
};
struct RcptTo {
    std::size_t rid = 0;
    std::string address;
};
struct DataStart {};
struct MessageIdSeen {
    std::string message_id;
};
struct Rset {
    std::string reason;
};
// A recipient refused by policy (relaying denied): ESA "Rejected Recipients".
struct RcptRejected {
    std::string address;  // escaped, bounded
    std::string enhanced;
};
struct Transition {
    State from = State::kInit;
    State to = State::kInit;
};
using Action = std::variant<Reply, Close, StartTls, CommitMessage, MailFrom, RcptTo, DataStart,
                            MessageIdSeen, Rset, Transition, RcptRejected>;

struct CommitResult {
    enum class Kind {
        kQueued,   // 250 2.0.0 Ok: queued as <mid>
        kNoSpace,  // 452 4.3.1 Insufficient system storage      (ENOSPC, EDQUOT)
        kIoError,  // 451 4.3.0 Error: queue file write error    (EIO, anything else)
    };
    Kind kind = Kind::kIoError;
    std::string mid;

    static CommitResult queued(std::string mid) { return {Kind::kQueued, std::move(mid)}; }
    static CommitResult no_space() { return {Kind::kNoSpace, {}}; }
    static CommitResult io_error() { return {Kind::kIoError, {}}; }
};

class ServerSession {
  public:
    explicit ServerSession(ServerConfig config);

    void start(Millis now, Greeting greeting = Greeting::kReady);
    void feed(std::string_view bytes, Millis now);
    void on_tls_established(Millis now);
    void on_tls_failed();
    // Ignored (returns false) unless the session is committing.
    bool on_commit_result(const CommitResult& result, Millis now);
    // Returns true when the deadline had passed and the session timed out.
    bool on_timeout(Millis now);
    void shutdown(Millis now);

    std::optional<Millis> deadline() const;
    std::vector<Action> take_actions();

    State state() const { return state_; }
    bool closed() const { return state_ == State::kClosed; }
    bool tls_active() const { return tls_active_; }
    const std::string& helo() const { return helo_; }
    std::size_t messages_queued() const { return messages_; }

  private:
    void enter(State next, Millis now);
    void process(Millis now);
    void handle_line(std::string_view line, bool more_pending, Millis now);
    void reply(std::string text);
    void reply(int code, std::string_view enhanced, std::string_view text);
    void protocol_error(int code, std::string_view enhanced, std::string_view text);
    void error_reply(const SmtpError& error);
    void junk();
    void close_with(int code, std::string_view enhanced, std::string_view text);
    void reset_transaction(std::string_view reason);
    bool in_transaction() const { return state_ == State::kMail || state_ == State::kRcpt; }

    void do_helo(std::string_view arg, bool esmtp, Millis now);
    void do_mail(std::string_view arg, Millis now);
    void do_rcpt(std::string_view arg, Millis now);
    void do_data(std::string_view arg, Millis now);
    void do_starttls(std::string_view arg, Millis now);

    // DATA.
    std::size_t consume_data(std::string_view bytes, Millis now);
    void data_run(std::string_view run);    // octets of the current line
    void data_store(std::string_view run);  // into content_, up to max_message_size
    void data_octet(char c);
    bool data_end_of_line(Millis now);
    void finish_data(Millis now);

    ServerConfig config_;
    State state_ = State::kInit;
    std::vector<Action> actions_;

    std::string in_;           // unprocessed input
    bool discarding_ = false;  // skipping the rest of an over-long command line
    bool discard_saw_cr_ = false;
    bool overflow_ = false;  // pipelined input over max_pending_input while committing
    bool shutdown_pending_ = false;

    std::string helo_;
    bool esmtp_ = false;
    bool tls_active_ = false;
    std::size_t errors_ = 0;
    std::size_t junk_ = 0;
    std::size_t messages_ = 0;

    Envelope envelope_;
    bool rcpt_attempted_ = false;

    // DATA parser state.
    std::string content_;
    bool d_bol_ = true;
    bool d_dot_line_ = false;
    bool d_pending_cr_ = false;
    std::size_t d_line_len_ = 0;
    bool d_bare_ = false;
    bool d_nul_ = false;
    bool d_too_long_ = false;
    bool d_oversize_ = false;

    // Deadline bookkeeping.
    Millis wait_started_{0};
    Millis data_started_{0};
    Millis data_progress_{0};
    Millis tls_started_{0};
};

// Header scan of a message's content (header section = lines up to the first empty line
// or the first line that is not a header field). "Received :" (obsolete spacing) counts.
std::size_t count_received_headers(std::string_view content);
// First Message-ID value, unfolded and trimmed, at most `max` octets; nullopt if absent.
std::optional<std::string> find_message_id(std::string_view content, std::size_t max = 256);

// RFC 3848 / RFC 6531 "with" keyword: SMTP, ESMTP, ESMTPS, UTF8SMTP, UTF8SMTPS.
std::string received_protocol(const Envelope& envelope);

struct ReceivedFields {
    std::string_view client_helo;  // Envelope::helo
    std::string_view client_ip;    // textual address
    std::string_view client_rdns;  // verified reverse name; empty: "unknown"
    std::string_view by_host;      // our hostname
    std::string_view with;         // received_protocol(envelope)
    std::string_view id;           // MID
    std::string_view for_path;     // "<rcpt>" when exactly one recipient, else empty
    std::string_view date;         // RFC 5322 date-time, e.g. "Mon, 1 Jan 2024 10:00:00 +0000"
};
// "Received: from helo (rdns [ip])\r\n\tby host (esad) with ESMTP id MID\r\n\tfor <r>; date\r\n".
// Peer-supplied fields are reduced to safe characters and bounded, so the header is always
// well-formed, every line is shorter than 998 octets and nothing can inject a header.
std::string make_received_header(const ReceivedFields& fields);

}  // namespace esad::smtp
