// Fuzz target: spool message-file and journal decoding on arbitrary bytes
// (daemon/spool/record_codec.*, journal.*).
// Properties: decode, decode_envelope, check_trailer and parse_journal never read outside
// their input or crash; a file decode() accepts also passes decode_envelope + check_trailer
// and re-encodes to the same bytes; parse_journal's valid + ignored bytes cover the input.
#include <cstdlib>
#include <string>
#include <string_view>

#include "daemon/spool/journal.h"
#include "daemon/spool/record_codec.h"

using namespace esad::spool;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);

    const DecodeResult full = decode(bytes);
    if (full.status != DecodeStatus::kOk && full.reason.empty()) abort();
    for (size_t prefix : {size_t{0}, size / 3, size / 2, size}) {
        const EnvelopeDecodeResult env = decode_envelope(bytes.substr(0, prefix), size);
        if (env.status == DecodeStatus::kOk &&
            env.content_offset + env.content_length + kTrailerSize != size)
            abort();
    }
    if (size >= kTrailerSize) {
        std::string reason;
        (void)check_trailer(bytes.substr(size - kTrailerSize), size, std::nullopt, &reason);
    }
    if (full.status == DecodeStatus::kOk) {
        const EnvelopeDecodeResult env = decode_envelope(bytes, size);
        if (env.status != DecodeStatus::kOk || !(env.envelope == full.message.envelope)) abort();
        std::string reason;
        if (check_trailer(bytes.substr(size - kTrailerSize), size, std::nullopt, &reason) !=
            DecodeStatus::kOk)
            abort();
        if (encode(full.message) != bytes) abort();
    }

    const JournalScan scan = parse_journal(bytes);
    if (scan.valid_bytes + scan.ignored_bytes + scan.room_bytes != size && scan.valid_bytes != 0)
        abort();
    for (const JournalRecord& r : scan.records) {
        if (encode_journal_record(r).empty()) abort();
    }
    return 0;
}
