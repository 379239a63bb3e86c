// host_state — the up/down/unknown state machine of one recipient host (DESIGN.md §4),
// its slow-start concurrency window and the per-IP detail `hoststatus` prints.
// Pure: time is a parameter; no I/O, no logging. Every transition returns a HostChange
// (from, to, event name) so the glue can write one trace line per transition.
//
// States: kUnknown (never tried) → kUp (a 220 greeting was reached) / kDown (every candidate
// failed before a greeting). Transitions, all named:
//   on_greeting_reached(now, ip)        → up; host back-off reset; probe over
//   on_all_candidates_failed(now, cap)  → down; host retry time = now + interval, where the
//                                         interval starts at 60 s, doubles per consecutive
//                                         failure and is capped at `cap` (the bounce
//                                         profile's max_retry)
//   on_dns_temporary_failure(now, cap)  → state unchanged, but the host is *held* (no new
//                                         connections) for the same doubling interval
//   on_delivernow(now)                  → retry time and hold cleared: the next connection
//                                         may start now (a probe if down)
// Admission (asked by the scheduler before it opens a connection):
//   may_open(now, open, max_concurrency): up/unknown → open < min(window, max_concurrency);
//   down → only once now >= retry_at and no probe is in flight (exactly one probe); held →
//   nothing before hold end. blocked_until() says when to ask again.
//   on_connection_start(now) marks the probe; on_idle() (no connection left) clears it.
// Slow start (Postfix-style feedback): the window starts at kInitialWindow; every
// on_transaction_success adds 1/window (so +1 after `window` successes) up to
// max_concurrency; every on_candidate_failed / on_421 takes 1 off (never below 1).
// Detail: per-IP (last attempt, last error bounded to kMaxErrorText bytes, failures,
// successes; at most kMaxIps, least recently used evicted), last 5XX error, last soft error,
// last activity (any event).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace esad::hosts {

using TimeMs = std::int64_t;
inline constexpr TimeMs kNever = INT64_MAX;

enum class HostStatus : std::uint8_t { kUnknown, kUp, kDown };
std::string_view to_string(HostStatus s);  // "unknown" / "up" / "down"

inline constexpr TimeMs kHostInitialRetryMs = 60'000;
inline constexpr std::uint32_t kInitialWindow = 5;
inline constexpr std::size_t kMaxIps = 20;
inline constexpr std::size_t kMaxErrorText = 256;

// [[nodiscard]]: a transition's result goes to HostTable::report (one log line per change).
struct [[nodiscard]] HostChange {
    HostStatus from = HostStatus::kUnknown;
    HostStatus to = HostStatus::kUnknown;
    std::string_view event;  // transition name, e.g. "all_candidates_failed"
    bool changed() const { return from != to; }
};

struct IpDetail {
    std::string ip;
    TimeMs last_attempt = 0;
    std::string last_error;  // bounded, as given (escape before printing)
    std::uint64_t failures = 0;
    std::uint64_t successes = 0;
};

struct ErrorNote {
    std::string text;  // bounded to kMaxErrorText
    TimeMs at = 0;     // 0: never
};

class HostState {
  public:
    HostStatus status() const { return status_; }
    bool held() const { return hold_until_ != 0; }
    TimeMs retry_at() const { return retry_at_; }  // 0 unless down
    TimeMs hold_until() const { return hold_until_; }
    TimeMs current_retry_interval() const { return interval_; }
    std::uint32_t window() const { return window_; }
    bool probe_in_flight() const { return probe_in_flight_; }
    std::uint32_t consecutive_failures() const { return failures_; }

    // --- admission ------------------------------------------------------------------------
    bool may_open(TimeMs now, std::uint32_t open, std::uint32_t max_concurrency) const;
    // When admission may next change by time alone (kNever if it will not).
    TimeMs blocked_until(TimeMs now) const;

    // --- transitions ----------------------------------------------------------------------
    void on_connection_start(TimeMs now);
    void on_idle();
    HostChange on_greeting_reached(TimeMs now, std::string_view ip);
    HostChange on_all_candidates_failed(TimeMs now, TimeMs max_retry_ms);
    HostChange on_dns_temporary_failure(TimeMs now, TimeMs max_retry_ms);
    HostChange on_delivernow(TimeMs now);
    // Feedback + per-IP detail.
    void on_transaction_success(TimeMs now, std::uint32_t max_concurrency);
    void on_candidate_failed(TimeMs now, std::string_view ip, std::string_view error);
    void on_421(TimeMs now, std::string_view ip, std::string_view reply);
    void record_5xx(TimeMs now, std::string_view reply);
    void record_soft_error(TimeMs now, std::string_view reply);

    // --- detail for hoststatus ------------------------------------------------------------
    const std::vector<IpDetail>& ips() const { return ips_; }
    const ErrorNote& last_5xx() const { return last_5xx_; }
    const ErrorNote& last_soft_error() const { return last_soft_; }
    TimeMs last_activity() const { return last_activity_; }

  private:
    IpDetail& ip_entry(std::string_view ip, TimeMs now);
    void shrink_window();
    TimeMs next_interval(TimeMs max_retry_ms);

    HostStatus status_ = HostStatus::kUnknown;
    bool probe_in_flight_ = false;
    std::uint32_t window_ = kInitialWindow;
    std::uint32_t credit_ = 0;    // successes since the window last grew
    std::uint32_t failures_ = 0;  // consecutive down/held events
    TimeMs interval_ = 0;         // last host retry interval used
    TimeMs retry_at_ = 0;
    TimeMs hold_until_ = 0;
    TimeMs last_activity_ = 0;
    std::vector<IpDetail> ips_;
    ErrorNote last_5xx_;
    ErrorNote last_soft_;
};

std::string bounded_text(std::string_view text);  // first kMaxErrorText bytes

}  // namespace esad::hosts
