// recent_cache — owns the copies of recently committed messages that delivery reads from
// memory instead of the disk ([spool] recent_cache bytes; 0 turns it off).
//
// Most mail leaves within seconds of its 250: the committer hands each message it made
// durable to this cache, and delivery's content stream (delivery/content_stream.h) serves
// the transaction from here when it finds the MID, with no worker job, open(2) or read(2).
// The spool file stays the only durable copy; a message the cache dropped (capacity,
// oldest first) or never held (restart, too large) is read from the spool as before.
// Entries go when the message is finished (erase) or pushed out by newer ones.
// Loop thread only; no I/O.
//
//   cache.put(std::move(message));               after the commit made it durable
//   if (auto m = cache.get(mid)) ... m->content  shared: an entry lives while a reader holds it
//   cache.erase(mid);                            the message is done
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <unordered_map>

#include "daemon/spool/record_codec.h"

namespace esad::spool {

struct RecentCacheStats {
    std::uint64_t bytes = 0;  // content held
    std::uint64_t entries = 0;
    std::uint64_t hits = 0;
    std::uint64_t misses = 0;
};

class RecentCache {
  public:
    explicit RecentCache(std::uint64_t capacity) : capacity_(capacity) {}

    // Keeps `message` unless it is larger than a quarter of the capacity (one large message
    // would push out hundreds of small ones); evicts the oldest entries beyond the capacity.
    void put(Message&& message);
    std::shared_ptr<const Message> get(Mid mid);
    void erase(Mid mid);
    // Reload: a smaller capacity evicts at once; 0 empties the cache.
    void set_capacity(std::uint64_t capacity);

    std::uint64_t capacity() const { return capacity_; }
    const RecentCacheStats& stats() const { return stats_; }

  private:
    void evict();
    static std::uint64_t cost(const Message& m);

    std::uint64_t capacity_;
    std::unordered_map<Mid, std::shared_ptr<const Message>> entries_;
    std::deque<Mid> order_;  // insertion order; MIDs erased meanwhile are skipped
    RecentCacheStats stats_;
};

}  // namespace esad::spool
