// Unit tests for common/header_fields: the header section, fields with folding, fields that
// are not fields, unfolding and the first field by name.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "common/header_fields.h"

using namespace esad;

namespace {
std::vector<std::string> names_of(std::string_view message) {
    std::vector<std::string> out;
    for_each_field(message, [&](const HeaderField& f) {
        out.push_back(f.name.empty() ? "<" + std::string(f.raw) + ">" : std::string(f.name));
        return true;
    });
    return out;
}
}  // namespace

TEST_CASE("the header section ends before the first empty line", "[headers]") {
    CHECK(header_section("A: 1\r\nB: 2\r\n\r\nbody\r\n\r\n") == "A: 1\r\nB: 2\r\n");
    CHECK(header_section("\r\nbody\r\n\r\nmore") == "");            // no header section at all
    CHECK(header_section("A: 1\r\nB: 2") == "A: 1\r\nB: 2");        // no body
    CHECK(header_section("A: 1\nB: 2\n\nbody") == "A: 1\nB: 2\n");  // bare LF line ends
}

TEST_CASE("fields keep their folding; continuation lines belong to the field", "[headers]") {
    const std::string m = "Subject: one\r\n two\r\n\tthree\r\nTo: x@y\r\n\r\nSubject: body\r\n";
    std::vector<HeaderField> fields;
    for_each_field(m, [&](const HeaderField& f) {
        fields.push_back(f);
        return true;
    });
    REQUIRE(fields.size() == 2);
    CHECK(fields[0].name == "Subject");
    CHECK(fields[0].value == " one\r\n two\r\n\tthree\r\n");
    CHECK(fields[0].raw == "Subject: one\r\n two\r\n\tthree\r\n");
    CHECK(fields[1].name == "To");
    CHECK(unfold(fields[0].value) == "one two\tthree");
}

TEST_CASE("lines that are not fields come with an empty name", "[headers]") {
    CHECK(names_of("A: 1\r\nnot a field\r\nB : 2\r\n") ==
          std::vector<std::string>{"A", "<not a field\r\n>", "B"});
    // A continuation with no field before it, a name with a space, a line without a colon.
    CHECK(names_of(" lead\r\nX Y: 1\r\n:empty\r\n") ==
          std::vector<std::string>{"< lead\r\n>", "<X Y: 1\r\n>", "<:empty\r\n>"});
    // fn returning false stops the walk.
    int seen = 0;
    for_each_field("A: 1\r\nB: 2\r\nC: 3\r\n", [&](const HeaderField&) { return ++seen < 2; });
    CHECK(seen == 2);
}

TEST_CASE("first_field: case-insensitive, unfolded, bounded, only in the header section",
          "[headers]") {
    const std::string m = "From: a\r\nsUbJeCt:   Hello\r\n  World  \r\n\r\nSubject: no\r\n";
    CHECK(first_field(m, "Subject") == std::optional<std::string>("Hello  World"));
    CHECK(first_field(m, "Subject", 5) == std::optional<std::string>("Hello"));
    CHECK_FALSE(first_field(m, "Message-ID").has_value());
    CHECK_FALSE(first_field("\r\nSubject: body\r\n", "Subject").has_value());
    CHECK(first_field("Subject:\r\n", "Subject") == std::optional<std::string>(""));
}
