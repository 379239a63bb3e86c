// Table tests for daemon/smtp/dot_codec.h: dot-stuffing, line-end normalisation, the final
// dot, and every way a chunk boundary can split the input.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "daemon/smtp/dot_codec.h"

using esad::smtp::dot_encode;
using esad::smtp::DotEncoder;

namespace {

// Encodes `in` split at every position in `cuts` (ascending offsets).
std::string encode_split(const std::string& in, const std::vector<std::size_t>& cuts) {
    DotEncoder enc;
    std::string out;
    std::size_t pos = 0;
    for (std::size_t cut : cuts) {
        enc.encode(std::string_view(in).substr(pos, cut - pos), out);
        pos = cut;
    }
    enc.encode(std::string_view(in).substr(pos), out);
    enc.finish(out);
    return out;
}

}  // namespace

TEST_CASE("dot_encode table", "[dot_codec]") {
    struct Case {
        std::string in;
        std::string out;
    };
    const std::vector<Case> cases = {
        {"", ".\r\n"},
        {"a\r\n", "a\r\n.\r\n"},
        {"a", "a\r\n.\r\n"},  // no line end: one CRLF added (REQ-5321-03)
        {"a\r\nb", "a\r\nb\r\n.\r\n"},
        {"\r\n", "\r\n.\r\n"},
        {".\r\n", "..\r\n.\r\n"},
        {"..\r\n", "...\r\n.\r\n"},
        {".x\r\n", "..x\r\n.\r\n"},
        {"a\r\n.\r\nb\r\n", "a\r\n..\r\nb\r\n.\r\n"},  // a lone dot inside content
        {"a.b\r\n", "a.b\r\n.\r\n"},                   // only leading dots are stuffed
        {" .\r\n", " .\r\n.\r\n"},
        {".", "..\r\n.\r\n"},
        {"a\n", "a\r\n.\r\n"},  // bare LF -> CRLF
        {"a\nb\n", "a\r\nb\r\n.\r\n"},
        {"a\rb", "a\r\nb\r\n.\r\n"},  // bare CR -> CRLF
        {"a\r", "a\r\n.\r\n"},
        {"a\r\r\n", "a\r\n\r\n.\r\n"},  // CR then CRLF
        {"a\n\r", "a\r\n\r\n.\r\n"},    // LF then CR: two line ends
        {"\n.\n", "\r\n..\r\n.\r\n"},   // smuggling attempt stays content
        {"a\n.\r\n", "a\r\n..\r\n.\r\n"},
        {"a\r.\r", "a\r\n..\r\n.\r\n"},
        {"x\r\n.\n", "x\r\n..\r\n.\r\n"},
        {std::string("a\0b\r\n", 5), std::string("a\0b\r\n.\r\n", 8)},  // NUL preserved
        {"\xff\xfe\r\n", "\xff\xfe\r\n.\r\n"},
    };
    for (const auto& c : cases) {
        INFO("input size " << c.in.size());
        CHECK(dot_encode(c.in) == c.out);
        // Every single split point, and the input fed octet by octet, give the same result.
        for (std::size_t cut = 0; cut <= c.in.size(); ++cut) {
            INFO("cut at " << cut);
            CHECK(encode_split(c.in, {cut}) == c.out);
        }
        std::vector<std::size_t> all;
        for (std::size_t i = 1; i < c.in.size(); ++i)
            all.push_back(i);
        CHECK(encode_split(c.in, all) == c.out);
    }
}

TEST_CASE("chunk boundaries inside CRLF and before a dot", "[dot_codec]") {
    // "\r" | "\n." : the LF completes the CRLF, the dot starts a line.
    CHECK(encode_split("a\r\n.b\r\n", {2}) == "a\r\n..b\r\n.\r\n");
    // "\r\n" | "."
    CHECK(encode_split("a\r\n.b\r\n", {3}) == "a\r\n..b\r\n.\r\n");
    // "\r" | "\n" | "."
    CHECK(encode_split("a\r\n.b\r\n", {2, 3}) == "a\r\n..b\r\n.\r\n");
    // "\r" | "." : a bare CR at a chunk end, then a dot line
    CHECK(encode_split("a\r.b", {2}) == "a\r\n..b\r\n.\r\n");
    // content ending with CR exactly at the last chunk: no extra CRLF
    CHECK(encode_split("a\r", {2}) == "a\r\n.\r\n");
    // empty chunks are harmless
    CHECK(encode_split("a\r\n", {0, 0, 1, 1, 3, 3}) == "a\r\n.\r\n");
}

TEST_CASE("encoder is reusable after finish and never emits bare CR or LF", "[dot_codec]") {
    DotEncoder enc;
    std::string out;
    enc.encode("x", out);
    enc.finish(out);
    CHECK(out == "x\r\n.\r\n");
    out.clear();
    enc.encode(".y\n", out);
    enc.finish(out);
    CHECK(out == "..y\r\n.\r\n");

    std::string nasty;
    for (int i = 0; i < 2000; ++i)
        nasty += static_cast<char>("\r\n.a"[(i * 7 + i / 3) % 4]);
    const std::string enc_out = dot_encode(nasty);
    for (std::size_t i = 0; i < enc_out.size(); ++i) {
        if (enc_out[i] == '\r') REQUIRE((i + 1 < enc_out.size() && enc_out[i + 1] == '\n'));
        if (enc_out[i] == '\n') REQUIRE((i > 0 && enc_out[i - 1] == '\r'));
    }
    // The only CRLF.CRLF is the terminator.
    CHECK(enc_out.find("\r\n.\r\n") == enc_out.size() - 5);
}

TEST_CASE("lines over 998 octets are folded with CRLF SPACE, never sent longer", "[dot_codec]") {
    const std::string l998(998, 'a');
    // Exactly 998: untouched. The stuffing dot does not count.
    CHECK(dot_encode(l998 + "\r\n") == l998 + "\r\n.\r\n");
    CHECK(dot_encode("." + std::string(997, 'd') + "\r\n") ==
          ".." + std::string(997, 'd') + "\r\n.\r\n");
    // 1,560 octets of minified CSS starting with a dot.
    const std::string css = ".c{color:red}" + std::string(1547, 'z');
    const std::string out = dot_encode(css + "\r\nnext\r\n");
    CHECK(out == "." + css.substr(0, 998) + "\r\n " + css.substr(998) + "\r\nnext\r\n.\r\n");
    // Every chunking gives the same bytes, and no line (stuffing dot aside) exceeds 998.
    const std::string big = std::string(2500, 'b') + "\r\n" + std::string(1996, 'c');
    const std::string whole = dot_encode(big);
    for (std::size_t cut : {1u, 997u, 998u, 999u, 1996u, 2500u, 2501u, 2502u, 3000u}) {
        INFO(cut);
        CHECK(encode_split(big, {cut}) == whole);
    }
    std::size_t start = 0;
    while (start < whole.size()) {
        const std::size_t end = whole.find("\r\n", start);
        REQUIRE(end != std::string::npos);
        std::size_t len = end - start;
        if (len > 0 && whole[start] == '.') --len;
        CHECK(len <= 998);
        start = end + 2;
    }
    // A smaller limit (tests, strict peers).
    DotEncoder small(4);
    std::string s;
    small.encode("abcdefghij\r\n", s);
    small.finish(s);
    CHECK(s == "abcd\r\n efg\r\n hij\r\n.\r\n");
}
