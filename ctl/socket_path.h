// Which control socket esactl talks to when --socket is not given.
//   1. $ESACTL_SOCKET;
//   2. an installed esactl (the binary `cmake --install` or the package put in place):
//      daemon.control_socket of the installed configuration (/etc/esad/esad.toml) when it
//      can read it, else the packaged daemon's /run/esad/esad.sock (the configuration is
//      root:esad 0640, so an operator in daemon.control_group may not read it);
//   3. run from the build tree: the embedded default var/run/esad.sock, as the daemon
//      started without a configuration uses (the README's quick start).
#pragma once

#include <functional>
#include <optional>
#include <string>

namespace esad::ctl {

struct SocketLookup {
    const char* env = nullptr;   // $ESACTL_SOCKET, or null
    bool installed = false;      // this esactl is the installed binary
    std::string config_file;     // the installed configuration
    std::string runtime_socket;  // the packaged daemon's socket
};

// The pure rule above; `control_socket_of(path)` reads daemon.control_socket from a
// configuration file, nullopt when the file cannot be read or is invalid.
std::string default_socket_path(
    const SocketLookup& lookup,
    const std::function<std::optional<std::string>(const std::string&)>& control_socket_of);

// The rule with this process's environment, binary and configuration file.
std::string default_socket_path();

}  // namespace esad::ctl
