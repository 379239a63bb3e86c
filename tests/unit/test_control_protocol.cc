// Control protocol v1: request parsing, reply codec and line framing.
#include <catch2/catch.hpp>

#include "common/control_protocol.h"

using namespace esad::control;

TEST_CASE("a well-formed request parses") {
    auto p = parse_request(R"({"v":1,"id":7,"cmd":"hoststatus","args":{"domain":"a.com"}})");
    REQUIRE(p.ok());
    CHECK(p.request->id == 7);
    CHECK(p.request->cmd == "hoststatus");
    CHECK(p.request->args["domain"] == "a.com");
}

TEST_CASE("args default to an empty object") {
    auto p = parse_request(R"({"v":1,"id":1,"cmd":"status"})");
    REQUIRE(p.ok());
    CHECK(p.request->args.is_object());
    CHECK(p.request->args.empty());
}

TEST_CASE("malformed requests are rejected with the documented codes") {
    struct Case {
        std::string line;
        std::string code;
        bool has_id;
    };
    std::vector<Case> cases = {
        {"", "bad_request", false},
        {"not json", "bad_request", false},
        {R"({"v":1,"id":1,"cmd":"status")", "bad_request", false},  // truncated
        {"[1,2,3]", "bad_request", false},
        {R"({"v":1,"cmd":"status"})", "bad_request", false},
        {R"({"v":1,"id":"x","cmd":"status"})", "bad_request", false},
        {R"({"id":3,"cmd":"status"})", "bad_request", true},
        {R"({"v":2,"id":3,"cmd":"status"})", "unsupported_version", true},
        {R"({"v":1,"id":3})", "bad_request", true},
        {R"({"v":1,"id":3,"cmd":""})", "bad_request", true},
        {R"({"v":1,"id":3,"cmd":7})", "bad_request", true},
        {R"({"v":1,"id":3,"cmd":"status","args":[1]})", "bad_request", true},
    };
    for (const auto& c : cases) {
        INFO(c.line);
        auto p = parse_request(c.line);
        REQUIRE_FALSE(p.ok());
        CHECK(p.error.code == c.code);
        CHECK(p.error.id.has_value() == c.has_id);
    }
}

TEST_CASE("deep nesting is refused before parsing") {
    std::string deep = R"({"v":1,"id":1,"cmd":"x","args":{"a":)";
    for (int i = 0; i < 10000; ++i)
        deep += "[";
    auto p = parse_request(deep);
    REQUIRE_FALSE(p.ok());
    CHECK(p.error.message.find("deep") != std::string::npos);
    // Brackets inside strings do not count.
    std::string quoted =
        R"({"v":1,"id":1,"cmd":"x","args":{"a":")" + std::string(100, '[') + "\"}}";
    CHECK(parse_request(quoted).ok());
    CHECK(json_depth("[[[]]]", 100) == 3);
}

TEST_CASE("invalid UTF-8 is refused") {
    CHECK(valid_utf8("plain"));
    CHECK(valid_utf8("caf\xc3\xa9"));
    CHECK(valid_utf8("\xf0\x9f\x93\xa7"));
    CHECK_FALSE(valid_utf8("\xff"));
    CHECK_FALSE(valid_utf8("\xc3"));              // truncated sequence
    CHECK_FALSE(valid_utf8("\xc0\xaf"));          // overlong
    CHECK_FALSE(valid_utf8("\xed\xa0\x80"));      // surrogate
    CHECK_FALSE(valid_utf8("\xf4\x90\x80\x80"));  // > U+10FFFF
    auto p = parse_request("{\"v\":1,\"id\":1,\"cmd\":\"st\xff\"}");
    REQUIRE_FALSE(p.ok());
    CHECK(p.error.code == "bad_request");
}

TEST_CASE("oversize request is too_large") {
    std::string big =
        R"({"v":1,"id":1,"cmd":"x","args":{"a":")" + std::string(kMaxLineBytes, 'a') + "\"}}";
    auto p = parse_request(big);
    REQUIRE_FALSE(p.ok());
    CHECK(p.error.code == "too_large");
}

TEST_CASE("replies round-trip") {
    auto ok = parse_reply(encode_ok(5, {{"x", 1}}));
    REQUIRE(ok);
    CHECK(ok->ok);
    CHECK(ok->id == 5);
    CHECK(ok->data["x"] == 1);
    auto err = parse_reply(encode_error(6, "not_found", "No record of host"));
    REQUIRE(err);
    CHECK_FALSE(err->ok);
    CHECK(err->error_code == "not_found");
    CHECK(err->error_message == "No record of host");
    auto end = parse_reply(encode_end(6));
    REQUIRE(end);
    CHECK(end->end);
    auto noid = parse_reply(encode_error(std::nullopt, "bad_request", "x"));
    REQUIRE(noid);
    CHECK(noid->id == 0);
    CHECK_FALSE(parse_reply("garbage"));
    CHECK_FALSE(parse_reply(R"({"v":2,"id":1,"ok":true})"));
    Request r{9, "status", {{"detail", true}}};
    auto back = parse_request(encode_request(r).substr(0, encode_request(r).size() - 1));
    REQUIRE(back.ok());
    CHECK(back.request->id == 9);
    CHECK(back.request->args["detail"] == true);
}

TEST_CASE("line framer splits, tolerates CRLF and caps line length") {
    LineFramer f(16);
    f.append("ab");
    CHECK_FALSE(f.next_line());
    f.append("c\r\nde\nf");
    CHECK(f.next_line() == std::optional<std::string>("abc"));
    CHECK(f.next_line() == std::optional<std::string>("de"));
    CHECK_FALSE(f.next_line());
    f.append(std::string(20, 'x'));
    CHECK_FALSE(f.next_line());
    CHECK(f.overflowed());

    LineFramer g(4);
    g.append("12345678\n");
    CHECK_FALSE(g.next_line());
    CHECK(g.overflowed());
}

// Fuzz findings (tests/fuzz/fuzz_control_protocol): fields of the wrong type are "not a
// reply", never an exception or undefined behaviour.
TEST_CASE("parse_reply rejects mistyped fields without throwing") {
    CHECK_FALSE(parse_reply(R"({"v":1e300,"id":1,"ok":true})"));
    CHECK_FALSE(parse_reply(R"({"v":1.0,"id":1,"ok":true})"));
    CHECK_FALSE(parse_reply(R"({"v":"x","id":1,"ok":true})"));
    CHECK_FALSE(parse_reply(R"({"v":1,"id":1,"ok":true,"end":"yes"})"));
    CHECK_FALSE(parse_reply(R"({"v":1,"id":1,"ok":false,"error":{"code":7}})"));
    CHECK_FALSE(parse_reply(R"({"v":1,"id":1,"ok":false,"error":{"message":[1]}})"));
    auto big_id = parse_reply(R"({"v":1,"id":1e300,"ok":true})");
    REQUIRE(big_id);
    CHECK(big_id->id == 0);
    auto bare = parse_reply(R"({"v":1,"id":3,"ok":false})");
    REQUIRE(bare);
    CHECK(bare->error_code == "internal");
}

TEST_CASE("line framer verdict does not depend on a CR/LF split across reads") {
    const std::string line(8, 'x');
    LineFramer one(8);
    one.append(line + "\r\n");
    CHECK(one.next_line() == std::optional<std::string>(line));
    CHECK_FALSE(one.overflowed());

    LineFramer split(8);
    split.append(line + "\r");
    CHECK_FALSE(split.next_line());
    CHECK_FALSE(split.overflowed());
    split.append("\n");
    CHECK(split.next_line() == std::optional<std::string>(line));
    CHECK_FALSE(split.overflowed());

    LineFramer longer(8);
    longer.append(line + "\rx");
    CHECK_FALSE(longer.next_line());
    CHECK(longer.overflowed());
}
