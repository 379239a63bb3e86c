// See format.h.
#include "common/format.h"

#include <fmt/format.h>

namespace esad {

namespace {
std::string strftime_local(std::time_t t, const char* pattern) {
    struct tm tm_local {};
    localtime_r(&t, &tm_local);
    char buf[64];
    size_t n = std::strftime(buf, sizeof buf, pattern, &tm_local);
    return std::string(buf, n);
}
}  // namespace

std::string esa_time(std::time_t t) {
    return strftime_local(t, "%a %b %e %H:%M:%S %Y %Z");
}

std::string esa_log_time(std::time_t t) {
    return strftime_local(t, "%a %b %e %H:%M:%S %Y");
}

std::string thousands(uint64_t n) {
    std::string digits = std::to_string(n);
    std::string out;
    out.reserve(digits.size() + digits.size() / 3);
    size_t lead = digits.size() % 3;
    for (size_t i = 0; i < digits.size(); ++i) {
        if (i != 0 && i >= lead && (i - lead) % 3 == 0) out.push_back(',');
        out.push_back(digits[i]);
    }
    return out;
}

std::string human_duration(uint64_t s) {
    uint64_t d = s / 86400, h = (s / 3600) % 24, m = (s / 60) % 60, sec = s % 60;
    if (d) return fmt::format("{}d {}h {}m {}s", d, h, m, sec);
    if (h) return fmt::format("{}h {}m {}s", h, m, sec);
    if (m) return fmt::format("{}m {}s", m, sec);
    return fmt::format("{}s", sec);
}

}  // namespace esad
