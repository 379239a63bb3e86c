// esactl command table: each command family lives in its own cmd_*.cc and registers here;
// commands.cc holds the table, the daemon call, help and dispatch.
#pragma once

#include <functional>
#include <iosfwd>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "common/payloads/fields.h"
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

// A reply whose data does not have its payload's shape: "esactl: malformed reply to CMD:
// WHY" on ctx.err (and an error object on ctx.out with --json); kExitFailed.
int malformed_reply(Context& ctx, const std::string& cmd, const std::string& why);

// call_daemon with the reply parsed into its payload type T (common/payloads/).
template <payloads::HasFields T>
int call_daemon(Context& ctx, const std::string& cmd, const nlohmann::json& args, T* reply,
                nlohmann::json* data = nullptr) {
    nlohmann::json raw;
    if (int rc = call_daemon(ctx, cmd, args, &raw); rc != kExitOk) return rc;
    std::string why;
    std::optional<T> parsed = payloads::try_parse<T>(raw, &why);
    if (!parsed) return malformed_reply(ctx, cmd, why);
    *reply = std::move(*parsed);
    if (data) *data = std::move(raw);
    return kExitOk;
}

// The common one-shot command: call, parse, then print the reply's JSON (--json) or render
// it. *reply (when given) receives the parsed reply for the exit code.
template <payloads::HasFields T>
int show_reply(Context& ctx, const std::string& cmd, const nlohmann::json& args,
               void (*render)(std::ostream&, const T&), T* reply = nullptr) {
    T parsed;
    nlohmann::json data;
    if (int rc = call_daemon(ctx, cmd, args, &parsed, &data); rc != kExitOk) return rc;
    if (ctx.json)
        ctx.out << data.dump(2) << "\n";
    else
        render(ctx.out, parsed);
    if (reply) *reply = std::move(parsed);
    return kExitOk;
}

void print_help(std::ostream& out);
// Runs one command line already split into words ("help [COMMAND]" included); returns its
// exit code. Unknown commands: a message on ctx.err and kExitUsage.
int run_command(Context& ctx, std::vector<std::string> words);

}  // namespace esad::ctl
