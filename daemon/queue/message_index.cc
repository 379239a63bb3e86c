// message_index — see message_index.h.
#include "daemon/queue/message_index.h"

#include <algorithm>
#include <cstring>

namespace esad::queue {

std::uint32_t MessageIndex::add(Mid mid, TimeMs received, std::string_view sender,
                                const std::vector<IndexRecipient>& recipients) {
    if (mid == 0 || recipients.empty() || by_mid_.count(mid) != 0) return kNoIndex;
    std::uint32_t index;
    if (!free_.empty()) {
        index = free_.back();
        free_.pop_back();
    } else {
        index = static_cast<std::uint32_t>(slab_.size());
        slab_.emplace_back();
    }
    MessageEntry& m = slab_[index];
    m.mid = mid;
    m.received = received;

    std::vector<std::uint32_t> order(recipients.size());
    for (std::uint32_t i = 0; i < order.size(); ++i)
        order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
        const auto& ra = recipients[a];
        const auto& rb = recipients[b];
        return ra.domain != rb.domain ? ra.domain < rb.domain : ra.rid < rb.rid;
    });

    std::size_t len = sender.size();
    for (const auto& r : recipients)
        len += r.address.size();
    m.text_len = static_cast<std::uint32_t>(len);
    m.sender_len = static_cast<std::uint32_t>(sender.size());
    m.text.reset(len == 0 ? nullptr : new char[len]);
    if (!sender.empty()) std::memcpy(m.text.get(), sender.data(), sender.size());
    std::uint32_t off = m.sender_len;

    m.rcpts.clear();
    m.rcpts.reserve(recipients.size());
    for (std::uint32_t i : order) {
        const auto& r = recipients[i];
        RcptSlot slot;
        slot.rid = r.rid;
        slot.domain = r.domain;
        slot.attempts = r.attempts;
        slot.next_attempt = r.next_attempt;
        slot.state = r.state;
        slot.addr_off = off;
        if (!r.address.empty()) std::memcpy(m.text.get() + off, r.address.data(), r.address.size());
        off += static_cast<std::uint32_t>(r.address.size());
        m.rcpts.push_back(slot);
    }
    m.live = static_cast<std::uint32_t>(recipients.size());
    by_mid_.emplace(mid, index);
    return index;
}

std::uint32_t MessageIndex::find(Mid mid) const {
    auto it = by_mid_.find(mid);
    return it == by_mid_.end() ? kNoIndex : it->second;
}

void MessageIndex::release(std::uint32_t index) {
    MessageEntry& m = slab_[index];
    by_mid_.erase(m.mid);
    m.mid = 0;
    m.text.reset();
    m.text_len = m.sender_len = 0;
    std::vector<RcptSlot>().swap(m.rcpts);
    m.live = 0;
    m.gen++;
    free_.push_back(index);
}

std::pair<std::uint32_t, std::uint32_t> MessageIndex::group_range(std::uint32_t index,
                                                                  DomainId domain) const {
    const auto& r = slab_[index].rcpts;
    auto lo = std::lower_bound(r.begin(), r.end(), domain,
                               [](const RcptSlot& s, DomainId d) { return s.domain < d; });
    auto hi = std::upper_bound(lo, r.end(), domain,
                               [](DomainId d, const RcptSlot& s) { return d < s.domain; });
    return {static_cast<std::uint32_t>(lo - r.begin()), static_cast<std::uint32_t>(hi - r.begin())};
}

std::uint32_t MessageIndex::group_first(std::uint32_t index, std::uint32_t slot) const {
    const auto& r = slab_[index].rcpts;
    while (slot > 0 && r[slot - 1].domain == r[slot].domain)
        --slot;
    return slot;
}

std::uint32_t MessageIndex::find_slot(std::uint32_t index, DomainId domain,
                                      std::uint32_t rid) const {
    const auto& r = slab_[index].rcpts;
    auto it =
        std::lower_bound(r.begin(), r.end(), std::make_pair(domain, rid),
                         [](const RcptSlot& s, const std::pair<DomainId, std::uint32_t>& k) {
                             return s.domain != k.first ? s.domain < k.first : s.rid < k.second;
                         });
    if (it == r.end() || it->domain != domain || it->rid != rid) return kNoIndex;
    return static_cast<std::uint32_t>(it - r.begin());
}

std::string_view MessageIndex::address(std::uint32_t index, std::uint32_t slot) const {
    const MessageEntry& m = slab_[index];
    const std::uint32_t begin = m.rcpts[slot].addr_off;
    const std::uint32_t end = slot + 1 < m.rcpts.size() ? m.rcpts[slot + 1].addr_off : m.text_len;
    return {m.text.get() + begin, end - begin};
}

std::string_view MessageIndex::sender(std::uint32_t index) const {
    const MessageEntry& m = slab_[index];
    return {m.text.get(), m.sender_len};
}

void MessageIndex::reserve(std::size_t messages) {
    slab_.reserve(messages);
    by_mid_.reserve(messages);
}

std::size_t MessageIndex::approx_memory_bytes() const {
    // malloc rounds small blocks up and adds a header: count 16 bytes per allocation.
    constexpr std::size_t kMallocOverhead = 16;
    std::size_t bytes =
        slab_.capacity() * sizeof(MessageEntry) + free_.capacity() * sizeof(std::uint32_t);
    for (const MessageEntry& m : slab_) {
        if (m.mid == 0) continue;
        bytes += m.rcpts.capacity() * sizeof(RcptSlot) + kMallocOverhead;
        if (m.text_len != 0) bytes += m.text_len + kMallocOverhead;
    }
    // unordered_map: one bucket pointer per bucket, one node (next, key, value) per entry.
    bytes += by_mid_.bucket_count() * sizeof(void*) +
             by_mid_.size() *
                 (sizeof(void*) + sizeof(Mid) + sizeof(std::uint32_t) + 4 + kMallocOverhead);
    return bytes;
}

}  // namespace esad::queue
