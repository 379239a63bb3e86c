// See privileges.h.
#include "daemon/loop/privileges.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <set>

#include "common/make_dirs.h"

namespace esad::loop {

namespace {

// Bounds the recursion: esad's own trees (spool/queue, logs) are a few levels deep.
constexpr int kMaxDepth = 16;

std::string errno_text() {
    return strerror(errno);
}

class Handover {
  public:
    Handover(const UserIds& ids, dev_t dev) : ids_(ids), dev_(dev) {}

    // fd: an O_PATH descriptor of the entry (closed by the caller); path for messages only.
    void visit(int fd, const struct stat& st, const std::string& path, int depth) {
        if (st.st_uid == 0) {
            if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
                spdlog::warn("privileges: not handing over {}: it has {} hard links", path,
                             st.st_nlink);
            } else {
                gid_t gid = st.st_gid == 0 ? ids_.gid : static_cast<gid_t>(-1);
                if (fchownat(fd, "", ids_.uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0)
                    ++changed_;
                else
                    spdlog::warn("privileges: cannot chown {}: {}", path, errno_text());
            }
        }
        if (!S_ISDIR(st.st_mode)) return;
        if (st.st_dev != dev_ || depth >= kMaxDepth) {
            spdlog::warn("privileges: not descending into {} (other file system or too deep)",
                         path);
            return;
        }
        int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR* dir = dfd >= 0 ? fdopendir(dfd) : nullptr;
        if (!dir) {
            if (dfd >= 0) ::close(dfd);
            spdlog::warn("privileges: cannot read {}: {}", path, errno_text());
            return;
        }
        while (dirent* e = readdir(dir)) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            std::string child = path + "/" + e->d_name;
            int cfd = openat(dirfd(dir), e->d_name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
            struct stat cst {};
            if (cfd < 0 || fstat(cfd, &cst) != 0) {
                spdlog::warn("privileges: cannot inspect {}: {}", child, errno_text());
            } else if (!S_ISLNK(cst.st_mode)) {
                visit(cfd, cst, child, depth + 1);
            }
            if (cfd >= 0) ::close(cfd);
        }
        closedir(dir);
    }

    size_t changed() const { return changed_; }

  private:
    const UserIds& ids_;
    dev_t dev_;
    size_t changed_ = 0;
};

// Directories other programs share: a state_dir or logging.dir set to one of these must not
// make esad chown the system's files.
bool shared_directory(const std::string& canonical, const struct stat& st) {
    static const std::set<std::string> kShared = {
        "/var/lib",  "/var/log", "/var/spool", "/var/run",   "/var/tmp", "/var/cache",
        "/var/mail", "/usr/lib", "/usr/local", "/usr/share", "/run/user"};
    size_t depth = 0;
    for (char c : canonical)
        depth += c == '/';
    bool sticky_or_world_writable = (st.st_mode & (S_ISVTX | S_IWOTH)) != 0;
    return depth < 2 || kShared.count(canonical) || sticky_or_world_writable;
}

// The configured path itself may be a symbolic link (the operator chose it); below it none
// is followed.
bool hand_over_one(const UserIds& ids, const std::string& path, std::string* error) {
    int fd = open(path.c_str(), O_PATH | O_CLOEXEC);
    struct stat st {};
    if (fd < 0 || fstat(fd, &st) != 0) {
        *error = "cannot open " + path + " to hand it to " + ids.name + ": " + errno_text();
        if (fd >= 0) ::close(fd);
        return false;
    }
    char resolved[PATH_MAX];
    if (S_ISDIR(st.st_mode) &&
        (!realpath(path.c_str(), resolved) || shared_directory(resolved, st))) {
        ::close(fd);
        *error = "will not hand " + path + " to " + ids.name +
                 ": it is a shared system directory; give esad a directory of its own";
        return false;
    }
    Handover walk(ids, st.st_dev);
    walk.visit(fd, st, path, 0);
    ::close(fd);
    if (walk.changed())
        spdlog::info("privileges: {} root-owned entries of {} now belong to {}", walk.changed(),
                     path, ids.name);
    return true;
}

}  // namespace

std::optional<UserIds> lookup_user(const std::string& user, std::string* error) {
    errno = 0;
    struct passwd* pw = getpwnam(user.c_str());
    if (!pw) {
        *error = "daemon.user: no user named '" + user + "'" +
                 (errno ? std::string(" (") + errno_text() + ")" : "");
        return std::nullopt;
    }
    if (pw->pw_uid == 0) {
        *error = "daemon.user: '" + user + "' is root; name an unprivileged user";
        return std::nullopt;
    }
    return UserIds{pw->pw_name, pw->pw_uid, pw->pw_gid};
}

bool hand_over_paths(const UserIds& ids, const std::vector<std::string>& dirs,
                     const std::vector<std::string>& files, std::string* error) {
    std::set<std::string> seen;
    for (const auto& dir : dirs) {
        if (dir.empty() || !seen.insert(dir).second) continue;
        if (!make_dirs(dir, 0750, error)) return false;
        if (!hand_over_one(ids, dir, error)) return false;
    }
    for (const auto& file : files) {
        if (file.empty() || !seen.insert(file).second) continue;
        if (access(file.c_str(), F_OK) != 0) continue;
        if (!hand_over_one(ids, file, error)) return false;
    }
    return true;
}

bool drop_privileges(const std::string& user, std::string* error) {
    std::optional<UserIds> ids = lookup_user(user, error);
    if (!ids) return false;
    auto fail = [&](const char* step) {
        *error =
            std::string("cannot drop privileges to ") + user + ": " + step + ": " + errno_text();
        return false;
    };
    if (initgroups(ids->name.c_str(), ids->gid) != 0) return fail("initgroups");
    if (setresgid(ids->gid, ids->gid, ids->gid) != 0) return fail("setresgid");
    if (setresuid(ids->uid, ids->uid, ids->uid) != 0) return fail("setresuid");
    // esad runs no programs; should it ever, they gain nothing from set-uid bits.
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        spdlog::warn("privileges: cannot set no_new_privs: {}", errno_text());

    // The drop must be irreversible: with a saved uid of 0 these would succeed.
    if (setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0 || setegid(0) == 0) {
        *error = "privilege drop to " + user + " is reversible: root could be regained";
        return false;
    }
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0 || ru != ids->uid ||
        eu != ids->uid || su != ids->uid || rg != ids->gid || eg != ids->gid || sg != ids->gid) {
        *error = "privilege drop to " + user + " left unexpected user or group ids";
        return false;
    }
    spdlog::info("privileges: now running as {} (uid {}, gid {})", ids->name, ids->uid, ids->gid);
    return true;
}

bool drop_capabilities() {
    if (getuid() == 0 || geteuid() == 0) return true;
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
    if (syscall(SYS_capget, &header, data) != 0) {
        spdlog::warn("privileges: cannot read capabilities: {}", errno_text());
        return false;
    }
    bool any = false;
    for (const auto& d : data)
        any = any || d.effective || d.permitted || d.inheritable;
    // Clearing the ambient set first: it can only hold what permitted and inheritable hold.
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    if (!any) return true;
    for (auto& d : data)
        d = {};
    if (syscall(SYS_capset, &header, data) != 0) {
        spdlog::warn("privileges: cannot drop capabilities: {}", errno_text());
        return false;
    }
    spdlog::info("privileges: capabilities dropped (CAP_NET_BIND_SERVICE is needed only to bind)");
    return true;
}

}  // namespace esad::loop
