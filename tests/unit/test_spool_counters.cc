// Tests for daemon/spool/counters: round trip through the file, missing file, damage.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "daemon/spool/counters.h"

using namespace esad::spool;
namespace fs = std::filesystem;

TEST_CASE("counters survive a save/load cycle", "[spool][counters]") {
    char tmpl[] = "/tmp/esad_spool_counters_XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    const std::string dir = tmpl;

    CounterMap loaded{{"stale", 1}};
    REQUIRE(load_counters(dir, loaded).ok());
    CHECK(loaded.empty());

    const CounterMap c{{"injected", 12345}, {"delivered", 0}, {"max", ~0ull}, {"a.b:c-d_e", 7}};
    REQUIRE(save_counters(dir, c).ok());
    REQUIRE(load_counters(dir, loaded).ok());
    CHECK(loaded == c);
    CHECK_FALSE(fs::exists(dir + "/counters.tmp"));

    CHECK(save_counters(dir, {{"bad name", 1}}).err == EINVAL);
    CHECK(save_counters(dir, {{"", 1}}).err == EINVAL);

    {
        std::fstream f(dir + "/counters", std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(20);
        f.put('9');
    }
    const IoStatus st = load_counters(dir, loaded);
    CHECK(st.err == EBADMSG);
    CHECK(loaded == c);  // untouched on failure

    std::error_code ec;
    fs::remove_all(dir, ec);
}

TEST_CASE("counter text decoding rejects damage", "[spool][counters]") {
    const std::string good = encode_counters({{"x", 1}, {"y", 2}});
    CounterMap out;
    REQUIRE(decode_counters(good, out, nullptr));
    CHECK(out == CounterMap{{"x", 1}, {"y", 2}});
    std::string reason;
    for (std::size_t n = 0; n < good.size(); ++n) {
        CHECK_FALSE(decode_counters(good.substr(0, n), out, &reason));
    }
    CHECK_FALSE(decode_counters(good + "z 3\n", out, &reason));
}
