// See fields.h.
#include "common/payloads/fields.h"

namespace esad::payloads::detail {

std::string type_name(const json& j) {
    if (j.is_number()) return "the number " + j.dump();
    return j.type_name();
}

void fail(const std::string& path, const std::string& what) {
    throw PayloadError((path.empty() ? std::string("payload") : path) + ": " + what);
}

}  // namespace esad::payloads::detail
