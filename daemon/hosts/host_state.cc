// host_state — see host_state.h.
#include "daemon/hosts/host_state.h"

#include <algorithm>

namespace esad::hosts {

std::string_view to_string(HostStatus s) {
    switch (s) {
        case HostStatus::kUnknown:
            return "unknown";
        case HostStatus::kUp:
            return "up";
        case HostStatus::kDown:
            return "down";
    }
    return "unknown";
}

std::string bounded_text(std::string_view text) {
    return std::string(text.substr(0, kMaxErrorText));
}

bool HostState::may_open(TimeMs now, std::uint32_t open, std::uint32_t max_concurrency) const {
    if (hold_until_ != 0 && now < hold_until_) return false;
    if (status_ == HostStatus::kDown) {
        // Exactly one probe once the host retry time has come.
        return now >= retry_at_ && !probe_in_flight_;
    }
    const std::uint32_t limit = std::max<std::uint32_t>(1, std::min(window_, max_concurrency));
    return open < limit;
}

TimeMs HostState::blocked_until(TimeMs now) const {
    TimeMs until = 0;
    if (hold_until_ != 0 && now < hold_until_) until = hold_until_;
    if (status_ == HostStatus::kDown && now < retry_at_) until = std::max(until, retry_at_);
    return until == 0 ? kNever : until;
}

void HostState::on_connection_start(TimeMs now) {
    last_activity_ = now;
    if (status_ == HostStatus::kDown) probe_in_flight_ = true;
}

void HostState::on_idle() {
    probe_in_flight_ = false;
}

HostChange HostState::on_greeting_reached(TimeMs now, std::string_view ip) {
    HostChange change{status_, HostStatus::kUp, "greeting_reached"};
    status_ = HostStatus::kUp;
    probe_in_flight_ = false;
    failures_ = 0;
    interval_ = 0;
    retry_at_ = 0;
    hold_until_ = 0;
    last_activity_ = now;
    if (!ip.empty()) {
        IpDetail& d = ip_entry(ip, now);
        d.successes++;
    }
    return change;
}

TimeMs HostState::next_interval(TimeMs max_retry_ms) {
    const TimeMs cap = std::max<TimeMs>(1000, max_retry_ms);
    TimeMs interval = std::min(kHostInitialRetryMs, cap);
    for (std::uint32_t i = 1; i < failures_ && interval < cap; ++i)
        interval *= 2;
    return std::min(interval, cap);
}

HostChange HostState::on_all_candidates_failed(TimeMs now, TimeMs max_retry_ms) {
    HostChange change{status_, HostStatus::kDown, "all_candidates_failed"};
    status_ = HostStatus::kDown;
    probe_in_flight_ = false;
    failures_++;
    interval_ = next_interval(max_retry_ms);
    retry_at_ = now + interval_;
    hold_until_ = 0;
    last_activity_ = now;
    return change;
}

HostChange HostState::on_dns_temporary_failure(TimeMs now, TimeMs max_retry_ms) {
    HostChange change{status_, status_, "dns_temporary_failure"};
    probe_in_flight_ = false;
    failures_++;
    interval_ = next_interval(max_retry_ms);
    hold_until_ = now + interval_;
    last_activity_ = now;
    return change;
}

HostChange HostState::on_delivernow(TimeMs now) {
    HostChange change{status_, status_, "delivernow"};
    retry_at_ = status_ == HostStatus::kDown ? now : 0;
    hold_until_ = 0;
    return change;
}

void HostState::on_transaction_success(TimeMs now, std::uint32_t max_concurrency) {
    last_activity_ = now;
    const std::uint32_t cap = std::max<std::uint32_t>(1, max_concurrency);
    if (window_ >= cap) {
        window_ = cap;
        credit_ = 0;
        return;
    }
    if (++credit_ >= window_) {
        window_++;
        credit_ = 0;
    }
}

void HostState::shrink_window() {
    if (window_ > 1) window_--;
    credit_ = 0;
}

void HostState::on_candidate_failed(TimeMs now, std::string_view ip, std::string_view error) {
    last_activity_ = now;
    shrink_window();
    IpDetail& d = ip_entry(ip, now);
    d.failures++;
    d.last_error = bounded_text(error);
    last_soft_ = {bounded_text(error), now};
}

void HostState::on_421(TimeMs now, std::string_view ip, std::string_view reply) {
    on_candidate_failed(now, ip, reply);
}

void HostState::record_5xx(TimeMs now, std::string_view reply) {
    last_activity_ = now;
    last_5xx_ = {bounded_text(reply), now};
}

void HostState::record_soft_error(TimeMs now, std::string_view reply) {
    last_activity_ = now;
    last_soft_ = {bounded_text(reply), now};
}

IpDetail& HostState::ip_entry(std::string_view ip, TimeMs now) {
    auto it = std::find_if(ips_.begin(), ips_.end(), [&](const IpDetail& d) { return d.ip == ip; });
    if (it == ips_.end()) {
        if (ips_.size() >= kMaxIps) {
            // Evict the least recently attempted address.
            auto lru = std::min_element(ips_.begin(), ips_.end(), [](const auto& a, const auto& b) {
                return a.last_attempt < b.last_attempt;
            });
            ips_.erase(lru);
        }
        ips_.push_back(IpDetail{std::string(ip.substr(0, 64)), now, {}, 0, 0});
        it = ips_.end() - 1;
    }
    it->last_attempt = now;
    return *it;
}

}  // namespace esad::hosts
