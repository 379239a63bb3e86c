// Domain debug log: line format, domain selection, session limits, configured vs added
// domains; written through the real spdlog async logger to a temporary directory.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "daemon/logs/domain_debug.h"
#include "tests/support/temp_dir.h"

using namespace esad::logs;

namespace {

struct TempDir : esad::test::TempDir {
    TempDir() : esad::test::TempDir("domaindebug") {}
};

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace

TEST_CASE("debug lines: direction, DCID, domain, escaping") {
    CHECK(debug_line(5, "dst.test", "> MAIL FROM:<a@b>") ==
          "DCID 5 domain dst.test: C: MAIL FROM:<a@b>");
    CHECK(debug_line(5, "dst.test", "< 250 2.1.0 ok") == "DCID 5 domain dst.test: S: 250 2.1.0 ok");
    CHECK(debug_line(5, "dst.test", "state banner -> ehlo") ==
          "DCID 5 domain dst.test: -- state banner -> ehlo");
    CHECK(debug_line(7, "dst.test", "< 550 bad\r\nforged\\") ==
          "DCID 7 domain dst.test: S: 550 bad\\x0d\\x0aforged\\\\");
    CHECK(debug_domain_key("DST.Test.") == "dst.test");
    CHECK(debug_domain_key("bad domain").empty());
    CHECK(debug_domain_key("").empty());
}

TEST_CASE("only debugged domains are written, limited sessions stop after N") {
    TempDir dir;
    std::string error;
    auto dd = DomainDebug::open(dir.path + "/logs", {"Conf.Test"}, &error);
    REQUIRE(dd);
    CHECK(dd->path() == dir.path + "/logs/domain_debug.current");
    REQUIRE(dd->list().size() == 1);
    CHECK(dd->list()[0].domain == "conf.test");
    CHECK(dd->list()[0].configured);

    REQUIRE(dd->add("dst.test", 2, &error));
    CHECK(!dd->add("no way", 0, &error));
    dd->trace("other.test", 1, "> EHLO esad.test");  // not debugged
    dd->trace("dst.test", 3, "< 220 hello");
    dd->trace("dst.test", 4, "< 220 hello again");
    dd->trace("dst.test", 3, "> QUIT");               // session 3 is still recorded
    dd->trace("dst.test", 5, "< 220 third session");  // beyond the limit
    dd->trace("conf.test", 6, "> EHLO esad.test");
    dd->trace("conf.test", 6, "< 250 ok");
    dd->trace("conf.test", 8, "> EHLO esad.test");  // unlimited: a new session
    dd->flush();

    // spdlog's async flush only queues the flush: wait for the worker to write the lines.
    std::string log;
    for (int i = 0; i < 500; ++i) {
        log = read_file(dd->path());
        if (log.find("DCID 8 domain conf.test: C: EHLO") != std::string::npos) break;
        usleep(10 * 1000);
    }
    CHECK(log.find("other.test") == std::string::npos);
    CHECK(log.find("Debug: DCID 3 domain dst.test: -- session 1 of 2\n") != std::string::npos);
    CHECK(log.find("Debug: DCID 3 domain dst.test: S: 220 hello\n") != std::string::npos);
    CHECK(log.find("Debug: DCID 4 domain dst.test: -- session 2 of 2\n") != std::string::npos);
    CHECK(log.find("Debug: DCID 3 domain dst.test: C: QUIT\n") != std::string::npos);
    CHECK(log.find("third session") == std::string::npos);
    CHECK(log.find("DCID 8 domain conf.test: -- session 2\n") != std::string::npos);
    // "<ctime> Debug: " envelope, like the mail log.
    CHECK(log.substr(24, 8) == " Debug: ");

    auto entries = dd->list();
    REQUIRE(entries.size() == 2);
    CHECK(entries[1].domain == "dst.test");
    CHECK(entries[1].sessions == 2);
    CHECK(entries[1].lines == 3);
    CHECK(entries[0].sessions == 2);

    // Reload: configured domains are replaced, added ones stay.
    dd->set_configured({});
    REQUIRE(dd->list().size() == 1);
    CHECK(dd->list()[0].domain == "dst.test");
    CHECK(dd->remove("DST.test"));
    CHECK(!dd->remove("dst.test"));
    CHECK(dd->list().empty());
}
