// Message tracking over mail log files (findevent): line parsing, MID selection, history
// with tied ICID/DCID lines, runs separated by "Begin Logfile", rotated files, time range.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "common/log_search.h"
#include "tests/support/temp_dir.h"

using namespace esad;

namespace {

struct TempDir : esad::test::TempDir {
    TempDir() : esad::test::TempDir("logsearch") {}
    std::string write(const std::string& name, const std::string& text) const {
        std::string p = path + "/" + name;
        std::ofstream(p) << text;
        return p;
    }
};

const char* kRunA =
    "Fri Nov 27 10:00:00 2026 Info: Begin Logfile\n"
    "Fri Nov 27 10:00:00 2026 Info: Version: esad 0.1.0\n"
    "Fri Nov 27 10:00:01 2026 Info: New SMTP ICID 1 interface 127.0.0.1 address 127.0.0.1 reverse "
    "dns host unknown verified no\n"
    "Fri Nov 27 10:00:01 2026 Info: Start MID 1 ICID 1\n"
    "Fri Nov 27 10:00:01 2026 Info: MID 1 ICID 1 From: <alice@src.test>\n"
    "Fri Nov 27 10:00:01 2026 Info: MID 1 ICID 1 RID 0 To: <bob@dst.test>\n"
    "Fri Nov 27 10:00:01 2026 Info: MID 1 Subject 'Quarterly report'\n"
    "Fri Nov 27 10:00:01 2026 Info: MID 1 ready 100 bytes from <alice@src.test>\n"
    "Fri Nov 27 10:00:01 2026 Info: MID 1 queued for delivery\n"
    "Fri Nov 27 10:00:02 2026 Info: Start MID 2 ICID 1\n"
    "Fri Nov 27 10:00:02 2026 Info: MID 2 ICID 1 From: <carol@src.test>\n"
    "Fri Nov 27 10:00:02 2026 Info: MID 2 ICID 1 RID 0 To: <dave@other.test>\n"
    "Fri Nov 27 10:00:02 2026 Info: ICID 1 close\n"
    "Fri Nov 27 10:00:03 2026 Info: New SMTP DCID 7 interface default address 127.0.0.1 port 25\n"
    "Fri Nov 27 10:00:03 2026 Info: Delivery start DCID 7 MID 1 to RID [0]\n"
    "Fri Nov 27 10:00:03 2026 Info: Message done DCID 7 MID 1 to RID [0]\n"
    "Fri Nov 27 10:00:03 2026 Info: MID 1 RID [0] Response '2.0.0 ok MID 2 DCID 9'\n"
    "Fri Nov 27 10:00:03 2026 Info: Message finished MID 1 done\n"
    "Fri Nov 27 10:00:04 2026 Info: DCID 7 close\n";

// The next run reuses ICID 1 and DCID 7 for other messages.
const char* kRunB =
    "Fri Nov 27 12:00:00 2026 Info: Begin Logfile\n"
    "Fri Nov 27 12:00:01 2026 Info: New SMTP ICID 1 interface 127.0.0.1 address 10.0.0.1 reverse "
    "dns host unknown verified no\n"
    "Fri Nov 27 12:00:01 2026 Info: Start MID 3 ICID 1\n"
    "Fri Nov 27 12:00:01 2026 Info: MID 3 ICID 1 From: <alice@src.test>\n"
    "Fri Nov 27 12:00:01 2026 Info: MID 3 ICID 1 RID 0 To: <erin@dst.test>\n"
    "Fri Nov 27 12:00:01 2026 Info: ICID 1 close\n"
    "Fri Nov 27 12:00:02 2026 Info: New SMTP DCID 7 interface default address 127.0.0.1 port 25\n"
    "Fri Nov 27 12:00:02 2026 Info: Delayed: DCID 7 MID 3 to RID 0 - 4.3.0 - Other ('451', ['try "
    "later'])[]\n"
    "Fri Nov 27 12:00:02 2026 Info: Message 3 to RID [0] pending till Fri Nov 27 12:01:02 2026\n"
    "Fri Nov 27 12:00:02 2026 Info: DCID 7 close\n"
    "Fri Nov 27 12:00:05 2026 Info: MID 4 was generated for bounce of MID 3\n";

std::vector<std::string> lines_of(const EventSearchResult& r, uint64_t mid) {
    for (const auto& m : r.messages)
        if (m.mid == mid) return m.lines;
    return {};
}

bool has(const std::vector<std::string>& lines, const std::string& needle) {
    for (const auto& l : lines)
        if (l.find(needle) != std::string::npos) return true;
    return false;
}

}  // namespace

TEST_CASE("log line parts: message, time, ids") {
    setenv("TZ", "UTC", 1);
    tzset();
    std::string line = "Fri Nov 27 10:00:03 2026 Info: Delivery start DCID 7 MID 1 to RID [0]";
    CHECK(log_message(line) == "Delivery start DCID 7 MID 1 to RID [0]");
    CHECK(log_message("no envelope here") == "no envelope here");
    REQUIRE(log_line_time(line));
    CHECK(*log_line_time(line) == 1795773603);
    CHECK(!log_line_time("Xyz Nov 27 10:00:03 2026 Info: x"));
    CHECK(log_line_time("Wed Sep  6 13:13:16 2023 Info: x") ==
          std::optional<std::time_t>(1694005996));

    LineIds ids = scan_ids("Delivery start DCID 7 MID 1 to RID [0]");
    CHECK(ids.mids == std::vector<uint64_t>{1});
    CHECK(ids.dcid == std::optional<uint64_t>(7));
    CHECK(!ids.icid);
    ids = scan_ids("MID 4 was generated for bounce of MID 3");
    CHECK(ids.mids == std::vector<uint64_t>{4, 3});
    ids = scan_ids("Message 3 to RID [0] pending till Fri Nov 27 12:01:02 2026");
    CHECK(ids.mids == std::vector<uint64_t>{3});
    ids = scan_ids("Bounced: DCID 0 MID 8 to RID 0 - 5.1.2 - Bad destination host ('000', [])");
    CHECK(ids.mids == std::vector<uint64_t>{8});
    CHECK(!ids.dcid);  // DCID 0: no connection
    // Peer text (quoted replies, addresses) never names ids.
    ids = scan_ids("MID 1 RID [0] Response '2.0.0 ok MID 2 DCID 9'");
    CHECK(ids.mids == std::vector<uint64_t>{1});
    CHECK(!ids.dcid);
    ids = scan_ids("MID 5 ICID 2 From: <MID 9 @x>");
    CHECK(ids.mids == std::vector<uint64_t>{5});
    CHECK(ids.icid == std::optional<uint64_t>(2));
    ids = scan_ids("Connection Error: DCID: 263 IP: 1.2.3.4 details: EOF");
    CHECK(ids.dcid == std::optional<uint64_t>(263));
    CHECK(scan_ids("Message done DCID 8 MID 6 to RID [0]").mids == std::vector<uint64_t>{6});
}

TEST_CASE("findevent by MID: its lines plus its connection lines, in log order") {
    TempDir dir;
    auto files = std::vector<std::string>{dir.write("mail.current", std::string(kRunA) + kRunB)};
    EventQuery q;
    q.mid = 1;
    EventSearchResult r = find_events(files, q);
    REQUIRE(r.messages.size() == 1);
    CHECK(r.matched == 1);
    const auto& lines = r.messages[0].lines;
    CHECK(lines.front().find("New SMTP ICID 1 interface 127.0.0.1 address 127.0.0.1") !=
          std::string::npos);
    CHECK(has(lines, "Start MID 1 ICID 1"));
    CHECK(has(lines, "ICID 1 close"));
    CHECK(has(lines, "New SMTP DCID 7"));
    CHECK(has(lines, "Message finished MID 1 done"));
    CHECK(lines.back().find("DCID 7 close") != std::string::npos);
    CHECK(!has(lines, "Start MID 2"));  // same ICID, other message
    CHECK(!has(lines, "10.0.0.1"));     // ICID 1 of the next run
    CHECK(!has(lines, "Begin Logfile"));
    CHECK(lines.size() == 14);

    q.mid = 99;
    r = find_events(files, q);
    CHECK(r.messages.empty());
    CHECK(r.matched == 0);
}

TEST_CASE("findevent by sender, recipient, subject and time; criteria are ANDed") {
    setenv("TZ", "UTC", 1);
    tzset();
    TempDir dir;
    auto files = std::vector<std::string>{dir.write("mail.current", std::string(kRunA) + kRunB)};
    EventQuery q;
    q.sender = "ALICE@src.test";
    EventSearchResult r = find_events(files, q);
    REQUIRE(r.messages.size() == 2);
    CHECK(r.messages[0].mid == 1);
    CHECK(r.messages[1].mid == 3);
    // MID 3's history: its run's ICID/DCID lines, the pending line and the bounce line.
    auto three = lines_of(r, 3);
    CHECK(has(three, "10.0.0.1"));
    CHECK(has(three, "pending till"));
    CHECK(has(three, "was generated for bounce of MID 3"));
    CHECK(!has(three, "Delivery start DCID 7 MID 1"));

    q.recipient = "erin@";
    r = find_events(files, q);
    REQUIRE(r.messages.size() == 1);
    CHECK(r.messages[0].mid == 3);

    EventQuery s;
    s.subject = "quarterly";
    r = find_events(files, s);
    REQUIRE(r.messages.size() == 1);
    CHECK(r.messages[0].mid == 1);

    EventQuery re;
    re.regex = true;
    re.recipient = "^<(dave|bob)@";
    r = find_events(files, re);
    REQUIRE(r.messages.size() == 2);
    CHECK(r.messages[0].mid == 1);
    CHECK(r.messages[1].mid == 2);

    // The sender text of another field does not match: "from <alice..." is the ready line.
    EventQuery t;
    t.since = 1795780800;  // 12:00:00 UTC
    r = find_events(files, t);
    REQUIRE(r.messages.size() == 2);  // MID 3 and the bounce MID 4
    CHECK(r.messages[0].mid == 3);
    CHECK(r.messages[1].mid == 4);
    t.sender = "carol";
    CHECK(find_events(files, t).messages.empty());
    t.since.reset();
    t.until = 1795773601;  // 10:00:01
    r = find_events(files, t);
    CHECK(r.messages.empty());  // carol's MID 2 starts at 10:00:02
}

TEST_CASE("rotated files are read oldest first; limits keep the most recent") {
    TempDir dir;
    dir.write("mail.2.current", kRunA);
    dir.write("mail.1.current",
              "Fri Nov 27 11:00:00 2026 Info: MID 1 RID [0] deleted by administrator\n");
    dir.write("mail.current", kRunB);
    std::vector<std::string> files = mail_log_files(dir.path, false);
    REQUIRE(files.size() == 3);
    CHECK(files[0] == dir.path + "/mail.2.current");
    CHECK(files[2] == dir.path + "/mail.current");
    CHECK(mail_log_files(dir.path, true).size() == 1);

    EventQuery q;
    q.mid = 1;
    auto lines = lines_of(find_events(files, q), 1);
    CHECK(has(lines, "deleted by administrator"));
    CHECK(lines.back().find("deleted by administrator") != std::string::npos);

    EventQuery all;
    all.sender = "@src.test";
    all.max_messages = 2;
    EventSearchResult r = find_events(files, all);
    CHECK(r.matched == 3);
    CHECK(r.truncated);
    REQUIRE(r.messages.size() == 2);
    CHECK(r.messages[0].mid == 2);
    CHECK(r.messages[1].mid == 3);

    all.max_messages = 10;
    all.max_lines_per_message = 3;
    r = find_events(files, all);
    CHECK(r.messages[0].lines.size() == 3);
    CHECK(r.messages[0].truncated);
}

TEST_CASE("queries are validated; cancel stops a search; odd bytes are escaped") {
    std::string error;
    EventQuery none;
    CHECK(!validate_query(none, &error));
    EventQuery bad;
    bad.regex = true;
    bad.sender = "([";
    CHECK(!validate_query(bad, &error));
    CHECK(error.find("bad regular expression") != std::string::npos);
    CHECK(!find_events({}, bad).error.empty());

    TempDir dir;
    std::string big;
    for (int i = 0; i < 20000; ++i)
        big += "Fri Nov 27 10:00:01 2026 Info: MID " + std::to_string(i) + " queued for delivery\n";
    auto files = std::vector<std::string>{dir.write("mail.current", big)};
    std::atomic<bool> cancel{true};
    EventQuery q;
    q.sender = "x";
    CHECK(find_events(files, q, &cancel).cancelled);

    files = {
        dir.write("mail.current", "Fri Nov 27 10:00:01 2026 Info: MID 5 odd \x01\xff bytes\n")};
    EventQuery m;
    m.mid = 5;
    auto lines = lines_of(find_events(files, m), 5);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].find("\\x01\\xff") != std::string::npos);
    CHECK(subject_log_line(5, "Hi\nthere") == "MID 5 Subject 'Hi\\x0athere'");
}

TEST_CASE("rotated file names follow spdlog") {
    CHECK(rotated_log_path("logs/mail.current", 1) == "logs/mail.1.current");
    CHECK(rotated_log_path("logs/domain_debug.current", 9) == "logs/domain_debug.9.current");
    CHECK(rotated_log_path("logs.d/plain", 2) == "logs.d/plain.2");
}
