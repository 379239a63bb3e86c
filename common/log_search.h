// Message tracking over the ESA mail logs (`findevent`, esa-reference §7.4, §8).
//
//   EventQuery q; q.sender = "alice@"; q.since = t0;
//   EventSearchResult r = find_events(mail_log_files(dir, false), q, &cancel);
//   for (auto& m : r.messages) ... m.mid, m.lines (every line of its history, in log order)
//
// Blocking file reads: run it on a worker thread, never on the loop. Files are given oldest
// first (mail.9.current ... mail.1.current, mail.current). Criteria are ANDed: `mid`; `sender`
// on the "MID n ICID i From: <addr>" line; `recipient` on any "MID n ICID i RID r To: <addr>"
// line; `subject` on the "MID n Subject '...'" line injection writes (subject_log_line);
// `since`/`until` on any line
// of the message. Text criteria are case-insensitive substrings, or ECMAScript regular
// expressions (case-insensitive) with `regex`.
//
// A message's history is every line naming its MID ("MID n", "Message n to RID", "... of MID
// n") plus the connection lines tied to it: lines naming no MID but an ICID or DCID that one
// of its lines names with the MID ("Start MID n ICID i", "Delivery start DCID d MID n", ...).
// Ids are only compared within one daemon run (a run starts at "Begin Logfile"), because
// ICIDs/DCIDs may repeat across restarts. Ids are read only from the fixed part of a line,
// before the first token starting with ' < ( or [, so peer text (replies, addresses) cannot
// tie unrelated messages. Three sequential passes: select MIDs, collect their lines and ids,
// collect the tied connection lines.
#pragma once

#include <atomic>
#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace esad {

struct EventQuery {
    std::optional<uint64_t> mid;
    std::string sender;     // empty: not a criterion
    std::string recipient;  // empty: not a criterion
    std::string subject;    // empty: not a criterion
    bool regex = false;
    std::optional<std::time_t> since;  // inclusive, Unix seconds
    std::optional<std::time_t> until;  // inclusive
    size_t max_messages = 100;         // the most recent matches are kept
    size_t max_lines_per_message = 1000;
};

struct MessageHistory {
    uint64_t mid = 0;
    std::vector<std::string> lines;  // printable ASCII, in log order
    bool truncated = false;          // more than max_lines_per_message lines
};

struct EventSearchResult {
    std::vector<MessageHistory> messages;  // in order of first appearance
    size_t matched = 0;                    // matching MIDs before the max_messages cut
    bool truncated = false;                // matched > messages.size()
    bool cancelled = false;
    uint64_t lines_scanned = 0;  // in the first pass
    std::string error;           // a bad regular expression
};

// Checks a query before it is run: false and *error for a bad regex or no criterion.
bool validate_query(const EventQuery& q, std::string* error);

// Existing mail log files in `dir`, oldest first; only mail.current when current_only.
// spdlog's rotating sink names rotated files mail.1.current ... mail.9.current (the index goes
// before the last extension); mail.current.N files (renamed by hand or by other tools) are
// searched too.
std::vector<std::string> mail_log_files(const std::string& dir, bool current_only);
// The name spdlog's rotating sink gives rotation `index` of `path`:
// "logs/mail.current", 1 -> "logs/mail.1.current"; "logs/x", 2 -> "logs/x.2".
std::string rotated_log_path(const std::string& path, size_t index);

EventSearchResult find_events(const std::vector<std::string>& files, const EventQuery& q,
                              const std::atomic<bool>* cancel = nullptr);

// --- pure line helpers (exposed for tests) -------------------------------------------------

// The message part of "<ctime> <Level>: <message>"; the whole line when it has no envelope.
std::string_view log_message(std::string_view line);
// The time of a log line (local time, as the log writes it); nullopt without a valid stamp.
std::optional<std::time_t> log_line_time(std::string_view line);

struct LineIds {
    std::vector<uint64_t> mids;  // usually one; two for "MID n was generated for bounce of MID m"
    std::optional<uint64_t> icid;
    std::optional<uint64_t> dcid;  // DCID 0 (no connection) is not reported
};
LineIds scan_ids(std::string_view message);

// "MID 5 Subject 'Hello\x0a'": the line findevent's subject criterion reads. The subject is
// escaped (escape_for_log) and bounded; injection logs it when DATA ends.
std::string subject_log_line(uint64_t mid, std::string_view subject);

}  // namespace esad
