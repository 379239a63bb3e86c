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
// Threading: internally locked. next(), available() and needs_refill() never touch the disk and
// hold the lock only for a few instructions, so the loop thread may call them; only refill() (and
// open()) write, and refill() writes outside that lock: it picks the new mark under the lock,
// persists it holding only a writers' lock, then raises the reservation under the lock again.
// observe() (recovery, a worker) refills when it moved the counter close to or past the
// reservation. When the reservation is used up next() fails at once (EAGAIN) until a refill
// succeeds; callers run refill() on a worker whenever needs_refill(). A missing file starts at 1; a
// corrupt file is an error (uniqueness cannot be proven). open() on a full file system
// (ENOSPC/EDQUOT) still succeeds with an empty reservation and reports the failure in open_error(),
// so that a full spool can start, deliver and free space; every other write failure at open() is an
// error.
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

    // EOVERFLOW once the MID space is exhausted; EAGAIN while no reservation is left.
    IoStatus next(Mid& out);
    IoStatus observe(Mid seen);  // afterwards every next() result is > seen (may refill)
    bool available() const;      // next() would succeed now
    bool needs_refill() const;
    IoStatus refill();  // blocking: run on a worker thread
    // The last refill's failure (ok once one succeeded): kNoSpace while the file system is full.
    IoStatus last_refill_error() const;

    Mid peek_next() const;
    Mid reserved_until() const;           // H as last persisted
    std::uint64_t persist_count() const;  // reservations written by this instance

  private:
    MidAllocator(UniqueFd dir_fd, std::string label, std::uint64_t block)
        : dir_fd_(std::move(dir_fd)), label_(std::move(label)), block_(block) {}
    bool wants_refill_locked() const;

    UniqueFd dir_fd_;
    std::string label_;
    std::uint64_t block_;
    std::mutex write_mu_;  // one refill writes at a time; never taken by next()
    mutable std::mutex mu_;
    Mid next_ = 1;
    Mid reserved_ = 1;
    std::uint64_t persists_ = 0;
    IoStatus refill_error_;
};

}  // namespace esad::spool
