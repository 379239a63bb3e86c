// delivery_log — owns the text of the delivery engine's ESA mail-log lines
// (../shared/reference/esa-reference.md §8): Message done / Response / Delayed / pending till /
// Bounced / possible delivery / deleted by administrator / Message finished. The outcome
// policy (outcome_policy.h) decides WHAT happened as structured records; this file only says
// how each record reads. Pure: records in, lines out (no clock, no I/O).
//
//   for (const std::string& line : format_log(record)) mail_log.info(line);
#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "daemon/spool/record_codec.h"

namespace esad::delivery {

namespace logrec {
// Recipients accepted with a 2xx to the final dot: "Message done" and "Response" lines.
struct Delivered {
    std::uint64_t dcid = 0;
    spool::Mid mid = 0;
    std::vector<std::uint32_t> rids;
    std::string response;  // the first line of the deciding reply
};
// A temporary failure of one recipient (it is retried).
struct Delayed {
    std::uint64_t dcid = 0;
    spool::Mid mid = 0;
    std::uint32_t rid = 0;
    std::string enhanced;
    int code = 0;  // 0: a local failure ("000")
    std::vector<std::string> lines;
};
// A permanent failure of one recipient. `reason` empty: the ESA reason of the code/status.
struct Bounced {
    std::uint64_t dcid = 0;
    spool::Mid mid = 0;
    std::uint32_t rid = 0;
    std::string enhanced;
    std::string reason;
    int code = 0;
    std::vector<std::string> lines;
};
// When a deferred recipient is tried again (wall time, seconds).
struct Pending {
    spool::Mid mid = 0;
    std::uint32_t rid = 0;
    std::time_t until = 0;
};
// The connection died after the final dot; [delivery] possible_delivery counted it delivered.
struct PossibleDelivery {
    spool::Mid mid = 0;
    std::uint64_t dcid = 0;
};
struct Deleted {  // by the operator
    spool::Mid mid = 0;
    std::uint32_t rid = 0;
};
struct Finished {  // every recipient of the message is final
    spool::Mid mid = 0;
};
}  // namespace logrec

using LogRecord = std::variant<logrec::Delivered, logrec::Delayed, logrec::Bounced, logrec::Pending,
                               logrec::PossibleDelivery, logrec::Deleted, logrec::Finished>;

// The mail-log lines of one record, in order (Delivered gives two, the others one).
std::vector<std::string> format_log(const LogRecord& record);

// ESA reason vocabulary (esa-reference §8.4): the text after the status in Delayed/Bounced.
std::string_view esa_reason(std::string_view enhanced, int code);

}  // namespace esad::delivery
