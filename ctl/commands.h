// esactl command table: each command family lives in its own cmd_*.cc and registers here;
// commands.cc holds the table, the daemon call, help and dispatch.
#pragma once

#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include "ctl/client.h"

namespace esad::ctl {

enum ExitCode { kExitOk = 0, kExitFailed = 1, kExitUsage = 2, kExitUnreachable = 3 };

struct Context {
    std::string socket_path;
    double timeout_s = 10;
    bool json = false;
    std::ostream& out;
    std::ostream& err;
};

struct Command {
    std::string name;
    std::string usage;  // arguments, e.g. "[detail]"
    std::string help;   // one line
    std::function<int(Context&, const std::vector<std::string>&)> run;
};

const std::vector<Command>& all_commands();
const Command* find_command(const std::string& name);  // nullptr: unknown
std::vector<Command> status_commands();
std::vector<Command> queue_commands();
std::vector<Command> capture_commands();  // cmd_capture.cc

// Connects, sends one request, and prints errors the common way. On success *data holds
// the reply's data and kExitOk is returned; otherwise the exit code to use.
int call_daemon(Context& ctx, const std::string& cmd, const nlohmann::json& args,
                nlohmann::json* data);

void print_help(std::ostream& out);
// Runs one command line already split into words ("help [COMMAND]" included); returns its
// exit code. Unknown commands: a message on ctx.err and kExitUsage.
int run_command(Context& ctx, std::vector<std::string> words);

}  // namespace esad::ctl
