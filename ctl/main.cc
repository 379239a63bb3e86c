// esactl: the operator CLI for esad (DESIGN.md §7).
//   esactl [--socket PATH] [--json] [--timeout S] [COMMAND [ARGS...]]
// Socket: --socket, else $ESACTL_SOCKET, else the installed daemon's socket for an installed
// esactl, or the embedded development default from the build tree (ctl/socket_path.h).
// Without a COMMAND: the interactive prompt, or commands from stdin line by line (ctl/shell.h).
// Exit codes: 0 ok, 1 command failed, 2 usage, 3 daemon unreachable.
#include <CLI/CLI.hpp>
#include <iostream>

#include "ctl/commands.h"
#include "ctl/shell.h"
#include "ctl/socket_path.h"
#include "esad_version.h"

int main(int argc, char** argv) {
    using namespace esad::ctl;
    CLI::App app{"esactl - operator CLI for esad"};
    app.set_help_flag("-h,--help", "print help");
    std::string socket_path;
    bool json = false;
    double timeout = 10;
    bool version = false;
    app.add_option("-s,--socket", socket_path, "control socket path");
    app.add_flag("-j,--json", json, "print the daemon's JSON data");
    app.add_option("-t,--timeout", timeout, "seconds to wait for the daemon (0: forever)");
    app.add_flag("-V,--version", version, "print esactl's version");
    app.prefix_command();
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
        print_help(std::cout);
        return kExitOk;
    } catch (const CLI::ParseError& e) {
        std::cerr << "esactl: " << e.what() << "\n";
        return kExitUsage;
    }
    if (version) {
        std::cout << "esactl " << ESAD_VERSION << "\n";
        return kExitOk;
    }
    if (socket_path.empty()) socket_path = default_socket_path();
    Context ctx{socket_path, timeout, json, std::cout, std::cerr};
    std::vector<std::string> rest = app.remaining();
    if (rest.empty()) return run_shell(ctx);
    return run_command(ctx, rest);
}
