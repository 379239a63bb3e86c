// See dot_codec.h for the contract.
#include "daemon/smtp/dot_codec.h"

#include <algorithm>

namespace esad::smtp {

void DotEncoder::encode(std::string_view chunk, std::string& out) {
    std::size_t i = 0;
    while (i < chunk.size()) {
        const char c = chunk[i];
        if (c == '\n') {
            // LF right after a CR completes the CRLF already emitted for that CR.
            if (!after_cr_) out += "\r\n";
            after_cr_ = false;
            line_start_ = true;
            column_ = 0;
            ++i;
            continue;
        }
        after_cr_ = false;
        if (c == '\r') {
            // Emit the line end now; a following LF (maybe in the next chunk) is absorbed.
            out += "\r\n";
            after_cr_ = true;
            line_start_ = true;
            column_ = 0;
            ++i;
            continue;
        }
        if (line_start_ && c == '.') out.push_back('.');
        line_start_ = false;
        // Copy the rest of the line in one go, folding it at max_line_.
        std::size_t end = chunk.find_first_of("\r\n", i);
        if (end == std::string_view::npos) end = chunk.size();
        while (i < end) {
            if (column_ >= max_line_) {
                out += "\r\n ";
                column_ = 1;
            }
            const std::size_t n = std::min(end - i, max_line_ - column_);
            out.append(chunk.substr(i, n));
            column_ += n;
            i += n;
        }
    }
}

void DotEncoder::finish(std::string& out) {
    if (!line_start_) out += "\r\n";
    out += ".\r\n";
    reset();
}

void DotEncoder::reset() {
    line_start_ = true;
    after_cr_ = false;
    column_ = 0;
}

std::string dot_encode(std::string_view content) {
    DotEncoder enc;
    std::string out;
    enc.encode(content, out);
    enc.finish(out);
    return out;
}

}  // namespace esad::smtp
