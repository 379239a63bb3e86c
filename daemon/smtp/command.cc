// See command.h for the contract.
#include "daemon/smtp/command.h"

#include <array>
#include <utility>

#include "common/ascii.h"

namespace esad::smtp {

namespace {

constexpr std::array<std::pair<std::string_view, Verb>, 18> kVerbs{{
    {"HELO", Verb::kHelo},
    {"EHLO", Verb::kEhlo},
    {"MAIL", Verb::kMail},
    {"RCPT", Verb::kRcpt},
    {"DATA", Verb::kData},
    {"RSET", Verb::kRset},
    {"NOOP", Verb::kNoop},
    {"QUIT", Verb::kQuit},
    {"VRFY", Verb::kVrfy},
    {"HELP", Verb::kHelp},
    {"STARTTLS", Verb::kStartTls},
    {"EXPN", Verb::kNotImplemented},
    {"ETRN", Verb::kNotImplemented},
    {"TURN", Verb::kNotImplemented},
    {"ATRN", Verb::kNotImplemented},
    {"AUTH", Verb::kNotImplemented},
    {"BDAT", Verb::kNotImplemented},
    {"XCLIENT", Verb::kNotImplemented},
}};

}  // namespace

std::string_view to_string(Verb verb) {
    switch (verb) {
        case Verb::kHelo:
            return "HELO";
        case Verb::kEhlo:
            return "EHLO";
        case Verb::kMail:
            return "MAIL";
        case Verb::kRcpt:
            return "RCPT";
        case Verb::kData:
            return "DATA";
        case Verb::kRset:
            return "RSET";
        case Verb::kNoop:
            return "NOOP";
        case Verb::kQuit:
            return "QUIT";
        case Verb::kVrfy:
            return "VRFY";
        case Verb::kHelp:
            return "HELP";
        case Verb::kStartTls:
            return "STARTTLS";
        case Verb::kNotImplemented:
            return "not-implemented";
        case Verb::kUnknown:
            return "unknown";
    }
    return "?";
}

Command parse_command(std::string_view line) {
    auto is_blank = [](char c) { return c == ' ' || c == '\t'; };
    Command cmd;
    const std::size_t sp = line.find(' ');
    cmd.name = line.substr(0, sp);
    std::string_view arg = sp == std::string_view::npos ? std::string_view{} : line.substr(sp + 1);
    while (!arg.empty() && is_blank(arg.front()))
        arg.remove_prefix(1);
    while (!arg.empty() && is_blank(arg.back()))
        arg.remove_suffix(1);
    cmd.arg = arg;
    for (const auto& [name, verb] : kVerbs) {
        if (iequals(cmd.name, name)) {
            cmd.verb = verb;
            break;
        }
    }
    return cmd;
}

bool line_has_invalid_octets(std::string_view line) {
    for (char ch : line) {
        const auto c = static_cast<unsigned char>(ch);
        if ((c < 0x20 && c != '\t') || c == 0x7f) return true;
    }
    return false;
}

}  // namespace esad::smtp
