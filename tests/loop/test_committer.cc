// inject::Committer on a real loop with a real spool in a temporary directory. The store is
// wrapped in a GatedStore whose commit_batch waits on a condition variable on the worker
// thread, so a test holds syncs "in flight" as long as it likes: messages that arrive while
// every batch slot is busy go out together in one batch (one directory fsync); a failed sync
// fails every waiter of its batch with a temporary error and leaves no file; and the loop keeps
// running (a timer keeps firing) while a slow sync is in flight.
#include <catch2/catch.hpp>

#include <condition_variable>
#include <mutex>
#include <vector>

#include "daemon/inject/committer.h"
#include "tests/support/inject_rig.h"

using namespace esad;

namespace {

// Forwards to a real store; commit_batch first waits until the gate is open.
class GatedStore final : public spool::Store {
  public:
    explicit GatedStore(std::unique_ptr<spool::Store> real) : real_(std::move(real)) {}

    void close_gate() {
        std::lock_guard<std::mutex> lock(mu_);
        open_ = false;
    }
    void open_gate() {
        {
            std::lock_guard<std::mutex> lock(mu_);
            open_ = true;
        }
        cv_.notify_all();
    }
    // Batches that entered commit_batch (waiting at the gate or done).
    size_t entered() {
        std::lock_guard<std::mutex> lock(mu_);
        return sizes_.size();
    }
    std::vector<size_t> batch_sizes() {
        std::lock_guard<std::mutex> lock(mu_);
        return sizes_;
    }

    void commit_batch(std::vector<spool::PendingMessage>& batch) override {
        {
            std::unique_lock<std::mutex> lock(mu_);
            sizes_.push_back(batch.size());
            cv_.wait(lock, [this] { return open_; });
        }
        real_->commit_batch(batch);
    }
    spool::Layout layout() const override { return real_->layout(); }
    size_t commit_slots() const override { return real_->commit_slots(); }
    spool::SpaceCheck space_ok(uint64_t max) const override { return real_->space_ok(max); }
    bool healthy() const override { return real_->healthy(); }
    spool::IoStatus probe() override { return real_->probe(); }
    spool::LoadResult load_content(spool::Mid mid) const override {
        return real_->load_content(mid);
    }
    spool::LoadStatus open_message(spool::Mid mid, spool::MessageRange& out,
                                   std::string& reason) const override {
        return real_->open_message(mid, out, reason);
    }
    spool::IoStatus remove_message(spool::Mid mid) override { return real_->remove_message(mid); }
    spool::IoStatus sync_removals() override { return real_->sync_removals(); }
    bool has_message(spool::Mid mid) const override { return real_->has_message(mid); }
    spool::IoStatus quarantine(spool::Mid mid, std::string* moved_to) override {
        return real_->quarantine(mid, moved_to);
    }
    spool::IoStatus scan(const spool::RecoveryOptions& options, spool::StoreScan& out,
                         const std::function<void(spool::StoredMessage&&)>& visit) override {
        return real_->scan(options, out, visit);
    }
    spool::StoreStats stats() const override { return real_->stats(); }
    const std::string& spool_path() const override { return real_->spool_path(); }

  private:
    std::unique_ptr<spool::Store> real_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool open_ = true;
    std::vector<size_t> sizes_;
};

struct Rig {
    uv_loop_t loop_storage;
    uv_loop_t* loop = &loop_storage;
    test::TempDir dir{"committer"};
    spool::Spool spool;
    GatedStore* gated = nullptr;
    std::unique_ptr<inject::Committer> committer;
    std::atomic<int> dir_fsync_errno{0};

    explicit Rig(spool::Layout layout = spool::Layout::kHashed) {
        uv_loop_init(loop);
        spool::SpoolOptions so;
        so.store.layout = layout;
        so.store.state_dir = dir.path;
        so.store.min_free_bytes = 0;
        so.store.min_free_inodes = 0;
        so.store.fault_hook = [this](spool::FaultPoint p, spool::Mid) {
            return p == spool::FaultPoint::kDirFsync ? dir_fsync_errno.load() : 0;
        };
        spool::RecoveryReport report;
        REQUIRE(spool::open_spool(so, spool, report).ok());
        auto store = std::make_unique<GatedStore>(std::move(spool.store));
        gated = store.get();
        spool.store = std::move(store);
        committer = std::make_unique<inject::Committer>(loop, spool, 1 << 20);
    }
    ~Rig() {
        gated->open_gate();
        CHECK(test::run_until(loop, [this] { return committer->pending_messages() == 0; }));
        committer->stop();
        CHECK(loop::drain_and_close(loop) == 0);
    }

    spool::Message message() {
        spool::Message m;
        REQUIRE(committer->next_mid(&m.envelope.mid).ok());
        m.envelope.sender = "s@client.test";
        m.envelope.recipients = {{0, "r@example.test", "example.test"}};
        m.content = "Subject: m\r\n\r\nbody\r\n";
        return m;
    }
    size_t queue_files() const {
        size_t n = 0;
        for (const auto& e :
             std::filesystem::recursive_directory_iterator(dir.path + "/spool/queue"))
            if (e.is_regular_file()) ++n;
        return n;
    }
};

// Until `n` batches entered the store. That happens on worker threads, which do not wake the
// loop: a 1 ms timer does, so the condition is looked at while the loop would sleep.
bool wait_entered(Rig& rig, size_t n) {
    auto tick = loop::Timer::create(rig.loop, [] {});
    tick->start(1, 1);
    return test::run_until(rig.loop, [&] { return rig.gated->entered() == n; });
}

struct Waiter {
    bool done = false;
    spool::IoStatus status;
};

// Commits a new message; `w` gets its outcome.
void commit(Rig& rig, Waiter& w) {
    rig.committer->commit(rig.message(), [&w](const spool::IoStatus& st) {
        w.done = true;
        w.status = st;
    });
}

bool all_answered(Rig& rig, const std::vector<Waiter>& waiters) {
    return test::run_until(rig.loop, [&] {
        return std::all_of(waiters.begin(), waiters.end(), [](const Waiter& w) { return w.done; });
    });
}

void check_all_ok(const std::vector<Waiter>& waiters) {
    for (const Waiter& w : waiters) {
        INFO(w.status.reason());
        CHECK(w.status.ok());
    }
}

}  // namespace

TEST_CASE("committer: messages arriving while every slot syncs go out in one batch") {
    constexpr size_t kMessages = 10;
    std::vector<Waiter> waiters(kMessages);  // outlives the rig, which answers them all
    Rig rig;
    rig.gated->close_gate();
    // Four sessions finish DATA at once: each takes a free slot and blocks in its sync.
    for (size_t i = 0; i < 4; ++i)
        commit(rig, waiters[i]);
    REQUIRE(wait_entered(rig, 4));
    // Six more while every slot is busy: they wait together.
    for (size_t i = 4; i < kMessages; ++i)
        commit(rig, waiters[i]);
    CHECK(rig.committer->batches_in_flight() == 4);
    CHECK(rig.committer->pending_messages() == kMessages);
    for (const Waiter& w : waiters)
        CHECK_FALSE(w.done);  // nothing answered before its sync
    rig.gated->open_gate();
    REQUIRE(all_answered(rig, waiters));
    check_all_ok(waiters);
    CHECK(rig.gated->batch_sizes() == std::vector<size_t>{1, 1, 1, 1, 6});
    CHECK(rig.committer->stats().batches == 5);
    CHECK(rig.committer->stats().largest_batch == 6);
    CHECK(rig.queue_files() == kMessages);
}

TEST_CASE("committer: one segment takes one batch at a time; the rest share the next sync") {
    constexpr size_t kMessages = 10;
    std::vector<Waiter> waiters(kMessages);
    Rig rig(spool::Layout::kSegment);
    rig.gated->close_gate();
    commit(rig, waiters[0]);
    REQUIRE(wait_entered(rig, 1));
    // Nine sessions finish DATA while the first batch syncs: no second writer starts, they
    // wait together (each batch would otherwise pay its own fdatasync of the same segment).
    for (size_t i = 1; i < kMessages; ++i)
        commit(rig, waiters[i]);
    CHECK(rig.committer->batches_in_flight() == 1);
    CHECK(rig.committer->pending_messages() == kMessages);
    rig.gated->open_gate();
    REQUIRE(all_answered(rig, waiters));
    check_all_ok(waiters);
    CHECK(rig.gated->batch_sizes() == std::vector<size_t>{1, 9});
    CHECK(rig.spool.store->stats().file_fsyncs == 2);
}

TEST_CASE("committer: a failed sync fails every waiter of the batch with a temporary error") {
    constexpr size_t kMessages = 7;
    std::vector<Waiter> waiters(kMessages);
    Rig rig;
    rig.gated->close_gate();
    for (size_t i = 0; i < kMessages; ++i) {
        commit(rig, waiters[i]);
        if (i == 3) REQUIRE(wait_entered(rig, 4));
    }
    rig.dir_fsync_errno = EIO;
    rig.gated->open_gate();
    REQUIRE(all_answered(rig, waiters));
    CHECK(rig.gated->batch_sizes() == std::vector<size_t>{1, 1, 1, 1, 3});
    for (const Waiter& w : waiters) {
        CHECK_FALSE(w.status.ok());
        CHECK(w.status.error_class() == spool::ErrorClass::kIo);
        CHECK(spool::smtp_reply_for(w.status.error_class()).substr(0, 9) == "451 4.3.0");
    }
    CHECK(rig.queue_files() == 0);
    CHECK_FALSE(rig.committer->healthy());
    CHECK(rig.committer->admit(0) == smtp::SpoolAdmit::kUnavailable);
}

TEST_CASE("committer: the loop keeps running while a sync is in flight") {
    Waiter w;
    Rig rig;
    rig.gated->close_gate();
    commit(rig, w);
    REQUIRE(wait_entered(rig, 1));
    int ticks = 0;
    auto timer = loop::Timer::create(rig.loop, [&] { ++ticks; });
    timer->start(1, 1);
    // The worker holds the sync; the loop thread answers timers and the MAIL-time calls.
    REQUIRE(test::run_until(rig.loop, [&] { return ticks >= 20; }));
    CHECK_FALSE(w.done);
    spool::Mid mid = 0;
    CHECK(rig.committer->next_mid(&mid).ok());
    CHECK(rig.committer->admit(0) == smtp::SpoolAdmit::kOk);
    rig.gated->open_gate();
    REQUIRE(test::run_until(rig.loop, [&] { return w.done; }));
    CHECK(w.status.ok());
    CHECK(rig.queue_files() == 1);
}
