// bouncer — owns the path from "a recipient failed permanently" to "ONE delivery status
// notification for that message is in the spool", and the order that makes it crash-safe.
//
// Durability (Postfix's order: the bounce is durable before the recipient is marked done).
// The durable form of a bounce here is the DSN itself, committed to the spool as a new
// message. Until that commit succeeded, the bouncer HOLDS the hard-bounced recipients' final
// journal records and the removal of their message file; the commit's completion releases
// them to the journal. So:
//   * kill -9 before the DSN is committed: the recipients have no final record; after the
//     restart they are tried again, fail again and are bounced then — never zero DSNs;
//   * kill -9 after the commit and before the released records reach the journal file (they
//     are written at once, one worker write(2) later): that DSN is made again — at most the
//     rounds completing in that moment per crash;
//   * the DSN is built from the original message file, which cannot be gone: its removal is
//     one of the held things (no "open queue/...: No such file or directory").
//
// Aggregation (as Postfix's bounce daemon, one DSN per message per delivery pass): failures
// of a message collect in one round; the round goes out when the message has no recipient
// in flight or ready to go (every transaction of this pass has reported), or kMaxHoldMs after
// its first failure, whichever comes first. One DSN lists every failed recipient of the
// round. A failure after that (a retried recipient failing later) opens a new round. Delay
// warnings are not held or aggregated: they are made at once and report nothing final.
//
// queue::BounceBook (bounce_book.h) is the pure bookkeeping; Bouncer is
// the libuv glue (timer, content load on a worker, DSN build, commit, release).
#pragma once

#include <uv.h>

#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "daemon/inject/committer.h"
#include "daemon/loop/handle.h"
#include "daemon/queue/bounce_book.h"
#include "daemon/spool/store.h"

namespace esad::delivery {

using queue::BounceBook;
using queue::BounceInfo;

class Bouncer {
  public:
    struct Env {
        uv_loop_t* loop = nullptr;
        spool::Store* store = nullptr;
        inject::Committer* committer = nullptr;
        std::function<std::string()> helo_name;
        std::function<uint64_t()> random;
        std::function<queue::TimeMs()> now;           // the scheduler's (monotonic) clock
        std::function<std::int64_t()> wall_ms;        // Unix ms, stamped on the DSN's envelope
        std::function<bool(spool::Mid)> busy;         // recipients in flight or ready
        std::function<void(const std::string&)> log;  // the mail log
        // Held final records and removals whose DSN is durable (or not needed): journal them.
        std::function<void(std::vector<queue::FinalRecipient>, std::vector<spool::Mid>)> release;
        // A DSN was committed: queue it for delivery (delay_warning: not a bounce).
        std::function<void(const spool::Envelope&, uint64_t size, bool delay_warning)> queued;
    };

    explicit Bouncer(Env env);
    ~Bouncer();

    void add(spool::Mid mid, std::vector<BounceInfo> rcpts);
    void delay_warning(spool::Mid mid, std::vector<BounceInfo> rcpts);
    void hold(std::vector<queue::FinalRecipient>& finals, std::vector<spool::Mid>& done) {
        book_.hold(finals, done);
    }
    // Something changed (a report was applied): look for rounds that are due on the next
    // loop turn (one look covers every report of that turn).
    void kick() { arm(0); }
    void poll();
    void stop();  // shutdown: send every open round now, no more timers

  private:
    void arm(uint64_t delay_ms);
    void send_round(BounceBook::Round round);
    void try_later(spool::Mid mid);  // the round stays held; generated again later
    // Loads the original, builds the DSN, commits it; `finished` runs on the loop after the
    // commit (or when no DSN is sent) with whether the failure is settled.
    void generate(spool::Mid mid, std::vector<BounceInfo> rcpts, bool delay_warning,
                  std::function<void()> finished);

    Env env_;
    BounceBook book_;
    loop::HandlePtr<loop::Timer> timer_;
    bool armed_ = false;
    bool stopping_ = false;
};

}  // namespace esad::delivery
