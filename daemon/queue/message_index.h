// message_index — the compact in-memory index of queued messages and their recipients.
// Pure container: no I/O, no logging, no content (content stays in the spool).
//
// One MessageEntry per queued message: MID, received time, the sender and every recipient
// address in one text blob, and the recipients as 24-byte RcptSlots sorted by (domain, rid),
// so a message's recipients for one domain — a "group", one SMTP transaction's worth — are
// contiguous. Entries live in a slab (std::vector) addressed by a uint32 index; freed indexes
// are reused with a bumped generation so stale references (GroupRef) can be recognised.
// Nothing from a bounce profile is stored: only attempts and the next-attempt time.
//
// API
//   add(mid, received, sender, recipients) -> index (kNoIndex for a duplicate MID / empty)
//   find(mid), at(index), release(index)
//   group_range(index, domain) -> [first, last) slot indexes of that domain's recipients
//   group_first(index, slot) -> first slot of the group that `slot` belongs to
//   address(index, slot), sender(index)
//   approx_memory_bytes() — heap bytes held by the index (capacity based), for the scale test
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "daemon/queue/retry_policy.h"

namespace esad::queue {

using DomainId = std::uint32_t;
inline constexpr std::uint32_t kNoIndex = UINT32_MAX;

enum class RcptState : std::uint8_t { kReady, kDeferred, kInFlight, kFinal };

inline constexpr std::uint8_t kSlotGroupListed = 1;  // on a group's first slot: in ready list

struct RcptSlot {
    TimeMs next_attempt = 0;  // meaningful in kDeferred
    std::uint32_t rid = 0;
    DomainId domain = 0;
    std::uint32_t addr_off = 0;  // into the message's text blob
    std::uint16_t attempts = 0;
    RcptState state = RcptState::kReady;
    std::uint8_t flags = 0;
};
static_assert(sizeof(RcptSlot) == 24, "RcptSlot is the per-recipient cost: keep it small");

struct MessageEntry {
    Mid mid = 0;  // 0: free slab entry
    TimeMs received = 0;
    std::unique_ptr<char[]> text;  // sender, then the addresses in slot order
    std::uint32_t text_len = 0;
    std::uint32_t sender_len = 0;
    std::vector<RcptSlot> rcpts;  // sorted by (domain, rid)
    std::uint32_t live = 0;       // recipients not yet final
    std::uint32_t gen = 0;        // bumped each time the slab entry is reused
};

struct IndexRecipient {
    std::uint32_t rid = 0;
    std::string_view address;
    DomainId domain = 0;
    std::uint16_t attempts = 0;
    TimeMs next_attempt = 0;
    RcptState state = RcptState::kReady;  // kReady or kDeferred
};

class MessageIndex {
  public:
    std::uint32_t add(Mid mid, TimeMs received, std::string_view sender,
                      const std::vector<IndexRecipient>& recipients);
    std::uint32_t find(Mid mid) const;
    MessageEntry& at(std::uint32_t index) { return slab_[index]; }
    const MessageEntry& at(std::uint32_t index) const { return slab_[index]; }
    bool valid(std::uint32_t index) const { return index < slab_.size() && slab_[index].mid != 0; }
    void release(std::uint32_t index);

    std::pair<std::uint32_t, std::uint32_t> group_range(std::uint32_t index, DomainId domain) const;
    std::uint32_t group_first(std::uint32_t index, std::uint32_t slot) const;
    // Slot of `rid` within the domain group, or kNoIndex.
    std::uint32_t find_slot(std::uint32_t index, DomainId domain, std::uint32_t rid) const;

    std::string_view address(std::uint32_t index, std::uint32_t slot) const;
    std::string_view sender(std::uint32_t index) const;

    std::size_t message_count() const { return by_mid_.size(); }
    std::size_t slab_size() const { return slab_.size(); }
    std::size_t approx_memory_bytes() const;
    void reserve(std::size_t messages);

  private:
    std::vector<MessageEntry> slab_;
    std::vector<std::uint32_t> free_;
    std::unordered_map<Mid, std::uint32_t> by_mid_;
};

}  // namespace esad::queue
