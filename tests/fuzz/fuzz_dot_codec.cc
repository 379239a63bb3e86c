// Fuzz target: the outbound DATA encoder (daemon/smtp/dot_codec.*), checked against the
// inbound decoder of the server state machine.
// Properties: the encoding does not depend on how the content is split; it never contains
// a bare CR or LF and ends with exactly one CRLF.CRLF; fed to the ESMTP server inside DATA,
// it is accepted (or refused for size/line length only) and decodes to the content with line
// ends normalised to CRLF and lines over 998 octets folded with CRLF SPACE.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>

#include "daemon/smtp/dot_codec.h"
#include "daemon/smtp/server_fsm.h"

using namespace esad::smtp;

namespace {
// Bare CR / bare LF become CRLF; a missing final line end is added.
std::string normalise(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\r') {
            out += "\r\n";
            if (i + 1 < s.size() && s[i + 1] == '\n') ++i;
        } else if (s[i] == '\n') {
            out += "\r\n";
        } else {
            out += s[i];
        }
    }
    if (!out.empty() && (out.size() < 2 || out.substr(out.size() - 2) != "\r\n")) out += "\r\n";
    return out;
}

// What the encoder makes of a line longer than kMaxSmtpLine: CRLF SPACE after the first 998
// octets, then after every 997 (the space counts).
std::string fold(const std::string& normalised) {
    std::string out;
    std::size_t pos = 0;
    while (pos < normalised.size()) {
        const std::size_t eol = normalised.find("\r\n", pos);
        std::string_view line(normalised.data() + pos, eol - pos);
        std::size_t room = kMaxSmtpLine;
        while (line.size() > room) {
            out.append(line.substr(0, room));
            out += "\r\n ";
            line.remove_prefix(room);
            room = kMaxSmtpLine - 1;
        }
        out.append(line);
        out += "\r\n";
        pos = eol + 2;
    }
    return out;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider in(data, size);
    const size_t cut = in.ConsumeIntegralInRange<size_t>(1, 64);
    std::string content = in.ConsumeRemainingBytesAsString();

    const std::string whole = dot_encode(content);
    std::string split;
    DotEncoder enc;
    for (size_t pos = 0; pos < content.size(); pos += cut)
        enc.encode(std::string_view(content).substr(pos, cut), split);
    enc.finish(split);
    if (split != whole) abort();

    for (size_t i = 0; i < whole.size(); ++i) {
        if (whole[i] == '\r' && (i + 1 >= whole.size() || whole[i + 1] != '\n')) abort();
        if (whole[i] == '\n' && (i == 0 || whole[i - 1] != '\r')) abort();
    }
    // No line sent is longer than 998 octets, the transparency dot not counted.
    for (size_t pos = 0; pos < whole.size();) {
        const size_t eol = whole.find("\r\n", pos);
        const size_t len = eol - pos - (whole[pos] == '.' ? 1 : 0);
        if (len > kMaxSmtpLine) abort();
        pos = eol + 2;
    }
    const size_t end = whole.find("\r\n.\r\n");
    if (whole != ".\r\n" && end != whole.size() - 5) abort();

    // Through the server: NUL octets are refused there by design, so drop them here.
    std::erase(content, '\0');
    ServerConfig cfg;
    cfg.relay_allowed = true;
    cfg.limits.max_line_length = 1 << 20;
    ServerSession s(cfg);
    s.start(Millis(0));
    s.feed("EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n", Millis(0));
    s.take_actions();
    s.feed(dot_encode(content), Millis(0));
    bool committed = false;
    for (Action& a : s.take_actions()) {
        if (auto* c = std::get_if<CommitMessage>(&a)) {
            committed = true;
            if (c->content != fold(normalise(content))) abort();
        }
    }
    if (!committed && content.size() <= cfg.limits.max_message_size / 2 &&
        count_received_headers(normalise(content)) <= cfg.limits.max_hops)
        abort();
    return 0;
}
