// Tests for daemon/spool/mid_allocator: strictly increasing MIDs across simulated restarts,
// block reservations (few persists), observe(), refill and a damaged reservation file.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "daemon/spool/mid_allocator.h"
#include "tests/support/temp_dir.h"

using namespace esad::spool;
namespace fs = std::filesystem;

namespace {

struct TempDir : esad::test::TempDir {
    TempDir() : esad::test::TempDir("spool_mid") {}
};

std::unique_ptr<MidAllocator> open_alloc(const std::string& dir, std::uint64_t block) {
    std::unique_ptr<MidAllocator> a;
    const IoStatus st = MidAllocator::open(dir, block, a);
    INFO(st.reason());
    REQUIRE(st.ok());
    return a;
}

}  // namespace

TEST_CASE("MIDs strictly increase across restarts", "[spool][mid]") {
    TempDir dir;
    Mid last = 0;
    for (int restart = 0; restart < 5; ++restart) {
        auto a = open_alloc(dir.path, 10);
        const int take = 7 + restart * 6;  // sometimes within a block, sometimes across
        for (int i = 0; i < take; ++i) {
            Mid m = 0;
            if (a->needs_refill()) REQUIRE(a->refill().ok());  // the committer's worker
            REQUIRE(a->next(m).ok());
            CHECK(m > last);
            CHECK(m != 0);
            last = m;
        }
        // No fsync per MID: one reservation per block (plus the one at open).
        CHECK(a->persist_count() <= 1 + static_cast<std::uint64_t>(take) / 10 + 1);
        CHECK(a->reserved_until() > last);
    }
}

TEST_CASE("the first MID is 1 and blocks are reserved ahead", "[spool][mid]") {
    TempDir dir;
    auto a = open_alloc(dir.path, kDefaultMidBlock);
    Mid m = 0;
    REQUIRE(a->next(m).ok());
    CHECK(m == 1);
    CHECK(a->reserved_until() == 1 + kDefaultMidBlock);
    for (int i = 0; i < 5000; ++i)
        REQUIRE(a->next(m).ok());
    CHECK(a->persist_count() == 1);
    CHECK(a->needs_refill());
    REQUIRE(a->refill().ok());
    CHECK_FALSE(a->needs_refill());
    CHECK(a->persist_count() == 2);
}

TEST_CASE("observe moves past MIDs found on disk", "[spool][mid]") {
    TempDir dir;
    auto a = open_alloc(dir.path, 100);
    REQUIRE(a->observe(5000).ok());
    Mid m = 0;
    REQUIRE(a->next(m).ok());
    CHECK(m == 5001);
    REQUIRE(a->observe(10).ok());  // lower: no effect
    REQUIRE(a->next(m).ok());
    CHECK(m == 5002);
    a.reset();
    auto b = open_alloc(dir.path, 100);
    REQUIRE(b->next(m).ok());
    CHECK(m > 5002);
}

TEST_CASE("a damaged reservation file is an error", "[spool][mid]") {
    TempDir dir;
    open_alloc(dir.path, 10);
    {
        std::fstream f(dir.path + "/mid_reservation",
                       std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(9);
        f.put('\x7f');
    }
    std::unique_ptr<MidAllocator> a;
    CHECK(MidAllocator::open(dir.path, 10, a).err == EBADMSG);
    CHECK(MidAllocator::open(dir.path, 0, a).err == EINVAL);
}

// Defect: a queue file named ffffffffffffffff made the counter wrap to 0; the session then
// waited for a commit that could not happen. Now the allocator refuses instead of wrapping,
// across restarts too, and near the top it never hands out a MID twice.
TEST_CASE("the MID counter never wraps", "[spool][mid]") {
    TempDir dir;
    {
        auto a = open_alloc(dir.path, 100);
        REQUIRE(a->observe(UINT64_MAX).ok());
        Mid m = 0;
        const IoStatus st = a->next(m);
        CHECK_FALSE(st.ok());
        CHECK(st.err == EOVERFLOW);
        CHECK(m == 0);
        CHECK_FALSE(a->needs_refill());
        CHECK(a->refill().ok());
        CHECK_FALSE(a->next(m).ok());
    }
    auto b = open_alloc(dir.path, 100);
    Mid m = 0;
    CHECK_FALSE(b->next(m).ok());
    CHECK(m == 0);

    TempDir near;
    auto c = open_alloc(near.path, 100);
    REQUIRE(c->observe(UINT64_MAX - 3).ok());
    REQUIRE(c->next(m).ok());
    CHECK(m == UINT64_MAX - 2);
    REQUIRE(c->next(m).ok());
    CHECK(m == UINT64_MAX - 1);
    CHECK_FALSE(c->next(m).ok());
}

// Defect: next() persisted a new block inline (a write and two fsyncs under the lock) when
// the reservation ran out, on the loop thread at MAIL FROM. Now next() never writes: a used-up
// reservation fails at once with EAGAIN and refill() (a worker) writes the next block.
TEST_CASE("next() never writes: a used-up reservation fails at once", "[spool][mid]") {
    TempDir dir;
    auto a = open_alloc(dir.path, 4);
    const std::uint64_t persists = a->persist_count();
    Mid m = 0;
    for (Mid want = 1; want <= 4; ++want) {
        REQUIRE(a->available());
        REQUIRE(a->next(m).ok());
        CHECK(m == want);
    }
    CHECK_FALSE(a->available());
    const IoStatus st = a->next(m);
    CHECK(st.err == EAGAIN);
    CHECK(m == 4);
    CHECK(a->persist_count() == persists);
    CHECK(a->needs_refill());
    REQUIRE(a->refill().ok());
    CHECK(a->persist_count() == persists + 1);
    REQUIRE(a->next(m).ok());
    CHECK(m == 5);
}
