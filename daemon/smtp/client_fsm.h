// The delivery client's SMTP session, as a pure state machine: events in, actions out.
// No sockets, no libuv, no OpenSSL, no clock reads (time is passed in as a monotonic
// millisecond count, e.g. uv_now()). It speaks SMTP and reports what happened; it never
// decides retry policy (STYLE §1): the queue applies the TransactionReport.
//
// Driving it (one ClientSession per outbound connection, delivery/smtp_session.cc):
//   ClientSession s(config);          // config.mx_name = the MX host name (SNI, cert name)
//   s.submit(tx, now);                // optional: the first message, before connecting
//   s.start(now);                     // TCP connect initiated (connect deadline starts)
//   s.on_connected(now);              // TCP connected: waiting for the 220 greeting
//   s.on_bytes(bytes, now);           // plaintext from the server (after TLS: decrypted);
//                                     // ignored before on_connected() and after Close
//   s.on_content_sent(now);           // the write of the last SendContent completed
//   s.on_content(chunk, last, now);   // pulled content (Transaction::pull): the piece asked
//                                     // for by NeedContent; `last` = it ends the content
//   s.on_whole_content(content, now); // the whole content asked for by NeedContent{whole}
//   s.on_content_failed(reason, now); // the content cannot be read (corrupt, I/O error)
//   s.on_tls_established(now, verified) / s.on_tls_failed(reason, now)
//   s.on_disconnected(now, detail);   // EOF, reset, connect failure ("Connection refused")
//   s.next_deadline() -> optional<Millis>;  re-arm ONE timer after every call; when it fires
//   s.on_timeout(now);                // acts only if the deadline really passed
//   s.submit(tx, now);                // next message on this connection: allowed whenever
//                                     // no other transaction is waiting (one may be in
//                                     // progress); returns false otherwise or once closing.
//                                     // The caller enforces max_messages_per_connection.
//   s.quit(now);                      // QUIT when no transaction is left (Close at once
//                                     // when nothing was greeted yet)
//   for (auto& a : s.take_actions()) ...   // execute IN ORDER after every call
//
// Actions (std::variant ClientAction):
//   SendCommands{bytes}   command lines with CRLF; one write. With PIPELINING the MAIL,
//                         every RCPT and DATA of a transaction come in one SendCommands.
//   SendContent{bytes, last}   dot-stuffed message content after 354, at most
//                         config.content_chunk raw octets per action; the last one ends with
//                         "\r\n.\r\n". Write it and call on_content_sent() when the write
//                         completed: the next chunk follows only then (flow control, and
//                         the RFC 5321 §4.5.3.2.5 data-block timer runs per chunk).
//   NeedContent{mid, offset, max, whole}   pulled content only (Transaction::pull): read
//                         the next <= max raw content octets from `offset` (0: from the
//                         start, also again for a transaction re-run) and give them to
//                         on_content(); the data-block timer runs while they come. With
//                         `whole`, the entire content for on_whole_content(): asked before
//                         MAIL FROM when the server has no 8BITMIME (the 7-bit conversion
//                         needs all of it). on_content_failed() instead: in DATA the
//                         transaction is soft 4.3.0 and the connection is dropped without
//                         the final dot (the server discards the partial message); before
//                         MAIL FROM it is soft 4.3.0 and the session stays ready.
//   StartTlsHandshake{sni, verify}   the server said 220 to STARTTLS: start the client
//                         handshake on the socket now (socket bytes go to the TLS engine,
//                         its plaintext to on_bytes). Every byte the server sent after that
//                         220 has been discarded, and on_bytes() input is discarded until
//                         on_tls_established() (CVE-2021-38371). `verify`: the policy wants
//                         the certificate checked against `sni`; report the result as
//                         on_tls_established(now, verified). `enforce`: a failed check may
//                         fail the handshake itself (required-verify). Without it a failed
//                         check must NOT fail the handshake: preferred-verify encrypts to an
//                         unverified peer rather than fall back to plaintext.
//   CloseConnection{}     flush what was sent so far and close. Emitted exactly once, also
//                         after on_disconnected(). Nothing follows.
//   TransactionStarted{mid, rids}   MAIL FROM is being sent (ESA "Delivery start").
//   TransactionReport{...}   exactly one per submitted transaction, in submission order.
//   TlsFailed{reason, required}   STARTTLS refused, handshake failed, or not offered while
//                         required (ESA "TLS failed: ..." / "TLS was required but could not
//                         be successfully negotiated").
//   ClientTrace{line}     one line per state transition, command sent and reply line
//                         received, printable and bounded (kMaxReportLine, kMaxReportLines
//                         lines per reply): for the domain-debug log.
//   CommandSent{verb, text}   a command that waits for a reply goes out (in the SendCommands
//                         right after it or, for the final dot, the last SendContent): verb
//                         "EHLO", "MAIL", "RCPT", "DATA", ... or "." for the end of content;
//                         text the line as traced. Intermediate content chunks are not
//                         commands.
//   ReplyReceived{code, lines, answers, greeting}   a complete reply: lines as traced
//                         ("250-first", "250 last", bounded like the trace, a cut reply ends
//                         with "... (n more lines)"); answers = the verb of the command it
//                         answers, matched in order (pipelining), "" for the greeting
//                         (greeting = true) or an unsolicited reply. For tools that show
//                         the dialogue by stage (smtpping) without reading the trace text.
//
// Rules:
//   * EHLO; a 5xx to EHLO (not 421) falls back to HELO (no extensions, REQ-5321-23).
//   * TLS per TlsPolicy. STARTTLS at most once, only when offered. Not offered, or answered
//     other than 2xx: *required* -> every recipient soft (4.7.4 / 4.7.5, "TLS was required
//     but could not be successfully negotiated"), QUIT, close, host outcome kNotReached
//     (DESIGN §4); *preferred* -> go on in plaintext. Handshake failure: required -> soft
//     4.7.5, close; preferred -> soft 4.7.5 with report.tls_handshake_failed = true (the
//     stream is unusable; the glue may reconnect once without TLS), host reached.
//     required-verify with an unverified certificate -> soft 4.7.5, QUIT, close, host
//     kNotReached (preferred-verify accepts it, recorded as tls_verified = false).
//     EHLO again after TLS; STARTTLS is never issued twice.
//   * A transaction: SIZE over the server's SIZE -> hard 5.3.4 without sending; SMTPUTF8
//     needed but not offered -> hard 5.6.7; 8-bit content (BODY=8BITMIME or any octet
//     >= 0x80) and no 8BITMIME offered -> converted to 7-bit MIME (quoted-printable/base64,
//     mime_downgrade.h) or, when that is impossible, hard 5.6.3 without sending; an address with
//     CR, LF, control octets, '<' or
//     '>' is never sent (sender: message hard 5.1.7; recipient: that recipient hard 5.1.3).
//     MAIL FROM:<s> [SIZE=n] [BODY=8BITMIME] [SMTPUTF8], RCPT TO:<r> each, DATA.
//   * RCPT replies: 2xx accepted; "too many recipients" (452 4.5.3 etc., see reply.h) ->
//     kDeferred ("not attempted, retry in a new transaction"; without PIPELINING the later
//     recipients are not tried and are kDeferred too); 4xx soft; 5xx hard.
//   * No RCPT accepted -> DATA is not sent (with PIPELINING, a 354 to the pipelined DATA gets
//     just "." - RFC 2920 §3.1), message outcome kNoRecipients, then RSET.
//   * 4xx/5xx to MAIL or DATA -> the accepted recipients soft/hard, then RSET. A reply to the
//     final dot ends the transaction (no RSET): 2xx delivered, 4xx soft, 5xx hard.
//     After a transaction the session is kReady for the next submit().
//   * 421 anywhere -> session over: recipients without a final answer soft, QUIT, close.
//   * A malformed reply (reply.h), an unexpected reply, a timeout or a lost connection ->
//     soft 4.5.0 / 4.4.2, close (no QUIT). When the final dot was (possibly) sent and no
//     reply to it arrived, report.possible_duplicate = true (RFC 1047; DLV-07).
//   * Host outcome: kReached once a 2xx greeting was received (and TLS, when required, was
//     negotiated); a failure at connect or greeting leaves kNotReached.
//
// Deadlines (ClientTimeouts, RFC 5321 §4.5.3.2; state_timeout() is the table): measured from
// the start of the wait - entering the state, the previous complete reply of a pipelined
// group, or the emission of a content chunk - never extended by single bytes (DLV-02).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "daemon/smtp/dot_codec.h"
#include "daemon/smtp/reply.h"

namespace esad::smtp {

// Monotonic time in milliseconds since an arbitrary epoch (uv_now()). Same alias as in
// server_fsm.h (a redeclaration to the same type is allowed).
using Millis = std::chrono::milliseconds;

enum class ClientState {
    kConnecting,    // start() called, waiting for on_connected()
    kBanner,        // waiting for the 220 greeting
    kEhlo,          // EHLO sent
    kHelo,          // HELO sent (EHLO got 5xx)
    kStartTls,      // STARTTLS sent
    kTlsHandshake,  // StartTlsHandshake emitted, waiting for on_tls_established()
    kEhloAfterTls,  // EHLO sent inside TLS
    kReady,         // between transactions
    kMailFrom,      // MAIL sent (with PIPELINING: MAIL + RCPTs + DATA)
    kRcptTo,        // waiting for RCPT replies
    kData,          // waiting for the reply to DATA
    kDataBody,      // sending the content
    kDataDone,      // final dot sent, waiting for its reply
    kRset,          // RSET sent after an abnormal end of a transaction
    kQuit,          // QUIT sent
    kClosed,        // CloseConnection emitted; every further input is ignored
};
std::string_view to_string(ClientState state);

enum class TlsPolicy { kNone, kPreferred, kRequired, kPreferredVerify, kRequiredVerify };
std::string_view to_string(TlsPolicy policy);  // "none", "preferred", "required-verify", ...
std::optional<TlsPolicy> parse_tls_policy(std::string_view text);

struct ClientTimeouts {
    Millis connect{30 * 1000};
    Millis greeting{5 * 60 * 1000};  // RFC 5321 §4.5.3.2.1
    Millis helo{5 * 60 * 1000};      // EHLO / HELO
    Millis starttls{5 * 60 * 1000};  // reply to STARTTLS
    Millis tls_handshake{5 * 60 * 1000};
    Millis mail{5 * 60 * 1000};        // §4.5.3.2.2
    Millis rcpt{5 * 60 * 1000};        // §4.5.3.2.3
    Millis data_init{2 * 60 * 1000};   // §4.5.3.2.4
    Millis data_block{3 * 60 * 1000};  // §4.5.3.2.5, per content chunk
    Millis data_done{10 * 60 * 1000};  // §4.5.3.2.6
    Millis rset{2 * 60 * 1000};
    Millis quit{60 * 1000};
};
// The per-state timeout table; nullopt for kReady and kClosed (no deadline).
std::optional<Millis> state_timeout(ClientState state, const ClientTimeouts& timeouts);

struct ClientConfig {
    std::string helo_name = "localhost";  // our host name for EHLO/HELO
    std::string mx_name;                  // the server's host name: SNI, certificate name
    TlsPolicy tls = TlsPolicy::kPreferred;
    ClientTimeouts timeouts;
    ReplyLimits reply_limits;
    std::size_t content_chunk = 64 * 1024;  // raw content octets per SendContent
};

struct TransactionRecipient {
    std::uint32_t rid = 0;
    std::string address;  // "local@domain", no angle brackets
};

struct Transaction {
    std::uint64_t mid = 0;
    std::string sender;  // "local@domain"; empty = null sender "<>"
    std::vector<TransactionRecipient> recipients;
    // Stored content: CRLF lines, not dot-stuffed (dot_codec encodes it). Null = empty.
    std::shared_ptr<const std::string> content;
    std::uint64_t content_size = 0;  // for SIZE=; 0 = content->size()
    // The content is not in `content`: the session asks for it piece by piece (NeedContent)
    // and content_size is its exact size.
    bool pull = false;
    bool eight_bit = false;  // declare BODY=8BITMIME when the server offers it
    bool smtputf8 = false;   // needs SMTPUTF8 (non-ASCII address or header)
};

enum class RecipientOutcome {
    kDelivered,  // accepted and the message got 2xx after the final dot
    kSoft,       // temporary failure: retry later
    kHard,       // permanent failure: bounce
    kDeferred,   // not attempted ("too many recipients"): retry in a new transaction now
};
enum class MessageOutcome {
    kDelivered,     // 2xx to the final dot
    kSoft,          // 4xx at MAIL/DATA/final dot, or session failure before acceptance
    kHard,          // 5xx at MAIL/DATA/final dot, or refused locally (SIZE, SMTPUTF8, sender)
    kNoRecipients,  // no recipient was accepted: DATA not sent
};
enum class HostOutcome { kReached, kNotReached };
std::string_view to_string(RecipientOutcome outcome);
std::string_view to_string(MessageOutcome outcome);
std::string_view to_string(HostOutcome outcome);

struct RecipientResult {
    std::uint32_t rid = 0;
    RecipientOutcome outcome = RecipientOutcome::kSoft;
    ReplySummary reply;  // the deciding reply (RCPT or final dot), or a local failure (code 0)
};

// Actions.
struct SendCommands {
    std::string bytes;
};
struct SendContent {
    std::string bytes;
    bool last = false;
};
struct NeedContent {
    std::uint64_t mid = 0;
    std::uint64_t offset = 0;  // raw content octets already received
    std::size_t max = 0;       // at most this many (config.content_chunk)
    bool whole = false;        // the entire content, for on_whole_content()
};
struct StartTlsHandshake {
    std::string sni;
    bool verify = false;   // check the certificate against `sni` and report the result
    bool enforce = false;  // required-verify only: a failed check fails the handshake
};
struct CloseConnection {};
struct TransactionStarted {
    std::uint64_t mid = 0;
    std::vector<std::uint32_t> rids;
};
struct TransactionReport {
    std::uint64_t mid = 0;
    MessageOutcome outcome = MessageOutcome::kSoft;
    ReplySummary reply;                       // what decided the message outcome
    ReplyScope scope = ReplyScope::kMessage;  // how wide a failure is (reply.h)
    std::vector<RecipientResult> recipients;  // one per submitted recipient, same order
    bool started = false;                     // MAIL FROM was sent
    bool possible_duplicate = false;          // final dot sent, no reply to it (RFC 1047)
    bool tls_handshake_failed = false;        // opportunistic TLS broke the connection
    bool tls = false;                         // sent inside TLS
    bool tls_verified = false;
    HostOutcome host = HostOutcome::kNotReached;
};
struct TlsFailed {
    std::string reason;
    bool required = false;
};
struct ClientTrace {
    std::string line;
};
struct CommandSent {
    std::string verb;  // upper case as sent ("MAIL"); "." for the final dot
    std::string text;  // "MAIL FROM:<a@b.test> SIZE=10", "[12 octets of content, final dot]"
};
struct ReplyReceived {
    int code = 0;
    std::vector<std::string> lines;  // "250-first", "250 last" (sanitized, bounded)
    std::string answers;             // the command's verb; "" for the greeting or unsolicited
    bool greeting = false;
};
using ClientAction = std::variant<SendCommands, SendContent, NeedContent, StartTlsHandshake,
                                  CloseConnection, TransactionStarted, TransactionReport, TlsFailed,
                                  ClientTrace, CommandSent, ReplyReceived>;

class ClientSession {
  public:
    explicit ClientSession(ClientConfig config);

    void start(Millis now);
    void on_connected(Millis now);
    void on_bytes(std::string_view data, Millis now);
    void on_content_sent(Millis now);
    void on_content(std::string_view chunk, bool last, Millis now);
    void on_whole_content(std::shared_ptr<const std::string> content, Millis now);
    void on_content_failed(std::string_view reason, Millis now);
    void on_tls_established(Millis now, bool verified = false);
    void on_tls_failed(std::string_view reason, Millis now);
    // Returns true when the deadline had passed and the session acted on it.
    bool on_timeout(Millis now);
    void on_disconnected(Millis now, std::string_view detail = {});
    bool submit(Transaction tx, Millis now);
    void quit(Millis now);

    std::optional<Millis> next_deadline() const;
    std::vector<ClientAction> take_actions();

    ClientState state() const { return state_; }
    bool closed() const { return state_ == ClientState::kClosed; }
    // kReady with no transaction waiting: submit() starts one at once.
    bool idle() const { return state_ == ClientState::kReady && !pending_ && !current_; }
    bool greeting_received() const { return greeting_; }
    HostOutcome host_outcome() const;
    bool tls_active() const { return tls_active_; }
    bool esmtp() const { return esmtp_; }
    const EhloCapabilities& capabilities() const { return caps_; }
    std::size_t transactions_reported() const { return reported_count_; }

  private:
    enum class RcptStatus { kWaiting, kAccepted, kDecided };
    struct Current {
        // Declared here, defaulted in the .cc: clang cannot use the member initializers of a
        // nested class while the enclosing class is incomplete (std::optional<Current>).
        Current();
        Transaction tx;
        std::vector<RecipientResult> results;
        std::vector<RcptStatus> status;
        std::vector<std::size_t> sendable;  // indexes of recipients we send RCPT for
        std::size_t next_rcpt = 0;          // index into sendable: next RCPT to send
        std::size_t rcpt_replies = 0;       // RCPT replies received
        std::size_t accepted = 0;
        bool pipelined = false;
        bool started = false;
        bool reported = false;
        bool final_dot_sent = false;  // the last content chunk was emitted
        bool final_answered = false;  // a well-formed reply to the final dot arrived
        bool discard_final = false;   // "." sent for a 354 with no recipients
        std::size_t content_offset = 0;
        bool awaiting_write = false;
        bool awaiting_content = false;  // NeedContent emitted, on_content() not yet called
        bool awaiting_whole = false;    // NeedContent{whole} emitted before MAIL FROM
        DotEncoder encoder;
    };

    void enter(ClientState next, Millis now);
    void on_reply(const Response& reply, Millis now);
    void on_greeting(const Response& reply, Millis now);
    void on_hello(const Response& reply, Millis now);
    void on_starttls(const Response& reply, Millis now);
    void on_mail(const Response& reply, Millis now);
    void on_rcpt(const Response& reply, Millis now);
    void on_data(const Response& reply, Millis now);
    void on_data_done(const Response& reply, Millis now);
    void after_hello(Millis now);
    void after_rcpts(Millis now);
    void start_transaction(Millis now);
    // The checks that need the content (7-bit conversion, SIZE), then MAIL FROM.
    void continue_transaction(Millis now);
    // 8-bit content for a server without 8BITMIME: converted in place (mime_downgrade.h), or
    // the 5.6.3 refusal when it cannot be.
    std::optional<ReplySummary> convert_to_7bit_if_needed(Transaction& tx);
    void send_command(std::string_view line);
    void send_batch(const std::vector<std::string>& lines);
    void send_next_chunk(Millis now);
    void send_chunk(std::string_view raw, bool last, Millis now);
    void trace(std::string line);
    // A command that waits for a reply: traced and queued (awaiting_) for ReplyReceived.
    void command_sent(std::string_view line);
    void trace_reply(const Response& reply);

    // Reports the current transaction (once): undecided recipients get `outcome`.
    void report(MessageOutcome message, const ReplySummary& why, ReplyScope scope,
                RecipientOutcome rest);
    void report_pending(const ReplySummary& why, ReplyScope scope);
    // Ends the session: reports what is open as soft (or per `message`), optionally QUIT,
    // then CloseConnection.
    void fail_session(const ReplySummary& why, ReplyScope scope, bool send_quit, Millis now,
                      MessageOutcome message = MessageOutcome::kSoft);
    void protocol_error(std::string_view what, Millis now);
    void tls_required_failure(std::string_view enhanced, std::string_view detail, bool send_quit,
                              Millis now);
    void tls_handshake_failure(std::string_view detail, Millis now);
    void finish_current();

    ClientConfig config_;
    ClientState state_ = ClientState::kConnecting;
    bool started_ = false;
    std::vector<ClientAction> actions_;
    ReplyParser parser_;
    EhloCapabilities caps_;
    bool esmtp_ = false;
    bool greeting_ = false;
    bool tls_attempted_ = false;
    bool tls_active_ = false;
    bool tls_verified_ = false;
    bool tls_required_failed_ = false;
    bool tls_handshake_failed_ = false;
    bool quit_requested_ = false;
    Millis wait_start_{0};
    std::optional<Current> current_;
    std::optional<Transaction> pending_;
    std::deque<std::string> awaiting_;  // verbs of the commands sent and not yet answered
    std::size_t reported_count_ = 0;
    std::size_t stale_content_writes_ = 0;  // completions owed to finished transactions
};

}  // namespace esad::smtp
