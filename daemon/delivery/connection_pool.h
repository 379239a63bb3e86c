// connection_pool — owns the outbound SMTP sessions and everything kept about each of them,
// in ONE table keyed by a session id: the session itself, its domain, the work it carries,
// whether its content is loading, whether it holds a current (greeted) scheduler slot, and
// whether it is parked idle. Also owns the idle connections per domain (kept kIdleKeepMs for
// new mail, then QUIT by a sweep), and stop/abort of all sessions. A closed session leaves
// the table at once and is destroyed on a later loop turn (the graveyard), since its close
// callback runs on its own stack.
//
//   Id id = pool.next_id();             // the session's callbacks capture the id
//   pool.add(id, session, domain, work);
//   Entry* e = pool.find(id);           // nullptr once it closed
//   pool.park(id); ... std::optional<Id> s = pool.take_idle(domain);
//   std::optional<Entry> gone = pool.remove(id);   // on_closed: release its slot
//
// The pool never asks the scheduler for work and never reads a report: DeliveryManager does.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "daemon/delivery/smtp_session.h"
#include "daemon/loop/graveyard.h"
#include "daemon/loop/handle.h"
#include "daemon/queue/scheduler.h"

namespace esad::delivery {

class ConnectionPool {
  public:
    using Id = std::uint64_t;
    static constexpr queue::TimeMs kIdleKeepMs = 2000;
    static constexpr uint64_t kIdleSweepMs = 500;

    struct Entry {
        std::shared_ptr<SmtpSession> session;
        queue::DomainId domain = 0;
        queue::Work work;      // the transaction it carries (or carried last)
        bool loading = false;  // its next transaction's envelope is being read
        bool idle = false;     // parked, waiting for work
        queue::TimeMs idle_since = 0;
        // The scheduler slot this session holds moved from pending to current (at its first
        // greeting). Kept here, not read off the session: a session that reconnects (the
        // plaintext retry, the next MX) starts a new connection without a greeting, and the
        // slot must still be released from where it is.
        bool slot_current = false;
    };

    ConnectionPool(uv_loop_t* loop, std::function<queue::TimeMs()> now);
    ~ConnectionPool();

    Id next_id() { return ++last_id_; }
    Entry& add(Id id, std::shared_ptr<SmtpSession> session, queue::DomainId domain,
               queue::Work work);
    Entry* find(Id id);
    // Takes the entry out of the table (and off the idle lists); the session is destroyed
    // on a later loop turn. nullopt: not in the table.
    std::optional<Entry> remove(Id id);
    std::size_t size() const { return entries_.size(); }

    // Idle connections.
    void park(Id id);
    void unpark(Id id);
    bool has_idle() const { return !idle_.empty(); }
    bool has_idle(queue::DomainId d) const { return idle_.count(d) != 0; }
    std::optional<Id> take_idle(queue::DomainId d);  // the most recently parked
    void close_idle();                               // QUIT every idle connection

    // Every session: QUIT after its transaction (not those whose content is loading: they
    // are told when it arrives); no more idle sweeps.
    void stop();
    void abort();  // close every connection now

  private:
    void arm_sweep();
    void sweep();
    std::vector<Id> ids() const;

    std::function<queue::TimeMs()> now_;
    Id last_id_ = 0;
    std::unordered_map<Id, Entry> entries_;
    std::unordered_map<queue::DomainId, std::vector<Id>> idle_;
    loop::HandlePtr<loop::Timer> sweep_timer_;
    bool sweep_armed_ = false;
    loop::Graveyard graveyard_;
};

}  // namespace esad::delivery
