// Domain debug logs (esa-reference §8.6): the whole SMTP conversation of delivery sessions to
// chosen domains, in <logging.dir>/domain_debug.current, rotated by size (50 MB) to
// domain_debug.1.current ... domain_debug.9.current by spdlog, like the mail log.
//
// Domains come from [logging] domain_debug (set_configured, at startup and on reload) and from
// `esactl domaindebug add DOMAIN [--sessions N]` (add/remove, until the next restart). With a
// session limit, the first N delivery connections (distinct DCIDs) seen after `add` are
// recorded whole and later ones are not. The daemon plugs trace() into SessionEnv::trace.
//
// Line format (esad's own; ESA's is not documented), one line per SMTP trace event:
//
//   Fri Nov 27 23:16:19 2026 Debug: DCID 5 domain dst.test: -- session 1 of 3
//   Fri Nov 27 23:16:19 2026 Debug: DCID 5 domain dst.test: -- connecting to 127.0.0.1 (tls
//   preferred) Fri Nov 27 23:16:19 2026 Debug: DCID 5 domain dst.test: S: 220 sink.test ESMTP Fri
//   Nov 27 23:16:19 2026 Debug: DCID 5 domain dst.test: C: MAIL FROM:<a@src.test>
//
// "C:" is a line esad sent, "S:" one the server sent, "--" a session event (connect, state
// change, TLS, timeout, close). Message content is summarized ("C: [1234 octets of content]"),
// never logged. The text is already made printable by the client FSM; it is escaped again
// here (escape_for_log: a backslash becomes "\\", other bytes "\xNN") and bounded.
// Writes go through an spdlog async logger (file I/O on spdlog's worker); loop thread only.
#pragma once

#include <spdlog/spdlog.h>

#include <cstdint>
#include <ctime>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace esad::logs {

class DomainDebug {
  public:
    struct Entry {
        std::string domain;
        uint32_t max_sessions = 0;  // 0: every session
        uint64_t sessions = 0;      // sessions recorded so far
        uint64_t lines = 0;
        bool configured = false;  // from the configuration (else added with esactl)
    };

    // Creates the directory and the log file. nullptr and *error on failure.
    static std::unique_ptr<DomainDebug> open(const std::string& dir,
                                             const std::vector<std::string>& configured,
                                             std::string* error);
    ~DomainDebug();

    // Replaces the configured domains; domains added with esactl stay.
    void set_configured(const std::vector<std::string>& domains);
    // Starts (or restarts, resetting its counts) recording for a domain. False and *error
    // for a name that is not a domain.
    bool add(const std::string& domain, uint32_t max_sessions, std::string* error);
    bool remove(const std::string& domain);
    std::vector<Entry> list() const;
    // True while `domain` is in the table (configured or added), whatever its session count.
    bool contains(std::string_view domain) const;

    // One SMTP trace line of delivery session `dcid` to `domain` (SessionEnv::trace).
    void trace(const std::string& domain, uint64_t dcid, const std::string& line);
    const std::string& path() const { return path_; }
    void flush();

  private:
    DomainDebug() = default;
    void write(const Entry& e, uint64_t dcid, std::string_view text);
    struct State {
        Entry entry;
        std::set<uint64_t> admitted;  // DCIDs being recorded (limited entries only)
        uint64_t newest_dcid = 0;     // unlimited entries count sessions by new DCIDs
    };
    std::shared_ptr<spdlog::logger> logger_;
    std::string path_;
    std::map<std::string, State> domains_;
    std::time_t stamp_second_ = 0;
    std::string stamp_;
};

// Normalizes a domain for the debug table: lower case, no trailing dot; empty when the name
// cannot be a domain (empty, spaces, control characters, longer than 253).
std::string debug_domain_key(std::string_view domain);
// "DCID 5 domain dst.test: C: MAIL FROM:<a@b>" for one FSM trace line ("> ...", "< ...", or an
// event); without the time stamp and level.
std::string debug_line(uint64_t dcid, std::string_view domain, std::string_view trace);

}  // namespace esad::logs
