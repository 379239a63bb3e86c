// Tests for common/idna.h and the IDN checks of address parsing.
#include <catch2/catch.hpp>

#include "common/address.h"
#include "common/idna.h"

using namespace esad;

TEST_CASE("U-label domains become lower-case A-labels; ASCII is only lower-cased", "[idna]") {
    CHECK(to_a_label("Example.COM") == "example.com");
    CHECK(to_a_label("m\xc3\xbcnchen.example") == "xn--mnchen-3ya.example");
    CHECK(to_a_label("M\xc3\x9cNCHEN.example") == "xn--mnchen-3ya.example");  // case-folded
    // IDNA2008 non-transitional: sharp s stays (not "ss").
    CHECK(to_a_label("stra\xc3\x9f"
                     "e.example") == "xn--strae-oqa.example");
    std::string error;
    CHECK_FALSE(to_a_label("\xe2\x98\x83\xe2\x80\x8d.example", &error));  // ZWJ not allowed
    CHECK_FALSE(error.empty());
    CHECK(to_u_label("xn--mnchen-3ya.example") == "m\xc3\xbcnchen.example");
    CHECK(to_u_label("example.com") == "example.com");
    CHECK(to_u_label("xn--garbage-.example") == "xn--garbage-.example");
}

TEST_CASE("a U-label domain that has no A-label form is refused at RCPT", "[idna][address]") {
    const PathResult ok =
        parse_path("<j\xc3\xb6rg@m\xc3\xbcnchen.example>", {PathRole::kRecipient, true});
    REQUIRE(ok.ok());
    CHECK(ok.mailbox->domain == "m\xc3\xbcnchen.example");  // the address keeps the U-label
    const PathResult bad =
        parse_path("<a@\xe2\x98\x83\xe2\x80\x8d.example>", {PathRole::kRecipient, true});
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error.code == 501);
    CHECK(bad.error.text.find("internationalized") != std::string::npos);
}
