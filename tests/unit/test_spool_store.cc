// Tests for daemon/spool/store and both file layouts (file_store.h): commit, group commit
// (one directory fsync per touched directory per batch), every failure path (no temp file
// left, right error class, unhealthy + probe), real ENOSPC on a tiny tmpfs, space pre-check,
// load_content, open_message, quarantine, batched removal and the spool lock.
#include <catch2/catch.hpp>

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "daemon/spool/store.h"
#include "tests/support/temp_dir.h"

using namespace esad::spool;
namespace fs = std::filesystem;

namespace {

struct TempDir : esad::test::TempDir {
    TempDir() : esad::test::TempDir("spool_store") {}
};

Message make_message(Mid mid, std::size_t content_size = 100) {
    Message m;
    m.envelope.mid = mid;
    m.envelope.sender = "s@src.test";
    m.envelope.recipients = {{0, "a@dst.test", "dst.test"}, {1, "b@dst.test", "dst.test"}};
    m.content = std::string(content_size, 'x');
    return m;
}

std::vector<PendingMessage> make_batch(Mid first, std::size_t n, std::size_t size = 100) {
    std::vector<PendingMessage> batch(n);
    for (std::size_t i = 0; i < n; ++i)
        batch[i].message = make_message(first + i, size);
    return batch;
}

// Message files under queue/, in either layout.
std::size_t count_queued(const std::string& state) {
    std::size_t n = 0;
    for (const auto& e : fs::recursive_directory_iterator(state + "/spool/queue")) {
        if (e.is_regular_file()) ++n;
    }
    return n;
}

std::string queue_path(const std::string& state, Layout layout, Mid mid) {
    std::string path = state + "/spool/queue/";
    if (layout == Layout::kHashed) path += mid_name(mid).substr(14) + "/";
    return path + mid_name(mid);
}

std::size_t count_files(const std::string& dir) {
    std::size_t n = 0;
    for (const auto& e : fs::directory_iterator(dir)) {
        (void)e;
        ++n;
    }
    return n;
}

std::unique_ptr<Store> open_store(const std::string& dir, Layout layout, StoreOptions opts = {}) {
    opts.state_dir = dir;
    opts.layout = layout;
    std::unique_ptr<Store> store;
    const IoStatus st = Store::open(std::move(opts), store);
    INFO(st.reason());
    REQUIRE(st.ok());
    return store;
}

}  // namespace

TEST_CASE("MID file names are fixed-width hex", "[spool][store]") {
    CHECK(mid_name(1234) == "00000000000004d2");
    Mid mid = 0;
    CHECK(parse_mid_name("00000000000004d2", mid));
    CHECK(mid == 1234);
    CHECK_FALSE(parse_mid_name("0000000000000000", mid));
    CHECK_FALSE(parse_mid_name("00000000000004D2", mid));
    CHECK_FALSE(parse_mid_name("4d2", mid));
    CHECK_FALSE(parse_mid_name("00000000000004d2.tmp", mid));
}

TEST_CASE("open creates the layout and locks the spool", "[spool][store]") {
    const Layout layout = GENERATE(Layout::kFlat, Layout::kHashed);
    INFO("layout " << to_string(layout));
    TempDir dir;
    auto store = open_store(dir.path, layout);
    for (const char* sub : {"tmp", "queue", "corrupt"}) {
        CHECK(fs::is_directory(dir.path + "/spool/" + sub));
    }
    std::unique_ptr<Store> second;
    StoreOptions opts;
    opts.state_dir = dir.path;
    opts.layout = layout;
    const IoStatus st = Store::open(opts, second);
    CHECK(st.err == EWOULDBLOCK);
    CHECK(second == nullptr);
    store.reset();
    CHECK(Store::open(opts, second).ok());
    second.reset();
    ::chmod((dir.path + "/spool/queue").c_str(), 0777);
    CHECK(Store::open(opts, second).err == EPERM);
}

TEST_CASE("a batch is committed with one fsync per touched directory", "[spool][store]") {
    const Layout layout = GENERATE(Layout::kFlat, Layout::kHashed);
    INFO("layout " << to_string(layout));
    TempDir dir;
    auto store = open_store(dir.path, layout);
    const StoreStats before = store->stats();
    auto batch = make_batch(100, 16);
    store->commit_batch(batch);
    const StoreStats after = store->stats();
    for (const PendingMessage& pm : batch) {
        INFO(pm.result.reason());
        CHECK(pm.result.ok());
        CHECK(pm.result.error_class() == ErrorClass::kNone);
    }
    // MIDs 100..115 fall into 16 hashed subdirectories.
    CHECK(after.dir_fsyncs - before.dir_fsyncs == (layout == Layout::kFlat ? 1 : 16));
    CHECK(after.file_fsyncs - before.file_fsyncs == 16);
    CHECK(after.commits_ok - before.commits_ok == 16);
    CHECK(count_queued(dir.path) == 16);
    CHECK(count_files(dir.path + "/spool/tmp") == 0);
    struct stat st {};
    REQUIRE(::stat(queue_path(dir.path, layout, 100).c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);

    const LoadResult lr = store->load_content(105);
    REQUIRE(lr.status == LoadStatus::kOk);
    CHECK(lr.message == make_message(105));
    CHECK(store->has_message(105));

    SECTION("remove_message is idempotent") {
        CHECK(store->remove_message(105).ok());
        CHECK(store->sync_removals().ok());
        CHECK_FALSE(store->has_message(105));
        CHECK(store->remove_message(105).ok());
        CHECK(store->sync_removals().ok());
        CHECK(store->load_content(105).status == LoadStatus::kMissing);
        CHECK(count_queued(dir.path) == 15);
    }
}

TEST_CASE("a MID collision is an error, never an overwrite", "[spool][store]") {
    const Layout layout = GENERATE(Layout::kFlat, Layout::kHashed);
    INFO("layout " << to_string(layout));
    TempDir dir;
    auto store = open_store(dir.path, layout);
    auto first = make_batch(5, 1, 10);
    store->commit_batch(first);
    REQUIRE(first[0].result.ok());
    auto again = make_batch(5, 1, 20);
    store->commit_batch(again);
    CHECK(again[0].result.err == EEXIST);
    CHECK(store->load_content(5).message.content.size() == 10);
    CHECK(count_files(dir.path + "/spool/tmp") == 0);
}

TEST_CASE("invalid messages are refused", "[spool][store]") {
    const Layout layout = GENERATE(Layout::kFlat, Layout::kHashed);
    INFO("layout " << to_string(layout));
    TempDir dir;
    auto store = open_store(dir.path, layout);
    std::vector<PendingMessage> batch(2);
    batch[0].message = make_message(0);
    batch[1].message = make_message(8);
    batch[1].message.envelope.recipients.clear();
    store->commit_batch(batch);
    CHECK(batch[0].result.err == EINVAL);
    CHECK(batch[1].result.err == EINVAL);
    CHECK(count_queued(dir.path) == 0);
}

TEST_CASE("every injected failure leaves no file and reports its class", "[spool][store]") {
    const Layout layout = GENERATE(Layout::kFlat, Layout::kHashed);
    INFO("layout " << to_string(layout));
    const auto point = GENERATE(FaultPoint::kCreate, FaultPoint::kWrite, FaultPoint::kFileFsync,
                                FaultPoint::kRename);
    const int err = GENERATE(ENOSPC, EDQUOT, EIO);
    TempDir dir;
    StoreOptions opts;
    opts.fault_hook = [point, err](FaultPoint p, Mid mid) {
        return (p == point && mid == 11) ? err : 0;
    };
    auto store = open_store(dir.path, layout, opts);
    auto batch = make_batch(10, 3);
    store->commit_batch(batch);
    INFO("point " << static_cast<int>(point) << " errno " << err);
    CHECK(batch[0].result.ok());
    CHECK(batch[2].result.ok());
    CHECK(batch[1].result.err == err);
    CHECK(batch[1].result.error_class() == (err == EIO ? ErrorClass::kIo : ErrorClass::kNoSpace));
    CHECK(!batch[1].result.reason().empty());
    CHECK(smtp_reply_for(batch[1].result.error_class()).substr(0, 9) ==
          (err == EIO ? "451 4.3.0" : "452 4.3.1"));
    CHECK(count_files(dir.path + "/spool/tmp") == 0);
    CHECK_FALSE(store->has_message(11));
    CHECK(count_queued(dir.path) == 2);
    CHECK(store->stats().dir_fsyncs == (layout == Layout::kFlat ? 1 : 2));
    // Only an fsync failure makes the store unhealthy.
    CHECK(store->healthy() == (point != FaultPoint::kFileFsync));
    if (!store->healthy()) {
        CHECK(store->stats().fsync_failures == 1);
        CHECK(store->probe().ok());
        CHECK(store->healthy());
        CHECK(count_files(dir.path + "/spool/tmp") == 0);
    }
}

TEST_CASE("a failed directory fsync fails the whole batch", "[spool][store]") {
    const Layout layout = GENERATE(Layout::kFlat, Layout::kHashed);
    INFO("layout " << to_string(layout));
    TempDir dir;
    bool fail_probe = true;
    StoreOptions opts;
    opts.fault_hook = [&fail_probe](FaultPoint p, Mid) {
        if (p == FaultPoint::kDirFsync) return EIO;
        if (p == FaultPoint::kProbe && fail_probe) return EIO;
        return 0;
    };
    auto store = open_store(dir.path, layout, opts);
    auto batch = make_batch(20, 4);
    store->commit_batch(batch);
    for (const PendingMessage& pm : batch) {
        CHECK(pm.result.err == EIO);
        CHECK(pm.result.error_class() == ErrorClass::kIo);
    }
    CHECK(count_queued(dir.path) == 0);
    CHECK(count_files(dir.path + "/spool/tmp") == 0);
    CHECK_FALSE(store->healthy());
    CHECK(store->stats().commits_failed == 4);

    // The probe must really succeed before the store is healthy again.
    CHECK(store->probe().err == EIO);
    CHECK_FALSE(store->healthy());
    fail_probe = false;
    CHECK(store->probe().ok());
    CHECK(store->healthy());
    CHECK(count_files(dir.path + "/spool/tmp") == 0);
}

TEST_CASE("space_ok compares free bytes and inodes against the floors", "[spool][store]") {
    const Layout layout = GENERATE(Layout::kFlat, Layout::kHashed);
    INFO("layout " << to_string(layout));
    TempDir dir;
    auto store = open_store(dir.path, layout);
    const SpaceCheck ok = store->space_ok(1 << 20);
    CHECK(ok.ok);
    CHECK(ok.free_bytes > 0);
    CHECK(ok.required_bytes == std::max<std::uint64_t>(64ull << 20, (1 << 20) * 3 / 2));

    const SpaceCheck big = store->space_ok(ok.free_bytes);  // needs 1.5x what is free
    CHECK_FALSE(big.ok);
    CHECK(big.reason.find("free space") != std::string::npos);

    StoreOptions opts;
    opts.min_free_inodes = ~0ull;
    TempDir dir2;
    auto inode_store = open_store(dir2.path, layout, opts);
    const SpaceCheck inodes = inode_store->space_ok(1);
    CHECK_FALSE(inodes.ok);
    CHECK(inodes.reason.find("inodes") != std::string::npos);
}

TEST_CASE("real ENOSPC on a tiny tmpfs", "[spool][store][tmpfs]") {
    const Layout layout = GENERATE(Layout::kFlat, Layout::kHashed);
    INFO("layout " << to_string(layout));
    TempDir dir;
    if (::mount("tmpfs", dir.path.c_str(), "tmpfs", 0, "size=64k,nr_inodes=512") != 0) {
        WARN("cannot mount a tmpfs (" << std::strerror(errno) << "): ENOSPC test skipped");
        return;
    }
    struct Unmount {
        std::string p;
        ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
    } unmount{dir.path};
    {
        StoreOptions opts;
        opts.min_free_bytes = 16 * 1024;
        auto store = open_store(dir.path, layout, opts);
        CHECK_FALSE(store->space_ok(200 * 1024).ok);

        auto batch = make_batch(1, 2, 200 * 1024);
        batch[0].message.content.resize(100);  // the first fits, the second does not
        store->commit_batch(batch);
        CHECK(batch[0].result.ok());
        CHECK(batch[1].result.err == ENOSPC);
        CHECK(batch[1].result.error_class() == ErrorClass::kNoSpace);
        CHECK(count_files(dir.path + "/spool/tmp") == 0);
        CHECK(count_queued(dir.path) == 1);
        CHECK(store->healthy());  // a write error is not an fsync error

        // Space is back (the failed temp was removed): the next commit works.
        auto next = make_batch(3, 1, 1000);
        store->commit_batch(next);
        CHECK(next[0].result.ok());
    }
}

TEST_CASE("load_content detects corruption and quarantine moves the file", "[spool][store]") {
    const Layout layout = GENERATE(Layout::kFlat, Layout::kHashed);
    INFO("layout " << to_string(layout));
    TempDir dir;
    auto store = open_store(dir.path, layout);
    auto batch = make_batch(40, 2);
    store->commit_batch(batch);
    const std::string qpath = queue_path(dir.path, layout, 41);
    {
        std::fstream f(qpath, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(-40, std::ios::end);
        f.put('Y');  // inside the content
    }
    const LoadResult lr = store->load_content(41);
    CHECK(lr.status == LoadStatus::kCorrupt);
    CHECK(lr.reason.find("bad_checksum") != std::string::npos);

    std::string moved;
    REQUIRE(store->quarantine(41, &moved).ok());
    CHECK(moved == mid_name(41));
    CHECK(fs::exists(dir.path + "/spool/corrupt/" + moved));
    CHECK_FALSE(fs::exists(qpath));
    CHECK(store->stats().quarantined == 1);

    // A second file of the same name gets a suffix instead of replacing the first.
    fs::copy_file(queue_path(dir.path, layout, 40), qpath);
    REQUIRE(store->quarantine(41, &moved).ok());
    CHECK(moved == mid_name(41) + ".1");
}

TEST_CASE("open_message gives the encoded message as a range of a file", "[spool][store]") {
    const Layout layout = GENERATE(Layout::kFlat, Layout::kHashed);
    INFO("layout " << to_string(layout));
    TempDir dir;
    auto store = open_store(dir.path, layout);
    auto batch = make_batch(300, 2, 5000);
    store->commit_batch(batch);
    REQUIRE(batch[1].result.ok());
    MessageRange range;
    std::string reason;
    REQUIRE(store->open_message(301, range, reason) == LoadStatus::kOk);
    CHECK(reason.empty());
    CHECK(range.offset == 0);
    CHECK(range.size == fs::file_size(queue_path(dir.path, layout, 301)));
    std::string bytes;
    REQUIRE(read_exact_at(range.fd.get(), range.offset, range.size, bytes) == 0);
    const DecodeResult dec = decode(bytes);
    REQUIRE(dec.status == DecodeStatus::kOk);
    CHECK(dec.message == make_message(301, 5000));
    // Read-only: the spool's copy cannot be changed through it.
    CHECK(::write(range.fd.get(), "x", 1) == -1);

    MessageRange missing;
    CHECK(store->open_message(999, missing, reason) == LoadStatus::kMissing);
    CHECK_FALSE(reason.empty());
    CHECK_FALSE(missing.fd.valid());
}

TEST_CASE("hashed: a message has no name until it is complete, then one in queue/<xx>/",
          "[spool][store]") {
    TempDir dir;
    std::size_t visible_before_link = 99;
    StoreOptions opts;
    opts.fault_hook = [&](FaultPoint p, Mid) {
        // Written and synced, not yet linked: nothing in tmp/ or queue/ shows it.
        if (p == FaultPoint::kRename)
            visible_before_link = count_files(dir.path + "/spool/tmp") + count_queued(dir.path);
        return 0;
    };
    auto store = open_store(dir.path, Layout::kHashed, opts);
    for (int slot = 0; slot < 256; ++slot) {
        char name[3];
        std::snprintf(name, sizeof name, "%02x", slot);
        CHECK(fs::is_directory(dir.path + "/spool/queue/" + name));
    }
    auto batch = make_batch(0x1234, 1);
    store->commit_batch(batch);
    REQUIRE(batch[0].result.ok());
    CHECK(visible_before_link == 0);
    CHECK(fs::is_regular_file(dir.path + "/spool/queue/34/" + mid_name(0x1234)));
    CHECK(count_queued(dir.path) == 1);
    struct stat st {};
    REQUIRE(::stat(queue_path(dir.path, Layout::kHashed, 0x1234).c_str(), &st) == 0);
    CHECK(st.st_nlink == 1);
    CHECK((st.st_mode & 0777) == 0600);
}

TEST_CASE("hashed: removals are queued and reclaimed together off the caller's thread",
          "[spool][store]") {
    TempDir dir;
    auto store = open_store(dir.path, Layout::kHashed);
    auto batch = make_batch(1, 64);
    store->commit_batch(batch);
    for (const PendingMessage& pm : batch)
        REQUIRE(pm.result.ok());
    const StoreStats before = store->stats();
    for (Mid mid = 1; mid <= 64; ++mid) {
        CHECK(store->remove_message(mid).ok());
        CHECK_FALSE(store->has_message(mid));  // gone for the journal at once
    }
    SECTION("the reclaimer drains the queue by itself") {
        // Wait for the event (every file gone), bounded generously for a busy machine.
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (store->stats().removed < 64 && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        CHECK(store->stats().removed == 64);
    }
    SECTION("sync_removals drains what is still queued") {
        CHECK(store->sync_removals().ok());
        CHECK(store->stats().removed == 64);
    }
    CHECK(store->sync_removals().ok());
    CHECK(count_queued(dir.path) == 0);
    const StoreStats after = store->stats();
    // The reclaimer unlinks without fsyncs; sync_removals() fsyncs each touched directory
    // once: 64 removals over 64 directories.
    CHECK(after.removal_batches > before.removal_batches);
    CHECK(after.dir_fsyncs - before.dir_fsyncs == 64);
}

TEST_CASE("hashed: the store drains queued removals when it closes", "[spool][store]") {
    TempDir dir;
    {
        auto store = open_store(dir.path, Layout::kHashed);
        auto batch = make_batch(1, 8);
        store->commit_batch(batch);
        for (Mid mid = 1; mid <= 8; ++mid)
            REQUIRE(store->remove_message(mid).ok());
    }
    CHECK(count_queued(dir.path) == 0);
}
