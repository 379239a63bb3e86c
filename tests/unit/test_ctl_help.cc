// esactl's help layout (ctl/commands.h) and where it looks for the control socket
// (ctl/socket_path.h).
#include <catch2/catch.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "ctl/commands.h"
#include "ctl/socket_path.h"

using namespace esad::ctl;

namespace {

std::vector<std::string> help_lines() {
    std::ostringstream out;
    print_help(out);
    std::vector<std::string> lines;
    std::istringstream in(out.str());
    for (std::string line; std::getline(in, line);)
        lines.push_back(line);
    return lines;
}

}  // namespace

TEST_CASE("esactl help: every synopsis stands apart from its description") {
    std::vector<std::string> lines = help_lines();
    for (const auto& c : all_commands()) {
        INFO(c.name);
        std::string first_word = c.help.substr(0, c.help.find(' '));
        size_t i = 0;
        while (i < lines.size() && lines[i] != "  " + c.name &&
               lines[i].rfind("  " + c.name + " ", 0) != 0)
            ++i;
        REQUIRE(i < lines.size());
        // The description starts in column 34 with at least two spaces before it, on the
        // synopsis line or on the first line after the (possibly wrapped) synopsis.
        bool found = false;
        for (size_t j = i; j < lines.size() && j < i + 4 && !found; ++j)
            found = lines[j].size() > 34 && lines[j].compare(32, 2, "  ") == 0 &&
                    lines[j].compare(34, first_word.size(), first_word) == 0;
        CHECK(found);
    }
    for (const auto& line : lines) {
        INFO(line);
        CHECK(line.size() < 80);
    }
}

TEST_CASE("esactl help: the long synopses from the issue get their own line") {
    std::vector<std::string> lines = help_lines();
    auto at = [&](const std::string& prefix) {
        for (size_t i = 0; i < lines.size(); ++i)
            if (lines[i].rfind(prefix, 0) == 0) return i;
        FAIL("no line starts with " << prefix);
        return size_t{0};
    };
    size_t i = at("  dig ");
    CHECK(lines[i].find("DNS lookup") == std::string::npos);
    CHECK(lines[i + 1].find("DNS lookup") == 34);
}

TEST_CASE("esactl socket: --socket aside, the environment, then installed or tree default") {
    auto no_config = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
    auto config = [](const std::string& path) -> std::optional<std::string> {
        CHECK(path == "/etc/esad/esad.toml");
        return std::string("/srv/esad/ctl.sock");
    };
    SocketLookup l;
    l.config_file = "/etc/esad/esad.toml";
    l.runtime_socket = "/run/esad/esad.sock";

    // From the build tree: the daemon's embedded default, relative (the quick start).
    CHECK(default_socket_path(l, config) == "var/run/esad.sock");
    // Installed: the configuration's control_socket, else the packaged socket.
    l.installed = true;
    CHECK(default_socket_path(l, config) == "/srv/esad/ctl.sock");
    CHECK(default_socket_path(l, no_config) == "/run/esad/esad.sock");
    // $ESACTL_SOCKET wins over both; an empty one is ignored.
    l.env = "/tmp/x.sock";
    CHECK(default_socket_path(l, config) == "/tmp/x.sock");
    l.env = "";
    CHECK(default_socket_path(l, no_config) == "/run/esad/esad.sock");
}
