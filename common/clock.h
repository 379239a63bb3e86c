// Two clocks, one owner of each concern. The monotonic clock drives every timer, retry,
// host back-off and expiry computation: it never steps, so an NTP correction (or an
// operator setting the date) can neither stall nor rush a retry. The wall clock is for what
// people and files read: log lines, CLI/JSON display, times stored on disk (spool arrival).
// Conversions happen at that boundary, at the moment of use:
//
//   const Clock& c = Clock::system();
//   TimeMs due = c.monotonic_ms() + 60'000;          // scheduling
//   std::time_t shown = c.to_wall(due) / 1000;       // "pending till ..."
//   TimeMs arrival = c.to_monotonic(env.received_unix_ms);  // a wall time read from disk
//
// A wall instant converted to the monotonic clock keeps its age as of the conversion; from
// then on it ages with the monotonic clock (a wall step changes no deadline). Tests inject
// a Clock subclass to step either clock. Pure: no libuv.
#pragma once

#include <cstdint>

namespace esad {

class Clock {
  public:
    virtual ~Clock() = default;
    // Milliseconds on CLOCK_MONOTONIC (arbitrary epoch, never steps).
    virtual std::int64_t monotonic_ms() const;
    // Milliseconds since the Unix epoch (CLOCK_REALTIME; may step either way).
    virtual std::int64_t wall_ms() const;

    // A monotonic instant as wall time, as of now. 0 and INT64_MAX ("none", "never") pass
    // through unchanged so callers keep their sentinels.
    std::int64_t to_wall(std::int64_t monotonic) const;
    // A wall instant (from disk, from a peer) on the monotonic clock, as of now.
    std::int64_t to_monotonic(std::int64_t wall) const;

    static const Clock& system();
};

}  // namespace esad
