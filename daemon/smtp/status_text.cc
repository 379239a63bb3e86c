// See status_text.h for the contract.
#include "daemon/smtp/status_text.h"

#include <array>
#include <utility>

namespace esad::smtp {

namespace {

// "subject.detail" -> text. The class digit (2, 4, 5) does not change the meaning.
constexpr std::array<std::pair<std::string_view, std::string_view>, 55> kDetail = {{
    {"1.0", "Unknown address error"},  // appliance wording of "Other address status"
    {"1.1", "Bad destination mailbox address"},
    {"1.2", "Bad destination host"},  // appliance wording of "Bad destination system address"
    {"1.3", "Bad destination mailbox address syntax"},
    {"1.4", "Destination mailbox address ambiguous"},
    {"1.5", "Destination address valid"},
    {"1.6", "Destination mailbox has moved, no forwarding address"},
    {"1.7", "Bad sender's mailbox address syntax"},
    {"1.8", "Bad sender's system address"},
    {"1.9", "Message relayed to non-compliant mailer"},
    {"1.10", "Recipient address has null MX"},
    {"2.0", "Other or undefined mailbox status"},
    {"2.1", "Mailbox disabled, not accepting messages"},
    {"2.2", "Mailbox full"},
    {"2.3", "Message length exceeds administrative limit"},
    {"2.4", "Mailing list expansion problem"},
    {"3.0", "Other or undefined mail system status"},
    {"3.1", "Mail system full"},
    {"3.2", "Not accepting messages at this time"},
    {"3.3", "System not capable of selected features"},
    {"3.4", "Message too big"},
    {"3.5", "System incorrectly configured"},
    {"4.7", "Delivery expired (message too old)"},
    {"5.0", "Other or undefined protocol status"},
    {"5.1", "Invalid command"},
    {"5.2", "Syntax error"},
    {"5.3", "Too many recipients"},
    {"5.4", "Invalid command arguments"},
    {"5.5", "Wrong protocol version"},
    {"5.6", "Authentication exchange line is too long"},
    {"6.0", "Other or undefined media error"},
    {"6.1", "Media not supported"},
    {"6.2", "Conversion required and prohibited"},
    {"6.3", "Conversion required but not supported"},
    {"6.4", "Conversion with loss performed"},
    {"6.5", "Conversion failed"},
    {"6.6", "Message content not available"},
    {"6.7", "Non-ASCII addresses not permitted for that sender/recipient"},
    {"6.8", "UTF-8 string reply is required, but not permitted by the SMTP client"},
    {"6.9", "UTF-8 header message cannot be transferred to one or more recipients"},
    {"6.10", "Conversion of 8-bit content failed"},
    {"6.11", "Bare CR or LF not permitted"},
    // Security: the appliance says "Security or policy error" for the class; the detail
    // texts are kept where they tell the operator something the class does not.
    {"7.0", "Security or policy error"},
    {"7.1", "Delivery not authorized, message refused"},
    {"7.2", "Mailing list expansion prohibited"},
    {"7.3", "Security conversion required but not possible"},
    {"7.4", "Security features not supported"},
    {"7.5", "Cryptographic failure"},
    {"7.6", "Cryptographic algorithm not supported"},
    {"7.7", "Message integrity failure"},
    {"7.8", "Authentication credentials invalid"},
    {"7.9", "Authentication mechanism is too weak"},
    {"7.10", "Encryption needed"},
    {"7.11", "Encryption required for requested authentication mechanism"},
    {"7.26", "Multiple authentication checks failed"},
}};

constexpr std::array<std::string_view, 8> kSubject = {
    "Other or undefined status",        // x.0.x
    "Other address status",             // x.1.x
    "Mailbox status",                   // x.2.x
    "Mail system status",               // x.3.x
    "Other network problem",            // x.4.x (appliance wording)
    "Mail delivery protocol status",    // x.5.x
    "Message content or media status",  // x.6.x
    "Security or policy error",         // x.7.x (appliance wording)
};

bool all_digits(std::string_view s, std::size_t max_len) {
    if (s.empty() || s.size() > max_len) return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    return true;
}

}  // namespace

std::string_view status_text(std::string_view enhanced) {
    const std::size_t a = enhanced.find('.');
    const std::size_t b = a == std::string_view::npos ? a : enhanced.find('.', a + 1);
    if (a != 1 || b == std::string_view::npos) return "Unknown error";
    const char cls = enhanced[0];
    const std::string_view subject = enhanced.substr(a + 1, b - a - 1);
    const std::string_view detail = enhanced.substr(b + 1);
    if ((cls != '2' && cls != '4' && cls != '5') || !all_digits(subject, 3) ||
        !all_digits(detail, 3)) {
        return "Unknown error";
    }
    const std::string_view key = enhanced.substr(a + 1);
    for (const auto& [code, text] : kDetail)
        if (code == key) return text;
    const int s = subject.size() == 1 ? subject[0] - '0' : -1;
    if (s >= 0 && s < static_cast<int>(kSubject.size())) return kSubject[s];
    return "Unknown error";
}

}  // namespace esad::smtp
