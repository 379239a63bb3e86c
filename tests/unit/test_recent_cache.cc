// The spool's recent cache: what it keeps, what it gives back, and how it stays in bounds.
#include <catch2/catch.hpp>

#include <string>

#include "daemon/spool/recent_cache.h"

using esad::spool::Message;
using esad::spool::Mid;
using esad::spool::RecentCache;

namespace {

Message message(Mid mid, size_t size) {
    Message m;
    m.envelope.mid = mid;
    m.envelope.sender = "s@client.test";
    m.envelope.recipients = {{0, "r@example.test", "example.test"}};
    m.content = std::string(size, static_cast<char>('a' + mid % 26));
    return m;
}

}  // namespace

TEST_CASE("recent cache: a kept message comes back whole until it is erased") {
    RecentCache cache(1 << 20);
    cache.put(message(7, 1000));
    auto m = cache.get(7);
    REQUIRE(m);
    CHECK(m->envelope.mid == 7);
    CHECK(m->content == std::string(1000, 'h'));
    CHECK(cache.stats().entries == 1);
    CHECK(cache.stats().bytes >= 1000);
    CHECK(cache.get(8) == nullptr);
    CHECK(cache.stats().hits == 1);
    CHECK(cache.stats().misses == 1);
    cache.erase(7);
    CHECK(cache.get(7) == nullptr);
    CHECK(cache.stats().entries == 0);
    CHECK(cache.stats().bytes == 0);
    // A reader that still holds the message keeps it alive after the erase.
    CHECK(m->content.size() == 1000);
}

TEST_CASE("recent cache: the oldest go first when the capacity is exceeded") {
    RecentCache cache(40000);
    for (Mid mid = 1; mid <= 10; ++mid)
        cache.put(message(mid, 5000));
    CHECK(cache.stats().bytes <= 40000);
    CHECK(cache.get(1) == nullptr);
    CHECK(cache.get(2) == nullptr);
    CHECK(cache.get(10) != nullptr);
    CHECK(cache.get(9) != nullptr);
    // An erased MID in the middle of the order is skipped, not counted twice.
    cache.erase(9);
    cache.put(message(11, 5000));
    CHECK(cache.get(10) != nullptr);
    CHECK(cache.get(11) != nullptr);
    CHECK(cache.stats().bytes <= 40000);
}

TEST_CASE("recent cache: no message larger than a quarter of it; 0 keeps nothing") {
    RecentCache cache(40000);
    cache.put(message(1, 20000));
    CHECK(cache.get(1) == nullptr);
    cache.put(message(2, 9000));
    CHECK(cache.get(2) != nullptr);

    RecentCache off(0);
    off.put(message(3, 10));
    CHECK(off.get(3) == nullptr);
    CHECK(off.stats().entries == 0);
}

TEST_CASE("recent cache: a smaller capacity evicts at once, 0 empties it") {
    RecentCache cache(1 << 20);
    for (Mid mid = 1; mid <= 4; ++mid)
        cache.put(message(mid, 10000));
    cache.set_capacity(25000);
    CHECK(cache.stats().bytes <= 25000);
    CHECK(cache.get(4) != nullptr);
    CHECK(cache.get(1) == nullptr);
    cache.set_capacity(0);
    CHECK(cache.stats().entries == 0);
    CHECK(cache.stats().bytes == 0);
}

TEST_CASE("recent cache: putting a MID again replaces it") {
    RecentCache cache(1 << 20);
    cache.put(message(5, 100));
    cache.put(message(5, 300));
    REQUIRE(cache.get(5));
    CHECK(cache.get(5)->content.size() == 300);
    CHECK(cache.stats().entries == 1);
    cache.erase(5);
    CHECK(cache.stats().bytes == 0);
}
