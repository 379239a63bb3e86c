// file_util — see file_util.h.
#include "daemon/spool/file_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <vector>

namespace esad::spool {

ErrorClass classify_errno(int err) {
    if (err == 0) return ErrorClass::kNone;
    if (err == ENOSPC || err == EDQUOT) return ErrorClass::kNoSpace;
    return ErrorClass::kIo;
}

std::string_view to_string(ErrorClass c) {
    switch (c) {
        case ErrorClass::kNone:
            return "none";
        case ErrorClass::kNoSpace:
            return "no_space";
        case ErrorClass::kIo:
            return "io";
    }
    return "unknown";
}

std::string_view smtp_reply_for(ErrorClass c) {
    switch (c) {
        case ErrorClass::kNone:
            return "";
        case ErrorClass::kNoSpace:
            return "452 4.3.1 Insufficient system storage";
        case ErrorClass::kIo:
            return "451 4.3.0 Local error in processing";
    }
    return "451 4.3.0 Local error in processing";
}

std::string IoStatus::reason() const {
    if (err == 0) return {};
    return what + ": " + std::strerror(err);
}

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
}

void UniqueFd::reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
}

int UniqueFd::close_checked() {
    if (fd_ < 0) return 0;
    const int rc = ::close(std::exchange(fd_, -1));
    // EINTR on close: the descriptor is gone on Linux; do not retry.
    return (rc == 0 || errno == EINTR) ? 0 : errno;
}

int write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        const ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (n == 0) return EIO;
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return 0;
}

int pwritev_all(int fd, iovec* iov, std::size_t n, std::uint64_t offset) {
    std::size_t first = 0;
    while (first < n) {
        const ssize_t w =
            ::pwritev(fd, iov + first, static_cast<int>(std::min<std::size_t>(n - first, IOV_MAX)),
                      static_cast<off_t>(offset));
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (w == 0) return EIO;
        offset += static_cast<std::uint64_t>(w);
        auto left = static_cast<std::size_t>(w);
        while (first < n && left >= iov[first].iov_len) {
            left -= iov[first].iov_len;
            ++first;
        }
        if (first < n) {
            iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
            iov[first].iov_len -= left;
        }
    }
    return 0;
}

int write_zeros(int fd, std::uint64_t from, std::uint64_t to) {
    constexpr std::size_t kBlock = 64 * 1024;
    static const char zeros[kBlock] = {};
    std::vector<iovec> iov;
    iov.reserve(static_cast<std::size_t>((to - std::min(from, to)) / kBlock + 1));
    for (std::uint64_t at = from; at < to;) {
        const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(to - at, kBlock));
        iov.push_back({const_cast<char*>(zeros), n});
        at += n;
    }
    return pwritev_all(fd, iov.data(), iov.size(), from);
}

int read_exact_at(int fd, std::uint64_t offset, std::size_t len, std::string& out) {
    out.resize(len);
    std::size_t done = 0;
    while (done < len) {
        const ssize_t n =
            ::pread(fd, out.data() + done, len - done, static_cast<off_t>(offset + done));
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (n == 0) return EIO;
        done += static_cast<std::size_t>(n);
    }
    return 0;
}

int read_small_file(int dir_fd, const std::string& name, std::string& out) {
    UniqueFd fd(::openat(dir_fd, name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd.valid()) return errno;
    out.clear();
    char buf[4096];
    for (;;) {
        const ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (n == 0) break;
        out.append(buf, static_cast<std::size_t>(n));
        if (out.size() > (1u << 20)) return EFBIG;
    }
    return 0;
}

int fsync_fd(int fd) {
    for (;;) {
        if (::fsync(fd) == 0) return 0;
        if (errno != EINTR) return errno;
    }
}

int fdatasync_fd(int fd) {
    for (;;) {
        if (::fdatasync(fd) == 0) return 0;
        if (errno != EINTR) return errno;
    }
}

int open_dir(int dir_fd, const std::string& path, UniqueFd& out) {
    out.reset(::openat(dir_fd, path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    return out.valid() ? 0 : errno;
}

IoStatus ensure_dir(int dir_fd, const std::string& name, const std::string& label) {
    if (::mkdirat(dir_fd, name.c_str(), 0700) != 0 && errno != EEXIST) {
        return IoStatus::failure(errno, "mkdir " + label);
    }
    struct stat st {};
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        return IoStatus::failure(errno, "stat " + label);
    }
    if (!S_ISDIR(st.st_mode)) return IoStatus::failure(ENOTDIR, "not a directory: " + label);
    // Others must not be able to plant or swap files in the spool (DSK-11).
    if ((st.st_mode & 0022) != 0) {
        return IoStatus::failure(EPERM, "group/world-writable directory: " + label);
    }
    return IoStatus::success();
}

IoStatus atomic_replace(int dir_fd, const std::string& name, std::string_view bytes,
                        const std::string& label) {
    const std::string tmp = name + ".tmp";
    ::unlinkat(dir_fd, tmp.c_str(), 0);  // a leftover from a crash
    UniqueFd fd(
        ::openat(dir_fd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd.valid()) return IoStatus::failure(errno, "create " + label + ".tmp");
    auto fail = [&](int err, const char* op) {
        fd.reset();
        ::unlinkat(dir_fd, tmp.c_str(), 0);
        return IoStatus::failure(err, std::string(op) + " " + label + ".tmp");
    };
    if (int err = write_all(fd.get(), bytes)) return fail(err, "write");
    if (int err = fsync_fd(fd.get())) return fail(err, "fsync");
    if (int err = fd.close_checked()) return fail(err, "close");
    if (::renameat(dir_fd, tmp.c_str(), dir_fd, name.c_str()) != 0) return fail(errno, "rename");
    if (int err = fsync_fd(dir_fd)) return IoStatus::failure(err, "fsync directory of " + label);
    return IoStatus::success();
}

std::string le64(std::uint64_t v) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i)
        s[i] = static_cast<char>((v >> (8 * i)) & 0xFFu);
    return s;
}

std::uint64_t get_le64(std::string_view s, std::size_t pos) {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) {
        v |= static_cast<std::uint64_t>(static_cast<unsigned char>(s[pos + i])) << (8 * i);
    }
    return v;
}

int list_dir(int dir_fd, std::vector<std::string>& names) {
    const int dup_fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dup_fd < 0) return errno;
    DIR* dir = ::fdopendir(dup_fd);
    if (dir == nullptr) {
        const int err = errno;
        ::close(dup_fd);
        return err;
    }
    errno = 0;
    while (dirent* e = ::readdir(dir)) {
        const std::string_view n = e->d_name;
        if (n != "." && n != "..") names.emplace_back(n);
        errno = 0;
    }
    const int err = errno;
    ::closedir(dir);
    return err;
}

}  // namespace esad::spool
