// bounce_book — the pure bookkeeping of the bouncer (daemon/delivery/bouncer.h): failed
// recipients collected per message into rounds, the final journal records and message
// removals each round holds until its DSN is durable, and when a round may go out (the
// message has no recipient in flight or ready, or kMaxHoldMs after its first failure). No
// I/O, no clock (`now` is a parameter), no logging.
#pragma once

#include <ctime>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "daemon/queue/scheduler.h"

namespace esad::queue {

struct BounceInfo {
    uint32_t rid = 0;
    std::string status;      // "5.1.1"
    std::string diagnostic;  // "smtp; 550 5.1.1 no such user"
    std::string remote_mta;
    std::time_t retry_until = 0;  // delay warnings: when the message expires
};

class BounceBook {
  public:
    static constexpr TimeMs kMaxHoldMs = 5000;

    struct Round {
        Mid mid = 0;
        std::vector<BounceInfo> rcpts;       // one per RID, in the order they failed
        TimeMs first = 0;                    // first failure of the round
        std::vector<FinalRecipient> finals;  // held journal records
        bool done = false;                   // the message file's removal is held
        TimeMs not_before = 0;               // after a failed attempt: wait
    };

    // Failed recipients of `mid` join its open round (a new one if none).
    void add(Mid mid, std::vector<BounceInfo> rcpts, TimeMs now);
    // Takes out of `finals` the hard-bounced records of recipients some round reports and
    // out of `done` the messages some round still needs; they wait in that round.
    void hold(std::vector<FinalRecipient>& finals, std::vector<Mid>& done);
    // Open rounds that may go out now: `busy(mid)` says whether the message still has a
    // recipient in flight or ready. A message's next round waits for its previous one to
    // complete. The returned rounds are generating until complete().
    std::vector<Round> due(TimeMs now, const std::function<bool(Mid)>& busy);
    // Every open round, ready or not (shutdown).
    std::vector<Round> take_all();
    // The round of `mid` being generated finished (DSN committed, or none to send): what it
    // held goes to the journal now. Held items that arrived after due() are included.
    Round complete(Mid mid);
    // Generating failed (no MID, commit failed): the round is open again, due kMaxHoldMs
    // after `now` (merged with a round opened meanwhile).
    void retry(Mid mid, TimeMs now);

    bool has_open() const { return !open_.empty(); }
    std::size_t open_count() const { return open_.size(); }
    std::size_t generating_count() const { return generating_.size(); }

  private:
    Round* holder(Mid mid, uint32_t rid);

    std::map<Mid, Round> open_;
    std::map<Mid, Round> generating_;
};

}  // namespace esad::queue
