// See log_search.h.
#include "common/log_search.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <unordered_map>

#include "common/escape.h"

namespace esad {

namespace {

constexpr size_t kStampLength = 24;  // "Wed Sep  6 13:13:16 2023"
constexpr size_t kRotatedFiles = 9;
constexpr size_t kMaxLineChars = 4096;
constexpr uint64_t kCancelCheckEvery = 4096;

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

bool all_digits(std::string_view s) {
    return !s.empty() && s.size() <= 19 &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

uint64_t to_u64(std::string_view s) {
    uint64_t v = 0;
    for (char c : s)
        v = v * 10 + static_cast<uint64_t>(c - '0');
    return v;
}

// Log lines are printable ASCII by construction; anything else is escaped so a reply never
// carries bytes the control protocol (valid UTF-8 only) or a terminal would choke on.
std::string printable(std::string_view line) {
    bool clean = line.size() <= kMaxLineChars && std::all_of(line.begin(), line.end(), [](char c) {
                     auto u = static_cast<unsigned char>(c);
                     return u >= 0x20 && u < 0x7f;
                 });
    return clean ? std::string(line) : escape_for_log(line, kMaxLineChars);
}

// A text criterion: case-insensitive substring or regular expression.
class Matcher {
  public:
    Matcher() = default;
    Matcher(const std::string& pattern, bool regex) : active_(!pattern.empty()), regex_(regex) {
        if (!active_) return;
        if (regex_)
            re_ = std::regex(pattern,
                             std::regex::ECMAScript | std::regex::icase | std::regex::optimize);
        else
            needle_ = lower(pattern);
    }
    bool active() const { return active_; }
    bool matches(std::string_view text) const {
        if (regex_) return std::regex_search(text.begin(), text.end(), re_);
        return lower(text).find(needle_) != std::string::npos;
    }

  private:
    bool active_ = false;
    bool regex_ = false;
    std::string needle_;
    std::regex re_;
};

// The text after `marker` in `message` when the message starts with "MID " and has it.
std::optional<std::string_view> field_after(std::string_view message, std::string_view marker) {
    if (message.rfind("MID ", 0) != 0) return std::nullopt;
    size_t at = message.find(marker);
    if (at == std::string_view::npos) return std::nullopt;
    return message.substr(at + marker.size());
}

enum Criterion : uint8_t {
    kMid = 1,
    kSender = 2,
    kRecipient = 4,
    kSubject = 8,
    kTime = 16,
};

// Reads every line of every file in order; stops when `fn` returns false or on cancel.
// Positions are (file index, line number) packed into one integer, in log order.
template <typename Fn>
bool for_each_line(const std::vector<std::string>& files, const std::atomic<bool>* cancel, Fn fn) {
    uint64_t count = 0;
    for (size_t f = 0; f < files.size(); ++f) {
        std::ifstream in(files[f], std::ios::binary);
        if (!in) continue;  // rotated away since it was listed: nothing to read
        std::string line;
        uint64_t n = 0;
        while (std::getline(in, line)) {
            if (++count % kCancelCheckEvery == 0 && cancel && cancel->load()) return false;
            uint64_t pos = (static_cast<uint64_t>(f) << 40) | n++;
            fn(pos, std::string_view(line));
        }
    }
    return !(cancel && cancel->load());
}

bool begins_run(std::string_view message) {
    return message == "Begin Logfile";
}

// Caches the last parsed stamp: consecutive lines usually share the second.
class StampCache {
  public:
    std::optional<std::time_t> time_of(std::string_view line) {
        if (line.size() < kStampLength) return std::nullopt;
        std::string_view stamp = line.substr(0, kStampLength);
        if (stamp != last_stamp_) {
            last_stamp_ = std::string(stamp);
            last_ = log_line_time(line);
        }
        return last_;
    }

  private:
    std::string last_stamp_;
    std::optional<std::time_t> last_;
};

}  // namespace

std::string_view log_message(std::string_view line) {
    if (line.size() > kStampLength + 1 && line[kStampLength] == ' ') {
        size_t colon = line.find(": ", kStampLength + 1);
        size_t space = line.find(' ', kStampLength + 1);
        // "<Level>: " is one word after the stamp.
        if (colon != std::string_view::npos && colon <= space) return line.substr(colon + 2);
    }
    return line;
}

std::optional<std::time_t> log_line_time(std::string_view line) {
    if (line.size() < kStampLength) return std::nullopt;
    std::string stamp(line.substr(0, kStampLength));
    struct tm tm {};
    const char* end = strptime(stamp.c_str(), "%a %b %e %H:%M:%S %Y", &tm);
    if (!end || *end != '\0') return std::nullopt;
    tm.tm_isdst = -1;
    std::time_t t = mktime(&tm);
    if (t == static_cast<std::time_t>(-1)) return std::nullopt;
    return t;
}

LineIds scan_ids(std::string_view message) {
    LineIds ids;
    std::vector<std::string_view> tokens;
    size_t i = 0;
    while (i < message.size()) {
        while (i < message.size() && message[i] == ' ')
            ++i;
        size_t start = i;
        while (i < message.size() && message[i] != ' ')
            ++i;
        if (start == i) break;
        std::string_view tok = message.substr(start, i - start);
        char first = tok.front();
        if (first == '\'' || first == '<' || first == '(' || first == '[') break;  // peer text
        tokens.push_back(tok);
    }
    auto add_mid = [&](uint64_t mid) {
        if (std::find(ids.mids.begin(), ids.mids.end(), mid) == ids.mids.end())
            ids.mids.push_back(mid);
    };
    for (size_t k = 0; k + 1 < tokens.size(); ++k) {
        std::string_view tok = tokens[k], next = tokens[k + 1];
        if (!all_digits(next)) continue;
        if (tok == "MID") {
            add_mid(to_u64(next));
        } else if (tok == "ICID" || tok == "ICID:") {
            if (!ids.icid) ids.icid = to_u64(next);
        } else if (tok == "DCID" || tok == "DCID:") {
            uint64_t dcid = to_u64(next);
            if (dcid != 0 && !ids.dcid) ids.dcid = dcid;
        } else if (tok == "Message" && k + 2 < tokens.size() && tokens[k + 2] == "to") {
            add_mid(to_u64(next));  // "Message 5 to RID [0] pending till ..."
        }
    }
    return ids;
}

std::string subject_log_line(uint64_t mid, std::string_view subject) {
    return "MID " + std::to_string(mid) + " Subject '" + escape_for_log(subject, 200) + "'";
}

bool validate_query(const EventQuery& q, std::string* error) {
    if (!q.mid && q.sender.empty() && q.recipient.empty() && q.subject.empty() && !q.since &&
        !q.until) {
        *error = "give at least one of: mid, sender, recipient, subject, since, until";
        return false;
    }
    if (q.since && q.until && *q.since > *q.until) {
        *error = "since is after until";
        return false;
    }
    if (q.regex) {
        for (const std::string* p : {&q.sender, &q.recipient, &q.subject}) {
            if (p->empty()) continue;
            try {
                std::regex re(*p, std::regex::ECMAScript | std::regex::icase);
            } catch (const std::regex_error& e) {
                *error = "bad regular expression '" + *p + "': " + e.what();
                return false;
            }
        }
    }
    return true;
}

std::string rotated_log_path(const std::string& path, size_t index) {
    size_t dot = path.rfind('.');
    size_t slash = path.rfind('/');
    bool has_ext = dot != std::string::npos && dot != 0 && dot + 1 != path.size() &&
                   (slash == std::string::npos || dot > slash + 1);
    if (!has_ext) return path + "." + std::to_string(index);
    return path.substr(0, dot) + "." + std::to_string(index) + path.substr(dot);
}

std::vector<std::string> mail_log_files(const std::string& dir, bool current_only) {
    std::vector<std::string> files;
    std::string base = dir + "/mail.current";
    struct stat st {};
    auto add = [&](const std::string& path) {
        if (stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) files.push_back(path);
    };
    if (!current_only) {
        for (size_t i = kRotatedFiles; i >= 1; --i) {
            add(rotated_log_path(base, i));
            add(base + "." + std::to_string(i));
        }
    }
    add(base);
    return files;
}

EventSearchResult find_events(const std::vector<std::string>& files, const EventQuery& q,
                              const std::atomic<bool>* cancel) {
    EventSearchResult result;
    std::string error;
    if (!validate_query(q, &error)) {
        result.error = error;
        return result;
    }
    Matcher sender(q.sender, q.regex), recipient(q.recipient, q.regex), subject(q.subject, q.regex);
    const bool timed = q.since || q.until;
    uint8_t required = (q.mid ? kMid : 0) | (sender.active() ? kSender : 0) |
                       (recipient.active() ? kRecipient : 0) | (subject.active() ? kSubject : 0) |
                       (timed ? kTime : 0);

    // Pass 1: which MIDs satisfy every criterion, in order of first appearance.
    struct Candidate {
        uint8_t bits = 0;
        uint64_t first = 0;
    };
    std::unordered_map<uint64_t, Candidate> cands;
    StampCache stamps;
    // By MID alone there is nothing to select: pass 2 finds its lines (or none).
    const bool mid_only = required == kMid;
    if (mid_only) cands[*q.mid] = Candidate{kMid, 0};
    bool complete =
        mid_only || for_each_line(files, cancel, [&](uint64_t pos, std::string_view line) {
            ++result.lines_scanned;
            std::string_view msg = log_message(line);
            LineIds ids = scan_ids(msg);
            if (ids.mids.empty()) return;
            uint8_t bits = 0;
            if (timed) {
                std::optional<std::time_t> t = stamps.time_of(line);
                if (t && (!q.since || *t >= *q.since) && (!q.until || *t <= *q.until))
                    bits |= kTime;
            }
            if (sender.active())
                if (auto v = field_after(msg, " From: "); v && sender.matches(*v)) bits |= kSender;
            if (recipient.active())
                if (auto v = field_after(msg, " To: "); v && recipient.matches(*v))
                    bits |= kRecipient;
            if (subject.active())
                if (auto v = field_after(msg, " Subject "); v && subject.matches(*v))
                    bits |= kSubject;
            for (uint64_t mid : ids.mids) {
                uint8_t b = bits;
                if (q.mid) {
                    if (mid != *q.mid) continue;
                    b |= kMid;
                }
                if (!b && !cands.count(mid)) continue;
                auto [it, fresh] = cands.try_emplace(mid);
                if (fresh) it->second.first = pos;
                // A From/To/Subject field belongs to the line's first MID only.
                it->second.bits |= mid == ids.mids.front() ? b : (b & (kMid | kTime));
            }
        });
    if (!complete) {
        result.cancelled = true;
        return result;
    }
    std::vector<std::pair<uint64_t, uint64_t>> matched;  // (first position, mid)
    for (const auto& [mid, c] : cands)
        if ((c.bits & required) == required) matched.emplace_back(c.first, mid);
    std::sort(matched.begin(), matched.end());
    result.matched = matched.size();
    if (matched.size() > q.max_messages) {
        result.truncated = true;
        matched.erase(matched.begin(), matched.end() - static_cast<std::ptrdiff_t>(q.max_messages));
    }
    if (matched.empty()) return result;

    // Pass 2: the lines naming a selected MID, and the connection ids they tie to it.
    struct Collected {
        std::vector<std::pair<uint64_t, std::string>> lines;  // (position, text)
        bool truncated = false;
    };
    std::map<uint64_t, Collected> history;
    for (const auto& [first, mid] : matched)
        history[mid];
    auto keep = [&](uint64_t mid, uint64_t pos, std::string_view line) {
        Collected& c = history[mid];
        if (c.lines.size() >= q.max_lines_per_message) {
            c.truncated = true;
            return;
        }
        c.lines.emplace_back(pos, printable(line));
    };
    // Ties are keyed by (run, kind, id): a run starts at "Begin Logfile".
    std::map<std::tuple<uint64_t, char, uint64_t>, std::set<uint64_t>> ties;
    uint64_t run = 0;
    complete = for_each_line(files, cancel, [&](uint64_t pos, std::string_view line) {
        std::string_view msg = log_message(line);
        if (begins_run(msg)) ++run;
        LineIds ids = scan_ids(msg);
        for (uint64_t mid : ids.mids) {
            if (!history.count(mid)) continue;
            keep(mid, pos, line);
            if (ids.icid) ties[{run, 'I', *ids.icid}].insert(mid);
            if (ids.dcid) ties[{run, 'D', *ids.dcid}].insert(mid);
        }
    });
    // Pass 3: connection lines (no MID) of a tied ICID or DCID.
    if (complete && !ties.empty()) {
        run = 0;
        complete = for_each_line(files, cancel, [&](uint64_t pos, std::string_view line) {
            std::string_view msg = log_message(line);
            if (begins_run(msg)) ++run;
            LineIds ids = scan_ids(msg);
            if (!ids.mids.empty()) return;
            std::set<uint64_t> owners;
            if (ids.icid)
                if (auto it = ties.find({run, 'I', *ids.icid}); it != ties.end())
                    owners.insert(it->second.begin(), it->second.end());
            if (ids.dcid)
                if (auto it = ties.find({run, 'D', *ids.dcid}); it != ties.end())
                    owners.insert(it->second.begin(), it->second.end());
            for (uint64_t mid : owners)
                keep(mid, pos, line);
        });
    }
    if (!complete) {
        result.cancelled = true;
        return result;
    }
    for (const auto& [first, mid] : matched) {
        Collected& c = history[mid];
        if (c.lines.empty()) continue;  // mid_only: never logged
        std::stable_sort(c.lines.begin(), c.lines.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
        MessageHistory h;
        h.mid = mid;
        h.truncated = c.truncated;
        h.lines.reserve(c.lines.size());
        for (auto& [pos, text] : c.lines)
            h.lines.push_back(std::move(text));
        result.messages.push_back(std::move(h));
    }
    if (mid_only) result.matched = result.messages.size();
    return result;
}

}  // namespace esad
