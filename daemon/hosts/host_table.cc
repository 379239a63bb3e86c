// host_table — see host_table.h.
#include "daemon/hosts/host_table.h"

#include <algorithm>
#include <vector>

namespace esad::hosts {

std::string lower_domain(std::string_view domain) {
    if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
    std::string out(domain);
    for (char& c : out) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
}

HostState& HostTable::get(std::string_view domain) {
    return hosts_.try_emplace(lower_domain(domain)).first->second;
}

const HostState* HostTable::find(std::string_view domain) const {
    auto it = hosts_.find(lower_domain(domain));
    return it == hosts_.end() ? nullptr : &it->second;
}

HostState* HostTable::find(std::string_view domain) {
    auto it = hosts_.find(lower_domain(domain));
    return it == hosts_.end() ? nullptr : &it->second;
}

void HostTable::delivernow_all(TimeMs now) {
    for (auto& [name, state] : hosts_)
        report(name, state.on_delivernow(now));
}

void HostTable::for_each(
    const std::function<void(const std::string&, const HostState&)>& fn) const {
    std::vector<const std::pair<const std::string, HostState>*> sorted;
    sorted.reserve(hosts_.size());
    for (const auto& entry : hosts_)
        sorted.push_back(&entry);
    std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->first < b->first; });
    for (auto* entry : sorted)
        fn(entry->first, entry->second);
}

}  // namespace esad::hosts
