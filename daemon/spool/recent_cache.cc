// See recent_cache.h.
#include "daemon/spool/recent_cache.h"

namespace esad::spool {

std::uint64_t RecentCache::cost(const Message& m) {
    // The content dominates; the envelope is counted roughly so that many tiny messages
    // with many recipients still respect the capacity.
    std::uint64_t n = m.content.size() + m.envelope.sender.size() + 64;
    for (const auto& r : m.envelope.recipients)
        n += r.address.size() + 32;
    return n;
}

void RecentCache::put(Message&& message) {
    const std::uint64_t n = cost(message);
    if (capacity_ == 0 || n > capacity_ / 4) return;
    const Mid mid = message.envelope.mid;
    erase(mid);
    entries_.emplace(mid, std::make_shared<const Message>(std::move(message)));
    order_.push_back(mid);
    stats_.bytes += n;
    stats_.entries = entries_.size();
    evict();
}

std::shared_ptr<const Message> RecentCache::get(Mid mid) {
    auto it = entries_.find(mid);
    if (it == entries_.end()) {
        ++stats_.misses;
        return nullptr;
    }
    ++stats_.hits;
    return it->second;
}

void RecentCache::erase(Mid mid) {
    auto it = entries_.find(mid);
    if (it == entries_.end()) return;
    stats_.bytes -= cost(*it->second);
    entries_.erase(it);
    stats_.entries = entries_.size();
    // order_ keeps the MID until it reaches the front; drop erased ones there.
    while (!order_.empty() && !entries_.count(order_.front()))
        order_.pop_front();
    if (entries_.empty()) order_.clear();
}

void RecentCache::set_capacity(std::uint64_t capacity) {
    capacity_ = capacity;
    evict();
}

void RecentCache::evict() {
    while (stats_.bytes > capacity_ && !order_.empty()) {
        Mid oldest = order_.front();
        order_.pop_front();
        auto it = entries_.find(oldest);
        if (it == entries_.end()) continue;
        stats_.bytes -= cost(*it->second);
        entries_.erase(it);
    }
    stats_.entries = entries_.size();
}

}  // namespace esad::spool
