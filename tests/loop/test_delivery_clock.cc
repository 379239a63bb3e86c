// DeliveryManager's clocks on a real loop, with a real spool and a scripted SMTP server on
// 127.0.0.1: the wall clock steps back an hour right after a soft failure, and the retry
// still goes out on schedule (about a second later), because retries run on the monotonic
// clock. Wall time stays what the spool and the logs get.
#include <catch2/catch.hpp>

#include <atomic>
#include <string>

#include "daemon/delivery/delivery_manager.h"
#include "daemon/loop/tcp_connect.h"
#include "tests/support/loopback_listener.h"
#include "tests/support/temp_dir.h"

using namespace esad;

namespace {

constexpr uint64_t kGuardMs = 60 * 1000;  // the retry is due after ~1 s; a stall is an hour

// Real monotonic time; wall time that can be stepped.
class SteppedClock : public Clock {
  public:
    std::int64_t wall_ms() const override { return Clock::wall_ms() + offset_ms; }
    std::int64_t offset_ms = 0;
};

// Answers RCPT with 451 the first time and 250 afterwards; counts transactions.
struct Server {
    uv_loop_t* loop;
    loop::HandlePtr<loop::Tcp> listener;
    std::vector<loop::HandlePtr<loop::Tcp>> conns;
    uint16_t port = 0;
    int rcpts = 0;
    int delivered = 0;
    std::function<void()> on_first_failure;

    explicit Server(uv_loop_t* l) : loop(l) {
        listener = test::listen_loopback(loop, &port, [this](int status) {
            if (status == 0) accept();
        });
    }

    void accept() {
        conns.push_back(loop::Tcp::create(loop));
        loop::Tcp* c = conns.back().get();
        REQUIRE(uv_accept(listener->stream(), c->stream()) == 0);
        c->write("220 scripted ESMTP\r\n");
        auto buf = std::make_shared<std::string>();
        auto in_data = std::make_shared<bool>(false);
        c->read_start([this, c, buf, in_data](const char* data, ssize_t n) {
            if (n < 0) return;
            buf->append(data, static_cast<size_t>(n));
            for (size_t eol; (eol = buf->find("\r\n")) != std::string::npos;) {
                std::string line = buf->substr(0, eol);
                buf->erase(0, eol + 2);
                if (*in_data) {
                    if (line != ".") continue;
                    *in_data = false;
                    ++delivered;
                    c->write("250 2.0.0 queued\r\n");
                    continue;
                }
                std::string verb = line.substr(0, 4);
                if (verb == "RCPT" && ++rcpts == 1) {
                    c->write("451 4.3.0 try again later\r\n");
                    if (on_first_failure) on_first_failure();
                } else if (verb == "DATA") {
                    *in_data = true;
                    c->write("354 go ahead\r\n");
                } else if (verb == "QUIT") {
                    c->write("221 bye\r\n");
                } else {
                    c->write(verb == "EHLO" ? "250 scripted\r\n" : "250 2.0.0 ok\r\n");
                }
            }
        });
    }
};

}  // namespace

TEST_CASE("delivery: a wall-clock step back does not stall a retry") {
    test::TempDir dir("delivery_clock");
    uv_loop_t loop;
    uv_loop_init(&loop);
    SteppedClock clock;
    {
        Server server(&loop);
        Config config = default_config();
        config.daemon.state_dir = dir.path;
        config.daemon.hostname = "client.test";
        config.bounce_profiles["default"].initial_retry_s = 1;
        config.destinations["default"].tls = "none";

        spool::SpoolOptions options;
        options.store.state_dir = dir.path;
        spool::Spool spool;
        spool::RecoveryReport report;
        REQUIRE(spool::open_spool(options, spool, report).ok());

        DaemonState state;
        auto mail_log = logs::MailLog::disabled();
        inject::Committer committer(&loop, spool, config.listener.max_message_size);
        delivery::RouterOptions rto;
        rto.allow_loopback = true;
        delivery::Router router(nullptr, rto);
        auto routes =
            dns::parse_routes("example.test [127.0.0.1]:" + std::to_string(server.port) + "\n");
        REQUIRE(routes.ok());
        router.set_routes(std::make_shared<const dns::RouteTable>(std::move(routes.table)));
        delivery::DeliveryManager mgr(&loop, state, *mail_log, spool, committer, router, config,
                                      clock);
        server.on_first_failure = [&] { clock.offset_ms = -3600 * 1000; };

        spool::Message m;
        REQUIRE(committer.next_mid(&m.envelope.mid).ok());
        m.envelope.received_unix_ms = clock.wall_ms();
        m.envelope.sender = "sender@client.test";
        m.envelope.recipients.push_back({0, "rcpt@example.test", "example.test"});
        m.content = "Subject: t\r\n\r\nhello\r\n";
        spool::Envelope envelope = m.envelope;
        uint64_t size = m.content.size();
        bool committed = false;
        committer.commit(std::move(m), [&](const spool::IoStatus& st) {
            REQUIRE(st.ok());
            committed = true;
            mgr.add_message(envelope, size);
        });

        bool timed_out = false;
        auto guard = loop::Timer::create(&loop, [&] { timed_out = true; });
        guard->start(kGuardMs);
        while (!timed_out && server.delivered == 0)
            uv_run(&loop, UV_RUN_ONCE);
        CHECK(committed);
        CHECK_FALSE(timed_out);
        CHECK(server.rcpts == 2);
        CHECK(server.delivered == 1);
        CHECK(clock.offset_ms == -3600 * 1000);

        guard.reset();
        mgr.stop();
        // Let the sessions say QUIT and the journal settle before the spool goes.
        bool settled = false;
        auto settle = loop::Timer::create(&loop, [&] { settled = true; });
        settle->start(100);
        while (!settled)
            uv_run(&loop, UV_RUN_ONCE);
        mgr.abort_sessions();
        server.conns.clear();
        server.listener.reset();
        for (int i = 0; i < 100 && mgr.session_count() > 0; ++i)
            uv_run(&loop, UV_RUN_NOWAIT);
    }
    CHECK(loop::drain_and_close(&loop) == 0);
}
