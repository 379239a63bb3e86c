// Text layouts shared by the esactl commands (ESA conventions, esa-reference §1).
#pragma once

#include <cstdint>
#include <string>

namespace esad::ctl {

// "label" padded to `width` columns after `indent` spaces.
std::string pad_label(const std::string& label, int indent, size_t width);
// Right-aligned number in a field of `width`.
std::string num_field(uint64_t value, size_t width, bool separators = false);

}  // namespace esad::ctl
