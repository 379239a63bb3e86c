// Fuzz target: the ESMTP server state machine (daemon/smtp/server_fsm.*), fed a session in
// random chunks with the commit handshake, STARTTLS completions, timeouts and shutdown
// driven by the input.
// Properties: no crash/UB; nothing but a trace Transition follows Close; every reply is a
// CRLF-terminated, well-formed line set with printable text; a CommitMessage only comes with at
// least one recipient, and content never exceeds max_message_size; the pending-input buffer stays
// bounded.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdlib>
#include <string>
#include <variant>

#include "daemon/smtp/server_fsm.h"

using namespace esad::smtp;

namespace {
void check_reply(const std::string& text) {
    if (text.size() < 5 || text.substr(text.size() - 2) != "\r\n") abort();
    size_t start = 0;
    while (start < text.size()) {
        const size_t end = text.find("\r\n", start);
        if (end == std::string::npos || end - start < 3) abort();
        for (size_t i = start; i < start + 3; ++i)
            if (text[i] < '0' || text[i] > '9') abort();
        for (size_t i = start; i < end; ++i) {
            const unsigned char c = static_cast<unsigned char>(text[i]);
            if (c < 0x20 || c == 0x7f) abort();
        }
        start = end + 2;
    }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider in(data, size);
    ServerConfig cfg;
    cfg.hostname = "mx.example.test";
    cfg.relay_allowed = in.ConsumeBool();
    cfg.tls_available = in.ConsumeBool();
    cfg.limits.max_message_size = in.ConsumeIntegralInRange<uint64_t>(1, 4096);
    cfg.limits.max_recipients = in.ConsumeIntegralInRange<size_t>(1, 8);
    cfg.limits.max_line_length = in.ConsumeIntegralInRange<size_t>(8, 1000);
    cfg.limits.max_errors = in.ConsumeIntegralInRange<size_t>(1, 20);
    cfg.limits.max_pending_input = in.ConsumeIntegralInRange<size_t>(16, 4096);
    cfg.limits.reject_unauth_pipelining = in.ConsumeBool();
    const int admit = in.ConsumeIntegralInRange<int>(0, 2);
    cfg.spool_admit = [admit](uint64_t) { return static_cast<SpoolAdmit>(admit); };
    const uint64_t max_size = cfg.limits.max_message_size;

    ServerSession s(cfg);
    int64_t now = 0;
    s.start(Millis(now), static_cast<Greeting>(in.ConsumeIntegralInRange<int>(0, 3)));
    bool closed = false;
    bool committing = false;
    bool tls = false;
    uint64_t mid = 1;
    auto drain = [&] {
        for (Action& a : s.take_actions()) {
            // Nothing follows Close but its trace line.
            if (closed && !std::holds_alternative<Transition>(a)) abort();
            if (auto* r = std::get_if<Reply>(&a)) check_reply(r->text);
            if (std::holds_alternative<Close>(a)) closed = true;
            if (std::holds_alternative<StartTls>(a)) tls = true;
            if (auto* c = std::get_if<CommitMessage>(&a)) {
                if (c->envelope.recipients.empty()) abort();
                if (c->content.size() > max_size) abort();
                committing = true;
            }
        }
    };
    drain();
    while (in.remaining_bytes() > 0 && !closed) {
        const int op = in.ConsumeIntegralInRange<int>(0, 15);
        now += in.ConsumeIntegralInRange<int64_t>(0, 400000);
        if (op <= 10) {
            const std::string chunk = in.ConsumeRandomLengthString(512);
            s.feed(chunk, Millis(now));
        } else if (op == 11 && committing) {
            committing = false;
            const int kind = in.ConsumeIntegralInRange<int>(0, 2);
            CommitResult r = kind == 0   ? CommitResult::queued(std::to_string(mid++))
                             : kind == 1 ? CommitResult::no_space()
                                         : CommitResult::io_error();
            if (!s.on_commit_result(r, Millis(now))) abort();
        } else if (op == 12 && tls) {
            tls = false;
            if (in.ConsumeBool())
                s.on_tls_established(Millis(now));
            else
                s.on_tls_failed();
        } else if (op == 13) {
            if (auto d = s.deadline()) s.on_timeout(std::max(*d, Millis(now)));
        } else if (op == 14) {
            s.shutdown(Millis(now));
        } else {
            s.feed("\r\n", Millis(now));
        }
        drain();
    }
    (void)s.state();
    return 0;
}
