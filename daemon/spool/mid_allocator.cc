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
    std::lock_guard<std::mutex> lock(a->mu_);
    const Mid high = a->next_ > kMidLimit - block_size ? kMidLimit : a->next_ + block_size;
    if (IoStatus st = a->persist_locked(high); !st.ok()) return st;
    out = std::move(a);
    return IoStatus::success();
}

IoStatus MidAllocator::persist_locked(Mid new_high) {
    if (IoStatus st =
            atomic_replace(dir_fd_.get(), kFileName, encode_reservation(new_high), label_);
        !st.ok()) {
        return st;  // keep the old reservation: never hand out what is not durable
    }
    reserved_ = new_high;
    ++persists_;
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
    if (next_ >= reserved_) {
        if (IoStatus st = persist_locked(saturating_add(next_, block_)); !st.ok()) return st;
    }
    out = next_++;
    return IoStatus::success();
}

IoStatus MidAllocator::observe(Mid seen) {
    std::lock_guard<std::mutex> lock(mu_);
    if (seen < next_) return IoStatus::success();
    next_ = seen >= kMidLimit ? kMidLimit : seen + 1;
    if (next_ >= reserved_ && reserved_ < kMidLimit)
        return persist_locked(saturating_add(next_, block_));
    return IoStatus::success();
}

bool MidAllocator::needs_refill() const {
    std::lock_guard<std::mutex> lock(mu_);
    return reserved_ < kMidLimit && (reserved_ <= next_ || reserved_ - next_ < block_ / 2);
}

IoStatus MidAllocator::refill() {
    std::lock_guard<std::mutex> lock(mu_);
    if (reserved_ >= kMidLimit || (reserved_ > next_ && reserved_ - next_ >= block_ / 2))
        return IoStatus::success();
    return persist_locked(saturating_add(std::max(reserved_, next_), block_));
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
