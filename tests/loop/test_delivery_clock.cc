// DeliveryManager's clocks on a real loop, with a real spool and a scripted SMTP server on
// 127.0.0.1: the wall clock steps back an hour right after a soft failure, and the retry
// still goes out on schedule (about a second later), because retries run on the monotonic
// clock. Wall time stays what the spool and the logs get.
#include <catch2/catch.hpp>

#include <atomic>
#include <string>

#include "daemon/delivery/delivery_manager.h"
#include "daemon/loop/tcp_connect.h"
#include "tests/support/scripted_smtp_server.h"
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

}  // namespace

TEST_CASE("delivery: a wall-clock step back does not stall a retry") {
    test::TempDir dir("delivery_clock");
    uv_loop_t loop;
    uv_loop_init(&loop);
    SteppedClock clock;
    {
        test::ScriptedSmtpServer server(&loop);
        server.rcpt_replies["rcpt@example.test"] = {"451 4.3.0 try again later"};
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
        server.on_rcpt = [&](const std::string&) {
            if (server.rcpts.size() == 1) clock.offset_ms = -3600 * 1000;
        };

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
        CHECK(server.rcpts.size() == 2);
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
