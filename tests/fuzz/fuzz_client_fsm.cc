// Fuzz target: the delivery client state machine (daemon/smtp/client_fsm.*) against a
// scripted, possibly hostile server: replies (canned or raw bytes, any chunking, early or
// pipelined), write completions that lag behind replies, timeouts, TLS outcomes,
// disconnects and new submissions, all chosen by the input.
// Properties: no crash/UB; nothing follows CloseConnection; a transaction never emits a
// content chunk while its previous chunk's write is still outstanding (content accounting
// is per transaction); exactly one TransactionReport per submitted transaction, in
// submission order, with one result per recipient.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdlib>
#include <deque>
#include <memory>
#include <string>
#include <variant>

#include "daemon/smtp/client_fsm.h"

using namespace esad::smtp;

namespace {
const char* const kReplies[] = {
    "220 mx.example ESMTP\r\n",
    "250-mx.example\r\n250-PIPELINING\r\n250-SIZE 100000\r\n250-8BITMIME\r\n250 STARTTLS\r\n",
    "250-mx.example\r\n250 PIPELINING\r\n",
    "250 2.1.0 ok\r\n",
    "354 go ahead\r\n",
    "250 2.0.0 queued\r\n",
    "452 4.5.3 too many recipients\r\n",
    "450 4.2.0 try later\r\n",
    "550 5.1.1 no such user\r\n",
    "554 5.7.1 rejected\r\n",
    "421 4.3.2 going away\r\n",
    "220 2.0.0 ready to start TLS\r\n",
    "221 2.0.0 bye\r\n",
    "500 5.5.2 what\r\n",
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider in(data, size);
    ClientConfig cfg;
    cfg.helo_name = "client.example";
    cfg.mx_name = "mx.example";
    cfg.tls = static_cast<TlsPolicy>(in.ConsumeIntegralInRange<int>(0, 4));
    cfg.content_chunk = in.ConsumeIntegralInRange<size_t>(1, 64);
    ClientSession s(cfg);

    uint64_t next_mid = 1;
    std::deque<uint64_t> submitted;      // MIDs awaiting their report, in order
    std::deque<size_t> submitted_rcpts;  // their recipient counts
    std::deque<uint64_t> writes;         // content writes in flight: owning MID
    uint64_t current = 0;                // MID of the last TransactionStarted
    bool closed = false, tls_pending = false;
    int64_t now = 0;

    auto make_tx = [&] {
        Transaction tx;
        tx.mid = next_mid++;
        tx.sender = in.ConsumeBool() ? "s@example.org" : "";
        const size_t n = in.ConsumeIntegralInRange<size_t>(1, 4);
        for (size_t i = 0; i < n; ++i)
            tx.recipients.push_back({uint32_t(i), "r" + std::to_string(i) + "@example.net"});
        tx.content = std::make_shared<const std::string>(in.ConsumeRandomLengthString(200));
        tx.eight_bit = in.ConsumeBool();
        return tx;
    };
    auto submit = [&] {
        Transaction tx = make_tx();
        const uint64_t mid = tx.mid;
        const size_t n = tx.recipients.size();
        if (s.submit(std::move(tx), Millis(now))) {
            submitted.push_back(mid);
            submitted_rcpts.push_back(n);
        }
    };
    auto drain = [&] {
        for (ClientAction& a : s.take_actions()) {
            if (closed) abort();
            if (auto* st = std::get_if<TransactionStarted>(&a)) current = st->mid;
            if (std::holds_alternative<SendContent>(a)) {
                for (uint64_t owner : writes)
                    if (owner == current) abort();  // previous chunk not written yet
                writes.push_back(current);
            }
            if (auto* r = std::get_if<TransactionReport>(&a)) {
                if (submitted.empty() || submitted.front() != r->mid) abort();
                if (r->recipients.size() != submitted_rcpts.front()) abort();
                submitted.pop_front();
                submitted_rcpts.pop_front();
            }
            if (std::holds_alternative<StartTlsHandshake>(a)) tls_pending = true;
            if (std::holds_alternative<CloseConnection>(a)) closed = true;
        }
    };

    submit();
    s.start(Millis(now));
    drain();
    s.on_connected(Millis(now));
    drain();
    while (in.remaining_bytes() > 0 && !closed) {
        now += in.ConsumeIntegralInRange<int64_t>(0, 1000);
        const int op = in.ConsumeIntegralInRange<int>(0, 15);
        if (op <= 6) {
            std::string bytes =
                kReplies[in.ConsumeIntegralInRange<size_t>(0, std::size(kReplies) - 1)];
            const size_t cut = in.ConsumeIntegralInRange<size_t>(0, bytes.size());
            s.on_bytes(std::string_view(bytes).substr(0, cut), Millis(now));
            drain();
            if (!closed) s.on_bytes(std::string_view(bytes).substr(cut), Millis(now));
        } else if (op == 7) {
            s.on_bytes(in.ConsumeRandomLengthString(64), Millis(now));
        } else if (op <= 9) {
            if (!writes.empty()) {
                writes.pop_front();
                s.on_content_sent(Millis(now));
            }
        } else if (op == 10) {
            submit();
        } else if (op == 11 && tls_pending) {
            tls_pending = false;
            if (in.ConsumeBool())
                s.on_tls_established(Millis(now), in.ConsumeBool());
            else
                s.on_tls_failed("handshake failed", Millis(now));
        } else if (op == 12) {
            if (auto d = s.next_deadline()) s.on_timeout(std::max(*d, Millis(now)));
        } else if (op == 13) {
            s.quit(Millis(now));
        } else if (op == 14) {
            s.on_disconnected(Millis(now), "Connection reset by peer");
        }
        drain();
    }
    if (!closed) {
        s.on_disconnected(Millis(now), "end of input");
        drain();
    }
    if (!closed || !submitted.empty()) abort();  // every transaction reported at the end
    return 0;
}
