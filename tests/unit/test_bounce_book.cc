// Unit tests for daemon/queue/bounce_book: failed recipients of a message aggregate into one
// round; a round goes out when the message is no longer busy (or after kMaxHoldMs); its hard
// bounce finals and the message's removal are held until complete(); a later round of the
// same message waits for the previous one; retry() after a failed commit.
#include <catch2/catch.hpp>

#include "daemon/queue/bounce_book.h"

using namespace esad::queue;

namespace {
BounceInfo failed(std::uint32_t rid) {
    return {rid, "5.1.1", "smtp; 550 5.1.1 no such user", "mx.test", 0};
}
FinalRecipient hard(Mid mid, std::uint32_t rid) {
    return {mid, rid, 0, FinalState::kHardBounced, HardKind::k5xx};
}
FinalRecipient delivered(Mid mid, std::uint32_t rid) {
    return {mid, rid, 0, FinalState::kDelivered, HardKind::kNone};
}
std::vector<std::uint32_t> rids(const BounceBook::Round& r) {
    std::vector<std::uint32_t> out;
    for (const auto& b : r.rcpts)
        out.push_back(b.rid);
    return out;
}
auto busy_if(bool& flag) {
    return [&flag](Mid) { return flag; };
}
}  // namespace

TEST_CASE("bounce_book: failures at several domains make one round while the message is busy") {
    BounceBook book;
    bool busy = true;
    book.add(7, {failed(1)}, 0);
    CHECK(book.due(10, busy_if(busy)).empty());  // other domains still in flight
    book.add(7, {failed(2), failed(3)}, 20);
    book.add(7, {failed(2)}, 25);  // reported twice: listed once
    CHECK(book.due(30, busy_if(busy)).empty());
    busy = false;
    auto rounds = book.due(40, busy_if(busy));
    REQUIRE(rounds.size() == 1);
    CHECK(rounds[0].mid == 7);
    CHECK(rids(rounds[0]) == std::vector<std::uint32_t>{1, 2, 3});
    CHECK(book.due(50, busy_if(busy)).empty());  // generating, not sent twice
    CHECK(book.generating_count() == 1);
}

TEST_CASE("bounce_book: a message busy for long still bounces after kMaxHoldMs") {
    BounceBook book;
    bool busy = true;
    book.add(7, {failed(1)}, 1000);
    CHECK(book.due(1000 + BounceBook::kMaxHoldMs - 1, busy_if(busy)).empty());
    CHECK(book.due(1000 + BounceBook::kMaxHoldMs, busy_if(busy)).size() == 1);
}

TEST_CASE("bounce_book: hard bounce finals and the removal wait until the DSN is durable") {
    BounceBook book;
    bool busy = true;
    book.add(7, {failed(1)}, 0);
    std::vector<FinalRecipient> finals{hard(7, 1), delivered(7, 2), hard(8, 1), hard(7, 9)};
    std::vector<Mid> done{7, 8};
    book.hold(finals, done);
    // Held: only the bounced RID of a round and the message that round still reads.
    CHECK(finals == std::vector<FinalRecipient>{delivered(7, 2), hard(8, 1), hard(7, 9)});
    CHECK(done == std::vector<Mid>{8});
    busy = false;
    REQUIRE(book.due(1, busy_if(busy)).size() == 1);
    // A final that arrives while the DSN is generated is still held by its round.
    book.add(9, {failed(4)}, 1);
    std::vector<FinalRecipient> late{hard(9, 4)};
    std::vector<Mid> none;
    book.hold(late, none);
    CHECK(late.empty());
    BounceBook::Round r = book.complete(7);
    CHECK(r.finals == std::vector<FinalRecipient>{hard(7, 1)});
    CHECK(r.done);
    CHECK(book.generating_count() == 0);
    CHECK(book.complete(7).finals.empty());  // nothing twice
}

TEST_CASE(
    "bounce_book: a later round of a message waits for the previous one and keeps the "
    "removal") {
    BounceBook book;
    bool busy = false;
    book.add(7, {failed(1)}, 0);
    REQUIRE(book.due(0, busy_if(busy)).size() == 1);
    book.add(7, {failed(2)}, 5);  // a retried recipient fails meanwhile
    std::vector<FinalRecipient> finals{hard(7, 2)};
    std::vector<Mid> done{7};
    book.hold(finals, done);
    CHECK(finals.empty());
    CHECK(done.empty());
    CHECK(book.due(10, busy_if(busy)).empty());  // round 1 still generating
    BounceBook::Round first = book.complete(7);
    CHECK(first.finals.empty());
    CHECK_FALSE(first.done);  // round 2 still needs the file
    auto second = book.due(11, busy_if(busy));
    REQUIRE(second.size() == 1);
    CHECK(rids(second[0]) == std::vector<std::uint32_t>{2});
    BounceBook::Round r = book.complete(7);
    CHECK(r.finals == std::vector<FinalRecipient>{hard(7, 2)});
    CHECK(r.done);
}

TEST_CASE("bounce_book: a failed commit keeps everything held and retries later") {
    BounceBook book;
    bool busy = false;
    book.add(7, {failed(1)}, 0);
    std::vector<FinalRecipient> finals{hard(7, 1)};
    std::vector<Mid> done{7};
    book.hold(finals, done);
    REQUIRE(book.due(0, busy_if(busy)).size() == 1);
    book.add(7, {failed(2)}, 3);
    book.retry(7, 10);
    CHECK(book.generating_count() == 0);
    CHECK(book.due(10 + BounceBook::kMaxHoldMs - 1, busy_if(busy)).empty());
    auto again = book.due(10 + BounceBook::kMaxHoldMs, busy_if(busy));
    REQUIRE(again.size() == 1);
    CHECK(rids(again[0]) == std::vector<std::uint32_t>{1, 2});
    BounceBook::Round r = book.complete(7);
    CHECK(r.finals == std::vector<FinalRecipient>{hard(7, 1)});
    CHECK(r.done);
}

TEST_CASE("bounce_book: take_all sends every open round at shutdown") {
    BounceBook book;
    book.add(7, {failed(1)}, 0);
    book.add(8, {failed(1)}, 0);
    CHECK(book.take_all().size() == 2);
    CHECK_FALSE(book.has_open());
    CHECK(book.generating_count() == 2);
}
