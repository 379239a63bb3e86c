// Fuzz target: SMTP reply parsing and classification (daemon/smtp/reply.*).
// Properties: the streaming parser yields the same replies however the bytes are split;
// parse_reply agrees with it on the first reply; classify/summarize/parse_ehlo never crash
// and summaries stay printable and bounded.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "daemon/smtp/reply.h"

using namespace esad::smtp;

namespace {
struct Run {
    std::vector<Response> replies;
    ReplyError error = ReplyError::kNone;
};

Run stream(const std::string& bytes, const std::vector<size_t>& cuts) {
    Run run;
    ReplyParser p;
    size_t pos = 0, i = 0;
    std::string_view pending;
    while (true) {
        if (pending.empty()) {
            if (pos >= bytes.size()) break;
            size_t n = cuts.empty() ? bytes.size() : cuts[i++ % cuts.size()];
            n = std::min(std::max<size_t>(n, 1), bytes.size() - pos);
            pending = std::string_view(bytes).substr(pos, n);
            pos += n;
        }
        const size_t used = p.feed(pending);
        pending.remove_prefix(used);
        if (p.has_reply()) {
            run.replies.push_back(p.take_reply());
            continue;
        }
        if (p.failed()) {
            run.error = p.error();
            break;
        }
        if (used == 0 && !pending.empty()) abort();  // no progress without a reason
    }
    return run;
}

bool same(const Response& a, const Response& b) {
    return a.code == b.code && a.lines == b.lines && a.enhanced == b.enhanced;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider in(data, size);
    std::vector<size_t> cuts;
    const size_t ncuts = in.ConsumeIntegralInRange<size_t>(0, 6);
    for (size_t i = 0; i < ncuts; ++i)
        cuts.push_back(in.ConsumeIntegralInRange<size_t>(1, 40));
    const std::string bytes = in.ConsumeRemainingBytesAsString();

    const Run whole = stream(bytes, {});
    const Run split = stream(bytes, cuts);
    if (whole.error != split.error || whole.replies.size() != split.replies.size()) abort();
    for (size_t i = 0; i < whole.replies.size(); ++i)
        if (!same(whole.replies[i], split.replies[i])) abort();

    const ParsedReply first = parse_reply(bytes);
    if (first.reply && (whole.replies.empty() || !same(*first.reply, whole.replies[0]))) abort();

    for (const Response& r : whole.replies) {
        if (r.code < 200 || r.code > 599) abort();
        for (ReplyStage stage : {ReplyStage::kGreeting, ReplyStage::kEhlo, ReplyStage::kMail,
                                 ReplyStage::kRcpt, ReplyStage::kData, ReplyStage::kDataEnd}) {
            (void)classify(r, stage);
        }
        (void)parse_ehlo(r);
        const ReplySummary s = summarize(r);
        (void)s;
    }
    (void)parse_enhanced_code(bytes);
    const std::string clean = sanitize_text(bytes);
    for (unsigned char c : clean)
        if (c < 0x20 || c == 0x7f) abort();
    return 0;
}
