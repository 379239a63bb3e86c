// Fuzz target: DSN generation from arbitrary headers, addresses, diagnostics and times
// (daemon/queue/dsn.*).
// Properties: no crash/UB (far-future and negative times included); the DSN is 7-bit,
// uses CRLF line ends only and no line exceeds 998 octets.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdlib>
#include <string>

#include "daemon/queue/dsn.h"

using namespace esad::queue;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider in(data, size);
    DsnInput d;
    d.reporting_mta = in.ConsumeRandomLengthString(80);
    d.original_mid = in.ConsumeIntegral<uint64_t>();
    d.original_sender = in.ConsumeRandomLengthString(80);
    d.original_envelope_id = in.ConsumeRandomLengthString(80);
    d.arrival = in.ConsumeIntegral<std::time_t>();
    d.now = in.ConsumeIntegral<std::time_t>();
    d.boundary_seed = in.ConsumeIntegral<uint64_t>();
    d.delay_warning = in.ConsumeBool();
    d.dsn_message_id_domain = in.ConsumeRandomLengthString(40);
    const size_t n = in.ConsumeIntegralInRange<size_t>(0, 4);
    for (size_t i = 0; i < n; ++i) {
        DsnRecipient r;
        r.address = in.ConsumeRandomLengthString(80);
        r.action = in.ConsumeRandomLengthString(12);
        r.status = in.ConsumeRandomLengthString(12);
        r.remote_mta = in.ConsumeRandomLengthString(40);
        r.diagnostic = in.ConsumeRandomLengthString(200);
        r.original_recipient = in.ConsumeRandomLengthString(40);
        if (in.ConsumeBool()) r.last_attempt = in.ConsumeIntegral<std::time_t>();
        if (in.ConsumeBool()) r.will_retry_until = in.ConsumeIntegral<std::time_t>();
        d.recipients.push_back(std::move(r));
    }
    d.original_headers = in.ConsumeRemainingBytesAsString();

    (void)should_send_dsn(d.original_sender, d.original_headers);
    (void)rfc5322_date(d.arrival);
    const std::string dsn = build_dsn(d);
    size_t line = 0;
    for (size_t i = 0; i < dsn.size(); ++i) {
        const unsigned char c = static_cast<unsigned char>(dsn[i]);
        if (c >= 0x80 || c == 0) abort();
        if (c == '\n') {
            if (i == 0 || dsn[i - 1] != '\r') abort();
            line = 0;
            continue;
        }
        if (c == '\r' && (i + 1 >= dsn.size() || dsn[i + 1] != '\n')) abort();
        if (c != '\r' && ++line > 998) abort();
    }
    return 0;
}
