// esactl without a command: the operator's prompt (esa-reference §1).
//
//   run_shell(ctx)   stdin a terminal: the prompt `HOSTNAME> ` (hostname from the daemon's
//                    `version` reply) with libedit line editing, history and tab completion
//                    of command names, their keywords and the domains `tophosts` knows; each
//                    command runs in a child process so Ctrl-C ends a stream (rate, tail)
//                    and returns to the prompt. `help [COMMAND]`, `quit`/`exit`, Ctrl-D.
//                    stdin not a terminal: commands are read line by line (no prompt, no
//                    editing) for scripts; blank lines and `#` comments are skipped.
//   split_words(line, &words, &error)   blanks separate words; '...' and "..." quote; a
//                    backslash escapes the next character. False on an unterminated quote.
//
// Exit code: 3 when the daemon does not answer `version` at the start; otherwise 0 on a
// terminal, and in script mode the exit code of the last command (like sh).
#pragma once

#include <string>
#include <vector>

#include "ctl/commands.h"

namespace esad::ctl {

int run_shell(Context& ctx);
bool split_words(const std::string& line, std::vector<std::string>* words, std::string* error);
// Completion candidates for the word being typed: command names for the first word, else
// the command's keywords and the known domains. Sorted, unique, all starting with `prefix`.
std::vector<std::string> completions(const std::vector<std::string>& words_before,
                                     const std::string& prefix,
                                     const std::vector<std::string>& domains);

}  // namespace esad::ctl
