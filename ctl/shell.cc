// See shell.h.
#include "ctl/shell.h"

#include <editline/readline.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "common/payloads/queue.h"
#include "common/payloads/status.h"

namespace esad::ctl {

namespace {

using nlohmann::json;

// Keywords offered after a command name (besides the known domains).
const std::map<std::string, std::vector<std::string>>& keywords() {
    static const std::map<std::string, std::vector<std::string>> k = {
        {"status", {"detail"}},
        {"tophosts",
         {"--limit", "active_rcpts", "conn_out", "deliv_rcpts", "soft_bounced", "hard_bounced"}},
        {"delivernow", {"all"}},
        {"suspenddel", {"ALL"}},
        {"resumedel", {"ALL"}},
        {"workqueue", {"status"}},
        {"showrecipients", {"all", "host", "sender", "--offset", "--limit"}},
        {"deleterecipients", {"all", "host", "sender", "--yes"}},
        {"bouncerecipients", {"all", "host", "sender", "--yes"}},
        {"redirectrecipients", {"clear", "--yes"}},
        {"dig", {"mx", "a", "aaaa", "txt", "ptr", "--no-cache"}},
        {"tail", {"mail_logs", "domain_debug", "--lines", "--count"}},
        {"domaindebug", {"add", "remove", "list", "--sessions"}},
        {"findevent",
         {"--sender", "--recipient", "--subject", "--regex", "--since", "--until", "--current",
          "--limit"}},
    };
    return k;
}

// Commands whose arguments are never domains.
bool takes_domains(const std::string& cmd) {
    static const std::set<std::string> no = {
        "status",    "version",     "resetcounters", "reload", "suspend",   "resume",
        "workqueue", "showmessage", "rate",          "tail",   "findevent", "redirectrecipients",
        "help",      "smtpping"};
    return !no.count(cmd);
}

std::vector<std::string> g_domains;  // for the libedit callbacks
std::vector<std::string> g_matches;
size_t g_next = 0;

char* next_match(const char*, int state) {
    if (state == 0) g_next = 0;
    if (g_next >= g_matches.size()) return nullptr;
    return strdup(g_matches[g_next++].c_str());
}

char** complete(const char* text, int start, int) {
    rl_attempted_completion_over = 1;  // never fall back to file names
    std::string before(rl_line_buffer, static_cast<size_t>(std::max(start, 0)));
    std::vector<std::string> words;
    std::string error;
    if (!split_words(before, &words, &error)) return nullptr;
    g_matches = completions(words, text, g_domains);
    if (g_matches.empty()) return nullptr;
    return rl_completion_matches(text, next_match);
}

std::vector<std::string> known_domains(Context& ctx) {
    std::ostringstream sink;
    Context quiet{ctx.socket_path, ctx.timeout_s, false, sink, sink};
    payloads::TophostsReply d;
    std::vector<std::string> out;
    if (call_daemon(quiet, "tophosts", payloads::TophostsArgs{.limit = 1000}, &d) != kExitOk)
        return out;
    for (const auto& h : d.hosts) {
        const std::string& name = h.host;
        if (!name.empty() && name.rfind("the.", 0) != 0) out.push_back(name);
    }
    return out;
}

// Runs one command in a child so the terminal's Ctrl-C stops it, not the prompt.
int run_in_child(Context& ctx, const std::vector<std::string>& words) {
    std::cout.flush();
    std::cerr.flush();
    pid_t pid = fork();
    if (pid < 0) return run_command(ctx, words);
    if (pid == 0) {
        std::signal(SIGINT, SIG_DFL);
        int rc = run_command(ctx, words);
        std::cout.flush();
        std::cerr.flush();
        _exit(rc);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFSIGNALED(status)) {
        std::cout << "\n";
        return 128 + WTERMSIG(status);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : kExitFailed;
}

bool is_quit(const std::vector<std::string>& words) {
    return words.size() == 1 && (words[0] == "quit" || words[0] == "exit");
}

int run_script(Context& ctx) {
    int rc = kExitOk;
    std::string line;
    while (std::getline(std::cin, line)) {
        std::vector<std::string> words;
        std::string error;
        if (!split_words(line, &words, &error)) {
            ctx.err << "esactl: " << error << "\n";
            rc = kExitUsage;
            continue;
        }
        if (words.empty() || words[0][0] == '#') continue;
        if (is_quit(words)) break;
        rc = run_command(ctx, words);
        ctx.out.flush();
    }
    return rc;
}

int run_prompt(Context& ctx, const std::string& hostname) {
    g_domains = known_domains(ctx);
    rl_readline_name = "esactl";
    rl_attempted_completion_function = complete;
    std::signal(SIGINT, SIG_IGN);
    std::string prompt = hostname + "> ";
    while (true) {
        char* raw = readline(prompt.c_str());
        if (!raw) {  // Ctrl-D
            std::cout << "\n";
            break;
        }
        std::string line(raw);
        std::free(raw);
        std::vector<std::string> words;
        std::string error;
        if (!split_words(line, &words, &error)) {
            std::cerr << "esactl: " << error << "\n";
            continue;
        }
        if (words.empty()) continue;
        add_history(line.c_str());
        if (is_quit(words)) break;
        run_in_child(ctx, words);
        if (words[0] == "tophosts" || words[0] == "delivernow") g_domains = known_domains(ctx);
    }
    std::signal(SIGINT, SIG_DFL);
    return kExitOk;
}

}  // namespace

bool split_words(const std::string& line, std::vector<std::string>* words, std::string* error) {
    words->clear();
    std::string cur;
    bool in_word = false;
    char quote = 0;
    for (size_t i = 0; i < line.size(); ++i) {
        char c = line[i];
        if (quote) {
            if (c == quote)
                quote = 0;
            else if (c == '\\' && quote == '"' && i + 1 < line.size())
                cur.push_back(line[++i]);
            else
                cur.push_back(c);
        } else if (c == '\'' || c == '"') {
            quote = c;
            in_word = true;
        } else if (c == '\\' && i + 1 < line.size()) {
            cur.push_back(line[++i]);
            in_word = true;
        } else if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            if (in_word) words->push_back(std::move(cur));
            cur.clear();
            in_word = false;
        } else {
            cur.push_back(c);
            in_word = true;
        }
    }
    if (quote) {
        *error = std::string("unterminated ") + quote + " quote";
        return false;
    }
    if (in_word) words->push_back(std::move(cur));
    return true;
}

std::vector<std::string> completions(const std::vector<std::string>& words_before,
                                     const std::string& prefix,
                                     const std::vector<std::string>& domains) {
    std::set<std::string> out;
    auto offer = [&](const std::string& w) {
        if (w.compare(0, prefix.size(), prefix) == 0) out.insert(w);
    };
    if (words_before.empty()) {
        for (const auto& c : all_commands())
            offer(c.name);
        for (const char* w : {"help", "quit", "exit"})
            offer(w);
    } else {
        const std::string& cmd = words_before[0];
        if (cmd == "help" && words_before.size() == 1) {
            for (const auto& c : all_commands())
                offer(c.name);
        } else {
            auto k = keywords().find(cmd);
            if (k != keywords().end())
                for (const auto& w : k->second)
                    offer(w);
            if (takes_domains(cmd))
                for (const auto& d : domains)
                    offer(d);
        }
    }
    return {out.begin(), out.end()};
}

int run_shell(Context& ctx) {
    payloads::VersionReply version;
    int rc = call_daemon(ctx, "version", json::object(), &version);
    if (rc != kExitOk) return rc;
    if (isatty(STDIN_FILENO) != 1) return run_script(ctx);
    return run_prompt(ctx, version.hostname);
}

}  // namespace esad::ctl
