// record_codec — the byte format of one spool message file. Pure: no I/O, no logging.
//
// A message file is
//   magic "ESASPOOL" (8 bytes) + format version (u32 LE)
//   records, each: type (u8) + payload length (u64 LE) + payload, in this fixed order:
//     kMid, kReceived, kSender, kIcid, kClientIp, kClientHelo, kBodyFlags, kRecipient×N,
//     kEnvelopeCrc (CRC32C of every byte before it), kContent (the message bytes),
//     kEnd (total file length u64 + CRC32C of every byte before kEnd + end marker "ESA-END!").
// All integers are little-endian. Strings are raw bytes (binary-safe: NUL, CR, LF, 8-bit).
// The envelope has its own checksum so recovery can validate it without reading the
// content; the trailer checksum covers the whole file (REQ-D2, REQ-D12).
//
// API
//   encode(msg) / encode_parts(msg)   -> bytes (recipient domains are lower-cased, ASCII)
//   decode(bytes)                     -> DecodeResult (status + reason + message)
//   decode_envelope(prefix, size)     -> envelope + where the content lies, from a prefix
//   check_trailer(trailer, size, crc) -> validates the last kTrailerSize bytes of a file
// decode*/check_trailer never read outside the given buffer and never throw on bad input;
// a status other than kOk comes with a human-readable reason for the caller's log line.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace esad::spool {

using Mid = std::uint64_t;  // 0 is never a valid MID

inline constexpr std::string_view kFileMagic = "ESASPOOL";
inline constexpr std::uint32_t kFormatVersion = 1;
inline constexpr std::size_t kHeaderSize = 12;       // magic + version
inline constexpr std::size_t kRecordHeaderSize = 9;  // type + u64 length
inline constexpr std::string_view kEndMarker = "ESA-END!";
inline constexpr std::size_t kTrailerSize = kRecordHeaderSize + 8 + 4 + 8;

enum class BodyType : std::uint8_t { k7Bit = 0, k8BitMime = 1, kBinaryMime = 2 };

struct Recipient {
    std::uint32_t rid = 0;  // index inside its message, as assigned at injection
    std::string address;    // the RCPT TO path, case preserved
    std::string domain;     // recipient host, lower-cased on encode

    bool operator==(const Recipient&) const = default;
};

struct Envelope {
    Mid mid = 0;
    std::int64_t received_unix_ms = 0;
    std::string sender;  // MAIL FROM path; empty for the null sender
    std::uint64_t icid = 0;
    std::string client_ip;
    std::string client_helo;
    BodyType body_type = BodyType::k7Bit;
    bool smtputf8 = false;
    std::vector<Recipient> recipients;

    bool operator==(const Envelope&) const = default;
};

struct Message {
    Envelope envelope;
    std::string content;

    bool operator==(const Message&) const = default;
};

enum class DecodeStatus : std::uint8_t {
    kOk,
    kTruncated,       // the bytes end before the format says they should
    kBadChecksum,     // envelope or whole-file CRC32C mismatch
    kUnknownVersion,  // magic ok, version not kFormatVersion
    kMalformed,       // bad magic, bad record type/order/length, trailing bytes, ...
};

std::string_view to_string(DecodeStatus status);

struct DecodeResult {
    DecodeStatus status = DecodeStatus::kMalformed;
    std::string reason;  // empty when ok
    Message message;     // valid only when status == kOk
};

struct EnvelopeDecodeResult {
    DecodeStatus status = DecodeStatus::kMalformed;
    std::string reason;
    Envelope envelope;
    std::uint64_t content_offset = 0;  // file offset of the first content byte
    std::uint64_t content_length = 0;
    // When status == kTruncated and the prefix was shorter than the file, at least this
    // many bytes of prefix are needed to make progress.
    std::uint64_t bytes_needed = 0;
};

// The file is head + content + tail (lets the store writev() without copying the content).
struct EncodedParts {
    std::string head;
    std::string tail;
};

EncodedParts encode_parts(const Message& message);
std::string encode(const Message& message);

DecodeResult decode(std::string_view bytes);

// Decodes the header and envelope from the first bytes of a file of `file_size` bytes,
// checks the envelope checksum and that the content + trailer exactly fill the file.
// Does not look at the content or verify the trailer.
EnvelopeDecodeResult decode_envelope(std::string_view prefix, std::uint64_t file_size);

// Validates the trailer (the last kTrailerSize bytes of a file of `file_size` bytes).
// `content_crc`, if given, is the CRC32C of every byte before the trailer, computed by the
// caller while streaming the file; it must match the stored one.
DecodeStatus check_trailer(std::string_view trailer, std::uint64_t file_size,
                           std::optional<std::uint32_t> content_crc, std::string* reason);

// ASCII lower-casing, as applied to recipient domains.
std::string ascii_lower(std::string_view s);

}  // namespace esad::spool
