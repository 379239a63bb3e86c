// See connection_pool.h.
#include "daemon/delivery/connection_pool.h"

#include <algorithm>

namespace esad::delivery {

ConnectionPool::ConnectionPool(uv_loop_t* loop, std::function<queue::TimeMs()> now)
    : now_(std::move(now)), graveyard_(loop) {
    sweep_timer_ = loop::Timer::create(loop, [this] { sweep(); });
}

ConnectionPool::~ConnectionPool() {
    sweep_timer_.reset();
    entries_.clear();
    graveyard_.clear();
}

ConnectionPool::Entry& ConnectionPool::add(Id id, std::shared_ptr<SmtpSession> session,
                                           queue::DomainId domain, queue::Work work) {
    Entry& e = entries_[id];
    e.session = std::move(session);
    e.domain = domain;
    e.work = std::move(work);
    return e;
}

ConnectionPool::Entry* ConnectionPool::find(Id id) {
    auto it = entries_.find(id);
    return it == entries_.end() ? nullptr : &it->second;
}

std::optional<ConnectionPool::Entry> ConnectionPool::remove(Id id) {
    auto it = entries_.find(id);
    if (it == entries_.end()) return std::nullopt;
    unpark(id);
    Entry e = std::move(it->second);
    entries_.erase(it);
    graveyard_.bury(e.session);
    return e;
}

std::vector<ConnectionPool::Id> ConnectionPool::ids() const {
    std::vector<Id> out;
    out.reserve(entries_.size());
    for (const auto& [id, e] : entries_)
        out.push_back(id);
    return out;
}

void ConnectionPool::park(Id id) {
    Entry* e = find(id);
    if (!e || e->idle) return;
    e->idle = true;
    e->idle_since = now_();
    idle_[e->domain].push_back(id);
    arm_sweep();
}

void ConnectionPool::unpark(Id id) {
    Entry* e = find(id);
    if (!e || !e->idle) return;
    e->idle = false;
    auto list = idle_.find(e->domain);
    if (list == idle_.end()) return;
    auto& v = list->second;
    v.erase(std::remove(v.begin(), v.end(), id), v.end());
    if (v.empty()) idle_.erase(list);
}

std::optional<ConnectionPool::Id> ConnectionPool::take_idle(queue::DomainId d) {
    auto it = idle_.find(d);
    if (it == idle_.end()) return std::nullopt;
    Id id = it->second.back();
    it->second.pop_back();
    if (it->second.empty()) idle_.erase(it);
    if (Entry* e = find(id)) e->idle = false;
    return id;
}

void ConnectionPool::close_idle() {
    std::vector<Id> all;
    for (const auto& [d, list] : idle_)
        all.insert(all.end(), list.begin(), list.end());
    for (Id id : all) {
        unpark(id);
        if (Entry* e = find(id)) e->session->quit();
    }
}

void ConnectionPool::arm_sweep() {
    if (sweep_armed_ || !sweep_timer_) return;
    sweep_armed_ = true;
    sweep_timer_->start(kIdleSweepMs);
}

void ConnectionPool::sweep() {
    sweep_armed_ = false;
    const queue::TimeMs now = now_();
    std::vector<Id> expired;
    for (const auto& [d, list] : idle_)
        for (Id id : list)
            if (now - entries_.at(id).idle_since >= kIdleKeepMs) expired.push_back(id);
    for (Id id : expired) {
        unpark(id);
        if (Entry* e = find(id)) e->session->quit();
    }
    if (!idle_.empty()) arm_sweep();
}

void ConnectionPool::stop() {
    for (Id id : ids()) {
        Entry* e = find(id);
        if (!e) continue;
        unpark(id);
        if (!e->loading) e->session->quit();
    }
    sweep_timer_.reset();
}

void ConnectionPool::abort() {
    for (Id id : ids())
        if (Entry* e = find(id)) e->session->abort();
}

}  // namespace esad::delivery
