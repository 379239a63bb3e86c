// See domain_debug.h.
#include "daemon/logs/domain_debug.h"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "common/ascii.h"
#include "common/escape.h"
#include "common/format.h"
#include "daemon/logs/log_file.h"

namespace esad::logs {

namespace {
constexpr size_t kMaxTraceChars = 2048;
}  // namespace

std::string debug_domain_key(std::string_view domain) {
    std::string out;
    out.reserve(domain.size());
    for (char c : domain) {
        auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7f) return "";
        out.push_back(ascii_lower(c));
    }
    while (!out.empty() && out.back() == '.')
        out.pop_back();
    if (out.empty() || out.size() > 253) return "";
    return out;
}

std::string debug_line(uint64_t dcid, std::string_view domain, std::string_view trace) {
    std::string_view dir = "--";
    if (trace.rfind("> ", 0) == 0) {
        dir = "C:";
        trace.remove_prefix(2);
    } else if (trace.rfind("< ", 0) == 0) {
        dir = "S:";
        trace.remove_prefix(2);
    }
    return "DCID " + std::to_string(dcid) + " domain " + escape_for_log(domain, 253) + ": " +
           std::string(dir) + " " + escape_for_log(trace, kMaxTraceChars);
}

std::unique_ptr<DomainDebug> DomainDebug::open(const std::string& dir,
                                               const std::vector<std::string>& configured,
                                               std::string* error) {
    auto dd = std::unique_ptr<DomainDebug>(new DomainDebug());
    dd->logger_ = open_log_file(dir, "domain_debug", "domain debug log", &dd->path_, error);
    if (!dd->logger_) return nullptr;
    dd->set_configured(configured);
    return dd;
}

DomainDebug::~DomainDebug() {
    flush();
}

void DomainDebug::flush() {
    if (logger_) logger_->flush();
}

void DomainDebug::set_configured(const std::vector<std::string>& domains) {
    std::set<std::string> wanted;
    for (const auto& d : domains) {
        std::string key = debug_domain_key(d);
        if (key.empty())
            spdlog::warn("logging.domain_debug: '{}' is not a domain name; ignored",
                         escape_for_log(d, 100));
        else
            wanted.insert(key);
    }
    for (auto it = domains_.begin(); it != domains_.end();) {
        if (it->second.entry.configured && !wanted.count(it->first))
            it = domains_.erase(it);
        else
            ++it;
    }
    for (const auto& key : wanted) {
        State& s = domains_[key];
        s.entry.domain = key;
        s.entry.configured = true;
    }
}

bool DomainDebug::add(const std::string& domain, uint32_t max_sessions, std::string* error) {
    std::string key = debug_domain_key(domain);
    if (key.empty()) {
        *error = "not a domain name: '" + escape_for_log(domain, 100) + "'";
        return false;
    }
    State& s = domains_[key];
    s = State{};
    s.entry.domain = key;
    s.entry.max_sessions = max_sessions;
    return true;
}

bool DomainDebug::remove(const std::string& domain) {
    return domains_.erase(debug_domain_key(domain)) > 0;
}

bool DomainDebug::contains(std::string_view domain) const {
    return domains_.count(debug_domain_key(domain)) > 0;
}

std::vector<DomainDebug::Entry> DomainDebug::list() const {
    std::vector<Entry> out;
    out.reserve(domains_.size());
    for (const auto& [key, s] : domains_)
        out.push_back(s.entry);
    return out;
}

void DomainDebug::trace(const std::string& domain, uint64_t dcid, const std::string& line) {
    if (domains_.empty()) return;
    auto it = domains_.find(domain);
    if (it == domains_.end()) {
        // Queues name domains in lower case; normalize only what could differ.
        bool odd = !domain.empty() && (domain.back() == '.' ||
                                       std::any_of(domain.begin(), domain.end(),
                                                   [](char c) { return c >= 'A' && c <= 'Z'; }));
        if (!odd || (it = domains_.find(debug_domain_key(domain))) == domains_.end()) return;
    }
    State& s = it->second;
    bool fresh = false;
    if (s.entry.max_sessions > 0) {
        if (!s.admitted.count(dcid)) {
            if (s.admitted.size() >= s.entry.max_sessions) return;
            s.admitted.insert(dcid);
            fresh = true;
        }
    } else if (dcid > s.newest_dcid) {
        s.newest_dcid = dcid;  // DCIDs only grow: a larger one is a new session
        fresh = true;
    }
    if (fresh) {
        ++s.entry.sessions;
        std::string what = "session " + std::to_string(s.entry.sessions);
        if (s.entry.max_sessions > 0) what += " of " + std::to_string(s.entry.max_sessions);
        write(s.entry, dcid, what);
    }
    write(s.entry, dcid, line);
    ++s.entry.lines;
}

void DomainDebug::write(const Entry& e, uint64_t dcid, std::string_view text) {
    if (!logger_) return;
    std::time_t now = std::time(nullptr);
    if (now != stamp_second_) {
        stamp_second_ = now;
        stamp_ = esa_log_time(now);
    }
    logger_->info("{} Debug: {}", stamp_, debug_line(dcid, e.domain, text));
}

}  // namespace esad::logs
