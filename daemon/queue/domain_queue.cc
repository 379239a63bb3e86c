// domain_queue — see domain_queue.h.
#include "daemon/queue/domain_queue.h"

#include <algorithm>

namespace esad::queue {

bool deferred_later(const DeferredEntry& a, const DeferredEntry& b) {
    if (a.at != b.at) return a.at > b.at;
    if (a.msg != b.msg) return a.msg > b.msg;
    return a.slot > b.slot;
}

GroupRef DomainQueue::pop_ready() {
    GroupRef ref = ready_[ready_head_++];
    if (ready_head_ == ready_.size()) {
        ready_.clear();
        ready_head_ = 0;
    } else if (ready_head_ > 64 && ready_head_ * 2 > ready_.size()) {
        ready_.erase(ready_.begin(), ready_.begin() + static_cast<std::ptrdiff_t>(ready_head_));
        ready_head_ = 0;
    }
    return ref;
}

void DomainQueue::clear_ready() {
    std::vector<GroupRef>().swap(ready_);
    ready_head_ = 0;
}

void DomainQueue::push_deferred(DeferredEntry e) {
    deferred_.push_back(e);
    std::push_heap(deferred_.begin(), deferred_.end(), deferred_later);
}

DeferredEntry DomainQueue::pop_deferred() {
    std::pop_heap(deferred_.begin(), deferred_.end(), deferred_later);
    DeferredEntry e = deferred_.back();
    deferred_.pop_back();
    return e;
}

std::vector<DeferredEntry> DomainQueue::take_all_deferred() {
    std::vector<DeferredEntry> all;
    all.swap(deferred_);
    // Due order, so the groups they form are listed deterministically.
    std::sort(all.begin(), all.end(),
              [](const DeferredEntry& a, const DeferredEntry& b) { return deferred_later(b, a); });
    return all;
}

void DomainQueue::clear_arrivals() {
    std::vector<GroupRef>().swap(arrivals_);
    arrivals_head_ = 0;
}

std::size_t DomainQueue::approx_memory_bytes() const {
    return sizeof(DomainQueue) + name_.capacity() + ready_.capacity() * sizeof(GroupRef) +
           deferred_.capacity() * sizeof(DeferredEntry) + arrivals_.capacity() * sizeof(GroupRef);
}

}  // namespace esad::queue
