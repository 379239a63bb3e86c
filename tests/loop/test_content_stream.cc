// Streaming delivery content on a real loop: a message committed to a real spool goes out
// through SmtpSession to a scripted server on 127.0.0.1, piece by piece (ContentStream,
// ContentBudget). A 20 MB message arrives byte-identical with the budget never exceeded; a
// file corrupted in the middle of its content never gets its final dot and is quarantined;
// sessions sharing a budget of a single piece all finish (no deadlock); a message still in the
// spool's recent cache goes out from memory, its answers never inside the call. Plus the
// budget's own rules (FIFO, clamping, cancel).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "daemon/delivery/content_budget.h"
#include "daemon/delivery/content_stream.h"
#include "daemon/delivery/smtp_session.h"
#include "daemon/smtp/dot_codec.h"
#include "daemon/spool/recent_cache.h"
#include "daemon/spool/store.h"
#include "tests/support/loopback_listener.h"
#include "tests/support/run_until.h"
#include "tests/support/temp_dir.h"

using namespace esad;

namespace {

constexpr smtp::Millis kLong{10 * 60 * 1000};
constexpr uint64_t kGuardMs = 120 * 1000;  // generous: the machine is busy

// Accepts connections and speaks just enough SMTP; keeps the raw DATA octets of each message.
struct SinkServer {
    uv_loop_t* loop;
    loop::HandlePtr<loop::Tcp> listener;
    struct Conn {
        loop::HandlePtr<loop::Tcp> tcp;
        std::string lines;
        bool in_data = false;
        std::string data;  // after 354, up to and including the final "\r\n.\r\n"
        size_t scan = 0;
    };
    std::vector<std::unique_ptr<Conn>> conns;
    std::vector<std::string> messages;  // complete DATA, final dot included
    std::vector<std::string> partial;   // DATA of connections closed before their dot
    uint16_t port = 0;

    explicit SinkServer(uv_loop_t* l) : loop(l) {
        listener = test::listen_loopback(loop, &port, [this](int status) {
            if (status != 0) return;
            auto c = std::make_unique<Conn>();
            c->tcp = loop::Tcp::create(loop);
            REQUIRE(uv_accept(listener->stream(), c->tcp->stream()) == 0);
            Conn* raw = c.get();
            conns.push_back(std::move(c));
            raw->tcp->write("220 sink ESMTP\r\n");
            raw->tcp->read_start(
                [this, raw](const char* data, ssize_t n) { on_read(*raw, data, n); });
        });
    }

    void on_read(Conn& c, const char* data, ssize_t n) {
        if (n < 0) {
            if (c.in_data) partial.push_back(c.data);
            c.in_data = false;
            if (c.tcp) c.tcp.release()->close_after_writes();
            return;
        }
        std::string_view in(data, static_cast<size_t>(n));
        while (!in.empty()) {
            if (c.in_data) {
                c.data.append(in);
                in = {};
                size_t end = c.data.find("\r\n.\r\n", c.scan);
                if (end == std::string::npos && c.data.rfind(".\r\n", 0) == 0) end = 0;
                if (end == std::string::npos) {
                    c.scan = c.data.size() < 4 ? 0 : c.data.size() - 4;
                    return;
                }
                const size_t stop = end == 0 && c.data.rfind(".\r\n", 0) == 0 ? 3 : end + 5;
                std::string rest = c.data.substr(stop);
                c.data.resize(stop);
                messages.push_back(std::move(c.data));
                c.data.clear();
                c.scan = 0;
                c.in_data = false;
                c.tcp->write("250 2.0.0 queued\r\n");
                c.lines = std::move(rest);
            } else {
                c.lines.append(in);
                in = {};
            }
            for (size_t eol; !c.in_data && (eol = c.lines.find("\r\n")) != std::string::npos;) {
                const std::string line = c.lines.substr(0, eol);
                c.lines.erase(0, eol + 2);
                const std::string verb = line.substr(0, 4);
                if (verb == "EHLO") {
                    c.tcp->write("250-sink\r\n250-8BITMIME\r\n250 SIZE 100000000\r\n");
                } else if (verb == "DATA") {
                    c.tcp->write("354 go ahead\r\n");
                    c.in_data = true;
                    in = c.lines;  // what followed DATA is content
                    c.lines.clear();
                } else if (verb == "QUIT") {
                    c.tcp->write("221 bye\r\n");
                    c.tcp.release()->close_after_writes();
                    return;
                } else {
                    c.tcp->write("250 ok\r\n");
                }
            }
        }
    }
};

struct Spool {
    test::TempDir dir{"content_stream"};
    std::unique_ptr<spool::Store> store;
    Spool() {
        spool::StoreOptions options;
        options.state_dir = dir.path;
        options.min_free_bytes = 0;
        REQUIRE(spool::Store::open(options, store).ok());
    }
    void commit(spool::Mid mid, std::string content) {
        std::vector<spool::PendingMessage> batch(1);
        batch[0].message.envelope.mid = mid;
        batch[0].message.envelope.sender = "s@client.test";
        batch[0].message.envelope.recipients = {{0, "r@example.test", "example.test"}};
        batch[0].message.content = std::move(content);
        store->commit_batch(batch);
        REQUIRE(batch[0].result.ok());
    }
    // The message file in either layout: queue/<MID> (flat) or queue/<xx>/<MID> (hashed,
    // xx = the MID's low byte).
    std::string queue_path(spool::Mid mid) const {
        const std::string name = spool::mid_name(mid);
        const std::string flat = dir.path + "/spool/queue/" + name;
        if (std::filesystem::exists(flat)) return flat;
        return dir.path + "/spool/queue/" + name.substr(name.size() - 2) + "/" + name;
    }
};

struct Outcome {
    std::vector<smtp::TransactionReport> reports;
    bool closed = false;
};

struct Harness {
    uv_loop_t loop;
    DaemonState state;
    std::unique_ptr<logs::MailLog> mail_log = logs::MailLog::disabled();
    delivery::SessionEnv env;
    std::shared_ptr<loop::Soon> soon;
    Harness() {
        uv_loop_init(&loop);
        env.loop = &loop;
        env.state = &state;
        env.mail_log = mail_log.get();
        std::string error;
        env.tls_plain = tls::make_client_context({}, &error);
        env.tls_verify = env.tls_plain;
        env.helo_name = "client.test";
        soon = std::make_shared<loop::Soon>(&loop);
        env.timeouts = {kLong, kLong, kLong, kLong, kLong, kLong,
                        kLong, kLong, kLong, kLong, kLong, kLong};
    }
    ~Harness() {
        soon.reset();
        CHECK(loop::drain_and_close(&loop) == 0);
    }

    // Opens `mid` as a ContentStream and delivers it on one session; returns its outcome slot.
    std::shared_ptr<delivery::SmtpSession> deliver(
        spool::Store& store, const std::shared_ptr<delivery::ContentBudget>& budget, uint16_t port,
        spool::Mid mid, Outcome& out, spool::RecentCache* recent = nullptr) {
        std::shared_ptr<delivery::SmtpSession> session;
        delivery::SmtpSession::Callbacks cb;
        cb.on_report = [&out](delivery::SmtpSession&, const smtp::TransactionReport& r) {
            out.reports.push_back(r);
        };
        cb.on_idle = [](delivery::SmtpSession& s) { s.quit(); };
        cb.on_closed = [&out](delivery::SmtpSession&) { out.closed = true; };
        session = std::make_shared<delivery::SmtpSession>(
            env, "example.test", std::vector<delivery::Candidate>{{"127.0.0.1", port, "127.0.0.1"}},
            smtp::TlsPolicy::kNone, cb);
        delivery::ContentStream::Env cenv{&loop, &store, budget, recent, soon};
        delivery::ContentStream::open(
            cenv, mid,
            [session, mid](std::shared_ptr<delivery::ContentStream> content,
                           spool::LoadStatus status, const std::string& reason) {
                INFO(reason);
                REQUIRE(status == spool::LoadStatus::kOk);
                smtp::Transaction tx;
                tx.mid = mid;
                tx.sender = content->envelope().sender;
                tx.recipients.push_back({0, content->envelope().recipients[0].address});
                tx.pull = true;
                tx.content_size = content->content_size();
                session->start(std::move(tx), std::move(content));
            });
        return session;
    }

    void run_until(const std::function<bool()>& done) {
        REQUIRE(test::run_until(&loop, done, kGuardMs));
    }
};

// Lines of varied length, some starting with "." (stuffed on the wire), CRLF throughout.
std::string make_content(size_t size) {
    std::string out = "Subject: streamed\r\n\r\n";
    uint32_t x = 12345;
    while (out.size() < size) {
        x = x * 1103515245u + 12345u;
        const size_t len = (x >> 8) % 200;
        if ((x & 7) == 0) out += '.';
        for (size_t i = 0; i < len; ++i)
            out += static_cast<char>('a' + (x + i) % 26);
        out += "\r\n";
    }
    return out;
}

// Delivers `mid` on one session within a 1 MiB budget (several pieces in flight) and checks
// that it arrived byte-identical and the budget was kept and given back.
void deliver_one(Spool& spool, spool::Mid mid, const std::string& content,
                 spool::RecentCache* recent = nullptr) {
    Harness h;
    SinkServer sink(&h.loop);
    auto budget = std::make_shared<delivery::ContentBudget>(1u << 20);
    Outcome out;
    auto session = h.deliver(*spool.store, budget, sink.port, mid, out, recent);
    h.run_until([&] { return out.closed; });
    REQUIRE(out.reports.size() == 1);
    CHECK(out.reports[0].outcome == smtp::MessageOutcome::kDelivered);
    REQUIRE(sink.messages.size() == 1);
    CHECK(sink.messages[0] == smtp::dot_encode(content));
    CHECK(budget->peak() <= budget->capacity());
    CHECK(budget->in_use() == 0);
    session.reset();
}

}  // namespace

TEST_CASE("content stream: a 20 MB message arrives byte-identical within the budget",
          "[loop][content]") {
    Spool spool;
    const std::string content = make_content(20u << 20);
    spool.commit(1, content);
    deliver_one(spool, 1, content);
}

TEST_CASE("content stream: a file corrupt mid-content never gets its final dot",
          "[loop][content]") {
    Spool spool;
    const std::string content = make_content(1u << 20);
    spool.commit(2, content);
    {
        // Flip one octet in the middle of the content: the envelope and the trailer are
        // intact, so only the checksum over the streamed content can tell.
        const int fd = ::open(spool.queue_path(2).c_str(), O_RDWR | O_CLOEXEC);
        REQUIRE(fd >= 0);
        const off_t at = static_cast<off_t>(std::filesystem::file_size(spool.queue_path(2)) -
                                            spool::kTrailerSize - content.size() / 2);
        char c = 0;
        REQUIRE(::pread(fd, &c, 1, at) == 1);
        c = static_cast<char>(c ^ 0x01);
        REQUIRE(::pwrite(fd, &c, 1, at) == 1);
        ::close(fd);
    }
    Harness h;
    SinkServer sink(&h.loop);
    auto budget = std::make_shared<delivery::ContentBudget>(64u << 20);
    Outcome out;
    auto session = h.deliver(*spool.store, budget, sink.port, 2, out);
    h.run_until([&] { return out.closed && sink.partial.size() == 1; });
    CHECK(sink.messages.empty());                        // the server never saw the end of the data
    CHECK(sink.partial[0].size() > content.size() / 4);  // content was streamed before it
    REQUIRE(out.reports.size() == 1);
    CHECK(out.reports[0].outcome == smtp::MessageOutcome::kSoft);
    CHECK(out.reports[0].reply.enhanced == "4.3.0");
    CHECK_FALSE(out.reports[0].possible_duplicate);
    CHECK_FALSE(std::filesystem::exists(spool.queue_path(2)));
    CHECK(std::filesystem::exists(spool.dir.path + "/spool/corrupt/" + spool::mid_name(2)));
    CHECK(budget->in_use() == 0);
    session.reset();
}

TEST_CASE("content stream: sessions sharing a one-piece budget all finish", "[loop][content]") {
    Spool spool;
    std::vector<std::string> contents;
    for (spool::Mid mid = 1; mid <= 4; ++mid) {
        contents.push_back(make_content(300000 + mid * 1000));
        spool.commit(mid, contents.back());
    }
    Harness h;
    SinkServer sink(&h.loop);
    // Less than one piece's share (2 x 64 KiB): clamped, one piece in flight at a time.
    auto budget = std::make_shared<delivery::ContentBudget>(64 * 1024);
    std::vector<Outcome> outs(4);
    std::vector<std::shared_ptr<delivery::SmtpSession>> sessions;
    for (spool::Mid mid = 1; mid <= 4; ++mid)
        sessions.push_back(h.deliver(*spool.store, budget, sink.port, mid, outs[mid - 1]));
    h.run_until([&] {
        for (auto& o : outs)
            if (!o.closed) return false;
        return true;
    });
    for (auto& o : outs) {
        REQUIRE(o.reports.size() == 1);
        CHECK(o.reports[0].outcome == smtp::MessageOutcome::kDelivered);
    }
    REQUIRE(sink.messages.size() == 4);
    for (const auto& c : contents)
        CHECK(std::count(sink.messages.begin(), sink.messages.end(), smtp::dot_encode(c)) == 1);
    CHECK(budget->peak() <= 64 * 1024);
    CHECK(budget->in_use() == 0);
    sessions.clear();
}

TEST_CASE("content stream: a message in the recent cache goes out from memory", "[loop][content]") {
    Spool spool;
    const std::string content = make_content(3u << 20);  // many pieces
    spool.commit(3, content);
    spool::RecentCache recent(64u << 20);
    spool::Message cached;
    cached.envelope.mid = 3;
    cached.envelope.sender = "s@client.test";
    cached.envelope.recipients = {{0, "r@example.test", "example.test"}};
    cached.content = content;
    recent.put(std::move(cached));
    // Without its file the spool cannot serve it: only the cache can.
    REQUIRE(std::filesystem::remove(spool.queue_path(3)));
    deliver_one(spool, 3, content, &recent);
    CHECK(recent.stats().hits == 1);
}

TEST_CASE("content stream: from memory, every answer comes on a later loop iteration",
          "[loop][content]") {
    Spool spool;
    spool::RecentCache recent(1u << 20);
    spool::Message cached;
    cached.envelope.mid = 4;
    cached.envelope.sender = "s@client.test";
    cached.content = "Subject: x\r\n\r\n" + std::string(1000, 'b') + "\r\n";
    const std::string content = cached.content;
    recent.put(std::move(cached));
    Harness h;
    auto budget = std::make_shared<delivery::ContentBudget>(1u << 20);
    delivery::ContentStream::Env cenv{&h.loop, spool.store.get(), budget, &recent, h.soon};

    std::shared_ptr<delivery::ContentStream> stream;
    bool opened = false;
    delivery::ContentStream::open(
        cenv, 4,
        [&](std::shared_ptr<delivery::ContentStream> s, spool::LoadStatus st, const std::string&) {
            CHECK(st == spool::LoadStatus::kOk);
            stream = std::move(s);
            opened = true;
        });
    CHECK_FALSE(opened);  // not inside open()
    h.run_until([&] { return opened; });
    REQUIRE(stream);
    CHECK(stream->from_memory());
    CHECK(stream->envelope().sender == "s@client.test");
    CHECK(stream->content_size() == content.size());

    std::vector<delivery::ContentStream::Piece> pieces;
    stream->next(0, 600, [&](delivery::ContentStream::Piece p) { pieces.push_back(std::move(p)); });
    CHECK(pieces.empty());  // not inside next()
    h.run_until([&] { return pieces.size() == 1; });
    CHECK(pieces[0].ok);
    CHECK_FALSE(pieces[0].last);
    CHECK(pieces[0].data == content.substr(0, 600));
    stream->next(600, 600,
                 [&](delivery::ContentStream::Piece p) { pieces.push_back(std::move(p)); });
    h.run_until([&] { return pieces.size() == 2; });
    CHECK(pieces[1].last);
    CHECK(pieces[0].data + pieces[1].data == content);

    std::shared_ptr<const std::string> whole;
    stream->whole([&](std::shared_ptr<const std::string> w, const std::string&) { whole = w; });
    CHECK_FALSE(whole);
    h.run_until([&] { return whole != nullptr; });
    CHECK(*whole == content);
    stream->drop();
    CHECK(budget->in_use() == 0);
    // A MID the cache does not hold is read from the spool as before.
    bool missing = false;
    delivery::ContentStream::open(
        cenv, 99,
        [&](std::shared_ptr<delivery::ContentStream> s, spool::LoadStatus st, const std::string&) {
            CHECK_FALSE(s);
            CHECK(st == spool::LoadStatus::kMissing);
            missing = true;
        });
    h.run_until([&] { return missing; });
}

TEST_CASE("content budget: first come, first served; clamped; cancellable", "[content]") {
    delivery::ContentBudget budget(100);
    std::vector<std::string> order;
    uint64_t a = 0;
    CHECK(budget.acquire(60, [&](uint64_t g) { a = g, order.push_back("a"); }) == 0);
    CHECK(a == 60);
    // b does not fit; c would, but must not overtake b.
    auto tb = budget.acquire(50, [&](uint64_t) { order.push_back("b"); });
    auto tc = budget.acquire(10, [&](uint64_t) { order.push_back("c"); });
    CHECK(tb != 0);
    CHECK(tc != 0);
    CHECK(order == std::vector<std::string>{"a"});
    budget.release(60);
    CHECK(order == std::vector<std::string>{"a", "b", "c"});
    CHECK(budget.in_use() == 60);
    // Larger than the capacity: clamped, granted once it has the whole budget.
    uint64_t big = 0;
    auto tbig = budget.acquire(1000, [&](uint64_t g) { big = g; });
    CHECK(big == 0);
    // A cancelled head lets the ones behind it go.
    bool d = false;
    budget.acquire(5, [&](uint64_t) { d = true; });
    CHECK_FALSE(d);
    budget.cancel(tbig);
    CHECK(d);
    budget.release(65);
    CHECK(budget.in_use() == 0);
    budget.acquire(1000, [&](uint64_t g) { big = g; });
    CHECK(big == 100);
    CHECK(budget.peak() == 100);
}
