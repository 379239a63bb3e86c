// scheduler — see scheduler.h.
#include "daemon/queue/scheduler.h"

#include <algorithm>

#include "common/ascii.h"

namespace esad::queue {
namespace {}  // namespace

std::string_view to_string(FinalState s) {
    switch (s) {
        case FinalState::kDelivered:
            return "delivered";
        case FinalState::kHardBounced:
            return "hard_bounced";
        case FinalState::kDeleted:
            return "deleted";
    }
    return "?";
}

std::string_view to_string(HardKind k) {
    switch (k) {
        case HardKind::kNone:
            return "none";
        case HardKind::kDns:
            return "dns";
        case HardKind::k5xx:
            return "5xx";
        case HardKind::kExpired:
            return "expired";
        case HardKind::kFilter:
            return "filter";
        case HardKind::kOther:
            return "other";
    }
    return "?";
}

Scheduler::Scheduler(hosts::HostTable& hosts, SchedulerOptions options)
    : hosts_(hosts), options_(std::move(options)), retry_(options_.rng, options_.jitter_percent) {}

// --- domains --------------------------------------------------------------------------------

DomainId Scheduler::intern(std::string_view name) {
    std::string key = hosts::lower_domain(name);
    auto it = domain_ids_.find(key);
    if (it != domain_ids_.end()) return it->second;
    const auto id = static_cast<DomainId>(domains_.size());
    DomainPolicy policy = options_.policy ? options_.policy(key) : DomainPolicy{};
    hosts::HostState* host = &hosts_.get(key);
    domains_.emplace_back(key, std::move(policy), host);
    domain_ids_.emplace(std::move(key), id);
    return id;
}

std::optional<DomainId> Scheduler::find_domain(std::string_view name) const {
    auto it = domain_ids_.find(hosts::lower_domain(name));
    if (it == domain_ids_.end()) return std::nullopt;
    return it->second;
}

void Scheduler::reload_policies() {
    for (auto& dq : domains_) {
        dq.set_policy(options_.policy ? options_.policy(dq.name()) : DomainPolicy{});
    }
    for (DomainId d = 0; d < domains_.size(); ++d)
        touch(d);
}

void Scheduler::reserve(std::size_t messages, std::size_t domains) {
    index_.reserve(messages);
    domains_.reserve(domains);
    domain_ids_.reserve(domains);
}

// --- adding -----------------------------------------------------------------------------------

bool Scheduler::add_message(const NewMessage& message, TimeMs now) {
    if (message.mid == 0 || message.recipients.empty() || index_.find(message.mid) != kNoIndex) {
        return false;
    }
    std::vector<IndexRecipient> rcpts;
    rcpts.reserve(message.recipients.size());
    for (const auto& r : message.recipients) {
        IndexRecipient ir;
        ir.rid = r.rid;
        ir.address = r.address;
        ir.domain = intern(r.domain);
        ir.attempts = r.attempts;
        ir.next_attempt = r.next_attempt;
        ir.state = r.next_attempt > now ? RcptState::kDeferred : RcptState::kReady;
        rcpts.push_back(ir);
    }
    const std::uint32_t msg = index_.add(message.mid, message.received, message.sender, rcpts);
    if (msg == kNoIndex) return false;
    MessageEntry& m = index_.at(msg);
    totals_.messages = index_.message_count();
    for (std::uint32_t i = 0; i < m.rcpts.size(); ++i) {
        RcptSlot& s = m.rcpts[i];
        DomainQueue& dq = domains_[s.domain];
        if (i == 0 || m.rcpts[i - 1].domain != s.domain) dq.push_arrival({msg, m.gen});
        if (s.attempts == 0) {
            dq.gauges.unattempted++;
            totals_.unattempted++;
        } else {
            dq.gauges.attempted++;
            totals_.attempted++;
        }
        if (s.state == RcptState::kDeferred) {
            dq.gauges.deferred++;
            dq.push_deferred({s.next_attempt, msg, i});
            rearm(s.domain, now);
        } else {
            dq.gauges.ready++;
            make_ready(s.domain, msg, i);
        }
    }
    return true;
}

void Scheduler::make_ready(DomainId d, std::uint32_t msg, std::uint32_t slot) {
    MessageEntry& m = index_.at(msg);
    const std::uint32_t first = index_.group_first(msg, slot);
    if ((m.rcpts[first].flags & kSlotGroupListed) == 0) {
        m.rcpts[first].flags |= kSlotGroupListed;
        domains_[d].push_ready({msg, m.gen});
    }
    touch(d);
}

// --- ring and timers --------------------------------------------------------------------------

void Scheduler::touch(DomainId d) {
    DomainQueue& dq = domains_[d];
    if (!dq.in_ring && dq.gauges.ready > 0) {
        dq.in_ring = true;
        ring_.push_back(d);
    }
}

void Scheduler::rearm(DomainId d, TimeMs now) {
    DomainQueue& dq = domains_[d];
    TimeMs want = dq.deferred_empty() ? kNever : dq.deferred_top().at;
    if (dq.gauges.ready > 0 && !is_suspended(dq)) {
        want = std::min(want, dq.host().blocked_until(now));
    }
    if (want < dq.armed_at) {
        dq.armed_at = want;
        timers_.push({want, d});
    }
}

void Scheduler::run_timers(TimeMs now, Pick& pick) {
    while (!timers_.empty() && timers_.top().at <= now) {
        const Timer t = timers_.top();
        timers_.pop();
        DomainQueue& dq = domains_[t.domain];
        if (t.at != dq.armed_at) continue;  // superseded by an earlier entry
        dq.armed_at = kNever;
        promote_due(t.domain, now, pick);
        const hosts::HostState& host = dq.host();
        if (!is_suspended(dq) && (host.status() == hosts::HostStatus::kDown || host.held())) {
            sweep_expired(t.domain, now, pick);
        }
        touch(t.domain);
        rearm(t.domain, now);
    }
}

TimeMs Scheduler::earliest_timer() {
    while (!timers_.empty() && timers_.top().at != domains_[timers_.top().domain].armed_at) {
        timers_.pop();
    }
    return timers_.empty() ? kNever : timers_.top().at;
}

void Scheduler::promote_due(DomainId d, TimeMs now, Pick& pick) {
    DomainQueue& dq = domains_[d];
    while (!dq.deferred_empty() && dq.deferred_top().at <= now) {
        const DeferredEntry e = dq.pop_deferred();
        if (!index_.valid(e.msg)) continue;
        MessageEntry& m = index_.at(e.msg);
        if (e.slot >= m.rcpts.size()) continue;
        RcptSlot& s = m.rcpts[e.slot];
        if (s.domain != d || s.state != RcptState::kDeferred || s.next_attempt != e.at) continue;
        if (is_expired(dq.policy().bounce, s.attempts, m.received, now)) {
            finalize(e.msg, e.slot, FinalState::kHardBounced, HardKind::kExpired, pick.expired);
            release_if_done(e.msg, pick.messages_done);
            continue;
        }
        s.state = RcptState::kReady;
        dq.gauges.deferred--;
        dq.gauges.ready++;
        make_ready(d, e.msg, e.slot);
    }
}

// --- picking ----------------------------------------------------------------------------------

bool Scheduler::group_live(DomainId d, GroupRef ref) const {
    if (!index_.valid(ref.msg)) return false;
    const MessageEntry& m = index_.at(ref.msg);
    if (m.gen != ref.gen) return false;
    auto [lo, hi] = index_.group_range(ref.msg, d);
    for (std::uint32_t i = lo; i < hi; ++i) {
        if (m.rcpts[i].state != RcptState::kFinal) return true;
    }
    return false;
}

bool Scheduler::take_group(DomainId d, TimeMs now, Work& work, Pick& pick) {
    DomainQueue& dq = domains_[d];
    const std::uint32_t limit =
        std::max<std::uint32_t>(1, dq.policy().max_recipients_per_transaction);
    while (!dq.ready_list_empty()) {
        const GroupRef ref = dq.pop_ready();
        if (!index_.valid(ref.msg) || index_.at(ref.msg).gen != ref.gen) continue;
        MessageEntry& m = index_.at(ref.msg);
        auto [lo, hi] = index_.group_range(ref.msg, d);
        if (lo == hi) continue;
        m.rcpts[lo].flags &= static_cast<std::uint8_t>(~kSlotGroupListed);
        std::vector<std::uint32_t> rids;
        bool more = false;
        for (std::uint32_t i = lo; i < hi; ++i) {
            RcptSlot& s = m.rcpts[i];
            if (s.state != RcptState::kReady) continue;
            if (is_expired(dq.policy().bounce, s.attempts, m.received, now)) {
                finalize(ref.msg, i, FinalState::kHardBounced, HardKind::kExpired, pick.expired);
                continue;
            }
            if (rids.size() >= limit) {
                more = true;
                continue;
            }
            s.state = RcptState::kInFlight;
            dq.gauges.ready--;
            dq.gauges.in_flight++;
            rids.push_back(s.rid);
        }
        const Mid mid = m.mid;
        if (more) {
            m.rcpts[lo].flags |= kSlotGroupListed;
            dq.push_ready({ref.msg, m.gen});
        }
        release_if_done(ref.msg, pick.messages_done);
        if (!rids.empty()) {
            work.domain = d;
            work.domain_name = dq.name();
            work.mid = mid;
            work.rids = std::move(rids);
            return true;
        }
    }
    return false;
}

void Scheduler::sweep_expired(DomainId d, TimeMs now, Pick& pick) {
    DomainQueue& dq = domains_[d];
    const auto& list = dq.ready_list();
    for (std::size_t k = dq.ready_head(); k < list.size(); ++k) {
        const GroupRef ref = list[k];
        if (!index_.valid(ref.msg) || index_.at(ref.msg).gen != ref.gen) continue;
        MessageEntry& m = index_.at(ref.msg);
        if (now <= expiry_time(dq.policy().bounce, m.received)) continue;
        auto [lo, hi] = index_.group_range(ref.msg, d);
        for (std::uint32_t i = lo; i < hi; ++i) {
            if (m.rcpts[i].state == RcptState::kReady) {
                finalize(ref.msg, i, FinalState::kHardBounced, HardKind::kExpired, pick.expired);
            }
        }
        release_if_done(ref.msg, pick.messages_done);
    }
    maybe_compact(d);
}

void Scheduler::open_connection(DomainId d, TimeMs now, Work& work) {
    DomainQueue& dq = domains_[d];
    work.probe = dq.host().status() == hosts::HostStatus::kDown;
    work.new_connection = true;
    dq.host().on_connection_start(now);
    dq.pending_++;
    dq.gauges.pending_connections = dq.pending_;
    totals_.connections++;
}

Pick Scheduler::next_work(TimeMs now) {
    Pick pick;
    run_timers(now, pick);
    if (!suspended_all_ && totals_.connections < options_.max_concurrency) {
        while (!ring_.empty()) {
            const DomainId d = ring_.front();
            ring_.pop_front();
            DomainQueue& dq = domains_[d];
            dq.in_ring = false;
            if (dq.gauges.ready == 0 || is_suspended(dq)) continue;
            if (!dq.host().may_open(now, dq.connections(), dq.policy().max_concurrency)) {
                // Back in the ring on connection end / host change / its timer.
                rearm(d, now);
                continue;
            }
            Work work;
            const bool got = take_group(d, now, work, pick);
            touch(d);  // more ready work: take another turn after the others
            if (got) {
                open_connection(d, now, work);
                pick.work = std::move(work);
                return pick;
            }
        }
    }
    pick.wake_at = earliest_timer();
    return pick;
}

Pick Scheduler::next_work_on_connection(DomainId d, TimeMs now) {
    Pick pick;
    run_timers(now, pick);
    if (d >= domains_.size() || is_suspended(domains_[d])) {
        pick.wake_at = earliest_timer();
        return pick;
    }
    Work work;
    if (take_group(d, now, work, pick)) {
        pick.work = std::move(work);
    } else {
        pick.wake_at = earliest_timer();
    }
    return pick;
}

void Scheduler::connection_established(DomainId d) {
    DomainQueue& dq = domains_[d];
    if (dq.pending_ == 0) return;
    dq.pending_--;
    dq.current_++;
    dq.gauges.pending_connections = dq.pending_;
    dq.gauges.current_connections = dq.current_;
}

void Scheduler::connection_ended(DomainId d, bool established, TimeMs now) {
    DomainQueue& dq = domains_[d];
    std::uint32_t& count = established ? dq.current_ : dq.pending_;
    if (count == 0) return;
    count--;
    if (totals_.connections > 0) totals_.connections--;
    dq.gauges.pending_connections = dq.pending_;
    dq.gauges.current_connections = dq.current_;
    if (dq.connections() == 0) dq.host().on_idle();
    touch(d);
    rearm(d, now);
}

void Scheduler::host_changed(DomainId d, TimeMs now) {
    touch(d);
    rearm(d, now);
}

// --- reports ----------------------------------------------------------------------------------

ReportResult Scheduler::apply_report(const Report& report, TimeMs now) {
    ReportResult result;
    const std::uint32_t msg = index_.find(report.mid);
    if (msg == kNoIndex || report.domain >= domains_.size()) {
        result.ignored = static_cast<std::uint32_t>(report.outcomes.size());
        return result;
    }
    const DomainId d = report.domain;
    DomainQueue& dq = domains_[d];
    const BounceProfile& profile = dq.policy().bounce;
    const std::uint32_t jitter = retry_.draw_jitter();
    for (const RecipientOutcome& o : report.outcomes) {
        const std::uint32_t slot = index_.find_slot(msg, d, o.rid);
        MessageEntry& m = index_.at(msg);
        if (slot == kNoIndex || m.rcpts[slot].state != RcptState::kInFlight) {
            result.ignored++;
            continue;
        }
        RcptSlot& s = m.rcpts[slot];
        switch (o.outcome) {
            case Outcome::kDelivered:
                finalize(msg, slot, FinalState::kDelivered, HardKind::kNone, result.finals);
                break;
            case Outcome::kHardBounce:
                finalize(msg, slot, FinalState::kHardBounced,
                         o.kind == HardKind::kNone ? HardKind::kOther : o.kind, result.finals);
                break;
            case Outcome::kSoftBounce: {
                dq.counters.soft_bounced_events++;
                totals_.counters.soft_bounced_events++;
                if (s.attempts == 0) {
                    dq.gauges.unattempted--;
                    dq.gauges.attempted++;
                    totals_.unattempted--;
                    totals_.attempted++;
                }
                if (s.attempts < UINT16_MAX) s.attempts++;
                if (is_expired(profile, s.attempts, m.received, now)) {
                    finalize(msg, slot, FinalState::kHardBounced, HardKind::kExpired,
                             result.finals);
                    break;
                }
                s.state = RcptState::kDeferred;
                s.next_attempt = now + retry_.delay_ms(profile, s.attempts, jitter);
                dq.gauges.in_flight--;
                dq.gauges.deferred++;
                dq.push_deferred({s.next_attempt, msg, slot});
                result.deferred.push_back({s.rid, s.attempts, s.next_attempt});
                break;
            }
            case Outcome::kNotAttempted:
                s.state = RcptState::kReady;
                dq.gauges.in_flight--;
                dq.gauges.ready++;
                make_ready(d, msg, slot);
                break;
        }
    }
    release_if_done(msg, result.messages_done);
    touch(d);
    rearm(d, now);
    return result;
}

void Scheduler::finalize(std::uint32_t msg, std::uint32_t slot, FinalState state, HardKind kind,
                         std::vector<FinalRecipient>& out) {
    MessageEntry& m = index_.at(msg);
    RcptSlot& s = m.rcpts[slot];
    DomainQueue& dq = domains_[s.domain];
    switch (s.state) {
        case RcptState::kReady:
            dq.gauges.ready--;
            break;
        case RcptState::kDeferred:
            dq.gauges.deferred--;
            break;
        case RcptState::kInFlight:
            dq.gauges.in_flight--;
            break;
        case RcptState::kFinal:
            return;
    }
    if (s.attempts == 0) {
        dq.gauges.unattempted--;
        totals_.unattempted--;
    } else {
        dq.gauges.attempted--;
        totals_.attempted--;
    }
    s.state = RcptState::kFinal;
    m.live--;
    auto bump = [&](std::uint64_t DomainCounters::*field) {
        dq.counters.*field += 1;
        totals_.counters.*field += 1;
    };
    if (state == FinalState::kDelivered) {
        bump(&DomainCounters::delivered);
        kind = HardKind::kNone;
    } else if (state == FinalState::kDeleted) {
        bump(&DomainCounters::deleted);
        kind = HardKind::kNone;
    } else {
        switch (kind) {
            case HardKind::kDns:
                bump(&DomainCounters::dns_hard);
                break;
            case HardKind::k5xx:
                bump(&DomainCounters::fivexx_hard);
                break;
            case HardKind::kExpired:
                bump(&DomainCounters::expired_hard);
                break;
            case HardKind::kFilter:
                bump(&DomainCounters::filter_hard);
                break;
            case HardKind::kNone:
            case HardKind::kOther:
                kind = HardKind::kOther;
                bump(&DomainCounters::other_hard);
                break;
        }
    }
    out.push_back({m.mid, s.rid, s.domain, state, kind});
}

void Scheduler::release_if_done(std::uint32_t msg, std::vector<Mid>& done) {
    if (!index_.valid(msg) || index_.at(msg).live != 0) return;
    done.push_back(index_.at(msg).mid);
    index_.release(msg);
    totals_.messages = index_.message_count();
}

void Scheduler::maybe_compact(DomainId d) {
    DomainQueue& dq = domains_[d];
    if (dq.deferred_entries() > 2 * dq.gauges.deferred + 64) {
        dq.compact_deferred([&](const DeferredEntry& e) {
            if (!index_.valid(e.msg)) return false;
            const MessageEntry& m = index_.at(e.msg);
            return e.slot < m.rcpts.size() && m.rcpts[e.slot].state == RcptState::kDeferred &&
                   m.rcpts[e.slot].next_attempt == e.at && m.rcpts[e.slot].domain == d;
        });
    }
    const std::size_t listed = dq.ready_list().size() - dq.ready_head();
    if (listed > 2 * dq.gauges.ready + 64) {
        dq.compact_ready([&](GroupRef ref) {
            return index_.valid(ref.msg) && index_.at(ref.msg).gen == ref.gen &&
                   (index_.at(ref.msg).rcpts[index_.group_range(ref.msg, d).first].flags &
                    kSlotGroupListed) != 0;
        });
    }
}

// --- operator commands --------------------------------------------------------------------

std::uint64_t Scheduler::delivernow_domain(DomainId d, TimeMs now) {
    DomainQueue& dq = domains_[d];
    std::uint64_t n = 0;
    for (const DeferredEntry& e : dq.take_all_deferred()) {
        if (!index_.valid(e.msg)) continue;
        MessageEntry& m = index_.at(e.msg);
        if (e.slot >= m.rcpts.size()) continue;
        RcptSlot& s = m.rcpts[e.slot];
        if (s.domain != d || s.state != RcptState::kDeferred || s.next_attempt != e.at) continue;
        s.state = RcptState::kReady;
        dq.gauges.deferred--;
        dq.gauges.ready++;
        make_ready(d, e.msg, e.slot);
        n++;
    }
    hosts_.report(dq.name(), dq.host().on_delivernow(now));
    touch(d);
    rearm(d, now);
    return n;
}

std::optional<std::uint64_t> Scheduler::delivernow_all(TimeMs now) {
    std::uint64_t n = 0;
    for (DomainId d = 0; d < domains_.size(); ++d)
        n += delivernow_domain(d, now);
    hosts_.delivernow_all(now);
    return n;
}

std::optional<std::uint64_t> Scheduler::delivernow(std::string_view domain, TimeMs now) {
    auto d = find_domain(domain);
    if (!d) return std::nullopt;
    return delivernow_domain(*d, now);
}

bool Scheduler::suspend(std::string_view domain) {
    auto d = find_domain(domain);
    if (!d) return false;
    domains_[*d].set_suspended(true);
    return true;
}

bool Scheduler::resume(std::string_view domain) {
    auto d = find_domain(domain);
    if (!d) return false;
    domains_[*d].set_suspended(false);
    touch(*d);
    return true;
}

void Scheduler::suspend_all() {
    suspended_all_ = true;
}

void Scheduler::resume_all() {
    suspended_all_ = false;
    for (DomainId d = 0; d < domains_.size(); ++d) {
        domains_[d].set_suspended(false);
        touch(d);
    }
}

RemoveResult Scheduler::delete_recipients(const Selector& selector, TimeMs now) {
    return remove(selector, FinalState::kDeleted, HardKind::kNone, now);
}

RemoveResult Scheduler::bounce_recipients(const Selector& selector, TimeMs now) {
    return remove(selector, FinalState::kHardBounced, HardKind::kOther, now);
}

RemoveResult Scheduler::remove(const Selector& selector, FinalState state, HardKind kind,
                               TimeMs now) {
    RemoveResult result;
    auto finish_all_of = [&](std::uint32_t msg, std::optional<DomainId> only) {
        MessageEntry& m = index_.at(msg);
        for (std::uint32_t i = 0; i < m.rcpts.size(); ++i) {
            if (m.rcpts[i].state == RcptState::kFinal) continue;
            if (only && m.rcpts[i].domain != *only) continue;
            finalize(msg, i, state, kind, result.removed);
        }
        release_if_done(msg, result.messages_done);
    };
    if (selector.by == Selector::By::kDomain) {
        auto d = find_domain(selector.value);
        if (!d) return result;
        result.found = true;
        DomainQueue& dq = domains_[*d];
        const auto& arrivals = dq.arrivals();
        std::vector<GroupRef> refs(
            arrivals.begin() + static_cast<std::ptrdiff_t>(dq.arrivals_head()), arrivals.end());
        for (const GroupRef& ref : refs) {
            if (!index_.valid(ref.msg) || index_.at(ref.msg).gen != ref.gen) continue;
            finish_all_of(ref.msg, *d);
        }
        dq.clear_ready();
        dq.clear_arrivals();
        dq.compact_deferred([](const DeferredEntry&) { return false; });
        rearm(*d, now);
        return result;
    }
    result.found = selector.by == Selector::By::kAll;
    for (std::uint32_t msg = 0; msg < index_.slab_size(); ++msg) {
        if (!index_.valid(msg)) continue;
        if (selector.by == Selector::By::kSender && !iequals(index_.sender(msg), selector.value)) {
            continue;
        }
        result.found = true;
        finish_all_of(msg, std::nullopt);
    }
    for (DomainId d = 0; d < domains_.size(); ++d) {
        if (selector.by == Selector::By::kAll) {
            domains_[d].clear_ready();
            domains_[d].clear_arrivals();
            domains_[d].compact_deferred([](const DeferredEntry&) { return false; });
        } else {
            maybe_compact(d);
        }
    }
    return result;
}

// --- inspection -------------------------------------------------------------------------------

DomainGauges Scheduler::gauges(DomainId id) {
    DomainQueue& dq = domains_[id];
    DomainGauges g = dq.gauges;
    const GroupRef* oldest = dq.oldest_arrival([&](GroupRef ref) { return group_live(id, ref); });
    g.oldest_received = oldest ? index_.at(oldest->msg).received : kNever;
    return g;
}

std::optional<std::string_view> Scheduler::sender(Mid mid) const {
    const std::uint32_t msg = index_.find(mid);
    if (msg == kNoIndex) return std::nullopt;
    return index_.sender(msg);
}

std::optional<std::string_view> Scheduler::address(Mid mid, std::uint32_t rid) const {
    const std::uint32_t msg = index_.find(mid);
    if (msg == kNoIndex) return std::nullopt;
    const MessageEntry& m = index_.at(msg);
    for (std::uint32_t i = 0; i < m.rcpts.size(); ++i) {
        if (m.rcpts[i].rid == rid) return index_.address(msg, i);
    }
    return std::nullopt;
}

std::size_t Scheduler::approx_memory_bytes() const {
    std::size_t bytes = index_.approx_memory_bytes();
    bytes += domains_.capacity() * sizeof(DomainQueue);
    for (const auto& dq : domains_)
        bytes += dq.approx_memory_bytes() - sizeof(DomainQueue);
    bytes += domain_ids_.bucket_count() * sizeof(void*) +
             domain_ids_.size() * (sizeof(void*) + sizeof(std::string) + 8 + 16);
    bytes += ring_.size() * sizeof(DomainId) + timers_.size() * sizeof(Timer);
    return bytes;
}

}  // namespace esad::queue
