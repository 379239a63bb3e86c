// See render.h.
#include "ctl/render.h"

#include "common/format.h"

namespace esad::ctl {

std::string pad_label(const std::string& label, int indent, size_t width) {
    std::string s(static_cast<size_t>(indent), ' ');
    s += label;
    if (s.size() < width)
        s.append(width - s.size(), ' ');
    else
        s.push_back(' ');
    return s;
}

std::string num_field(uint64_t value, size_t width, bool separators) {
    std::string v = separators ? thousands(value) : std::to_string(value);
    if (v.size() < width)
        v.insert(0, width - v.size(), ' ');
    else
        v.insert(0, " ");
    return v;
}

}  // namespace esad::ctl
