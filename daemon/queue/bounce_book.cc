// bounce_book — see bounce_book.h.
#include "daemon/queue/bounce_book.h"

#include <algorithm>

namespace esad::queue {

namespace {
void merge(BounceBook::Round& into, BounceBook::Round&& from) {
    for (auto& b : from.rcpts)
        into.rcpts.push_back(std::move(b));
    for (auto& f : from.finals)
        into.finals.push_back(f);
    into.done = into.done || from.done;
    into.first = std::min(into.first, from.first);
}
}  // namespace

void BounceBook::add(Mid mid, std::vector<BounceInfo> rcpts, TimeMs now) {
    auto [it, fresh] = open_.try_emplace(mid);
    Round& r = it->second;
    if (fresh) {
        r.mid = mid;
        r.first = now;
    }
    for (auto& b : rcpts) {
        bool known = std::any_of(r.rcpts.begin(), r.rcpts.end(),
                                 [&](const BounceInfo& x) { return x.rid == b.rid; });
        if (!known) r.rcpts.push_back(std::move(b));
    }
}

BounceBook::Round* BounceBook::holder(Mid mid, uint32_t rid) {
    for (auto* rounds : {&open_, &generating_}) {
        auto it = rounds->find(mid);
        if (it == rounds->end()) continue;
        for (const auto& b : it->second.rcpts)
            if (b.rid == rid) return &it->second;
    }
    return nullptr;
}

void BounceBook::hold(std::vector<FinalRecipient>& finals, std::vector<Mid>& done) {
    std::erase_if(finals, [this](const FinalRecipient& f) {
        if (f.state != FinalState::kHardBounced) return false;
        Round* r = holder(f.mid, f.rid);
        if (r) r->finals.push_back(f);
        return r != nullptr;
    });
    std::erase_if(done, [this](Mid mid) {
        // The newest round needs the file longest: an open one goes out after the generating.
        for (auto* rounds : {&open_, &generating_}) {
            auto it = rounds->find(mid);
            if (it != rounds->end()) {
                it->second.done = true;
                return true;
            }
        }
        return false;
    });
}

std::vector<BounceBook::Round> BounceBook::due(TimeMs now, const std::function<bool(Mid)>& busy) {
    std::vector<Round> out;
    for (auto it = open_.begin(); it != open_.end();) {
        const Round& r = it->second;
        bool ready = now >= r.not_before && !generating_.count(r.mid) &&
                     (r.done || now - r.first >= kMaxHoldMs || !busy(r.mid));
        if (!ready) {
            ++it;
            continue;
        }
        out.push_back(r);
        generating_.emplace(r.mid, std::move(it->second));
        it = open_.erase(it);
    }
    return out;
}

std::vector<BounceBook::Round> BounceBook::take_all() {
    std::vector<Round> out;
    for (auto it = open_.begin(); it != open_.end();) {
        if (generating_.count(it->first)) {
            ++it;
            continue;
        }
        out.push_back(it->second);
        generating_.emplace(it->first, std::move(it->second));
        it = open_.erase(it);
    }
    return out;
}

BounceBook::Round BounceBook::complete(Mid mid) {
    Round r;
    auto it = generating_.find(mid);
    if (it == generating_.end()) return r;
    r = std::move(it->second);
    generating_.erase(it);
    // The removal waits for a later round of the same message, if one is open.
    auto next = open_.find(mid);
    if (r.done && next != open_.end()) {
        next->second.done = true;
        r.done = false;
    }
    return r;
}

void BounceBook::retry(Mid mid, TimeMs now) {
    auto it = generating_.find(mid);
    if (it == generating_.end()) return;
    Round r = std::move(it->second);
    generating_.erase(it);
    r.not_before = now + kMaxHoldMs;
    auto [open, fresh] = open_.try_emplace(mid);
    if (fresh) {
        open->second = std::move(r);
    } else {
        merge(r, std::move(open->second));
        open->second = std::move(r);
    }
}

}  // namespace esad::queue
