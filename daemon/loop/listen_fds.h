// Listening sockets esad does not bind itself: inherited from systemd socket activation
// (sd_listen_fds(3), esad.socket), or bound early, before a privilege drop.
//
//   ListenFds fds = take_listen_fds();   // once, first thing at startup
//   fds.smtp      TCP listening socket for the SMTP listener, or -1: bind listener.address
//   fds.control   AF_UNIX listening socket for the control socket, or -1: bind the path
//   int fd = bind_tcp_socket("127.0.0.1:25", &error);   // bound, not listening yet
//
// Which inherited socket serves what: the one named "smtp" (FileDescriptorName=smtp) if it
// is a TCP stream socket, else the first AF_INET/AF_INET6 stream socket; "control" if it is
// an AF_UNIX stream socket, else the first AF_UNIX stream socket. Sockets that fit neither
// role, and datagram or non-listening ones, are closed with a warning. The LISTEN_*
// variables are removed from the environment; inherited descriptors are close-on-exec.
// The caller hands each descriptor to uv_tcp_open / uv_pipe_open (the handle then owns it).
// Logs (daemon log): each adopted socket at info, each ignored one at warning.
#pragma once

#include <string>
#include <vector>

namespace esad::loop {

// What the daemon learned about one inherited descriptor (getsockopt/getsockname).
struct InheritedSocket {
    int fd = -1;
    std::string name;  // LISTEN_FDNAMES entry; systemd's default is "unknown"
    int family = 0;    // AF_INET, AF_INET6, AF_UNIX, ...
    bool stream = false;
    bool listening = false;
};

struct ListenFds {
    int smtp = -1;
    int control = -1;
    std::vector<int> unused;  // fit no role: the caller closes them
};

// Pure: assigns inherited sockets to roles by the rules above.
ListenFds classify_listen_fds(const std::vector<InheritedSocket>& sockets);

// Reads LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES (a no-op returning -1/-1 when esad was not
// socket-activated), inspects each descriptor, closes the unused ones.
ListenFds take_listen_fds();

// socket() + SO_REUSEADDR + bind() for "host:port" / "[v6]:port", without listen(): clients
// are refused until the listener starts (uv_tcp_open + listen) after spool recovery.
// Returns the descriptor (non-blocking, close-on-exec), or -1 with *error set.
int bind_tcp_socket(const std::string& address, std::string* error);

}  // namespace esad::loop
