// esactl: the operator CLI for esad (DESIGN.md §7).
//   esactl [--socket PATH] [--json] [--timeout S] COMMAND [ARGS...]
// Socket: --socket, else $ESACTL_SOCKET, else the daemon's embedded default.
// Exit codes: 0 ok, 1 command failed, 2 usage, 3 daemon unreachable.
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>

#include "common/defaults.h"
#include "ctl/cmd_logs.h"
#include "ctl/cmd_tools.h"
#include "ctl/commands.h"
#include "esad_version.h"

namespace esad::ctl {

const std::vector<Command>& all_commands() {
    static const std::vector<Command> commands = [] {
        std::vector<Command> all;
        for (auto& c : status_commands())
            all.push_back(std::move(c));
        for (auto& c : queue_commands())
            all.push_back(std::move(c));
        for (auto& c : tool_commands())
            all.push_back(std::move(c));
        for (auto& c : log_commands())
            all.push_back(std::move(c));
        return all;
    }();
    return commands;
}

int call_daemon(Context& ctx, const std::string& cmd, const nlohmann::json& args,
                nlohmann::json* data) {
    Client client;
    std::string error;
    if (!client.connect(ctx.socket_path, ctx.timeout_s, &error)) {
        ctx.err << "esactl: " << error << "\n";
        return kExitUnreachable;
    }
    auto reply = client.call(cmd, args, &error);
    if (!reply) {
        ctx.err << "esactl: " << error << "\n";
        return kExitUnreachable;
    }
    if (!reply->ok) {
        if (ctx.json)
            ctx.out << nlohmann::json{{"error",
                                       {{"code", reply->error_code},
                                        {"message", reply->error_message}}}}
                           .dump(2)
                    << "\n";
        ctx.err << "esactl: " << reply->error_message << "\n";
        return reply->error_code == "bad_args" || reply->error_code == "unknown_command"
                   ? kExitUsage
                   : kExitFailed;
    }
    *data = reply->data;
    return kExitOk;
}

void print_help(std::ostream& out) {
    out << "usage: esactl [--socket PATH] [--json] [--timeout S] COMMAND [ARGS]\n\ncommands:\n";
    for (const auto& c : all_commands()) {
        std::string head = "  " + c.name + (c.usage.empty() ? "" : " " + c.usage);
        if (head.size() < 34) head.append(34 - head.size(), ' ');
        out << head << c.help << "\n";
    }
}

}  // namespace esad::ctl

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
    std::vector<std::string> rest = app.remaining();
    if (socket_path.empty()) {
        const char* env = std::getenv(esad::kCtlSocketEnv);
        socket_path = env && *env ? env : esad::kDefaultControlSocket;
    }
    Context ctx{socket_path, timeout, json, std::cout, std::cerr};
    if (rest.empty()) {
        print_help(std::cerr);
        return kExitUsage;
    }
    std::string name = rest.front();
    rest.erase(rest.begin());
    if (name == "help") {
        if (rest.empty()) {
            print_help(std::cout);
            return kExitOk;
        }
        name = rest.front();
        for (const auto& c : all_commands()) {
            if (c.name == name) {
                std::cout << "usage: esactl " << c.name << (c.usage.empty() ? "" : " " + c.usage)
                          << "\n"
                          << c.help << "\n";
                return kExitOk;
            }
        }
        std::cerr << "esactl: unknown command '" << name << "'\n";
        return kExitUsage;
    }
    for (const auto& c : all_commands())
        if (c.name == name) return c.run(ctx, rest);
    std::cerr << "esactl: unknown command '" << name << "' (esactl help lists them)\n";
    return kExitUsage;
}
