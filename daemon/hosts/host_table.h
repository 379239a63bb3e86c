// host_table — every recipient host's HostState, keyed by lower-cased domain.
// Pure container; no I/O, no logging. References returned by get()/find() stay valid for the
// table's lifetime (entries are never erased; hoststatus keeps history of idle hosts).
//
// API
//   HostState& get(domain)          find or create (domain is lower-cased here)
//   const HostState* find(domain)   nullptr when the host was never seen ("No record of host")
//   delivernow_all(now)             on_delivernow() on every host
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
    void for_each(const std::function<void(const std::string&, const HostState&)>& fn) const;
    std::size_t size() const { return hosts_.size(); }

  private:
    // unordered_map nodes are stable: references survive rehashing.
    std::unordered_map<std::string, HostState> hosts_;
};

std::string lower_domain(std::string_view domain);  // ASCII lower-case, trailing dot dropped

}  // namespace esad::hosts
