// Table tests for daemon/smtp/status_text.h.
#include <catch2/catch.hpp>

#include "daemon/smtp/status_text.h"

using esad::smtp::status_text;

TEST_CASE("status_text: appliance wording, RFC 3463 detail texts, class fallback", "[status]") {
    struct Case {
        const char* code;
        const char* text;
    };
    const Case cases[] = {
        {"5.1.0", "Unknown address error"},
        {"4.1.0", "Unknown address error"},
        {"5.1.1", "Bad destination mailbox address"},
        {"5.1.2", "Bad destination host"},
        {"5.1.10", "Recipient address has null MX"},  // not "Unknown address error"
        {"5.6.7", "Non-ASCII addresses not permitted for that sender/recipient"},
        {"5.6.3", "Conversion required but not supported"},
        {"4.3.2", "Not accepting messages at this time"},
        {"5.3.4", "Message too big"},
        {"5.4.7", "Delivery expired (message too old)"},
        {"4.4.1", "Other network problem"},
        {"4.4.2", "Other network problem"},
        {"4.7.5", "Cryptographic failure"},
        {"5.7.1", "Delivery not authorized, message refused"},
        {"5.7.99", "Security or policy error"},
        {"5.2.2", "Mailbox full"},
        {"5.1.99", "Other address status"},
        {"5.9.1", "Unknown error"},
        {"3.1.1", "Unknown error"},
        {"5.1", "Unknown error"},
        {"", "Unknown error"},
        {"5.1.1x", "Unknown error"},
        {"55.1.1", "Unknown error"},
    };
    for (const auto& c : cases) {
        INFO(c.code);
        CHECK(status_text(c.code) == c.text);
    }
}
