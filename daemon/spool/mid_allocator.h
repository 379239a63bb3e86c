// mid_allocator — 64-bit message ids (MIDs), unique across restarts and clock steps, without
// an fsync per message and without looking at wall-clock time (REQ-D11, DUR-10).
//
// The file spool/mid_reservation holds a high-water mark H ("every MID handed out is < H"),
// stored as magic "ESAMID01" + H (u64 LE) + CRC32C, replaced atomically (tmp, fsync, rename,
// fsync dir). MIDs are handed out from memory below H; when the reservation runs out a new
// block (default 10,000) is persisted first. A restart continues from the stored H, so a
// crash loses at most one block of unused numbers. observe(max MID found on disk) at
// recovery moves past anything the file does not cover (e.g. a restored or copied spool).
//
// Threading: internally locked; next() is cheap and may run on the loop thread except when
// the reservation is exhausted (then it persists inline). To keep that off the loop, call
// refill() on a worker thread whenever needs_refill() says less than half a block is left.
// A missing file starts at 1; a corrupt file is an error (uniqueness cannot be proven).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "daemon/spool/file_util.h"
#include "daemon/spool/record_codec.h"

namespace esad::spool {

inline constexpr std::uint64_t kDefaultMidBlock = 10000;
// MIDs are 1 .. kMidLimit - 1. Once the counter reaches kMidLimit (e.g. a file named
// ffffffffffffffff was observed) next() fails with EOVERFLOW instead of wrapping to 0.
inline constexpr Mid kMidLimit = UINT64_MAX;

class MidAllocator {
  public:
    // dir: the spool directory path (Store::spool_path()).
    static IoStatus open(const std::string& dir, std::uint64_t block_size,
                         std::unique_ptr<MidAllocator>& out);

    IoStatus next(Mid& out);     // EOVERFLOW once the MID space is exhausted
    IoStatus observe(Mid seen);  // afterwards every next() result is > seen
    bool needs_refill() const;
    IoStatus refill();

    Mid peek_next() const;
    Mid reserved_until() const;           // H as last persisted
    std::uint64_t persist_count() const;  // reservations written by this instance

  private:
    MidAllocator(UniqueFd dir_fd, std::string label, std::uint64_t block)
        : dir_fd_(std::move(dir_fd)), label_(std::move(label)), block_(block) {}
    IoStatus persist_locked(Mid new_high);

    UniqueFd dir_fd_;
    std::string label_;
    std::uint64_t block_;
    mutable std::mutex mu_;
    Mid next_ = 1;
    Mid reserved_ = 1;
    std::uint64_t persists_ = 0;
};

}  // namespace esad::spool
