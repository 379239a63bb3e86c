// host_table — every recipient host's HostState, keyed by lower-cased domain.
// Pure container; no I/O, no logging. References returned by get()/find() stay valid for the
// table's lifetime (entries are never erased; hoststatus keeps history of idle hosts).
//
// API
//   HostState& get(domain)          find or create (domain is lower-cased here)
//   const HostState* find(domain)   nullptr when the host was never seen ("No record of host")
//   delivernow_all(now)             on_delivernow() on every host (changes reported)
//   set_observer(fn(name, change))  who hears of every up/down change (the glue logs it)
//   report(name, change)            hand a transition's result to the observer if it changed
//   for_each(fn(name, state))       in name order (for tophosts / JSON)
//   size()
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "daemon/hosts/host_state.h"

namespace esad::hosts {

class HostTable {
  public:
    HostState& get(std::string_view domain);
    const HostState* find(std::string_view domain) const;
    HostState* find(std::string_view domain);
    void delivernow_all(TimeMs now);
    using Observer = std::function<void(std::string_view domain, const HostChange& change)>;
    void set_observer(Observer observer) { observer_ = std::move(observer); }
    void report(std::string_view domain, const HostChange& change) const {
        if (change.changed() && observer_) observer_(domain, change);
    }
    void for_each(const std::function<void(const std::string&, const HostState&)>& fn) const;
    std::size_t size() const { return hosts_.size(); }

  private:
    // unordered_map nodes are stable: references survive rehashing.
    std::unordered_map<std::string, HostState> hosts_;
    Observer observer_;
};

std::string lower_domain(std::string_view domain);  // ASCII lower-case, trailing dot dropped

}  // namespace esad::hosts
