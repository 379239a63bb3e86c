// The injection side on a real loop for loop-tier tests: a real spool in a temporary
// directory (open_spool), the Committer, and an inject::Listener on 127.0.0.1 port 0; plus a
// scripted SMTP client (plaintext or STARTTLS through a tls::Engine) on the same loop.
//
//   test::InjectRig rig(options);            // options: limits, relay_from, TLS, layout
//   test::SmtpScript c(rig.loop, rig.port);  // connected
//   c.reply() == "220 ..."; c.send("EHLO x\r\n"); c.reply() ...; c.close_after_writes();
//   REQUIRE(rig.settle());                   // every session gone, every commit answered
//   rig.queued (on_queued calls), rig.spool_files() (files under queue/ and tmp/)
//
// Faults: rig.fail(spool::FaultPoint::kFileFsync, EIO) makes the store's fault hook fail that
// step (any MID) from now on; rig.fail_none() stops it.
#pragma once

#include <catch2/catch.hpp>

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "daemon/inject/listener.h"
#include "daemon/loop/tcp_connect.h"
#include "daemon/spool/recovery.h"
#include "daemon/tls/tls_engine.h"
#include "tests/support/run_until.h"
#include "tests/support/temp_dir.h"

namespace esad::test {

struct InjectOptions {
    smtp::ServerLimits limits;
    std::vector<std::string> relay_from{"127.0.0.1"};
    std::shared_ptr<tls::ServerContext> tls;
    spool::Layout layout = spool::Layout::kHashed;
};

struct InjectRig {
    uv_loop_t loop_storage;
    uv_loop_t* loop = &loop_storage;
    TempDir dir{"inject"};
    spool::Spool spool;
    DaemonState state;
    std::unique_ptr<logs::MailLog> mail_log = logs::MailLog::disabled();
    std::unique_ptr<inject::Committer> committer;
    inject::InjectEnv env;
    std::unique_ptr<inject::Listener> listener;
    std::vector<spool::Envelope> queued;
    uint16_t port = 0;
    std::atomic<int> fault_point{-1};
    std::atomic<int> fault_errno{0};

    explicit InjectRig(const InjectOptions& options = {}) {
        uv_loop_init(loop);
        spool::SpoolOptions so;
        so.store.state_dir = dir.path;
        so.store.layout = options.layout;
        so.store.min_free_bytes = 0;
        so.store.min_free_inodes = 0;
        so.store.fault_hook = [this](spool::FaultPoint p, spool::Mid) {
            return static_cast<int>(p) == fault_point.load() ? fault_errno.load() : 0;
        };
        spool::RecoveryReport report;
        spool::IoStatus st = spool::open_spool(so, spool, report);
        INFO(st.reason());
        REQUIRE(st.ok());
        committer =
            std::make_unique<inject::Committer>(loop, spool, options.limits.max_message_size);
        committer->start();
        env.loop = loop;
        env.state = &state;
        env.committer = committer.get();
        env.mail_log = mail_log.get();
        env.tls = options.tls;
        env.limits = options.limits;
        env.hostname = "mx.esad.test";
        env.on_queued = [this](const spool::Envelope& e, uint64_t) { queued.push_back(e); };
        std::string error;
        auto relay = CidrList::parse(options.relay_from, &error);
        REQUIRE(relay);
        listener = std::make_unique<inject::Listener>(env, std::move(*relay), 100, 100);
        INFO(error);
        REQUIRE(listener->start("127.0.0.1:0", &error));
        const std::string& bound = listener->bound_address();
        port = static_cast<uint16_t>(std::stoi(bound.substr(bound.rfind(':') + 1)));
    }
    ~InjectRig() {
        listener.reset();
        CHECK(settle());
        committer->stop();
        CHECK(loop::drain_and_close(loop) == 0);
    }
    void fail(spool::FaultPoint point, int err) {
        fault_errno = err;
        fault_point = static_cast<int>(point);
    }
    void fail_none() { fault_point = -1; }

    // Every session ended and every commit answered.
    bool settle() {
        return run_until(loop, [this] {
            return (!listener || listener->session_count() == 0) &&
                   committer->pending_messages() == 0;
        });
    }
    // Regular files under spool/queue and spool/tmp: committed messages and leftovers.
    size_t spool_files() const {
        size_t n = 0;
        for (const char* sub : {"/spool/queue", "/spool/tmp"})
            for (const auto& e : std::filesystem::recursive_directory_iterator(dir.path + sub))
                if (e.is_regular_file()) ++n;
        return n;
    }
};

// A scripted SMTP client on the rig's loop. reply() returns the next complete reply (all its
// lines), "" when the server closed first (or the guard passed).
struct SmtpScript {
    uv_loop_t* loop;
    loop::HandlePtr<loop::Tcp> tcp;
    std::unique_ptr<tls::Engine> tls;
    std::string received;  // plaintext from the server
    std::string raw;       // every octet as it came off the socket (TLS records included)
    size_t consumed = 0;   // of `received`, returned by reply()
    bool connected = false;
    bool eof = false;

    SmtpScript(uv_loop_t* l, uint16_t port) : loop(l), tcp(loop::Tcp::create(l)) {
        std::string error;
        int status = 1;
        REQUIRE(loop::tcp_connect(
            *tcp, "127.0.0.1", port, "", [&status](int st) { status = st; }, &error));
        REQUIRE(run_until(loop, [&] { return status != 1; }));
        REQUIRE(status == 0);
        connected = true;
        read_again(false);
    }

    void on_read(const char* data, ssize_t n) {
        if (n < 0) {
            eof = true;
            tcp.reset();
            return;
        }
        std::string_view bytes(data, static_cast<size_t>(n));
        raw.append(bytes);
        if (!tls) {
            received.append(bytes);
            return;
        }
        tls->feed_ciphertext(bytes);
        flush_tls();
        received += tls->take_plaintext();
    }
    void flush_tls() {
        std::string out = tls->take_ciphertext();
        if (!out.empty() && tcp) tcp->write(std::move(out));
    }
    void send(std::string_view text) {
        if (!tcp) return;
        if (tls) {
            tls->write_plaintext(text);
            flush_tls();
        } else {
            tcp->write(std::string(text));
        }
    }
    // Starts a client handshake on the connection (after "220 Ready to start TLS").
    void start_tls(const tls::ClientContext& ctx) {
        tls = tls::Engine::client(ctx, "mx.test", "mx.test");
        flush_tls();
    }
    bool handshake_done() {
        REQUIRE(run_until(
            loop, [this] { return eof || tls->state() != tls::Engine::State::kHandshaking; }));
        return tls->state() == tls::Engine::State::kEstablished;
    }
    // A client that does not read its replies (the kernel buffers fill up), and one that
    // reads again. A small receive buffer makes the server's own write queue grow soon.
    void stop_reading() {
        int size = 4096;
        uv_recv_buffer_size(reinterpret_cast<uv_handle_t*>(tcp->tcp()), &size);
        tcp->read_stop();
    }
    void read_again(bool reset_buffer = true) {
        // A tiny window would leave the rest to the kernel's persist timer (slow, not stuck).
        int size = 1 << 20;
        if (reset_buffer) uv_recv_buffer_size(reinterpret_cast<uv_handle_t*>(tcp->tcp()), &size);
        tcp->read_start([this](const char* data, ssize_t n) { on_read(data, n); });
    }
    // Sends what is queued, then closes (a FIN after the last byte).
    void close_after_writes() {
        if (tcp) tcp.release()->close_after_writes();
    }
    bool wait_closed() {
        return run_until(loop, [this] { return eof || !tcp; }) && eof;
    }

    std::string reply() {
        auto complete = [this]() -> size_t {
            // A reply ends with a line whose fourth octet is a space.
            for (size_t at = consumed;;) {
                size_t eol = received.find("\r\n", at);
                if (eol == std::string::npos) return 0;
                if (eol - at >= 4 && received[at + 3] == ' ') return eol + 2;
                if (eol - at == 3) return eol + 2;
                at = eol + 2;
            }
        };
        size_t end = 0;
        run_until(loop, [&] { return (end = complete()) != 0 || eof; });
        if (end == 0) end = complete();
        if (end == 0) return "";
        std::string r = received.substr(consumed, end - consumed);
        consumed = end;
        return r;
    }
    // Sends `line` and returns the reply to it.
    std::string command(std::string_view line) {
        send(line);
        return reply();
    }
};

}  // namespace esad::test
