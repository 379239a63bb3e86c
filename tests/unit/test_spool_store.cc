// Tests for daemon/spool/store, both file layouts (file_store.h) and the segment layout
// (segment_store.h: commit, open_message, torn tail, corrupt records, tombstones, reclaim,
// compaction, recovery): commit, group commit
// (one directory fsync per touched directory per batch), every failure path (no temp file
// left, right error class, unhealthy + probe), real ENOSPC on a tiny tmpfs, space pre-check,
// load_content, open_message, quarantine, batched removal and the spool lock.
#include <catch2/catch.hpp>

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "daemon/spool/segment_store.h"
#include "daemon/spool/store.h"
#include "tests/support/temp_dir.h"
#if ESAD_HAVE_ROCKSDB
#include <rocksdb/db.h>

#include "daemon/spool/rocks_store.h"
#endif

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

// Every layout this esad was built with (the generic contract tests run each).
std::vector<Layout> all_layouts() {
    std::vector<Layout> layouts{Layout::kFlat, Layout::kHashed, Layout::kSegment};
#if ESAD_HAVE_ROCKSDB
    layouts.push_back(Layout::kRocksdb);
#endif
    return layouts;
}

// Messages stored: files under queue/ in either file layout, plus segment records and
// RocksDB values.
std::size_t count_queued(const std::string& state) {
    std::size_t n = 0;
    if (fs::exists(state + "/spool/segments")) {
        SegmentStore::read_records(state + "/spool", [&n](Mid, std::string_view) { ++n; });
    }
#if ESAD_HAVE_ROCKSDB
    if (fs::exists(state + "/spool/rocksdb")) {
        RocksStore::read_records(state + "/spool", [&n](Mid, std::string_view) { ++n; });
    }
#endif
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

// A tmpfs of `options` mounted on `path` while it lives (not mounted without the privilege:
// the test then warns and skips).
struct TinyTmpfs {
    TinyTmpfs(const std::string& path, const char* options) : path(path) {
        mounted = ::mount("tmpfs", path.c_str(), "tmpfs", 0, options) == 0;
        if (!mounted) WARN("cannot mount a tmpfs (" << std::strerror(errno) << "): test skipped");
    }
    ~TinyTmpfs() {
        if (mounted) ::umount2(path.c_str(), MNT_DETACH);
    }
    std::string path;
    bool mounted = false;
};

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
    const Layout layout = GENERATE(from_range(all_layouts()));
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
    const Layout layout = GENERATE(from_range(all_layouts()));
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
    const Layout layout = GENERATE(from_range(all_layouts()));
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
    const Layout layout = GENERATE(from_range(all_layouts()));
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
    const Layout layout = GENERATE(Layout::kFlat, Layout::kHashed, Layout::kSegment);
    INFO("layout " << to_string(layout));
    TempDir dir;
    const TinyTmpfs tmpfs(dir.path, "size=64k,nr_inodes=512");
    if (!tmpfs.mounted) return;
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

// --- segment layout ---

namespace {

SegmentStore& as_segment(Store& store) {
    return dynamic_cast<SegmentStore&>(store);
}

std::string segment_path(const std::string& state, std::uint64_t seq) {
    return state + "/spool/segments/" + mid_name(seq) + ".seg";
}

struct Scanned {
    IoStatus status;
    StoreScan scan;
    std::vector<Mid> mids;
};

Scanned scan_store(Store& store) {
    Scanned out;
    out.status = store.scan(RecoveryOptions{}, out.scan,
                            [&out](StoredMessage&& m) { out.mids.push_back(m.envelope.mid); });
    return out;
}

// Reopens the spool in the same layout as after a crash or restart (the old store closed
// first).
std::unique_ptr<Store> reopen(std::unique_ptr<Store>& store, const std::string& dir,
                              StoreOptions opts = {}) {
    const Layout layout = store ? store->layout() : Layout::kSegment;  // closed: segment
    store.reset();
    return open_store(dir, layout, std::move(opts));
}

// Where the records of a segment end (its prefilled zeros follow): the end of `last`, the
// message committed last.
std::uint64_t records_end(const Store& store, Mid last) {
    MessageRange range;
    std::string reason;
    REQUIRE(store.open_message(last, range, reason) == LoadStatus::kOk);
    return range.offset + range.size;
}

void write_at(const std::string& path, std::uint64_t offset, std::string_view bytes) {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(offset));
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// quarantine() of corrupt message `bad`: its bytes kept in corrupt/, the message gone for good
// (after a restart too), `kept` untouched.
void check_quarantine(std::unique_ptr<Store>& store, const std::string& dir, Mid bad, Mid kept) {
    std::string moved;
    REQUIRE(store->quarantine(bad, &moved).ok());
    CHECK(moved == mid_name(bad));
    CHECK(fs::exists(dir + "/spool/corrupt/" + moved));
    CHECK_FALSE(store->has_message(bad));
    CHECK(store->stats().quarantined == 1);
    store = reopen(store, dir);
    const Scanned sc = scan_store(*store);
    CHECK(sc.mids == std::vector<Mid>{kept});
    CHECK(sc.scan.quarantined.empty());
}

void flip_byte(const std::string& path, std::uint64_t offset) {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(offset));
    const char c = static_cast<char>(f.get());
    f.seekp(static_cast<std::streamoff>(offset));
    f.put(static_cast<char>(c ^ 0x20));
}

}  // namespace

TEST_CASE("segment: a batch is one append and one fdatasync, no file per message",
          "[spool][store][segment]") {
    TempDir dir;
    auto store = open_store(dir.path, Layout::kSegment);
    CHECK(fs::is_directory(dir.path + "/spool/segments"));
    auto batch = make_batch(100, 16);
    store->commit_batch(batch);
    for (const PendingMessage& pm : batch) {
        INFO(pm.result.reason());
        CHECK(pm.result.ok());
    }
    const StoreStats st = store->stats();
    CHECK(st.file_fsyncs == 1);
    CHECK(st.dir_fsyncs == 1);  // the new segment's name
    CHECK(st.commits_ok == 16);
    CHECK(count_files(dir.path + "/spool/segments") == 1);
    CHECK(count_queued(dir.path) == 16);
    struct stat sb {};
    REQUIRE(::stat(segment_path(dir.path, 1).c_str(), &sb) == 0);
    CHECK((sb.st_mode & 0777) == 0600);

    auto second = make_batch(200, 4);
    store->commit_batch(second);
    CHECK(store->stats().file_fsyncs == 2);
    CHECK(store->stats().dir_fsyncs == 1);  // same segment
    CHECK(count_files(dir.path + "/spool/segments") == 1);

    const LoadResult lr = store->load_content(105);
    REQUIRE(lr.status == LoadStatus::kOk);
    CHECK(lr.message == make_message(105));

    MessageRange range;
    std::string reason;
    REQUIRE(store->open_message(201, range, reason) == LoadStatus::kOk);
    CHECK(range.offset > 0);
    std::string bytes;
    REQUIRE(read_exact_at(range.fd.get(), range.offset, range.size, bytes) == 0);
    const DecodeResult dec = decode(bytes);
    REQUIRE(dec.status == DecodeStatus::kOk);
    CHECK(dec.message == make_message(201));
    CHECK(::write(range.fd.get(), "x", 1) == -1);  // read-only

    CHECK(store->remove_message(105).ok());
    CHECK_FALSE(store->has_message(105));
    CHECK(store->remove_message(105).ok());
    CHECK(store->load_content(105).status == LoadStatus::kMissing);
    CHECK(store->has_message(104));
}

TEST_CASE("segment, rocksdb: a failed write fails one message, a failed sync the batch",
          "[spool][store][segment][rocksdb]") {
    std::vector<Layout> layouts{Layout::kSegment};
#if ESAD_HAVE_ROCKSDB
    layouts.push_back(Layout::kRocksdb);
#endif
    const Layout layout = GENERATE_REF(from_range(layouts));
    const auto point = GENERATE(FaultPoint::kCreate, FaultPoint::kWrite, FaultPoint::kRename,
                                FaultPoint::kFileFsync);
    const int err = GENERATE(ENOSPC, EIO);
    INFO("layout " << to_string(layout) << " point " << static_cast<int>(point) << " errno "
                   << err);
    TempDir dir;
    StoreOptions opts;
    opts.fault_hook = [point, err](FaultPoint p, Mid mid) {
        return (p == point && (mid == 11 || (p == FaultPoint::kFileFsync && mid == 10))) ? err : 0;
    };
    auto store = open_store(dir.path, layout, opts);
    auto batch = make_batch(10, 3);
    store->commit_batch(batch);
    if (point == FaultPoint::kFileFsync) {
        for (const PendingMessage& pm : batch)
            CHECK(pm.result.err == err);
        CHECK_FALSE(store->healthy());
        CHECK(store->probe().ok());
        CHECK(store->healthy());
    } else {
        CHECK(batch[0].result.ok());
        CHECK(batch[2].result.ok());
        CHECK(batch[1].result.err == err);
        CHECK(batch[1].result.error_class() ==
              (err == EIO ? ErrorClass::kIo : ErrorClass::kNoSpace));
        CHECK(store->healthy());
    }
    CHECK_FALSE(store->has_message(11));
    // Nothing that failed is found again by recovery.
    store = reopen(store, dir.path);
    const Scanned sc = scan_store(*store);
    REQUIRE(sc.status.ok());
    CHECK(sc.scan.quarantined.empty());
    if (point == FaultPoint::kFileFsync) {
        CHECK(sc.mids.empty());
    } else {
        CHECK(sc.mids == std::vector<Mid>{10, 12});
    }
    // The next batch goes on normally.
    auto next = make_batch(20, 2);
    store->commit_batch(next);
    CHECK(next[0].result.ok());
    CHECK(next[1].result.ok());
}

TEST_CASE("segment: records go into room prefilled 1 MiB at a time, recovery stops at its zeros",
          "[spool][store][segment]") {
    TempDir dir;
    auto store = open_store(dir.path, Layout::kSegment);
    const std::string seg = segment_path(dir.path, 1);
    constexpr std::uintmax_t kMiB = 1 << 20;
    auto first = make_batch(1, 3, 2000);
    store->commit_batch(first);
    CHECK(fs::file_size(seg) == kMiB);
    CHECK(records_end(*store, 3) < kMiB);
    // The next batch fits the room: the file's size does not change (its fdatasync has no
    // new size to write).
    auto second = make_batch(4, 3, 2000);
    store->commit_batch(second);
    CHECK(fs::file_size(seg) == kMiB);
    // One that does not fit grows the room by whole steps.
    auto big = make_batch(7, 400, 3000);
    store->commit_batch(big);
    for (const PendingMessage& pm : big)
        REQUIRE(pm.result.ok());
    const std::uint64_t end = records_end(*store, 406);
    CHECK(end > kMiB);
    CHECK(fs::file_size(seg) % kMiB == 0);
    CHECK(fs::file_size(seg) >= end);
    const auto size = fs::file_size(seg);

    store = reopen(store, dir.path);
    Scanned sc = scan_store(*store);
    REQUIRE(sc.status.ok());
    CHECK(sc.mids.size() == 406);
    CHECK(sc.scan.skipped.empty());
    CHECK(sc.scan.quarantined.empty());
    CHECK(fs::file_size(seg) == size);  // the zeros are room, not a torn tail
    CHECK(store->load_content(406).status == LoadStatus::kOk);
}

TEST_CASE("segment: a torn tail is cut off, the records before it recover",
          "[spool][store][segment]") {
    // A batch the crash interrupted: half a record in the prefilled room, its frame not yet
    // written (records go in before their frames); or, past the end of a segment without
    // room (ENOSPC), a whole frame and half its record.
    const bool in_room = GENERATE(true, false);
    INFO((in_room ? "half a record in the prefilled room" : "frame + half a record at the end"));
    TempDir dir;
    auto store = open_store(dir.path, Layout::kSegment);
    auto batch = make_batch(1, 3, 2000);
    store->commit_batch(batch);
    const std::uint64_t good = records_end(*store, 3);
    store.reset();
    const std::string seg = segment_path(dir.path, 1);
    CHECK(fs::file_size(seg) > good);  // the prefilled room
    {
        const std::string rec = encode(make_message(4, 2000));
        if (in_room) {
            write_at(seg, good + kFrameSize, rec.substr(0, rec.size() / 2));
        } else {
            std::ofstream f(seg, std::ios::app | std::ios::binary);
            f << encode_frame(4, rec.size()) << rec.substr(0, rec.size() / 2);
        }
    }
    store = reopen(store, dir.path);
    Scanned sc = scan_store(*store);
    REQUIRE(sc.status.ok());
    CHECK(sc.mids == std::vector<Mid>{1, 2, 3});
    CHECK(sc.scan.quarantined.empty());
    REQUIRE(sc.scan.skipped.size() == 1);
    CHECK(sc.scan.skipped[0].reason.find("torn tail") != std::string::npos);
    CHECK(fs::file_size(seg) == good);
    auto next = make_batch(5, 1);
    store->commit_batch(next);
    REQUIRE(next[0].result.ok());
    store = reopen(store, dir.path);
    sc = scan_store(*store);
    CHECK(sc.mids == std::vector<Mid>{1, 2, 3, 5});
    CHECK(sc.scan.skipped.empty());
}

TEST_CASE("segment: a corrupt record is quarantined and the rest of the segment recovers",
          "[spool][store][segment]") {
    const bool in_frame = GENERATE(false, true);
    INFO((in_frame ? "corrupt frame" : "corrupt content"));
    TempDir dir;
    auto store = open_store(dir.path, Layout::kSegment);
    auto batch = make_batch(1, 3, 3000);
    store->commit_batch(batch);
    MessageRange range;
    std::string reason;
    REQUIRE(store->open_message(2, range, reason) == LoadStatus::kOk);
    const std::uint64_t frame_at = range.offset - kFrameSize;
    range = MessageRange{};
    store.reset();
    // In the frame's length field, or in the middle of the message's content.
    flip_byte(segment_path(dir.path, 1), in_frame ? frame_at + 17 : frame_at + 1500);

    store = reopen(store, dir.path);
    Scanned sc = scan_store(*store);
    REQUIRE(sc.status.ok());
    CHECK(sc.mids == std::vector<Mid>{1, 3});
    REQUIRE(sc.scan.quarantined.size() == 1);
    const QuarantinedFile& q = sc.scan.quarantined[0];
    INFO(q.reason);
    CHECK(q.name == "segments/" + mid_name(1) + ".seg@" + std::to_string(frame_at));
    REQUIRE_FALSE(q.moved_to.empty());
    CHECK(fs::file_size(dir.path + "/spool/corrupt/" + q.moved_to) ==
          kFrameSize + batch[1].message.content.size() +
              (encode(make_message(2, 3000)).size() - 3000));
    CHECK(q.moved_to ==
          (in_frame ? mid_name(1) + ".seg@" + std::to_string(frame_at) : mid_name(2)));
    CHECK(store->load_content(3).status == LoadStatus::kOk);
    CHECK(store->sync_removals().ok());

    // Quarantined once: the next recovery does not copy it again.
    store = reopen(store, dir.path);
    sc = scan_store(*store);
    CHECK(sc.mids == std::vector<Mid>{1, 3});
    CHECK(sc.scan.quarantined.size() == (in_frame ? 1u : 0u));
    CHECK(count_files(dir.path + "/spool/corrupt") == (in_frame ? 2u : 1u));
}

TEST_CASE("segment: load_content detects corruption and quarantine copies the record out",
          "[spool][store][segment]") {
    TempDir dir;
    auto store = open_store(dir.path, Layout::kSegment);
    auto batch = make_batch(40, 2);
    store->commit_batch(batch);
    flip_byte(segment_path(dir.path, 1), records_end(*store, 41) - 40);
    const LoadResult lr = store->load_content(41);
    CHECK(lr.status == LoadStatus::kCorrupt);
    CHECK(lr.reason.find("bad_checksum") != std::string::npos);
    check_quarantine(store, dir.path, 41, 40);
}

TEST_CASE("segment: removals become durable tombstones in sync_removals",
          "[spool][store][segment]") {
    TempDir dir;
    auto store = open_store(dir.path, Layout::kSegment);
    auto batch = make_batch(1, 5);
    store->commit_batch(batch);
    CHECK(store->remove_message(2).ok());
    CHECK(store->remove_message(4).ok());

    SECTION("lazy until synced: a lost removal brings the message back") {
        store = reopen(store, dir.path);
        CHECK(scan_store(*store).mids == std::vector<Mid>{1, 2, 3, 4, 5});
    }
    SECTION("synced removals stay removed") {
        CHECK(store->sync_removals().ok());
        CHECK(fs::exists(dir.path + "/spool/segments/" + mid_name(1) + ".dead"));
        store = reopen(store, dir.path);
        const Scanned sc = scan_store(*store);
        CHECK(sc.mids == std::vector<Mid>{1, 3, 5});
        CHECK(sc.scan.max_mid_seen == 5);
    }
}

TEST_CASE("segment: a segment whose messages are all done is unlinked", "[spool][store][segment]") {
    TempDir dir;
    StoreOptions opts;
    opts.segment_bytes = 4096;
    auto store = open_store(dir.path, Layout::kSegment, opts);
    for (Mid first : {10, 20, 30}) {
        auto batch = make_batch(first, 4, 1000);
        store->commit_batch(batch);
        for (const PendingMessage& pm : batch)
            REQUIRE(pm.result.ok());
    }
    SegmentStore& seg = as_segment(*store);
    CHECK(seg.segment_seqs() == std::vector<std::uint64_t>{1, 2, 3});
    // A delivery that opened a message keeps reading it after its segment is gone.
    MessageRange range;
    std::string reason;
    REQUIRE(store->open_message(12, range, reason) == LoadStatus::kOk);
    for (Mid mid = 10; mid < 14; ++mid)
        CHECK(store->remove_message(mid).ok());
    CHECK(store->sync_removals().ok());
    CHECK(seg.maintain().ok());
    CHECK_FALSE(fs::exists(segment_path(dir.path, 1)));
    CHECK_FALSE(fs::exists(dir.path + "/spool/segments/" + mid_name(1) + ".dead"));
    CHECK(seg.segment_seqs() == std::vector<std::uint64_t>{2, 3});
    std::string bytes;
    REQUIRE(read_exact_at(range.fd.get(), range.offset, range.size, bytes) == 0);
    CHECK(decode(bytes).message == make_message(12, 1000));

    // The current segment too, once every message in it is done.
    for (Mid mid : {20, 21, 22, 23, 30, 31, 32, 33})
        CHECK(store->remove_message(mid).ok());
    CHECK(seg.maintain().ok());
    CHECK(count_files(dir.path + "/spool/segments") == 0);
    store = reopen(store, dir.path, opts);
    CHECK(scan_store(*store).mids.empty());
}

TEST_CASE("segment: a removal wakes maintenance only when there is work for it",
          "[spool][store][segment]") {
    TempDir dir;
    StoreOptions opts;
    opts.segment_bytes = 64 * 1024;
    auto store = open_store(dir.path, Layout::kSegment, opts);
    SegmentStore& seg = as_segment(*store);
    const auto wakeups = [&] { return store->stats().maintenance_wakeups; };
    const auto commit = [&](Mid first, int count) {
        auto batch = make_batch(first, count, 1000);
        store->commit_batch(batch);
        for (const PendingMessage& pm : batch)
            REQUIRE(pm.result.ok());
    };
    // Steady traffic: messages finish in the current segment, small and kept for the next
    // commits. Nothing for maintenance to do, so no removal wakes it.
    commit(1, 10);
    const std::uint64_t before = wakeups();
    for (Mid mid = 1; mid <= 10; ++mid)
        REQUIRE(store->remove_message(mid).ok());
    CHECK(wakeups() == before);
    // A segment filled past its size and left behind: the removal that finishes it wakes
    // maintenance, once, and maintenance unlinks it.
    commit(100, 70);  // more than the current segment has room for: a new segment
    commit(200, 1);   // which this one leaves behind
    const std::vector<std::uint64_t> seqs = seg.segment_seqs();
    REQUIRE(seqs.size() >= 2);
    const std::uint64_t rotated = wakeups();
    for (Mid mid = 100; mid < 170; ++mid)
        REQUIRE(store->remove_message(mid).ok());
    CHECK(wakeups() == rotated + 1);
    REQUIRE(seg.maintain().ok());
    CHECK(seg.segment_seqs() == std::vector<std::uint64_t>{seqs.back()});
}

TEST_CASE("segment: with space short a small finished current segment is unlinked",
          "[spool][store][segment]") {
    // A spool that filled up: delivery finishes every message, but a small current segment
    // was kept for the next commits, which the full disk refuses (452): the space never came
    // back.
    TempDir dir;
    StoreOptions opts;
    auto store = open_store(dir.path, Layout::kSegment, opts);
    SegmentStore& seg = as_segment(*store);
    auto batch = make_batch(1, 10, 6000);
    store->commit_batch(batch);
    for (Mid mid = 1; mid <= 10; ++mid)
        REQUIRE(store->remove_message(mid).ok());
    REQUIRE(store->sync_removals().ok());
    REQUIRE(seg.maintain().ok());
    CHECK(seg.segment_seqs() == std::vector<std::uint64_t>{1});  // space is fine: kept

    store = reopen(store, dir.path, [] {
        StoreOptions full;
        full.min_free_bytes = UINT64_MAX;  // every free-space check fails
        return full;
    }());
    SegmentStore& seg2 = as_segment(*store);
    REQUIRE(scan_store(*store).status.ok());
    auto more = make_batch(20, 3, 6000);
    store->commit_batch(more);
    for (Mid mid = 20; mid < 23; ++mid)
        REQUIRE(store->remove_message(mid).ok());
    CHECK_FALSE(store->space_ok(1000).ok);
    REQUIRE(seg2.maintain().ok());
    CHECK(seg2.segment_seqs().empty());
    std::vector<std::string> left;
    for (const auto& e : fs::directory_iterator(dir.path + "/spool/segments"))
        left.push_back(e.path().filename().string());
    CHECK(left == std::vector<std::string>{});
}

TEST_CASE("segment: the compactor copies long-lived messages forward", "[spool][store][segment]") {
    TempDir dir;
    StoreOptions opts;
    opts.segment_bytes = 4096;
    auto store = open_store(dir.path, Layout::kSegment, opts);
    for (Mid first : {10, 20, 30, 40}) {
        auto batch = make_batch(first, 4, 1000);
        store->commit_batch(batch);
    }
    SegmentStore& seg = as_segment(*store);
    REQUIRE(seg.segment_seqs() == std::vector<std::uint64_t>{1, 2, 3, 4});
    // Segment 1 keeps one message of four (a dead destination), segment 2 keeps two.
    for (Mid mid : {10, 11, 12, 20, 21})
        CHECK(store->remove_message(mid).ok());
    CHECK(store->sync_removals().ok());
    // (The store's own maintenance thread may have done it already: the outcome counts.)
    CHECK(seg.maintain().ok());
    CHECK_FALSE(fs::exists(segment_path(dir.path, 1)));
    CHECK(fs::exists(segment_path(dir.path, 2)));  // half live: not worth copying
    const LoadResult lr = store->load_content(13);
    REQUIRE(lr.status == LoadStatus::kOk);
    CHECK(lr.message == make_message(13, 1000));
    MessageRange range;
    std::string reason;
    REQUIRE(store->open_message(13, range, reason) == LoadStatus::kOk);
    CHECK(seg.segment_seqs().back() == 5);  // copied into a new current segment

    // Removed after the copy: its new place gets the tombstone.
    CHECK(store->remove_message(13).ok());
    CHECK(store->sync_removals().ok());
    store = reopen(store, dir.path, opts);
    Scanned sc = scan_store(*store);
    CHECK(sc.mids == std::vector<Mid>{22, 23, 30, 31, 32, 33, 40, 41, 42, 43});
}

TEST_CASE("segment: a message finished while the compactor copies it stays finished after a crash",
          "[spool][store][segment]") {
    // Found by the kill -9 delivery test on a busy machine: a restart's compaction copied a
    // message that the recovery was removing at the same time; its tombstone went to the old
    // segment's .dead file, the journal forgot the outcome, the old segment and its .dead file
    // were reclaimed, and the copy came back (and was delivered again) after the next crash.
    TempDir dir;
    StoreOptions opts;
    opts.segment_bytes = 4096;
    std::atomic<bool> armed{false};
    std::atomic<Store*> self{nullptr};
    opts.fault_hook = [&](FaultPoint p, Mid mid) {
        if (p == FaultPoint::kWrite && mid == 16 && armed.exchange(false)) {
            // While 16 is being copied its delivery ends: the removal, and a journal
            // compaction that syncs the tombstones and then forgets the outcome.
            CHECK(self.load()->remove_message(16).ok());
            CHECK(self.load()->sync_removals().ok());
        }
        return 0;
    };
    auto store = open_store(dir.path, Layout::kSegment, opts);
    self = store.get();
    for (Mid first : {10, 20, 30, 40}) {
        auto batch = make_batch(first, 8, 400);
        store->commit_batch(batch);
    }
    SegmentStore& seg = as_segment(*store);
    REQUIRE(seg.segment_seqs() == std::vector<std::uint64_t>{1, 2, 3, 4});
    armed = true;  // (whichever thread compacts segment 1 copies 16 and 17)
    // Not synced here: the journal compaction in the hook syncs these too.
    for (Mid mid = 10; mid < 16; ++mid)
        CHECK(store->remove_message(mid).ok());
    CHECK(seg.maintain().ok());
    CHECK_FALSE(armed);
    CHECK_FALSE(fs::exists(segment_path(dir.path, 1)));
    // A crash now: nothing more is synced.
    StoreOptions plain;
    plain.segment_bytes = 4096;
    store = reopen(store, dir.path, plain);
    std::vector<Mid> expected = {17};
    for (Mid first : {20, 30, 40})
        for (Mid mid = first; mid < first + 8; ++mid)
            expected.push_back(mid);
    CHECK(scan_store(*store).mids == expected);
}

TEST_CASE("segment: a copy interrupted by a crash is found once, in the newer segment",
          "[spool][store][segment]") {
    TempDir dir;
    auto store = open_store(dir.path, Layout::kSegment);
    auto batch = make_batch(1, 3);
    store->commit_batch(batch);
    store.reset();
    fs::copy_file(segment_path(dir.path, 1), segment_path(dir.path, 7));
    store = reopen(store, dir.path);
    const Scanned sc = scan_store(*store);
    CHECK(sc.mids == std::vector<Mid>{1, 2, 3});
    CHECK(sc.scan.skipped.empty());
    // Segment 1 holds only superseded copies: maintenance reclaims it.
    CHECK(as_segment(*store).maintain().ok());
    CHECK_FALSE(fs::exists(segment_path(dir.path, 1)));
    CHECK(store->load_content(2).status == LoadStatus::kOk);
    auto next = make_batch(4, 1);
    store->commit_batch(next);
    REQUIRE(next[0].result.ok());
    CHECK(fs::exists(segment_path(dir.path, 8)));
}

TEST_CASE("segment, rocksdb: messages a file layout left in queue/ still deliver",
          "[spool][store][segment][rocksdb]") {
#if ESAD_HAVE_ROCKSDB
    const Layout layout = GENERATE(Layout::kSegment, Layout::kRocksdb);
#else
    const Layout layout = Layout::kSegment;
#endif
    INFO("layout " << to_string(layout));
    TempDir dir;
    {
        auto hashed = open_store(dir.path, Layout::kHashed);
        auto batch = make_batch(1, 3);
        hashed->commit_batch(batch);
    }
    auto store = open_store(dir.path, layout);
    auto batch = make_batch(4, 1);
    store->commit_batch(batch);
    REQUIRE(batch[0].result.ok());
    const Scanned sc = scan_store(*store);
    CHECK(sc.mids == std::vector<Mid>{1, 2, 3, 4});
    CHECK(store->load_content(1).status == LoadStatus::kOk);
    auto again = make_batch(2, 1);
    store->commit_batch(again);
    CHECK(again[0].result.err == EEXIST);
    CHECK(store->remove_message(1).ok());
    CHECK(store->sync_removals().ok());
    CHECK_FALSE(store->has_message(1));
    CHECK(store->has_message(2));
    store.reset();
    store = open_store(dir.path, layout);
    CHECK(scan_store(*store).mids == std::vector<Mid>{2, 3, 4});
}

#if ESAD_HAVE_ROCKSDB

namespace {

// Writes `value` under `key` straight into a closed store's database (what a bad disk or an
// operator's tool could leave).
void put_raw(const std::string& dir, std::string_view key, std::string_view value) {
    rocksdb::DB* raw = nullptr;
    REQUIRE(rocksdb::DB::Open(rocksdb::Options(), dir + "/spool/rocksdb", &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    rocksdb::WriteOptions wo;
    wo.sync = true;
    REQUIRE(db->Put(wo, key, value).ok());
}

// The stored encoding of message `mid` with one content byte flipped (its checksums fail).
std::string bad_value(Mid mid) {
    std::string bytes = encode(make_message(mid));
    bytes[bytes.size() - kTrailerSize - 10] ^= 0x20;
    return bytes;
}

}  // namespace

TEST_CASE("rocksdb: a batch is one synced write; a reopened store finds it in MID order",
          "[spool][store][rocksdb]") {
    TempDir dir;
    auto store = open_store(dir.path, Layout::kRocksdb);
    CHECK(fs::is_directory(dir.path + "/spool/rocksdb"));
    CHECK((fs::status(dir.path + "/spool/rocksdb").permissions() & fs::perms::all) ==
          fs::perms::owner_all);
    CHECK(store->commit_slots() == 1);
    auto batch = make_batch(100, 16, 3000);
    std::swap(batch[0], batch[15]);  // commit order is not MID order
    store->commit_batch(batch);
    for (const PendingMessage& pm : batch)
        CHECK(pm.result.ok());
    const StoreStats st = store->stats();
    CHECK(st.batches == 1);
    CHECK(st.commits_ok == 16);
    CHECK(st.file_fsyncs == 1);
    CHECK(count_files(dir.path + "/spool/queue/00") == 0);  // no file per message

    MessageRange range;
    std::string reason;
    REQUIRE(store->open_message(105, range, reason) == LoadStatus::kOk);
    CHECK(range.offset == 0);
    std::string bytes;
    REQUIRE(read_exact_at(range.fd.get(), range.offset, range.size, bytes) == 0);
    CHECK(decode(bytes).message == make_message(105, 3000));
    CHECK(store->open_message(99, range, reason) == LoadStatus::kMissing);
    CHECK(store->load_content(99).status == LoadStatus::kMissing);

    store = reopen(store, dir.path);
    std::vector<std::uint64_t> sizes;
    StoreScan scan;
    std::vector<Mid> mids;
    REQUIRE(store
                ->scan(RecoveryOptions{}, scan,
                       [&](StoredMessage&& m) {
                           mids.push_back(m.envelope.mid);
                           sizes.push_back(m.size);
                       })
                .ok());
    std::vector<Mid> want(16);
    for (std::size_t i = 0; i < 16; ++i)
        want[i] = 100 + i;
    CHECK(mids == want);
    CHECK(sizes.front() == encode(make_message(100, 3000)).size());
    CHECK(scan.max_mid_seen == 115);
    CHECK(scan.quarantined.empty());
    CHECK(scan.skipped.empty());
    const LoadResult lr = store->load_content(107);
    REQUIRE(lr.status == LoadStatus::kOk);
    CHECK(lr.message == make_message(107, 3000));
}

TEST_CASE("rocksdb: scan quarantines a value that does not decode and visits the rest",
          "[spool][store][rocksdb]") {
    TempDir dir;
    auto store = open_store(dir.path, Layout::kRocksdb);
    auto batch = make_batch(1, 3);
    store->commit_batch(batch);
    store.reset();
    put_raw(dir.path, RocksStore::key_of(2), bad_value(2));
    put_raw(dir.path, "stray", "not a message");
    store = open_store(dir.path, Layout::kRocksdb);
    Scanned sc = scan_store(*store);
    REQUIRE(sc.status.ok());
    CHECK(sc.mids == std::vector<Mid>{1, 3});
    REQUIRE(sc.scan.quarantined.size() == 1);
    CHECK(sc.scan.quarantined[0].status == DecodeStatus::kBadChecksum);
    CHECK(sc.scan.quarantined[0].moved_to == mid_name(2));
    CHECK(sc.scan.max_mid_seen == 3);
    REQUIRE(sc.scan.skipped.size() == 1);
    CHECK(sc.scan.skipped[0].reason == "key is not a MID");
    // The bad bytes are kept where operators look, and never delivered.
    std::string kept;
    UniqueFd corrupt;
    REQUIRE(open_dir(AT_FDCWD, dir.path + "/spool/corrupt", corrupt) == 0);
    REQUIRE(read_small_file(corrupt.get(), mid_name(2), kept) == 0);
    CHECK(kept == bad_value(2));
    CHECK_FALSE(store->has_message(2));
    CHECK(store->stats().quarantined == 1);
    // Durable: the next start finds it no more.
    store = reopen(store, dir.path);
    sc = scan_store(*store);
    CHECK(sc.mids == std::vector<Mid>{1, 3});
    CHECK(sc.scan.quarantined.empty());
}

TEST_CASE("rocksdb: load_content detects corruption and quarantine copies the value out",
          "[spool][store][rocksdb]") {
    TempDir dir;
    auto store = open_store(dir.path, Layout::kRocksdb);
    auto batch = make_batch(40, 2);
    store->commit_batch(batch);
    store.reset();
    put_raw(dir.path, RocksStore::key_of(41), bad_value(41));
    store = open_store(dir.path, Layout::kRocksdb);
    const LoadResult lr = store->load_content(41);
    CHECK(lr.status == LoadStatus::kCorrupt);
    CHECK(lr.reason.find("bad_checksum") != std::string::npos);
    check_quarantine(store, dir.path, 41, 40);
    CHECK(store->quarantine(41, nullptr).err == ENOENT);
}

TEST_CASE("rocksdb: removals are lazy until sync_removals, then gone after a restart",
          "[spool][store][rocksdb]") {
    TempDir dir;
    auto store = open_store(dir.path, Layout::kRocksdb);
    auto batch = make_batch(1, 5);
    store->commit_batch(batch);
    CHECK(store->has_message(2));
    CHECK(store->remove_message(2).ok());
    CHECK(store->remove_message(4).ok());
    CHECK(store->remove_message(4).ok());  // already gone counts as removed
    CHECK_FALSE(store->has_message(2));
    CHECK(store->has_message(3));
    CHECK(store->load_content(2).status == LoadStatus::kMissing);
    CHECK(store->sync_removals().ok());
    const StoreStats st = store->stats();
    CHECK(st.removal_batches == 1);
    CHECK(st.removed == 3);
    store = reopen(store, dir.path);
    CHECK(scan_store(*store).mids == std::vector<Mid>{1, 3, 5});
    CHECK_FALSE(store->has_message(4));
}

TEST_CASE("rocksdb: a failed probe keeps the store unhealthy", "[spool][store][rocksdb]") {
    TempDir dir;
    std::atomic<bool> fail_sync{true};
    StoreOptions opts;
    opts.fault_hook = [&fail_sync](FaultPoint p, Mid) {
        return (fail_sync && (p == FaultPoint::kFileFsync || p == FaultPoint::kProbe)) ? EIO : 0;
    };
    auto store = open_store(dir.path, Layout::kRocksdb, opts);
    auto batch = make_batch(1, 1);
    store->commit_batch(batch);
    CHECK(batch[0].result.err == EIO);
    CHECK_FALSE(store->healthy());
    CHECK(store->probe().err == EIO);
    CHECK_FALSE(store->healthy());
    fail_sync = false;
    CHECK(store->probe().ok());
    CHECK(store->healthy());
}

TEST_CASE("rocksdb: real ENOSPC on a tiny tmpfs fails the batch with the no-space class",
          "[spool][store][rocksdb][tmpfs]") {
    TempDir dir;
    const TinyTmpfs tmpfs(dir.path, "size=512k,nr_inodes=1024");
    if (!tmpfs.mounted) return;
    StoreOptions opts;
    opts.min_free_bytes = 16 * 1024;
    auto store = open_store(dir.path, Layout::kRocksdb, opts);
    auto small = make_batch(1, 1, 100);
    store->commit_batch(small);
    CHECK(small[0].result.ok());
    auto big = make_batch(2, 1, 1024 * 1024);
    store->commit_batch(big);
    CHECK(big[0].result.err == ENOSPC);
    CHECK(big[0].result.error_class() == ErrorClass::kNoSpace);
    CHECK(store->healthy());  // a full disk is not a failed sync
    CHECK_FALSE(store->has_message(2));
    CHECK(store->load_content(1).status == LoadStatus::kOk);
    // Nothing of the failed batch is found by recovery.
    store = reopen(store, dir.path, opts);
    CHECK(scan_store(*store).mids == std::vector<Mid>{1});
}

#endif  // ESAD_HAVE_ROCKSDB
