// ControlServer on a real loop with real Unix-socket clients: group membership from
// SO_PEERGROUPS (a member allowed, a non-member refused and never dispatched, even when the
// client process is gone by the time the server accepts), the first-request timeout, a peer
// closing mid-request and mid-reply, an oversized request, bad JSON and an unknown command
// (the connection goes on), and many clients at once (up to the cap, then "unavailable").
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "daemon/control/control_server.h"
#include "tests/support/run_until.h"
#include "tests/support/temp_dir.h"

using namespace esad;

namespace {

struct Server {
    test::TempDir dir{"control"};
    control::ControlServer server;
    int pings = 0;
    explicit Server(uv_loop_t* loop, control::PeerPolicy policy)
        : server(loop, dir.path + "/run/control.sock", policy) {
        server.add_handler("ping", [this](const control::Request&, auto r) {
            ++pings;
            r->ok({{"pong", 1}});
        });
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
    // Until the server closed the connection or sent `lines` whole lines.
    bool wait(uv_loop_t* loop, bool for_line, size_t lines = 1) {
        return test::run_until(loop, [&] {
            return eof || (for_line && static_cast<size_t>(std::count(
                                           received.begin(), received.end(), '\n')) >= lines);
        });
    }
    void send(std::string bytes) { pipe->write(std::move(bytes)); }
};

// A connected client of the server at `path` (the test process: root or the daemon's uid).
std::unique_ptr<Client> connect_client(uv_loop_t* loop, const std::string& path) {
    int fd = unconnected_socket();
    REQUIRE(connect_to(fd, path));
    return std::make_unique<Client>(loop, fd);
}

const std::string kPing = "{\"v\":1,\"id\":1,\"cmd\":\"ping\"}\n";

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
        if (in_group) {
            CHECK_THAT(c.received, Catch::Contains("\"pong\":1"));
        } else {
            CHECK_THAT(c.received, Catch::Contains("\"forbidden\""));
            // Refused before any request is read: disconnected, the handler never ran.
            REQUIRE(c.wait(&loop, false));
            CHECK(c.eof);
            CHECK(s.pings == 0);
            CHECK(s.server.client_count() == 0);
        }
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

namespace {

// A server for the tests below; the test process is root or the daemon's uid: allowed.
control::PeerPolicy own_policy() {
    control::PeerPolicy policy;
    policy.daemon_uid = getuid();
    return policy;
}

}  // namespace

TEST_CASE("control server: a peer that closes mid-request is forgotten, others go on") {
    uv_loop_t loop;
    uv_loop_init(&loop);
    {
        Server s(&loop, own_policy());
        auto cut = connect_client(&loop, s.server.socket_path());
        cut->send("{\"v\":1,\"id\":1,\"cmd\":\"pi");
        REQUIRE(test::run_until(&loop, [&] { return s.server.client_count() == 1; }));
        cut.reset();
        REQUIRE(test::run_until(&loop, [&] { return s.server.client_count() == 0; }));
        CHECK(s.pings == 0);
        auto c = connect_client(&loop, s.server.socket_path());
        c->send(kPing);
        REQUIRE(c->wait(&loop, true));
        CHECK_THAT(c->received, Catch::Contains("\"pong\":1"));
    }
    CHECK(loop::drain_and_close(&loop) == 0);
}

TEST_CASE("control server: a peer that closes mid-reply is forgotten; late answers are dropped") {
    uv_loop_t loop;
    uv_loop_init(&loop);
    {
        Server s(&loop, own_policy());
        // "big": 16 lines of 256 KiB, more than the socket buffers take at once.
        s.server.add_handler("big", [](const control::Request&, auto r) {
            for (int i = 0; i < 16; ++i)
                r->stream({{"chunk", std::string(256 * 1024, 'x')}});
            r->end();
        });
        std::shared_ptr<control::Responder> later;
        s.server.add_handler("later", [&](const control::Request&, auto r) { later = r; });

        auto c = connect_client(&loop, s.server.socket_path());
        c->send("{\"v\":1,\"id\":1,\"cmd\":\"big\"}\n");
        REQUIRE(test::run_until(&loop, [&] { return !c->received.empty(); }));
        c.reset();  // mid-reply
        REQUIRE(test::run_until(&loop, [&] { return s.server.client_count() == 0; }));

        auto d = connect_client(&loop, s.server.socket_path());
        d->send("{\"v\":1,\"id\":2,\"cmd\":\"later\"}\n");
        REQUIRE(test::run_until(&loop, [&] { return later != nullptr; }));
        CHECK(later->connected());
        d.reset();
        REQUIRE(test::run_until(&loop, [&] { return s.server.client_count() == 0; }));
        CHECK_FALSE(later->connected());
        later->ok({{"late", true}});  // dropped, no crash

        auto e = connect_client(&loop, s.server.socket_path());
        e->send(kPing);
        REQUIRE(e->wait(&loop, true));
        CHECK_THAT(e->received, Catch::Contains("\"pong\":1"));
    }
    CHECK(loop::drain_and_close(&loop) == 0);
}

TEST_CASE("control server: an oversized request gets too_large and the connection ends") {
    uv_loop_t loop;
    uv_loop_init(&loop);
    {
        Server s(&loop, own_policy());
        auto c = connect_client(&loop, s.server.socket_path());
        c->send("{\"v\":1,\"id\":1,\"cmd\":\"ping\",\"args\":{\"pad\":\"" +
                std::string(2 * 1024 * 1024, 'p') + "\"}}\n");
        REQUIRE(c->wait(&loop, false));
        CHECK(c->eof);
        CHECK_THAT(c->received, Catch::Contains("\"too_large\""));
        CHECK(s.pings == 0);
        REQUIRE(test::run_until(&loop, [&] { return s.server.client_count() == 0; }));
    }
    CHECK(loop::drain_and_close(&loop) == 0);
}

TEST_CASE("control server: bad JSON and an unknown command are answered, the connection goes on") {
    uv_loop_t loop;
    uv_loop_init(&loop);
    {
        Server s(&loop, own_policy());
        auto c = connect_client(&loop, s.server.socket_path());
        c->send("{not json\n");
        c->send("{\"v\":1,\"id\":7,\"cmd\":\"no-such-command\"}\n");
        c->send(kPing);
        REQUIRE(c->wait(&loop, true, 3));
        CHECK_FALSE(c->eof);
        std::vector<std::string> lines;
        for (size_t at = 0, eol; (eol = c->received.find('\n', at)) != std::string::npos;
             at = eol + 1)
            lines.push_back(c->received.substr(at, eol - at));
        REQUIRE(lines.size() == 3);
        CHECK_THAT(lines[0], Catch::Contains("\"error\""));
        CHECK_THAT(lines[1], Catch::Contains("\"unknown_command\"") && Catch::Contains("7"));
        CHECK_THAT(lines[2], Catch::Contains("\"pong\":1"));
        CHECK(s.server.client_count() == 1);
    }
    CHECK(loop::drain_and_close(&loop) == 0);
}

TEST_CASE("control server: many clients at once are served up to the cap") {
    uv_loop_t loop;
    uv_loop_init(&loop);
    {
        Server s(&loop, own_policy());
        // 64 clients plus 4 reserved for root; the test process is root or the daemon's uid.
        const size_t cap = getuid() == 0 ? 68 : 64;
        const size_t total = cap + 12;
        std::vector<std::unique_ptr<Client>> clients;
        auto refused = [&] {
            return static_cast<size_t>(
                std::count_if(clients.begin(), clients.end(), [](auto& c) { return c->eof; }));
        };
        // Each connection is accepted (or refused) before the next connects: a blocking
        // connect() past the listen backlog would wait for an accept this thread runs.
        for (size_t i = 0; i < total; ++i) {
            clients.push_back(connect_client(&loop, s.server.socket_path()));
            REQUIRE(
                test::run_until(&loop, [&] { return s.server.client_count() + refused() > i; }));
        }
        REQUIRE(test::run_until(&loop, [&] { return refused() == total - cap; }));
        CHECK(s.server.client_count() == cap);
        for (auto& c : clients)
            if (!c->eof) c->send(kPing);
        size_t served = 0, unavailable = 0;
        for (auto& c : clients) {
            REQUIRE(c->wait(&loop, true));
            if (c->received.find("\"pong\":1") != std::string::npos) ++served;
            if (c->received.find("\"unavailable\"") != std::string::npos) ++unavailable;
        }
        CHECK(served == cap);
        CHECK(unavailable == total - cap);
        CHECK(s.pings == static_cast<int>(cap));
        clients.clear();
        REQUIRE(test::run_until(&loop, [&] { return s.server.client_count() == 0; }));
    }
    CHECK(loop::drain_and_close(&loop) == 0);
}
