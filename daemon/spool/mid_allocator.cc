// mid_allocator — see mid_allocator.h.
#include "daemon/spool/mid_allocator.h"

#include <fcntl.h>

#include <cerrno>

#include "daemon/spool/crc32c.h"

namespace esad::spool {
namespace {

constexpr std::string_view kMagic = "ESAMID01";
constexpr char kFileName[] = "mid_reservation";
constexpr std::size_t kFileSize = 8 + 8 + 4;

std::string encode_reservation(Mid high) {
    std::string s(kMagic);
    s += le64(high);
    const std::uint32_t crc = crc32c(s);
    s += le64(crc).substr(0, 4);
    return s;
}

}  // namespace

IoStatus MidAllocator::open(const std::string& dir, std::uint64_t block_size,
                            std::unique_ptr<MidAllocator>& out) {
    if (block_size == 0) return IoStatus::failure(EINVAL, "mid block size 0");
    UniqueFd fd;
    if (int err = open_dir(AT_FDCWD, dir, fd)) return IoStatus::failure(err, "open " + dir);
    const std::string label = dir + "/" + kFileName;
    std::unique_ptr<MidAllocator> a(new MidAllocator(std::move(fd), label, block_size));
    std::string bytes;
    const int err = read_small_file(a->dir_fd_.get(), kFileName, bytes);
    if (err != 0 && err != ENOENT) return IoStatus::failure(err, "read " + label);
    if (err == 0) {
        if (bytes.size() != kFileSize || bytes.substr(0, 8) != kMagic ||
            static_cast<std::uint32_t>(get_le64(bytes.substr(16) + std::string(4, '\0'), 0)) !=
                crc32c(std::string_view(bytes).substr(0, 16))) {
            return IoStatus::failure(EBADMSG, "corrupt " + label);
        }
        const Mid high = get_le64(bytes, 8);
        a->next_ = high == 0 ? 1 : high;
        a->reserved_ = a->next_;
    }
    if (IoStatus st = a->refill(); !st.ok()) {
        // A full spool must still start: delivering is what frees space. Without a durable
        // reservation no MID is handed out (next() fails, MAIL gets 4xx) until a refill works.
        if (st.error_class() != ErrorClass::kNoSpace) return st;
    }
    out = std::move(a);
    return IoStatus::success();
}

namespace {
// a + b, saturating at kMidLimit: the counter never wraps to 0 or to an old MID.
Mid saturating_add(Mid a, std::uint64_t b) {
    return a > kMidLimit - b ? kMidLimit : a + b;
}
}  // namespace

IoStatus MidAllocator::next(Mid& out) {
    std::lock_guard<std::mutex> lock(mu_);
    if (next_ >= kMidLimit) return IoStatus::failure(EOVERFLOW, "allocate MID: MIDs exhausted");
    if (next_ >= reserved_)
        return IoStatus::failure(EAGAIN, "allocate MID: reservation in " + label_ + " used up");
    out = next_++;
    return IoStatus::success();
}

IoStatus MidAllocator::observe(Mid seen) {
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (seen < next_) return IoStatus::success();
        next_ = seen >= kMidLimit ? kMidLimit : seen + 1;
    }
    return refill();
}

bool MidAllocator::available() const {
    std::lock_guard<std::mutex> lock(mu_);
    return next_ < kMidLimit && next_ < reserved_;
}

bool MidAllocator::wants_refill_locked() const {
    return reserved_ < kMidLimit && (reserved_ <= next_ || reserved_ - next_ < block_ / 2);
}

bool MidAllocator::needs_refill() const {
    std::lock_guard<std::mutex> lock(mu_);
    return wants_refill_locked();
}

IoStatus MidAllocator::refill() {
    std::lock_guard<std::mutex> writer(write_mu_);
    Mid high = 0;
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (!wants_refill_locked()) return IoStatus::success();
        high = saturating_add(std::max(reserved_, next_), block_);
    }
    // The write and its fsyncs run without mu_: next() on the loop never waits for the disk.
    // On failure the old reservation stays: never hand out what is not durable.
    IoStatus st = atomic_replace(dir_fd_.get(), kFileName, encode_reservation(high), label_);
    std::lock_guard<std::mutex> lock(mu_);
    refill_error_ = st;
    if (!st.ok()) return st;
    reserved_ = std::max(reserved_, high);
    ++persists_;
    return st;
}

IoStatus MidAllocator::last_refill_error() const {
    std::lock_guard<std::mutex> lock(mu_);
    return refill_error_;
}

Mid MidAllocator::peek_next() const {
    std::lock_guard<std::mutex> lock(mu_);
    return next_;
}

Mid MidAllocator::reserved_until() const {
    std::lock_guard<std::mutex> lock(mu_);
    return reserved_;
}

std::uint64_t MidAllocator::persist_count() const {
    std::lock_guard<std::mutex> lock(mu_);
    return persists_;
}

}  // namespace esad::spool
