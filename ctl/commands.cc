// See commands.h: the command table, the daemon call every command uses, help, dispatch.
#include "ctl/commands.h"

#include <ostream>
#include <string_view>

#include "common/escape.h"
#include "ctl/cmd_logs.h"
#include "ctl/cmd_tools.h"

namespace esad::ctl {

const std::vector<Command>& all_commands() {
    static const std::vector<Command> commands = [] {
        std::vector<Command> all;
        for (auto* family :
             {status_commands, queue_commands, tool_commands, log_commands, capture_commands})
            for (auto& c : family())
                all.push_back(std::move(c));
        return all;
    }();
    return commands;
}

const Command* find_command(const std::string& name) {
    for (const auto& c : all_commands())
        if (c.name == name) return &c;
    return nullptr;
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

int malformed_reply(Context& ctx, const std::string& cmd, const std::string& why) {
    // The daemon's key names are in `why`: escaped like any text from a peer.
    std::string message = "malformed reply to " + cmd + ": " + escape_for_log(why, 1024);
    if (ctx.json)
        ctx.out << nlohmann::json{{"error", {{"code", "bad_reply"}, {"message", message}}}}.dump(2)
                << "\n";
    ctx.err << "esactl: " << message << "\n";
    return kExitFailed;
}

namespace {

// Wraps `text` after the prefix already in `line`: full lines go to `out`, continuation
// lines start with `indent` spaces and stay shorter than `width` (a longer word stands
// alone). Returns the last, unfinished line.
std::string wrap(std::ostream& out, std::string line, const std::string& text, size_t indent,
                 size_t width) {
    bool fresh = true;  // nothing of `text` on this line yet
    size_t pos = 0;
    while (pos < text.size()) {
        size_t end = text.find(' ', pos);
        if (end == std::string::npos) end = text.size();
        std::string_view word(text.data() + pos, end - pos);
        pos = end + 1;
        if (word.empty()) continue;
        if (!fresh && line.size() + 1 + word.size() >= width) {
            out << line << "\n";
            line.assign(indent, ' ');
            fresh = true;
        }
        if (!fresh) line += ' ';
        line += word;
        fresh = false;
    }
    return line;
}

}  // namespace

void print_help(std::ostream& out) {
    out << "usage: esactl [--socket PATH] [--json] [--timeout S] [COMMAND [ARGS]]\n"
           "       no COMMAND: the interactive prompt, or commands line by line from stdin\n"
           "\ncommands:\n";
    // Synopsis in a 34-column field, description beside it, both wrapped before column 80;
    // a synopsis too long for the field gets lines of its own (as in esactl(1)).
    constexpr size_t kColumn = 34, kWidth = 80;
    for (const auto& c : all_commands()) {
        std::string head =
            wrap(out, "  " + c.name + (c.usage.empty() ? "" : " "), c.usage, 6, kWidth);
        if (head.size() + 2 > kColumn) {
            out << head << "\n";
            head.clear();
        }
        head.resize(kColumn, ' ');
        out << wrap(out, head, c.help, kColumn, kWidth) << "\n";
    }
}

int run_command(Context& ctx, std::vector<std::string> words) {
    if (words.empty()) return kExitOk;
    std::string name = words.front();
    words.erase(words.begin());
    if (name == "help") {
        if (words.empty()) {
            print_help(ctx.out);
            return kExitOk;
        }
        if (const Command* c = find_command(words.front())) {
            ctx.out << "usage: esactl " << c->name << (c->usage.empty() ? "" : " " + c->usage)
                    << "\n"
                    << c->help << "\n";
            return kExitOk;
        }
        ctx.err << "esactl: unknown command '" << words.front() << "'\n";
        return kExitUsage;
    }
    if (const Command* c = find_command(name)) return c->run(ctx, words);
    ctx.err << "esactl: unknown command '" << name << "' (esactl help lists them)\n";
    return kExitUsage;
}

}  // namespace esad::ctl
