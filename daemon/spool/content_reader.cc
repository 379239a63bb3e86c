// See content_reader.h.
#include "daemon/spool/content_reader.h"

#include <algorithm>
#include <cstring>

namespace esad::spool {
namespace {

// The first read of a message file: enough for any ordinary envelope.
constexpr std::size_t kFirstPrefix = 16 * 1024;

DecodeStatus fail_with(std::string* reason, DecodeStatus status, std::string text) {
    if (reason != nullptr) *reason = std::move(text);
    return status;
}

}  // namespace

DecodeStatus ContentCheck::begin(std::string_view prefix, std::string_view trailer,
                                 std::uint64_t file_size, Mid mid, std::string* reason) {
    needed_ = 0;
    EnvelopeDecodeResult env = decode_envelope(prefix, file_size);
    if (env.status != DecodeStatus::kOk) {
        needed_ = env.bytes_needed;
        return fail_with(reason, env.status, std::move(env.reason));
    }
    if (env.envelope.mid != mid) {
        return fail_with(reason, DecodeStatus::kMalformed, "MID in file does not match its name");
    }
    if (DecodeStatus st = check_trailer(trailer, file_size, std::nullopt, reason);
        st != DecodeStatus::kOk) {
        return st;
    }
    envelope_ = std::move(env.envelope);
    trailer_.assign(trailer);
    file_size_ = file_size;
    content_offset_ = env.content_offset;
    content_length_ = env.content_length;
    head_crc_ = Crc32c{};
    head_crc_.update(prefix.substr(0, static_cast<std::size_t>(content_offset_)));
    rewind();
    return DecodeStatus::kOk;
}

DecodeStatus ContentCheck::feed(std::string_view chunk, std::string* reason) {
    if (chunk.size() > content_length_ - consumed_) {
        return fail_with(reason, DecodeStatus::kMalformed, "read past the content");
    }
    crc_.update(chunk);
    consumed_ += chunk.size();
    return DecodeStatus::kOk;
}

DecodeStatus ContentCheck::finish(std::string* reason) const {
    if (consumed_ != content_length_) {
        return fail_with(reason, DecodeStatus::kTruncated, "content not read to its end");
    }
    return check_trailer(trailer_, file_size_, crc_.value(), reason);
}

void ContentCheck::rewind() {
    crc_ = head_crc_;
    consumed_ = 0;
}

LoadStatus ContentReader::fail(LoadStatus status, std::string text, std::string& reason) const {
    reason = "queue/" + mid_name(mid_) + ": " + std::move(text);
    return status;
}

LoadStatus ContentReader::open(MessageRange range, Mid mid, std::string& reason) {
    range_ = std::move(range);
    mid_ = mid;
    const std::uint64_t size = range_.size;
    std::string trailer;
    if (size >= kTrailerSize) {
        if (int err = read_exact_at(range_.fd.get(), range_.offset + size - kTrailerSize,
                                    kTrailerSize, trailer)) {
            return fail(LoadStatus::kIoError, "read trailer: " + std::string(strerror(err)),
                        reason);
        }
    }
    std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(size, kFirstPrefix));
    for (;;) {
        std::string prefix;
        if (int err = read_exact_at(range_.fd.get(), range_.offset, want, prefix)) {
            return fail(LoadStatus::kIoError, "read envelope: " + std::string(strerror(err)),
                        reason);
        }
        std::string why;
        const DecodeStatus st = check_.begin(prefix, trailer, size, mid, &why);
        if (st == DecodeStatus::kOk) return LoadStatus::kOk;
        // A long envelope (many recipients): read as much as the decoder asks, within the file.
        if (st == DecodeStatus::kTruncated && check_.needed() > want && check_.needed() <= size) {
            want = static_cast<std::size_t>(check_.needed());
            continue;
        }
        return fail(LoadStatus::kCorrupt, std::string(to_string(st)) + ": " + why, reason);
    }
}

LoadStatus ContentReader::read(std::size_t max, std::string& out, bool& last, std::string& reason) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(max, remaining()));
    out.clear();
    if (n > 0) {
        const std::uint64_t at = range_.offset + check_.content_offset() + check_.consumed();
        if (int err = read_exact_at(range_.fd.get(), at, n, out)) {
            return fail(LoadStatus::kIoError, "read content: " + std::string(strerror(err)),
                        reason);
        }
    }
    std::string why;
    if (check_.feed(out, &why) != DecodeStatus::kOk) {
        return fail(LoadStatus::kCorrupt, why, reason);
    }
    last = remaining() == 0;
    if (last) {
        const DecodeStatus st = check_.finish(&why);
        if (st != DecodeStatus::kOk) {
            out.clear();
            last = false;
            return fail(LoadStatus::kCorrupt, std::string(to_string(st)) + ": " + why, reason);
        }
    }
    return LoadStatus::kOk;
}

}  // namespace esad::spool
