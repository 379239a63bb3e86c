// record_codec — see record_codec.h for the format.
#include "daemon/spool/record_codec.h"

#include "daemon/spool/crc32c.h"

namespace esad::spool {
namespace {

enum RecordType : std::uint8_t {
    kRecMid = 1,
    kRecReceived = 2,
    kRecSender = 3,
    kRecIcid = 4,
    kRecClientIp = 5,
    kRecClientHelo = 6,
    kRecBodyFlags = 7,
    kRecRecipient = 8,
    kRecEnvelopeCrc = 9,
    kRecContent = 10,
    kRecEnd = 0xFF,
};

void put_u8(std::string& out, std::uint8_t v) {
    out.push_back(static_cast<char>(v));
}

void put_le(std::string& out, std::uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i)
        out.push_back(static_cast<char>((v >> (8 * i)) & 0xFFu));
}

void put_record(std::string& out, RecordType type, std::string_view payload) {
    put_u8(out, type);
    put_le(out, payload.size(), 8);
    out.append(payload);
}

std::string le_bytes(std::uint64_t v, int bytes) {
    std::string s;
    put_le(s, v, bytes);
    return s;
}

std::uint64_t get_le(std::string_view in, std::size_t pos, int bytes) {
    std::uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) {
        v |= static_cast<std::uint64_t>(static_cast<unsigned char>(in[pos + i])) << (8 * i);
    }
    return v;
}

// One record located inside a buffer.
struct RawRecord {
    std::uint8_t type = 0;
    std::size_t offset = 0;  // of the record header
    std::string_view payload;
};

enum class Next { kOk, kTruncated };

// Reads the record header at `pos`; the payload must lie within `bytes`.
Next read_record(std::string_view bytes, std::size_t pos, RawRecord& rec, std::uint64_t& need) {
    if (bytes.size() - pos < kRecordHeaderSize) {
        need = pos + kRecordHeaderSize;
        return Next::kTruncated;
    }
    rec.type = static_cast<std::uint8_t>(bytes[pos]);
    rec.offset = pos;
    const std::uint64_t len = get_le(bytes, pos + 1, 8);
    const std::size_t avail = bytes.size() - pos - kRecordHeaderSize;
    if (len > avail) {
        need = (len > UINT64_MAX - pos - kRecordHeaderSize) ? UINT64_MAX
                                                            : pos + kRecordHeaderSize + len;
        return Next::kTruncated;
    }
    rec.payload = bytes.substr(pos + kRecordHeaderSize, static_cast<std::size_t>(len));
    return Next::kOk;
}

DecodeStatus fail(std::string* reason, DecodeStatus status, std::string text) {
    if (reason != nullptr) *reason = std::move(text);
    return status;
}

DecodeStatus check_header(std::string_view bytes, std::string* reason) {
    const std::size_t n = std::min(bytes.size(), kFileMagic.size());
    if (bytes.substr(0, n) != kFileMagic.substr(0, n)) {
        return fail(reason, DecodeStatus::kMalformed, "bad magic");
    }
    if (bytes.size() < kHeaderSize) {
        return fail(reason, DecodeStatus::kTruncated, "file shorter than its header");
    }
    const auto version = static_cast<std::uint32_t>(get_le(bytes, kFileMagic.size(), 4));
    if (version != kFormatVersion) {
        return fail(reason, DecodeStatus::kUnknownVersion,
                    "unknown format version " + std::to_string(version));
    }
    return DecodeStatus::kOk;
}

bool fixed_u64(const RawRecord& rec, std::uint64_t& out) {
    if (rec.payload.size() != 8) return false;
    out = get_le(rec.payload, 0, 8);
    return true;
}

bool parse_recipient(std::string_view p, Recipient& r) {
    // rid u32, address length u32, address, domain length u32, domain
    if (p.size() < 8) return false;
    r.rid = static_cast<std::uint32_t>(get_le(p, 0, 4));
    const std::uint64_t alen = get_le(p, 4, 4);
    if (p.size() - 8 < alen + 4) return false;
    r.address.assign(p.substr(8, alen));
    const std::size_t dpos = 8 + alen;
    const std::uint64_t dlen = get_le(p, dpos, 4);
    if (p.size() - dpos - 4 != dlen) return false;
    r.domain.assign(p.substr(dpos + 4, dlen));
    return true;
}

const char* type_name(std::uint8_t t) {
    switch (t) {
        case kRecMid:
            return "mid";
        case kRecReceived:
            return "received";
        case kRecSender:
            return "sender";
        case kRecIcid:
            return "icid";
        case kRecClientIp:
            return "client_ip";
        case kRecClientHelo:
            return "client_helo";
        case kRecBodyFlags:
            return "body_flags";
        case kRecRecipient:
            return "recipient";
        case kRecEnvelopeCrc:
            return "envelope_crc";
        case kRecContent:
            return "content";
        case kRecEnd:
            return "end";
        default:
            return "unknown";
    }
}

// Parses header + envelope records + the content record header. `bytes` may be a prefix of
// the file; the content payload itself is not required to be present.
EnvelopeDecodeResult parse_envelope(std::string_view bytes, std::uint64_t file_size) {
    EnvelopeDecodeResult out;
    out.status = check_header(bytes, &out.reason);
    if (out.status != DecodeStatus::kOk) {
        if (out.status == DecodeStatus::kTruncated && bytes.size() < file_size) {
            out.bytes_needed = kHeaderSize;
        }
        return out;
    }
    static constexpr RecordType kOrder[] = {kRecMid,      kRecReceived,   kRecSender,   kRecIcid,
                                            kRecClientIp, kRecClientHelo, kRecBodyFlags};
    std::size_t pos = kHeaderSize;
    auto truncated = [&](std::uint64_t need) {
        out.status = DecodeStatus::kTruncated;
        out.reason = "truncated in envelope";
        if (bytes.size() < file_size) out.bytes_needed = need;
        return out;
    };
    auto malformed = [&](std::string text) {
        out.status = DecodeStatus::kMalformed;
        out.reason = std::move(text);
        return out;
    };
    Envelope& env = out.envelope;
    RawRecord rec;
    std::uint64_t need = 0;
    for (RecordType expected : kOrder) {
        if (read_record(bytes, pos, rec, need) != Next::kOk) return truncated(need);
        if (rec.type != expected) {
            return malformed(std::string("expected ") + type_name(expected) + " record, got " +
                             type_name(rec.type));
        }
        std::uint64_t v = 0;
        switch (expected) {
            case kRecMid:
                if (!fixed_u64(rec, env.mid) || env.mid == 0) return malformed("bad mid record");
                break;
            case kRecReceived:
                if (!fixed_u64(rec, v)) return malformed("bad received record");
                env.received_unix_ms = static_cast<std::int64_t>(v);
                break;
            case kRecSender:
                env.sender.assign(rec.payload);
                break;
            case kRecIcid:
                if (!fixed_u64(rec, env.icid)) return malformed("bad icid record");
                break;
            case kRecClientIp:
                env.client_ip.assign(rec.payload);
                break;
            case kRecClientHelo:
                env.client_helo.assign(rec.payload);
                break;
            case kRecBodyFlags: {
                if (rec.payload.size() != 2) return malformed("bad body_flags record");
                const auto body = static_cast<std::uint8_t>(rec.payload[0]);
                const auto utf8 = static_cast<std::uint8_t>(rec.payload[1]);
                if (body > static_cast<std::uint8_t>(BodyType::kBinaryMime) || utf8 > 1) {
                    return malformed("bad body_flags values");
                }
                env.body_type = static_cast<BodyType>(body);
                env.smtputf8 = utf8 == 1;
                break;
            }
            default:
                break;
        }
        pos += kRecordHeaderSize + rec.payload.size();
    }
    // Recipients, then the envelope checksum.
    for (;;) {
        if (read_record(bytes, pos, rec, need) != Next::kOk) return truncated(need);
        if (rec.type == kRecRecipient) {
            Recipient r;
            if (!parse_recipient(rec.payload, r)) return malformed("bad recipient record");
            env.recipients.push_back(std::move(r));
            pos += kRecordHeaderSize + rec.payload.size();
            continue;
        }
        if (rec.type != kRecEnvelopeCrc) {
            return malformed(std::string("expected recipient or envelope_crc record, got ") +
                             type_name(rec.type));
        }
        if (rec.payload.size() != 4) return malformed("bad envelope_crc record");
        const auto stored = static_cast<std::uint32_t>(get_le(rec.payload, 0, 4));
        if (stored != crc32c(bytes.substr(0, pos))) {
            out.status = DecodeStatus::kBadChecksum;
            out.reason = "envelope checksum mismatch";
            return out;
        }
        pos += kRecordHeaderSize + rec.payload.size();
        break;
    }
    if (env.recipients.empty()) return malformed("message without recipients");
    // Content record header (its payload may lie beyond the prefix).
    if (bytes.size() - pos < kRecordHeaderSize) return truncated(pos + kRecordHeaderSize);
    if (static_cast<std::uint8_t>(bytes[pos]) != kRecContent) {
        return malformed(std::string("expected content record, got ") +
                         type_name(static_cast<std::uint8_t>(bytes[pos])));
    }
    const std::uint64_t clen = get_le(bytes, pos + 1, 8);
    out.content_offset = pos + kRecordHeaderSize;
    const std::uint64_t room = file_size - out.content_offset;  // pos+9 <= prefix <= file
    if (clen > room || room - clen < kTrailerSize) {
        out.status = DecodeStatus::kTruncated;
        out.reason = "file ends inside content or trailer";
        return out;
    }
    if (room - clen > kTrailerSize) return malformed("bytes after the trailer");
    out.content_length = clen;
    out.status = DecodeStatus::kOk;
    return out;
}

}  // namespace

std::string_view to_string(DecodeStatus status) {
    switch (status) {
        case DecodeStatus::kOk:
            return "ok";
        case DecodeStatus::kTruncated:
            return "truncated";
        case DecodeStatus::kBadChecksum:
            return "bad_checksum";
        case DecodeStatus::kUnknownVersion:
            return "unknown_version";
        case DecodeStatus::kMalformed:
            return "malformed";
    }
    return "unknown";
}

std::string ascii_lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
}

EncodedParts encode_parts(const Message& message) {
    const Envelope& env = message.envelope;
    EncodedParts parts;
    std::string& h = parts.head;
    h.append(kFileMagic);
    put_le(h, kFormatVersion, 4);
    put_record(h, kRecMid, le_bytes(env.mid, 8));
    put_record(h, kRecReceived, le_bytes(static_cast<std::uint64_t>(env.received_unix_ms), 8));
    put_record(h, kRecSender, env.sender);
    put_record(h, kRecIcid, le_bytes(env.icid, 8));
    put_record(h, kRecClientIp, env.client_ip);
    put_record(h, kRecClientHelo, env.client_helo);
    std::string flags;
    put_u8(flags, static_cast<std::uint8_t>(env.body_type));
    put_u8(flags, env.smtputf8 ? 1 : 0);
    put_record(h, kRecBodyFlags, flags);
    for (const Recipient& r : env.recipients) {
        std::string p;
        put_le(p, r.rid, 4);
        put_le(p, r.address.size(), 4);
        p.append(r.address);
        const std::string domain = ascii_lower(r.domain);
        put_le(p, domain.size(), 4);
        p.append(domain);
        put_record(h, kRecRecipient, p);
    }
    put_record(h, kRecEnvelopeCrc, le_bytes(crc32c(h), 4));
    put_u8(h, kRecContent);
    put_le(h, message.content.size(), 8);

    Crc32c crc;
    crc.update(h);
    crc.update(message.content);
    const std::uint64_t total = h.size() + message.content.size() + kTrailerSize;
    std::string& t = parts.tail;
    put_u8(t, kRecEnd);
    put_le(t, 8 + 4 + kEndMarker.size(), 8);
    put_le(t, total, 8);
    put_le(t, crc.value(), 4);
    t.append(kEndMarker);
    return parts;
}

std::string encode(const Message& message) {
    EncodedParts parts = encode_parts(message);
    std::string out;
    out.reserve(parts.head.size() + message.content.size() + parts.tail.size());
    out.append(parts.head);
    out.append(message.content);
    out.append(parts.tail);
    return out;
}

DecodeStatus check_trailer(std::string_view trailer, std::uint64_t file_size,
                           std::optional<std::uint32_t> content_crc, std::string* reason) {
    if (trailer.size() != kTrailerSize) {
        return fail(reason, DecodeStatus::kTruncated, "trailer missing");
    }
    if (static_cast<std::uint8_t>(trailer[0]) != kRecEnd ||
        get_le(trailer, 1, 8) != 8 + 4 + kEndMarker.size()) {
        return fail(reason, DecodeStatus::kMalformed, "bad end record");
    }
    if (trailer.substr(kTrailerSize - kEndMarker.size()) != kEndMarker) {
        return fail(reason, DecodeStatus::kMalformed, "bad end marker");
    }
    if (get_le(trailer, kRecordHeaderSize, 8) != file_size) {
        return fail(reason, DecodeStatus::kMalformed, "total length mismatch");
    }
    if (content_crc.has_value() &&
        static_cast<std::uint32_t>(get_le(trailer, kRecordHeaderSize + 8, 4)) != *content_crc) {
        return fail(reason, DecodeStatus::kBadChecksum, "file checksum mismatch");
    }
    return DecodeStatus::kOk;
}

EnvelopeDecodeResult decode_envelope(std::string_view prefix, std::uint64_t file_size) {
    if (prefix.size() > file_size) prefix = prefix.substr(0, file_size);
    return parse_envelope(prefix, file_size);
}

DecodeResult decode(std::string_view bytes) {
    DecodeResult out;
    out.status = check_header(bytes, &out.reason);
    if (out.status != DecodeStatus::kOk) return out;
    // A complete file (trailer present and its length matches) whose checksum does not match
    // has flipped bytes somewhere: say so rather than blaming whatever record looks odd.
    if (bytes.size() >= kHeaderSize + kTrailerSize) {
        const std::string_view trailer = bytes.substr(bytes.size() - kTrailerSize);
        const std::string_view before = bytes.substr(0, bytes.size() - kTrailerSize);
        std::string reason;
        if (check_trailer(trailer, bytes.size(), std::nullopt, &reason) == DecodeStatus::kOk &&
            check_trailer(trailer, bytes.size(), crc32c(before), &reason) ==
                DecodeStatus::kBadChecksum) {
            out.status = DecodeStatus::kBadChecksum;
            out.reason = std::move(reason);
            return out;
        }
    }
    EnvelopeDecodeResult env = parse_envelope(bytes, bytes.size());
    if (env.status != DecodeStatus::kOk) {
        out.status = env.status;
        out.reason = std::move(env.reason);
        return out;
    }
    const std::string_view trailer = bytes.substr(bytes.size() - kTrailerSize);
    const std::uint32_t crc = crc32c(bytes.substr(0, bytes.size() - kTrailerSize));
    out.status = check_trailer(trailer, bytes.size(), crc, &out.reason);
    if (out.status != DecodeStatus::kOk) return out;
    out.message.envelope = std::move(env.envelope);
    out.message.content.assign(bytes.substr(env.content_offset, env.content_length));
    out.reason.clear();
    return out;
}

}  // namespace esad::spool
