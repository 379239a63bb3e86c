// See content_budget.h.
#include "daemon/delivery/content_budget.h"

#include <algorithm>
#include <utility>

namespace esad::delivery {

ContentBudget::Ticket ContentBudget::acquire(std::uint64_t bytes, Grant grant) {
    bytes = std::min(bytes, capacity_);
    if (waiters_.empty() && in_use_ + bytes <= capacity_) {
        in_use_ += bytes;
        peak_ = std::max(peak_, in_use_);
        grant(bytes);
        return 0;
    }
    const Ticket ticket = next_ticket_++;
    waiters_.push_back({ticket, bytes, std::move(grant)});
    return ticket;
}

void ContentBudget::cancel(Ticket ticket) {
    if (ticket == 0) return;
    auto it = std::find_if(waiters_.begin(), waiters_.end(),
                           [ticket](const Waiter& w) { return w.ticket == ticket; });
    if (it == waiters_.end()) return;
    const bool head = it == waiters_.begin();
    waiters_.erase(it);
    if (head) grant_waiters();  // the ones behind it may fit now
}

void ContentBudget::release(std::uint64_t bytes) {
    in_use_ -= std::min(bytes, in_use_);
    grant_waiters();
}

void ContentBudget::set_capacity(std::uint64_t capacity) {
    capacity_ = capacity ? capacity : 1;
    for (Waiter& w : waiters_)
        w.bytes = std::min(w.bytes, capacity_);
    grant_waiters();
}

void ContentBudget::grant_waiters() {
    if (granting_) return;  // a grant callback released or acquired: the loop below goes on
    granting_ = true;
    while (!waiters_.empty() && in_use_ + waiters_.front().bytes <= capacity_) {
        Waiter w = std::move(waiters_.front());
        waiters_.pop_front();
        in_use_ += w.bytes;
        peak_ = std::max(peak_, in_use_);
        w.grant(w.bytes);
    }
    granting_ = false;
}

}  // namespace esad::delivery
