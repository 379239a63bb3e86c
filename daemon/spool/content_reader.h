// content_reader — owns reading one spool message's content for delivery, chunk by chunk,
// so a transaction never holds the whole message (issue 11, defect 5).
//
//   ContentCheck (pure, unit-tested): validates a message file as its pieces pass.
//     begin(prefix, trailer, file_size, mid)   header + envelope (its own CRC32C) + the
//         trailer's structure, before any content is handed out
//     feed(chunk)    the next content octets, in order; CRC32C runs over them
//     finish()       after the last octet: the whole-file CRC32C against the trailer's
//   ContentReader (blocking, for a libuv worker): the same over a Store::MessageRange.
//     open(range, mid)   reads the prefix (growing it as decode_envelope asks) and the
//                        trailer; kCorrupt / kIoError with a reason otherwise
//     read(max, out, last)  the next <= max content octets. The piece that ends the
//                        content is handed out only after finish() matched: a corrupt file
//                        is known before its last piece, so the final "." is never sent
//                        for it (the caller aborts the transaction and quarantines).
//     rewind()           back to the first content octet (the transaction is re-run on
//                        another connection)
// One reader is used by one thread at a time (the caller serialises its jobs).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "daemon/spool/crc32c.h"
#include "daemon/spool/record_codec.h"
#include "daemon/spool/store.h"

namespace esad::spool {

class ContentCheck {
  public:
    // `prefix`: the file's first bytes, at least up to the first content octet (else
    // kTruncated with needed() set); `trailer`: its last kTrailerSize bytes.
    DecodeStatus begin(std::string_view prefix, std::string_view trailer, std::uint64_t file_size,
                       Mid mid, std::string* reason);
    // Prefix bytes begin() asked for when it returned kTruncated (0: the file is too short).
    std::uint64_t needed() const { return needed_; }
    const Envelope& envelope() const { return envelope_; }
    std::uint64_t content_offset() const { return content_offset_; }
    std::uint64_t content_length() const { return content_length_; }
    std::uint64_t consumed() const { return consumed_; }
    // kMalformed when more octets are fed than the content holds.
    DecodeStatus feed(std::string_view chunk, std::string* reason);
    // Call once consumed() == content_length(): kBadChecksum on a mismatch.
    DecodeStatus finish(std::string* reason) const;
    void rewind();

  private:
    Envelope envelope_;
    std::string trailer_;
    std::uint64_t file_size_ = 0;
    std::uint64_t content_offset_ = 0;
    std::uint64_t content_length_ = 0;
    std::uint64_t consumed_ = 0;
    std::uint64_t needed_ = 0;
    Crc32c head_crc_;  // over every byte before the content
    Crc32c crc_;
};

class ContentReader {
  public:
    LoadStatus open(MessageRange range, Mid mid, std::string& reason);
    const Envelope& envelope() const { return check_.envelope(); }
    std::uint64_t content_size() const { return check_.content_length(); }
    std::uint64_t remaining() const { return check_.content_length() - check_.consumed(); }
    // `out` is replaced by the next piece; `last` tells it ends the (verified) content.
    LoadStatus read(std::size_t max, std::string& out, bool& last, std::string& reason);
    void rewind() { check_.rewind(); }

  private:
    LoadStatus fail(LoadStatus status, std::string text, std::string& reason) const;
    MessageRange range_;
    Mid mid_ = 0;
    ContentCheck check_;
};

}  // namespace esad::spool
