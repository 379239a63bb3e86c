// Giving up root: esad started as root outside systemd with [daemon] user set drops to that
// user once its sockets are bound; under systemd (User=esad) it gives up the ambient
// CAP_NET_BIND_SERVICE once the SMTP listener is bound.
//
//   std::optional<UserIds> ids = lookup_user("esad", &error);   // passwd and group, once
//   hand_over_paths(*ids, {state_dir, socket dir, logs dir}, {daemon log, socket}, &error);
//   drop_privileges("esad", &error);   // initgroups, setgid, setuid; regaining root must fail
//   drop_capabilities();               // non-root: clear effective/permitted/ambient sets
//
// hand_over_paths makes the daemon's own files the user's: each directory is created if
// missing (0750), then it and everything below it that root owns is chowned to the user
// (group too when it is root's, so a daemon.control_group set on the control socket stays);
// each file is handed over alone when it exists.
// The walk uses openat(O_NOFOLLOW) from the top, never follows symbolic links and never
// leaves the file system, and skips files with more than one hard link, so a planted link
// cannot make it chown a file outside the tree. It refuses (error) a directory others share:
// "/", one level below it, /var/lib, /var/log, ..., or any sticky or world-writable one.
// Blocking: it runs once, before the loop.
// Logs (daemon log): the drop at info, skipped entries at warning.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace esad::loop {

struct UserIds {
    std::string name;
    uid_t uid = 0;
    gid_t gid = 0;  // the user's primary group
};

// nullopt and *error when there is no such user or it is root.
std::optional<UserIds> lookup_user(const std::string& user, std::string* error);

// See the header comment. Entries owned by other users are left as they are.
bool hand_over_paths(const UserIds& ids, const std::vector<std::string>& dirs,
                     const std::vector<std::string>& files, std::string* error);

// initgroups + setgid + setuid (real, effective and saved ids), sets no_new_privs, then
// checks that setuid(0)/setgid(0) fail. False and *error when any step fails: the caller must
// not go on running as root by accident.
bool drop_privileges(const std::string& user, std::string* error);

// For a non-root process (systemd's AmbientCapabilities=): clears every capability once the
// privileged port is bound. Root keeps its capabilities. Returns false when capabilities
// remain (logged as a warning; the daemon runs on).
bool drop_capabilities();

}  // namespace esad::loop
