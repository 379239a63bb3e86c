// Fuzz target: the control protocol codec and line framing (common/control_protocol.*).
// Properties: parse_request/parse_reply never throw or hit UB on any line; the lines a
// LineFramer yields do not depend on how the byte stream was split into reads.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "common/control_protocol.h"

using namespace esad::control;

namespace {
// Runs a framer over `stream` cut at the given read sizes; returns the lines, and whether
// it overflowed.
std::vector<std::string> frame(const std::string& stream, const std::vector<size_t>& cuts,
                               size_t max_line, bool& overflow) {
    LineFramer framer(max_line);
    std::vector<std::string> lines;
    size_t pos = 0, i = 0;
    while (pos < stream.size()) {
        size_t n = cuts.empty() ? stream.size() : cuts[i++ % cuts.size()];
        n = std::min(std::max<size_t>(n, 1), stream.size() - pos);
        framer.append(std::string_view(stream).substr(pos, n));
        pos += n;
        while (auto line = framer.next_line())
            lines.push_back(std::move(*line));
        if (framer.overflowed()) break;
    }
    overflow = framer.overflowed();
    return lines;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider in(data, size);
    const size_t max_line = in.ConsumeIntegralInRange<size_t>(1, 64);
    std::vector<size_t> cuts;
    const size_t ncuts = in.ConsumeIntegralInRange<size_t>(0, 8);
    for (size_t i = 0; i < ncuts; ++i)
        cuts.push_back(in.ConsumeIntegralInRange<size_t>(1, 80));
    const std::string stream = in.ConsumeRemainingBytesAsString();

    (void)parse_request(stream);
    (void)parse_reply(stream);
    bool over_default = false;
    (void)frame(stream, {}, kMaxLineBytes, over_default);

    bool over_whole = false, over_split = false;
    const auto whole = frame(stream, {}, max_line, over_whole);
    const auto split = frame(stream, cuts, max_line, over_split);
    if (over_whole != over_split) abort();
    if (!over_whole && whole != split) abort();
    for (const std::string& line : whole) {
        if (line.size() > max_line) abort();
        auto req = parse_request(line);
        if (req.ok()) {
            // A request re-encodes to a line that parses to the same request.
            std::string enc = encode_request(*req.request);
            enc.pop_back();
            auto again = parse_request(enc);
            if (!again.ok() || again.request->cmd != req.request->cmd ||
                again.request->id != req.request->id)
                abort();
        }
        (void)parse_reply(line);
    }
    return 0;
}
