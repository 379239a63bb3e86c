// See render.h.
#include "ctl/render.h"

#include "common/format.h"

namespace esad::ctl {

std::string pad_label(const std::string& label, int indent, size_t width) {
    std::string s = std::string(static_cast<size_t>(indent), ' ') + label;
    size_t pad = s.size() < width ? width - s.size() : 1;
    return s + std::string(pad, ' ');
}

std::string num_field(uint64_t value, size_t width, bool separators) {
    std::string v = separators ? thousands(value) : std::to_string(value);
    size_t pad = v.size() < width ? width - v.size() : 1;
    return std::string(pad, ' ') + v;
}

}  // namespace esad::ctl
