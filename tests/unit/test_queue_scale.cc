// Scale check for the queue index (DESIGN.md §10: 1,000,000 queued recipients over 100,000
// domains in ≤ 1 GiB RSS). Reports the index's own accounting of its heap use
// (capacity based, see approx_memory_bytes) and the sizes of the per-recipient structures.
// The full 1M run is hidden ([.scale], run with `unit_tests [scale]`): it takes several
// seconds in a Debug+ASan build. The visible test runs the same shape at 1/10 scale.
#include <catch2/catch.hpp>

#include <chrono>
#include <fstream>
#include <string>

#include "daemon/queue/scheduler.h"

using namespace esad::queue;

namespace {

// Resident set size in KiB from /proc (informational: ASan inflates it).
long rss_kib() {
    std::ifstream status("/proc/self/status");
    std::string key;
    while (status >> key) {
        if (key == "VmRSS:") {
            long kib = 0;
            status >> kib;
            return kib;
        }
    }
    return -1;
}

void fill_and_measure(std::uint32_t recipients, std::uint32_t domains) {
    constexpr std::uint32_t kPerMessage = 10;
    esad::hosts::HostTable hosts;
    Scheduler s(hosts, SchedulerOptions{});
    const long rss_before = rss_kib();
    s.reserve(recipients / kPerMessage, domains);
    const auto t0 = std::chrono::steady_clock::now();
    NewMessage m;
    m.sender = "sender@example.org";
    m.recipients.resize(kPerMessage);
    std::uint32_t next_domain = 0;
    for (std::uint32_t i = 0; i < recipients / kPerMessage; ++i) {
        m.mid = i + 1;
        m.received = i;
        for (std::uint32_t k = 0; k < kPerMessage; ++k) {
            NewRecipient& r = m.recipients[k];
            r.rid = k;
            r.domain = "d" + std::to_string(next_domain) + ".example";
            r.address = "user" + std::to_string(k) + "@" + r.domain;
            next_domain = (next_domain + 1) % domains;
        }
        REQUIRE(s.add_message(m, 0));
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    REQUIRE(s.totals().active() == recipients);
    REQUIRE(s.domain_count() == domains);
    const std::size_t index_bytes = s.index().approx_memory_bytes();
    const std::size_t total_bytes = s.approx_memory_bytes();
    const double per_rcpt_index = double(index_bytes) / recipients;
    const double per_rcpt_total = double(total_bytes) / recipients;
    WARN("queue scale: " << recipients << " recipients / " << domains << " domains in " << secs
                         << " s; index " << per_rcpt_index << " B/recipient, with queues "
                         << per_rcpt_total << " B/recipient (" << total_bytes / (1 << 20)
                         << " MiB); sizeof RcptSlot " << sizeof(RcptSlot) << ", MessageEntry "
                         << sizeof(MessageEntry) << ", DomainQueue " << sizeof(DomainQueue)
                         << ", HostState " << sizeof(esad::hosts::HostState) << "; RSS grew "
                         << (rss_kib() - rss_before) / 1024 << " MiB (sanitizers inflate this)");
    // Per-recipient cost: slot + share of message entry, addresses, MID map.
    CHECK(per_rcpt_index <= 100.0);
    // Everything the scheduler holds, 100k domain queues included: far below 1 GiB per 1M.
    CHECK(per_rcpt_total <= 300.0);

    // A pick still answers at once.
    Pick p = s.next_work(0);
    CHECK(p.work);
}

}  // namespace

TEST_CASE("queue index memory per recipient (100k recipients, 10k domains)", "[queue][scale]") {
    fill_and_measure(100'000, 10'000);
}

TEST_CASE("queue index memory per recipient (1M recipients, 100k domains)", "[.scale]") {
    fill_and_measure(1'000'000, 100'000);
}
