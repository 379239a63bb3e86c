// counters — see counters.h.
#include "daemon/spool/counters.h"

#include <fcntl.h>

#include <cerrno>
#include <charconv>
#include <cstdio>

#include "daemon/spool/crc32c.h"

namespace esad::spool {
namespace {

constexpr char kFileName[] = "counters";
constexpr std::string_view kFirstLine = "esad-counters 1\n";

}  // namespace

bool valid_counter_name(std::string_view name) {
    if (name.empty() || name.size() > 128) return false;
    for (char c : name) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':' || c == '-';
        if (!ok) return false;
    }
    return true;
}

std::string encode_counters(const CounterMap& counters) {
    std::string out(kFirstLine);
    for (const auto& [name, value] : counters) {
        out += name;
        out += ' ';
        out += std::to_string(value);
        out += '\n';
    }
    char crc[32];
    std::snprintf(crc, sizeof crc, "crc %08x\n", crc32c(out));
    out += crc;
    return out;
}

bool decode_counters(std::string_view text, CounterMap& out, std::string* reason) {
    auto fail = [&](std::string why) {
        if (reason != nullptr) *reason = std::move(why);
        return false;
    };
    if (text.substr(0, kFirstLine.size()) != kFirstLine) return fail("bad first line");
    if (text.empty() || text.back() != '\n') return fail("truncated");
    const std::size_t last = text.rfind('\n', text.size() - 2);
    if (last == std::string_view::npos || last + 1 < kFirstLine.size()) return fail("no crc line");
    const std::string_view body = text.substr(0, last + 1);
    const std::string_view crc_line = text.substr(last + 1, text.size() - last - 2);
    std::uint32_t stored = 0;
    if (crc_line.size() != 12 || crc_line.substr(0, 4) != "crc " ||
        std::from_chars(crc_line.data() + 4, crc_line.data() + 12, stored, 16).ptr !=
            crc_line.data() + 12) {
        return fail("bad crc line");
    }
    if (stored != crc32c(body)) return fail("checksum mismatch");
    CounterMap parsed;
    std::string_view rest = body.substr(kFirstLine.size());
    while (!rest.empty()) {
        const std::size_t nl = rest.find('\n');
        const std::string_view line = rest.substr(0, nl);
        rest.remove_prefix(nl + 1);
        const std::size_t sp = line.find(' ');
        if (sp == std::string_view::npos) return fail("bad line");
        const std::string_view name = line.substr(0, sp);
        const std::string_view num = line.substr(sp + 1);
        std::uint64_t value = 0;
        if (!valid_counter_name(name) || num.empty() ||
            std::from_chars(num.data(), num.data() + num.size(), value).ptr !=
                num.data() + num.size()) {
            return fail("bad line");
        }
        parsed[std::string(name)] = value;
    }
    out = std::move(parsed);
    return true;
}

IoStatus load_counters(const std::string& dir, CounterMap& out) {
    UniqueFd dfd;
    if (int err = open_dir(AT_FDCWD, dir, dfd)) return IoStatus::failure(err, "open " + dir);
    std::string text;
    const int err = read_small_file(dfd.get(), kFileName, text);
    if (err == ENOENT) {
        out.clear();
        return IoStatus::success();
    }
    const std::string label = dir + "/" + kFileName;
    if (err != 0) return IoStatus::failure(err, "read " + label);
    std::string reason;
    if (!decode_counters(text, out, &reason)) {
        return IoStatus::failure(EBADMSG, label + ": " + reason);
    }
    return IoStatus::success();
}

IoStatus save_counters(const std::string& dir, const CounterMap& counters) {
    for (const auto& kv : counters) {
        if (!valid_counter_name(kv.first)) {
            return IoStatus::failure(EINVAL, "bad counter name");
        }
    }
    UniqueFd dfd;
    if (int err = open_dir(AT_FDCWD, dir, dfd)) return IoStatus::failure(err, "open " + dir);
    return atomic_replace(dfd.get(), kFileName, encode_counters(counters), dir + "/" + kFileName);
}

}  // namespace esad::spool
