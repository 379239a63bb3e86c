// See delivery_log.h.
#include "daemon/delivery/delivery_log.h"

#include <fmt/format.h>

#include "common/escape.h"
#include "common/format.h"
#include "daemon/smtp/status_text.h"

namespace esad::delivery {

namespace {

// "('550', ['line one', 'line two'])" with the lines as Python-style literals.
std::string reply_tuple(int code, const std::vector<std::string>& lines) {
    std::string out = fmt::format("('{:03d}', [", code);
    for (size_t i = 0; i < lines.size(); ++i) {
        if (i) out.append(", ");
        std::string line = escape_for_log(lines[i], 512);
        out.push_back('\'');
        for (char c : line) {
            if (c == '\'' || c == '\\') out.push_back('\\');
            out.push_back(c);
        }
        out.push_back('\'');
    }
    out.append("])");
    return out;
}

std::string rid_list(const std::vector<uint32_t>& rids) {
    std::string out = "[";
    for (size_t i = 0; i < rids.size(); ++i) {
        if (i) out.append(", ");
        out.append(std::to_string(rids[i]));
    }
    out.push_back(']');
    return out;
}

struct Formatter {
    std::vector<std::string> operator()(const logrec::Delivered& r) const {
        return {
            fmt::format("Message done DCID {} MID {} to RID {}", r.dcid, r.mid, rid_list(r.rids)),
            fmt::format("MID {} RID {} Response '{}'", r.mid, rid_list(r.rids),
                        escape_for_log(r.response, 400))};
    }
    std::vector<std::string> operator()(const logrec::Delayed& r) const {
        return {fmt::format("Delayed: DCID {} MID {} to RID {} - {} - {} {}[]", r.dcid, r.mid,
                            r.rid, r.enhanced, esa_reason(r.enhanced, r.code),
                            reply_tuple(r.code, r.lines))};
    }
    std::vector<std::string> operator()(const logrec::Bounced& r) const {
        std::string_view reason = r.reason.empty() ? esa_reason(r.enhanced, r.code) : r.reason;
        return {fmt::format("Bounced: DCID {} MID {} to RID {} - {} - {} {} []", r.dcid, r.mid,
                            r.rid, r.enhanced, reason, reply_tuple(r.code, r.lines))};
    }
    std::vector<std::string> operator()(const logrec::Pending& r) const {
        return {fmt::format("Message {} to RID [{}] pending till {}", r.mid, r.rid,
                            esa_log_time(r.until))};
    }
    std::vector<std::string> operator()(const logrec::PossibleDelivery& r) const {
        return {
            fmt::format("MID {} possible delivery: DCID {} lost the connection after the "
                        "final dot",
                        r.mid, r.dcid)};
    }
    std::vector<std::string> operator()(const logrec::Deleted& r) const {
        return {fmt::format("MID {} RID [{}] deleted by administrator", r.mid, r.rid)};
    }
    std::vector<std::string> operator()(const logrec::Finished& r) const {
        return {fmt::format("Message finished MID {} done", r.mid)};
    }
};

}  // namespace

std::string_view esa_reason(std::string_view enhanced, int code) {
    if (code == 421) return "Not accepting messages at this time";
    return smtp::status_text(enhanced);
}

std::vector<std::string> format_log(const LogRecord& record) {
    return std::visit(Formatter{}, record);
}

}  // namespace esad::delivery
