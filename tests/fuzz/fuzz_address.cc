// Fuzz target: RFC 5321 path and MAIL/RCPT parameter parsing (common/address.*).
// Properties: no crash/UB; an accepted mailbox contains no NUL or control octet; its
// path() parses again to the same mailbox; utf8 is set only when the mailbox itself (not a
// source route) holds non-ASCII octets.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/address.h"

namespace {
bool has_ctl(std::string_view s) {
    for (unsigned char c : s)
        if (c < 0x20 || c == 0x7f) return true;
    return false;
}
bool has_8bit(std::string_view s) {
    for (unsigned char c : s)
        if (c >= 0x80) return true;
    return false;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    for (int mode = 0; mode < 4; ++mode) {
        esad::PathOptions opt;
        opt.role = (mode & 1) ? esad::PathRole::kSender : esad::PathRole::kRecipient;
        opt.smtputf8 = (mode & 2) != 0;
        const esad::PathResult r = esad::parse_path(text, opt);
        if (!r.ok()) {
            if (r.error.code < 400 || r.error.code > 599 || has_ctl(r.error.text)) abort();
            continue;
        }
        const esad::Mailbox& m = *r.mailbox;
        if (m.is_null) continue;
        if (has_ctl(m.domain) || m.local.find('\0') != std::string::npos) abort();
        if (m.utf8 != (has_8bit(m.local) || has_8bit(m.domain))) abort();
        const esad::PathResult again = esad::parse_path(m.path(), opt);
        if (!again.ok() || !(*again.mailbox == m)) abort();
    }
    if (auto split = esad::split_path_and_params(text)) {
        (void)esad::parse_mail_params(split->params);
        (void)esad::check_rcpt_params(split->params);
    }
    (void)esad::parse_mail_params(text);
    (void)esad::is_valid_utf8(text);
    return 0;
}
