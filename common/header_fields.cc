// See header_fields.h.
#include "common/header_fields.h"

#include "common/ascii.h"

namespace esad {

namespace {

bool is_wsp(char c) {
    return c == ' ' || c == '\t';
}

// The index just past the line end of the line starting at `pos` (or the text's end).
std::size_t next_line(std::string_view text, std::size_t pos) {
    const std::size_t lf = text.find('\n', pos);
    return lf == std::string_view::npos ? text.size() : lf + 1;
}

// The line [pos, end) without its line end.
std::string_view line_at(std::string_view text, std::size_t pos, std::size_t end) {
    std::string_view line = text.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    return line;
}

}  // namespace

std::string_view header_section(std::string_view message) {
    std::size_t pos = 0;
    while (pos < message.size()) {
        const std::size_t end = next_line(message, pos);
        if (line_at(message, pos, end).empty()) break;
        pos = end;
    }
    return message.substr(0, pos);
}

void for_each_field(std::string_view message, const std::function<bool(const HeaderField&)>& fn) {
    std::size_t pos = 0;
    while (pos < message.size()) {
        std::size_t end = next_line(message, pos);
        const std::string_view first = line_at(message, pos, end);
        if (first.empty()) return;  // the empty line ends the section
        while (end < message.size() && is_wsp(message[end]))
            end = next_line(message, end);
        HeaderField field;
        field.raw = message.substr(pos, end - pos);
        std::size_t i = 0;
        while (i < first.size() && first[i] != ':' && static_cast<unsigned char>(first[i]) > 32 &&
               static_cast<unsigned char>(first[i]) < 127)
            ++i;
        std::size_t j = i;
        while (j < first.size() && is_wsp(first[j]))
            ++j;
        if (i > 0 && j < first.size() && first[j] == ':') {
            field.name = first.substr(0, i);
            field.value = field.raw.substr(j + 1);
        }
        if (!fn(field)) return;
        pos = end;
    }
}

std::string unfold(std::string_view value, std::size_t max) {
    std::string out;
    for (char c : value) {
        if (c == '\r' || c == '\n') continue;
        if (out.empty() && is_wsp(c)) continue;
        out.push_back(c);
        if (out.size() > max) break;  // trailing WSP may still go; the cut is below
    }
    while (!out.empty() && is_wsp(out.back()))
        out.pop_back();
    if (out.size() > max) out.resize(max);
    return out;
}

std::optional<std::string> first_field(std::string_view message, std::string_view name,
                                       std::size_t max) {
    std::optional<std::string> out;
    for_each_field(message, [&](const HeaderField& f) {
        if (!iequals(f.name, name)) return true;
        out = unfold(f.value, max);
        return false;
    });
    return out;
}

}  // namespace esad
