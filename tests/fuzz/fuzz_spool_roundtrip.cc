// Fuzz target: spool encode -> decode round trip of arbitrary messages
// (daemon/spool/record_codec.*).
// Property: decode(encode(m)) == m (recipient domains lower-cased), for binary-safe
// strings of any content; every truncation of the file is detected, never decoded.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdlib>
#include <string>

#include "daemon/spool/record_codec.h"

using namespace esad::spool;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider in(data, size);
    Message m;
    Envelope& e = m.envelope;
    e.mid = in.ConsumeIntegralInRange<uint64_t>(1, UINT64_MAX);
    e.received_unix_ms = in.ConsumeIntegral<int64_t>();
    e.sender = in.ConsumeRandomLengthString(64);
    e.icid = in.ConsumeIntegral<uint64_t>();
    e.client_ip = in.ConsumeRandomLengthString(48);
    e.client_helo = in.ConsumeRandomLengthString(64);
    e.body_type = static_cast<BodyType>(in.ConsumeIntegralInRange<int>(0, 2));
    e.smtputf8 = in.ConsumeBool();
    const size_t n = in.ConsumeIntegralInRange<size_t>(1, 6);
    for (size_t i = 0; i < n; ++i) {
        Recipient r;
        r.rid = in.ConsumeIntegral<uint32_t>();
        r.address = in.ConsumeRandomLengthString(64);
        r.domain = ascii_lower(in.ConsumeRandomLengthString(32));
        e.recipients.push_back(std::move(r));
    }
    m.content = in.ConsumeRemainingBytesAsString();

    const std::string bytes = encode(m);
    const EncodedParts parts = encode_parts(m);
    if (parts.head + m.content + parts.tail != bytes) abort();
    const DecodeResult r = decode(bytes);
    if (r.status != DecodeStatus::kOk || !(r.message == m)) abort();
    for (size_t cut : {bytes.size() - 1, bytes.size() / 2, size_t{kHeaderSize}}) {
        if (cut >= bytes.size()) continue;
        if (decode(std::string_view(bytes).substr(0, cut)).status == DecodeStatus::kOk) abort();
    }
    return 0;
}
