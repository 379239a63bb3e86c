// content_budget — owns the global bound on message content in memory for delivery
// ([delivery] content_buffer_budget): the bytes of every content piece read from the spool
// and not yet handed to the kernel, across all sessions. Loop thread only; no I/O.
//
//   ContentBudget budget(capacity);
//   auto t = budget.acquire(n, [](std::uint64_t granted) { ...read... });  // maybe at once
//   budget.release(granted);          // the piece was written (or dropped)
//   budget.cancel(t);                 // the waiter went away before its grant
//
// Fair and deadlock-free: waiters are granted strictly in arrival order (no later, smaller
// request overtakes one that waits), and a request is clamped to the capacity, so every
// waiter is granted once the ones before it released. Holders release after a write
// completes, which needs no further budget. A grant callback may acquire again.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>

namespace esad::delivery {

class ContentBudget {
  public:
    using Grant = std::function<void(std::uint64_t granted)>;
    using Ticket = std::uint64_t;  // 0 = granted at once, nothing to cancel

    explicit ContentBudget(std::uint64_t capacity) : capacity_(capacity ? capacity : 1) {}
    Ticket acquire(std::uint64_t bytes, Grant grant);
    void cancel(Ticket ticket);
    void release(std::uint64_t bytes);
    // Reload: a smaller capacity takes effect as holders release.
    void set_capacity(std::uint64_t capacity);

    std::uint64_t capacity() const { return capacity_; }
    std::uint64_t in_use() const { return in_use_; }
    std::uint64_t peak() const { return peak_; }
    std::size_t waiting() const { return waiters_.size(); }

  private:
    struct Waiter {
        Ticket ticket;
        std::uint64_t bytes;
        Grant grant;
    };
    void grant_waiters();
    std::uint64_t capacity_;
    std::uint64_t in_use_ = 0;
    std::uint64_t peak_ = 0;
    Ticket next_ticket_ = 1;
    std::deque<Waiter> waiters_;
    bool granting_ = false;
};

}  // namespace esad::delivery
