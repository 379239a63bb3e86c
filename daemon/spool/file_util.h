// file_util — small blocking POSIX helpers shared by the spool files, and the spool's error
// type. No logging: failures come back as IoStatus {errno, operation + path}.
//
// API
//   IoStatus            ok() / err / what; error_class(): kNoSpace (ENOSPC, EDQUOT) or kIo
//   smtp_reply_for()    the reply an injection glue gives for a commit failure class
//   UniqueFd            owning file descriptor
//   write_all, read_all_at, fsync_fd, atomic_replace (tmp + fsync + rename + fsync dir)
// Every function is safe to call from any thread; none keeps state.
#pragma once

#include <sys/uio.h>

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace esad::spool {

enum class ErrorClass : std::uint8_t {
    kNone,
    kNoSpace,  // ENOSPC / EDQUOT: answer 452 4.3.1
    kIo,       // anything else: answer 451 4.3.0
};

ErrorClass classify_errno(int err);
std::string_view to_string(ErrorClass c);
// "452 4.3.1 Insufficient system storage" / "451 4.3.0 ..." / "" for kNone.
std::string_view smtp_reply_for(ErrorClass c);

struct IoStatus {
    int err = 0;       // errno, 0 when ok
    std::string what;  // operation and path, e.g. "fsync tmp/00000000000004d2.tmp"

    bool ok() const { return err == 0; }
    ErrorClass error_class() const { return classify_errno(err); }
    std::string reason() const;  // "what: strerror(err)"

    static IoStatus success() { return {}; }
    static IoStatus failure(int e, std::string w) { return {e, std::move(w)}; }
};

class UniqueFd {
  public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    UniqueFd& operator=(UniqueFd&& o) noexcept;
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() { reset(); }

    int get() const { return fd_; }
    bool valid() const { return fd_ >= 0; }
    void reset(int fd = -1);
    // Closes and reports close()'s error (NFS and some filesystems report write errors here).
    int close_checked();

  private:
    int fd_ = -1;
};

// Writes every byte (retrying short writes and EINTR); returns 0 or errno.
int write_all(int fd, std::string_view data);
// Writes all of iov[0, n) at `offset` (retrying short writes and EINTR; the iovecs are
// consumed); returns 0 or errno.
int pwritev_all(int fd, iovec* iov, std::size_t n, std::uint64_t offset);
// Writes zero bytes over [from, to) of fd: room a file grows into later without changing its
// size or block map, so that an fdatasync there writes data only. Returns 0 or errno.
int write_zeros(int fd, std::uint64_t from, std::uint64_t to);
// Reads exactly `len` bytes at `offset` into `out` (resized); returns 0, errno, or EIO when
// the file ends early (callers treat a shrinking file as an I/O error).
int read_exact_at(int fd, std::uint64_t offset, std::size_t len, std::string& out);
// Reads a whole (small) file relative to dir_fd; ENOENT is returned as is.
int read_small_file(int dir_fd, const std::string& name, std::string& out);
// fsync with EINTR retry (EINTR is not a failed sync); returns 0 or errno.
int fsync_fd(int fd);
// fdatasync with EINTR retry: the data and what finds it (size), not the timestamps.
int fdatasync_fd(int fd);
// Lists a directory's entry names (not "." / ".."); the fd is not consumed. 0 or errno.
int list_dir(int dir_fd, std::vector<std::string>& names);
// Opens a directory (O_DIRECTORY|O_NOFOLLOW) relative to dir_fd (or AT_FDCWD).
int open_dir(int dir_fd, const std::string& path, UniqueFd& out);
// Creates directory `name` under dir_fd with mode 0700 if missing; refuses a symlink, a
// non-directory or a group/world-writable directory in its place.
IoStatus ensure_dir(int dir_fd, const std::string& name, const std::string& label);
// Durably replaces `name` in dir_fd with `bytes`: write "<name>.tmp", fsync, rename over
// `name`, fsync the directory. On failure the temporary is removed.
IoStatus atomic_replace(int dir_fd, const std::string& name, std::string_view bytes,
                        const std::string& label);

std::string le64(std::uint64_t v);
std::uint64_t get_le64(std::string_view s, std::size_t pos);

}  // namespace esad::spool
