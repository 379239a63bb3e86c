"""Monitoring and logs against the real binaries: `status detail` rates, the streaming
`rate` / `hostrate` / `tail` commands (--count ends them), `findevent` message tracking over
the mail log, and `domaindebug` recording a real delivery conversation to a scripted sink."""
import json
import os
import re
import subprocess
import time

from esad_harness import ESACTL, Daemon, make_body, send_message, wait_for, run_tests
from smtp_sink import SmtpSink


def logs_dir(d):
    return os.path.join(d.state, "logs")


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def mail_log(d):
    return read(os.path.join(logs_dir(d), "mail.current"))


def debug_log(d):
    return read(os.path.join(logs_dir(d), "domain_debug.current"))


def delivery_daemon(routes, extra=""):
    """Every domain routed to `routes`; DNS at a closed port (copied from test_delivery)."""
    d = Daemon(start=False)
    routes_path = os.path.join(d.dir, "routes.txt")
    with open(routes_path, "w") as f:
        f.write(routes)
    d.write_config(f'[routes]\nfile = "{routes_path}"\n[dns]\nservers = ["127.0.0.1:9"]\n'
                   f'timeout_ms = 200\n' + extra)
    d.start()
    return d


def active(d):
    return d.ctl_json("status")["gauges"]["active_recipients"]


def mids_of(d):
    return [int(m) for m in re.findall(r"Start MID (\d+) ICID", mail_log(d))]


def test_status_detail_rates():
    d = Daemon()  # mail stays queued (routed to a closed port)
    try:
        for i in range(3):
            assert send_message(d.smtp_port, "a@src.test", [f"r{i}@dst.test", f"s{i}@dst.test"],
                                make_body(f"rate-{i}@t"))[0] == 250
        # 6 recipients within the last minute: 360 / 72 / 24 per hour (sampled every second).
        def rcpt_rates():
            return d.ctl_json("status", "detail")["rates"]["recipients_received"]
        assert wait_for(lambda: rcpt_rates() == {"1m": 360, "5m": 72, "15m": 24}, timeout=5), rcpt_rates()
        rates = d.ctl_json("status", "detail")["rates"]
        assert rates["messages_received"] == {"1m": 180, "5m": 36, "15m": 12}
        assert set(rates) == {"messages_received", "recipients_received", "soft_bounced_events",
                              "completed_recipients", "hard_bounced_recipients",
                              "delivered_recipients"}
        assert "rates" not in d.ctl_json("status")
        out = d.ctl("status", "detail").stdout
        assert "Rates (Events Per Hour):" in out and "1-Minute  5-Minutes  15-Minutes" in out, out
        rates_block = out[out.index("Rates (Events"):]
        row = [l for l in rates_block.splitlines() if l.startswith("    Recipients Received")]
        assert row and row[0].split()[-3:] == ["360", "72", "24"], out
        # Rates sit between Current IDs and Gauges, as on the appliance.
        assert out.index("Current IDs") < out.index("Rates (Events") < out.index("Gauges:")
        assert "Rates (Events" not in d.ctl("status").stdout
        assert d.stop() == 0, d.read_log()
    finally:
        d.cleanup()


def test_rate_and_hostrate_stream_rows():
    sink = SmtpSink()
    d = delivery_daemon(f"ALL [127.0.0.1]:{sink.port}\n")
    try:
        assert send_message(d.smtp_port, "a@src.test", ["x@dst.test", "y@dst.test"],
                            make_body("hr@t"))[0] == 250
        assert wait_for(lambda: len(sink.messages) == 1 and active(d) == 0, timeout=15), mail_log(d)

        start = time.time()
        r = d.ctl("rate", "--count", "2", "1")
        assert time.time() - start < 10
        lines = r.stdout.splitlines()
        assert lines[0] == "Type Ctrl-C to return to the main prompt." and lines[1] == ""
        assert lines[2].startswith(" Time    Connections Recipients")
        assert lines[3].split() == ["In", "Out", "Received", "Delta", "Completed", "Delta", "K-Used"]
        rows = lines[4:]
        assert len(rows) == 2, r.stdout
        for row in rows:
            assert re.match(r"^\d\d:\d\d:\d\d +\d+ +\d+ +2 +0 +2 +0 +\d+$", row), row

        rows = [json.loads(l) for l in d.ctl("--json", "rate", "--count", "2", "1").stdout.splitlines()]
        assert len(rows) == 2
        assert rows[0]["recipients_received"] == 2 and rows[0]["recipients_completed"] == 2
        assert rows[1]["recipients_received_delta"] == 0

        # hostrate: the domain is up, with its delivered count in the JSON row.
        out = d.ctl("hostrate", "--count", "2", "dst.test", "1").stdout.splitlines()
        assert out[0] == "Type Ctrl-C to return to the main prompt."
        assert "CrtCncOut" in out[2] and "SftBncEvt" in out[2]
        assert len(out) == 6, out
        assert re.match(r"^\d\d:\d\d:\d\d +up( +-?\d+){6}$", out[4]), out[4]
        row = json.loads(d.ctl("--json", "hostrate", "--count", "1", "DST.test", "1").stdout)
        assert row["host"] == "dst.test" and row["host_status"] == "up"
        assert row["delivered_recipients"] == 2 and row["active_recipients"] == 0

        # Errors: unknown host, bad interval.
        r = d.ctl("hostrate", "never.test", "1", check=False)
        assert r.returncode == 1 and "No record of host: never.test" in r.stderr
        assert d.ctl("rate", "0", check=False).returncode == 2
        assert d.ctl("hostrate", check=False).returncode == 2
        # The daemon dropped the streams whose clients left and still answers.
        assert d.ctl_json("status")["counters"]["delivered_recipients"]["uptime"] == 2
        assert d.stop() == 0, d.read_log()
    finally:
        d.cleanup()
        sink.close()


def test_tail_backlog_and_follow():
    d = Daemon()
    try:
        assert send_message(d.smtp_port, "a@src.test", ["t@dst.test"], make_body("tail-1@t"))[0] == 250
        assert wait_for(lambda: "queued for delivery" in mail_log(d), timeout=5)
        # Backlog: the last lines of mail.current, then --count ends it.
        r = d.ctl("tail", "--lines", "3", "--count", "3", "mail_logs")
        got = r.stdout.splitlines()
        assert len(got) == 3, r.stdout
        assert got == [l for l in mail_log(d).splitlines() if l][-3:] or len(got) == 3
        assert all(re.match(r"^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} (Info|Warning): ", l) for l in got), got

        # Follow: a new SMTP connection's lines arrive while tail runs.
        p = subprocess.Popen([ESACTL, "--socket", d.socket, "tail", "--lines", "0", "--count", "2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.7)  # the stream has started at the end of the file
        assert send_message(d.smtp_port, "b@src.test", ["u@dst.test"], make_body("tail-2@t"))[0] == 250
        out, err = p.communicate(timeout=15)
        assert p.returncode == 0, err
        lines = out.splitlines()
        assert len(lines) == 2 and "New SMTP ICID" in lines[0], out
        assert "Start MID" in lines[1], out

        r = d.ctl("--json", "tail", "--lines", "1", "--count", "1")
        item = json.loads(r.stdout)
        assert item["log"] == "mail_logs" and "Info: " in item["line"]

        # The domain debug log exists from startup (empty here): tail waits, --count 0 lines
        # would never end, so only the error paths are checked.
        assert os.path.exists(os.path.join(logs_dir(d), "domain_debug.current"))
        r = d.ctl("tail", "no_such_log", check=False)
        assert r.returncode == 2 and "unknown log" in r.stderr
        assert d.stop() == 0, d.read_log()
    finally:
        d.cleanup()


def test_findevent_tracks_a_message():
    sink = SmtpSink()
    d = delivery_daemon(f"ALL [127.0.0.1]:{sink.port}\n")
    try:
        assert send_message(d.smtp_port, "alice@src.test", ["bob@dst.test"], make_body("fe-1@t"))[0] == 250
        assert send_message(d.smtp_port, "carol@src.test", ["dave@dst.test", "hard1@dst.test"],
                            make_body("fe-2@t", subject="Quarterly report"))[0] == 250
        assert wait_for(lambda: active(d) == 0 and mail_log(d).count("Message finished MID") >= 2,
                        timeout=15), mail_log(d)
        alice_mid, carol_mid = mids_of(d)[:2]

        out = d.ctl("findevent", str(alice_mid)).stdout
        assert out.startswith(f"MID {alice_mid}\n"), out
        for needle in ["New SMTP ICID", f"Start MID {alice_mid} ICID", "From: <alice@src.test>",
                       "To: <bob@dst.test>", "queued for delivery", "New SMTP DCID",
                       f"Delivery start DCID", "Response '2.0.0", f"Message finished MID {alice_mid} done",
                       "close"]:
            assert needle in out, (needle, out)
        assert "carol" not in out

        res = d.ctl_json("findevent", "--sender", "ALICE@src")
        assert res["matches"] == 1 and [m["mid"] for m in res["messages"]] == [alice_mid]
        assert "mail.current" in res["files"]

        res = d.ctl_json("findevent", "--recipient", "hard1@dst.test")
        assert [m["mid"] for m in res["messages"]] == [carol_mid]
        lines = "\n".join(res["messages"][0]["lines"])
        assert "Bounced: DCID" in lines and f"was generated for bounce of MID {carol_mid}" in lines

        # Subjects are logged at injection ("MID n Subject '...'") and searchable.
        assert f"MID {carol_mid} Subject 'Quarterly report'" in mail_log(d)
        res = d.ctl_json("findevent", "--subject", "quarterly")
        assert [m["mid"] for m in res["messages"]] == [carol_mid]

        res = d.ctl_json("findevent", "--sender", r"^<(alice|carol)@", "--regex", "--since", "1h")
        assert sorted(m["mid"] for m in res["messages"]) == sorted([alice_mid, carol_mid])

        # Nothing found: the appliance's wording, exit 1.
        r = d.ctl("findevent", "--sender", "nobody@", check=False)
        assert r.returncode == 1 and "No results were found" in r.stdout
        future = str(int(time.time()) + 3600)
        assert d.ctl("findevent", "--sender", "alice", "--since", future, check=False).returncode == 1
        assert d.ctl("findevent", "999999", check=False).returncode == 1
        # Usage errors: no criterion, bad regex, bad time.
        assert d.ctl("findevent", check=False).returncode == 2
        r = d.ctl("findevent", "--sender", "([", "--regex", check=False)
        assert r.returncode == 2 and "regular expression" in r.stderr
        assert d.ctl("findevent", "--since", "yesterday-ish", check=False).returncode == 2
        assert d.stop() == 0, d.read_log()
    finally:
        d.cleanup()
        sink.close()


def test_domaindebug_records_a_delivery():
    sink = SmtpSink()
    d = delivery_daemon(f"ALL [127.0.0.1]:{sink.port}\n",
                        extra='[logging]\ndomain_debug = ["conf.test"]\n')
    try:
        lst = d.ctl_json("domaindebug", "list")
        assert lst["domains"] == [{"domain": "conf.test", "sessions_limit": 0, "sessions": 0,
                                   "lines": 0, "source": "config"}]
        assert lst["path"].endswith("/domain_debug.current")
        out = d.ctl("domaindebug", "add", "DST.test", "--sessions", "1").stdout
        assert "Domain debug logging started for dst.test (next 1 session)" in out

        assert send_message(d.smtp_port, "alice@src.test", ["bob@dst.test"], make_body("dd-1@t"))[0] == 250
        assert wait_for(lambda: len(sink.messages) == 1 and "DCID 1 close" in mail_log(d), timeout=15), mail_log(d)
        assert wait_for(lambda: "QUIT" in debug_log(d), timeout=5), debug_log(d)
        log = debug_log(d)
        for needle in ["Debug: DCID 1 domain dst.test: -- session 1 of 1",
                       "Debug: DCID 1 domain dst.test: S: 220 sink.test ESMTP scripted",
                       "Debug: DCID 1 domain dst.test: C: EHLO ",
                       "Debug: DCID 1 domain dst.test: C: MAIL FROM:<alice@src.test>",
                       "Debug: DCID 1 domain dst.test: C: RCPT TO:<bob@dst.test>",
                       "Debug: DCID 1 domain dst.test: S: 250",
                       "Debug: DCID 1 domain dst.test: C: QUIT"]:
            assert needle in log, (needle, log)
        assert "xxxxxxxxxx" not in log  # message content is summarized, never logged
        assert all(re.match(r"^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} Debug: DCID \d+ domain ", l)
                   for l in log.splitlines()), log

        # The session limit: the next connection to dst.test is not recorded.
        assert send_message(d.smtp_port, "alice@src.test", ["bob2@dst.test"], make_body("dd-2@t"))[0] == 250
        assert wait_for(lambda: len(sink.messages) == 2 and "DCID 2 close" in mail_log(d), timeout=15)
        # A configured domain records every session.
        assert send_message(d.smtp_port, "alice@src.test", ["c@conf.test"], make_body("dd-3@t"))[0] == 250
        assert wait_for(lambda: len(sink.messages) == 3, timeout=15)
        assert wait_for(lambda: "domain conf.test: C: QUIT" in debug_log(d), timeout=5), debug_log(d)
        assert "DCID 2 domain dst.test" not in debug_log(d)

        entries = {e["domain"]: e for e in d.ctl_json("domaindebug", "list")["domains"]}
        assert entries["dst.test"]["sessions"] == 1 and entries["dst.test"]["sessions_limit"] == 1
        assert entries["dst.test"]["source"] == "esactl" and entries["dst.test"]["lines"] > 5
        assert entries["conf.test"]["sessions"] == 1
        text = d.ctl("domaindebug", "list").stdout
        assert re.search(r"^dst\.test +1 of 1 +\d+  esactl$", text, re.M), text

        # tail domain_debug shows the recorded conversation.
        out = d.ctl("tail", "--lines", "2", "--count", "2", "domain_debug").stdout.splitlines()
        assert len(out) == 2 and all(" Debug: DCID " in l for l in out), out

        assert "stopped for dst.test" in d.ctl("domaindebug", "remove", "dst.test").stdout
        r = d.ctl("domaindebug", "remove", "dst.test", check=False)
        assert r.returncode == 1 and "No domain debug log for: dst.test" in r.stderr
        assert [e["domain"] for e in d.ctl_json("domaindebug", "list")["domains"]] == ["conf.test"]
        assert d.ctl("domaindebug", "add", "bad domain", check=False).returncode == 2
        assert d.ctl("domaindebug", "frobnicate", check=False).returncode == 2
        assert d.stop() == 0, d.read_log()
    finally:
        d.cleanup()
        sink.close()


def test_streams_end_when_the_daemon_stops():
    d = Daemon()
    try:
        p = subprocess.Popen([ESACTL, "--socket", d.socket, "rate", "3600"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        t = subprocess.Popen([ESACTL, "--socket", d.socket, "tail", "--lines", "0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1)
        start = time.time()
        assert d.stop() == 0
        assert time.time() - start < 5  # an hour-long rate interval does not hold shutdown
        out, _ = p.communicate(timeout=5)
        assert p.returncode == 0 and "Type Ctrl-C" in out
        t.communicate(timeout=5)
        assert t.returncode == 0
    finally:
        d.cleanup()


if __name__ == "__main__":
    run_tests([
        test_status_detail_rates,
        test_rate_and_hostrate_stream_rows,
        test_tail_backlog_and_follow,
        test_findevent_tracks_a_message,
        test_domaindebug_records_a_delivery,
        test_streams_end_when_the_daemon_stops,
    ])
