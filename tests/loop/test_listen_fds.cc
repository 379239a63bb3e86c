// Inherited sockets: which one serves SMTP and which the control socket (by name, else by
// kind), and the early bind used before a privilege drop.
#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/loop/listen_fds.h"

using namespace esad::loop;

namespace {
InheritedSocket sock(int fd, const char* name, int family, bool stream = true,
                     bool listening = true) {
    InheritedSocket s;
    s.fd = fd;
    s.name = name;
    s.family = family;
    s.stream = stream;
    s.listening = listening;
    return s;
}
}  // namespace

TEST_CASE("nothing inherited: nothing assigned") {
    ListenFds f = classify_listen_fds({});
    CHECK(f.smtp == -1);
    CHECK(f.control == -1);
    CHECK(f.unused.empty());
}

TEST_CASE("names win over order") {
    ListenFds f = classify_listen_fds({sock(3, "unknown", AF_INET), sock(4, "control", AF_UNIX),
                                       sock(5, "smtp", AF_INET6), sock(6, "unknown", AF_UNIX)});
    CHECK(f.smtp == 5);
    CHECK(f.control == 4);
    CHECK(f.unused == std::vector<int>{3, 6});
}

TEST_CASE("unnamed sockets are assigned by kind, first of each") {
    ListenFds f = classify_listen_fds(
        {sock(3, "unknown", AF_UNIX), sock(4, "unknown", AF_INET), sock(5, "unknown", AF_INET)});
    CHECK(f.smtp == 4);
    CHECK(f.control == 3);
    CHECK(f.unused == std::vector<int>{5});
}

TEST_CASE("datagram, non-listening and misnamed sockets are not used") {
    ListenFds f =
        classify_listen_fds({sock(3, "smtp", AF_INET, /*stream=*/false), sock(4, "smtp", AF_UNIX),
                             sock(5, "x", AF_INET, true, false), sock(6, "control", AF_INET)});
    CHECK(f.smtp == -1);
    CHECK(f.control == -1);
    CHECK(f.unused == std::vector<int>{3, 4, 5, 6});
}

TEST_CASE("bind_tcp_socket binds without listening") {
    std::string error;
    int fd = bind_tcp_socket("127.0.0.1:0", &error);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    CHECK(ntohl(addr.sin_addr.s_addr) == INADDR_LOOPBACK);
    CHECK(ntohs(addr.sin_port) != 0);
    int listening = 1;
    len = sizeof listening;
    REQUIRE(getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0);
    CHECK(listening == 0);
    // The same address again while it is in use: a clear error.
    REQUIRE(listen(fd, 1) == 0);
    std::string taken = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
    CHECK(bind_tcp_socket(taken, &error) == -1);
    CHECK(error.find("cannot bind " + taken) == 0);
    close(fd);

    CHECK(bind_tcp_socket("nonsense", &error) == -1);
    CHECK(error.find("cannot parse") != std::string::npos);
    int v6 = bind_tcp_socket("[::1]:0", &error);
    if (v6 >= 0) close(v6);  // hosts without IPv6 fail here, which is fine
}
