// ControlServer on a real loop with real Unix-socket clients: group membership from
// SO_PEERGROUPS (a member allowed, a non-member refused, even when the client process is
// gone by the time the server accepts), and the first-request timeout.
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "daemon/control/control_server.h"
#include "tests/support/temp_dir.h"

using namespace esad;

namespace {

constexpr uint64_t kGuardMs = 60 * 1000;

struct Server {
    test::TempDir dir{"control"};
    control::ControlServer server;
    explicit Server(uv_loop_t* loop, control::PeerPolicy policy)
        : server(loop, dir.path + "/run/control.sock", policy) {
        server.add_handler("ping", [](const control::Request&, auto r) { r->ok({{"pong", 1}}); });
        std::string error;
        REQUIRE(server.start(&error));
        // Open the file-system gate (0750 directory, 0660 socket, the control group) so that
        // any user reaches the server's own credential check, which is what is tested here.
        chmod(dir.path.c_str(), 0755);
        chmod((dir.path + "/run").c_str(), 0755);
        chmod(server.socket_path().c_str(), 0666);
    }
};

int unconnected_socket() {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    return fd;
}

bool connect_to(int fd, const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size());
    return connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
}

// Reads what the server sends on `fd` until it closes the connection (or the guard fires).
struct Client {
    loop::HandlePtr<loop::Pipe> pipe;
    std::string received;
    bool eof = false;
    Client(uv_loop_t* loop, int fd) : pipe(loop::Pipe::create(loop)) {
        REQUIRE(uv_pipe_open(reinterpret_cast<uv_pipe_t*>(pipe->stream()), fd) == 0);
        pipe->read_start([this](const char* data, ssize_t n) {
            if (n < 0) {
                eof = true;
                pipe.reset();
                return;
            }
            received.append(data, static_cast<size_t>(n));
        });
    }
    // Until the server closed the connection or sent one whole line.
    bool wait(uv_loop_t* loop, bool for_line) {
        bool timed_out = false;
        auto guard = loop::Timer::create(loop, [&] { timed_out = true; });
        guard->start(kGuardMs);
        while (!eof && !timed_out && !(for_line && received.find('\n') != std::string::npos))
            uv_run(loop, UV_RUN_ONCE);
        return !timed_out;
    }
};

// A group the test process is not in, and that is not its primary group.
gid_t foreign_group(gid_t avoid) {
    std::vector<gid_t> mine(static_cast<size_t>(std::max(getgroups(0, nullptr), 0)));
    getgroups(static_cast<int>(mine.size()), mine.data());
    for (gid_t g = 54321;; ++g)
        if (g != avoid && g != getgid() && std::find(mine.begin(), mine.end(), g) == mine.end())
            return g;
}

// Connects `fd` to `path` from a child process that carries `member` as its only
// supplementary group (as root: uid/gid nobody; otherwise the test's own credentials, and
// `member` must be one of its groups). The child exits, and is reaped, before the server
// accepts: its pid no longer names it. Returns false when the child could not do that.
bool connect_from_child(int fd, const std::string& path, gid_t member) {
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        if (getuid() == 0) {
            if (setgroups(1, &member) != 0 || setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
        }
        _exit(connect_to(fd, path) ? 0 : 4);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// The group to test with: root gives the child any group; otherwise one of ours that is
// not the primary group (the primary gid is allowed through SO_PEERCRED alone).
std::optional<gid_t> member_group() {
    if (getuid() == 0) return gid_t{54320};
    std::vector<gid_t> mine(static_cast<size_t>(std::max(getgroups(0, nullptr), 0)));
    getgroups(static_cast<int>(mine.size()), mine.data());
    for (gid_t g : mine)
        if (g != getgid()) return g;
    return std::nullopt;
}

}  // namespace

TEST_CASE("control server: group membership comes from SO_PEERGROUPS") {
    std::optional<gid_t> member = member_group();
    if (!member) {
        WARN("skipped: the test process has no supplementary group to test with");
        return;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    for (bool in_group : {true, false}) {
        INFO((in_group ? "a member of the control group" : "not a member"));
        control::PeerPolicy policy;
        policy.daemon_uid = getuid() == 0 ? 1 : getuid() + 1;  // the client is not the daemon
        policy.has_group = true;
        policy.group = in_group ? *member : foreign_group(*member);
        Server s(&loop, policy);
        int fd = unconnected_socket();
        if (!connect_from_child(fd, s.server.socket_path(), *member)) {
            close(fd);
            WARN("skipped: the child could not take the test credentials");
            break;
        }
        REQUIRE(write(fd, "{\"v\":1,\"id\":1,\"cmd\":\"ping\"}\n", 29) == 29);
        Client c(&loop, fd);
        REQUIRE(c.wait(&loop, true));
        if (in_group)
            CHECK_THAT(c.received, Catch::Contains("\"pong\":1"));
        else
            CHECK_THAT(c.received, Catch::Contains("\"forbidden\""));
    }
    CHECK(loop::drain_and_close(&loop) == 0);
}

TEST_CASE("control server: a client that sends no request is disconnected") {
    uv_loop_t loop;
    uv_loop_init(&loop);
    {
        control::PeerPolicy policy;
        policy.daemon_uid = getuid();
        policy.first_request_timeout_ms = 100;
        Server s(&loop, policy);
        int fd = unconnected_socket();
        REQUIRE(connect_to(fd, s.server.socket_path()));
        Client c(&loop, fd);
        REQUIRE(c.wait(&loop, false));
        CHECK(c.eof);
        CHECK(c.received.empty());
        CHECK(s.server.client_count() == 0);
    }
    CHECK(loop::drain_and_close(&loop) == 0);
}
