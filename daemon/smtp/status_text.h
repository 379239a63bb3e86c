// status_text — the words a mail log line puts after an enhanced status code
// ("Bounced: ... - 5.1.1 - Bad destination mailbox address (...)").
//
//   status_text("5.6.7") -> "Non-ASCII addresses not permitted for that sender/recipient"
//
// The appliance's own vocabulary where it has one (esa-reference §8.4: x.1.0 "Unknown
// address error", x.1.2 "Bad destination host", x.3.2 "Not accepting messages at this time",
// x.3.4 "Message too big", x.4.7 "Delivery expired (message too old)", x.4.x "Other network
// problem", x.7.x "Security or policy error"), otherwise the RFC 3463 text of the detail
// code (with RFC 6531 x.6.7-x.6.9, RFC 7505 x.1.10, RFC 3886/7372 additions), otherwise
// the RFC 3463 text of the subject class ("Other address status", ...). A string that is
// not an enhanced code gets "Unknown error". Pure.
#pragma once

#include <string_view>

namespace esad::smtp {

std::string_view status_text(std::string_view enhanced);

}  // namespace esad::smtp
