// Unit tests for daemon/delivery/delivery_log: the exact ESA mail-log lines of each record
// (../shared/reference/esa-reference.md §8; the integration tests test_delivery and test_logs
// read the same lines from the daemon's mail log).
#include <catch2/catch.hpp>

#include "common/format.h"
#include "daemon/delivery/delivery_log.h"

using namespace esad;
using namespace esad::delivery;

TEST_CASE("delivery log: delivered recipients give Message done and Response", "[delivery_log]") {
    auto lines = format_log(logrec::Delivered{8, 6, {0, 1}, "2.0.0 Ok: queued as 1234"});
    REQUIRE(lines.size() == 2);
    CHECK(lines[0] == "Message done DCID 8 MID 6 to RID [0, 1]");
    CHECK(lines[1] == "MID 6 RID [0, 1] Response '2.0.0 Ok: queued as 1234'");
    // The response is escaped and bounded.
    lines = format_log(logrec::Delivered{1, 2, {3}, "ok\r\nX"});
    CHECK(lines[1].find('\r') == std::string::npos);
}

TEST_CASE("delivery log: Delayed keeps the appliance's missing space before []", "[delivery_log]") {
    auto lines = format_log(logrec::Delayed{5, 4, 0, "4.1.0", 466, {"Mailbox temporarily full."}});
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] ==
          "Delayed: DCID 5 MID 4 to RID 0 - 4.1.0 - Unknown address error ('466', ['Mailbox "
          "temporarily full.'])[]");
    // A local failure has code 000; 421 has the appliance's own reason.
    CHECK(format_log(logrec::Delayed{0, 4, 1, "4.3.0", 0, {"connection refused"}})[0] ==
          "Delayed: DCID 0 MID 4 to RID 1 - 4.3.0 - Other or undefined mail system status "
          "('000', ['connection refused'])[]");
    CHECK(format_log(logrec::Delayed{7, 4, 1, "4.7.0", 421, {"busy"}})[0] ==
          "Delayed: DCID 7 MID 4 to RID 1 - 4.7.0 - Not accepting messages at this time "
          "('421', ['busy'])[]");
}

TEST_CASE("delivery log: Bounced lines, reply lines quoted as Python literals", "[delivery_log]") {
    CHECK(format_log(logrec::Bounced{
              3, 4, 0, "5.1.0", "", 550, {"<george@yourdomain.com>... Relaying denied"}})[0] ==
          "Bounced: DCID 3 MID 4 to RID 0 - 5.1.0 - Unknown address error ('550', "
          "['<george@yourdomain.com>... Relaying denied']) []");
    CHECK(format_log(logrec::Bounced{3, 4, 1, "5.1.1", "", 550, {"it's"}})[0] ==
          "Bounced: DCID 3 MID 4 to RID 1 - 5.1.1 - Bad destination mailbox address ('550', "
          "['it\\'s']) []");
    CHECK(format_log(logrec::Bounced{0,
                                     9,
                                     2,
                                     "5.4.7",
                                     "Delivery expired (message too old)",
                                     0,
                                     {"retry limit reached"}})[0] ==
          "Bounced: DCID 0 MID 9 to RID 2 - 5.4.7 - Delivery expired (message too old) "
          "('000', ['retry limit reached']) []");
    CHECK(format_log(logrec::Bounced{0, 9, 2, "5.0.0", "Bounced by administrator", 0, {}})[0] ==
          "Bounced: DCID 0 MID 9 to RID 2 - 5.0.0 - Bounced by administrator ('000', []) []");
}

TEST_CASE("delivery log: pending till, possible delivery, deleted, finished", "[delivery_log]") {
    const std::time_t t = 1049141818;  // Mon Mar 31 20:16:58 2003 UTC
    CHECK(format_log(logrec::Pending{4, 0, t})[0] ==
          "Message 4 to RID [0] pending till " + esa_log_time(t));
    CHECK(format_log(logrec::PossibleDelivery{12, 3})[0] ==
          "MID 12 possible delivery: DCID 3 lost the connection after the final dot");
    CHECK(format_log(logrec::Deleted{12, 1})[0] == "MID 12 RID [1] deleted by administrator");
    CHECK(format_log(logrec::Finished{12})[0] == "Message finished MID 12 done");
}
