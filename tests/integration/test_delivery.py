"""The delivery engine against the real binary: static routes and MX (scripted DNS), the
SMTP client against a scripted sink, STARTTLS, soft and hard bounces with DSNs, a dead
destination held (not bounced) and the ESA runbook: tophosts, hoststatus, dig, delivernow."""
import json
import os
import re
import signal
import subprocess
import sys
import time

from esad_harness import (make_cert, Daemon, delivery_daemon, free_port, mail_log, make_body, send_message,
                          spool_messages, wait_for, run_tests)
from smtp_sink import SmtpSink

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE_DNS = os.path.join(HERE, "..", "support", "fake_dns.py")


def start_dns():
    p = subprocess.Popen(["/usr/bin/python3", FAKE_DNS, "--idle", "300"], stdout=subprocess.PIPE, text=True)
    port = int(p.stdout.readline().split()[0])
    return p, port


def active(d):
    return d.ctl_json("status")["gauges"]["active_recipients"]


def test_static_route_delivery_and_log_lines():
    sink = SmtpSink()
    d = delivery_daemon(f"ALL [127.0.0.1]:{sink.port}\n")
    try:
        for i in range(3):
            code, text = send_message(d.smtp_port, "alice@src.test", [f"bob{i}@dst.test", f"carol{i}@dst.test"],
                                      make_body(f"dlv-{i}@t"))
            assert code == 250, text
        assert wait_for(lambda: len(sink.messages) == 3 and active(d) == 0, timeout=15), (sink.messages, mail_log(d))
        # One transaction per message for its domain: both recipients together.
        assert all(len(m["rcpts"]) == 2 for m in sink.messages)
        assert all(b"Received: from" in m["data"] for m in sink.messages)
        s = d.ctl_json("status")
        assert s["counters"]["delivered_recipients"]["uptime"] == 6
        assert s["counters"]["completed_recipients"]["uptime"] == 6
        log = mail_log(d)
        for needle in ["New SMTP DCID 1 interface 127.0.0.1 address 127.0.0.1 port %d" % sink.port,
                       "Delivery start DCID", "to RID [0, 1]", "Message done DCID", "Response '2.0.0 Ok: queued as",
                       "Message finished MID"]:
            assert needle in log, (needle, log)
        # Idle connections are kept 2 s for more mail to the same host, then closed.
        assert wait_for(lambda: "DCID 1 close" in mail_log(d), timeout=6)
        assert wait_for(lambda: d.ctl_json("status")["gauges"]["current_outbound_connections"] == 0,
                        timeout=3)
        # The spool is empty once every recipient is final and journaled.
        assert wait_for(lambda: spool_messages(d.state) == [], timeout=5)
        h = d.ctl_json("hoststatus", "dst.test")
        assert h["status"] == "up"
        assert h["counters"]["delivered_recipients"] == 6
        assert h["routes"] == [f"[127.0.0.1]:{sink.port}"]
    finally:
        d.cleanup()
        sink.close()


def test_hard_bounce_generates_dsn_and_soft_bounce_is_retried():
    sink = SmtpSink()
    d = delivery_daemon(f"ALL [127.0.0.1]:{sink.port}\n")
    try:
        code, _ = send_message(d.smtp_port, "alice@src.test", ["hard1@dst.test", "ok1@dst.test"],
                               make_body("mixed@t", subject="mixed"))
        assert code == 250
        # ok1 delivered, hard1 bounced: a DSN goes back to alice@src.test (routed to the sink too).
        assert wait_for(lambda: any(m["mail_from"] == "" for m in sink.messages), timeout=15), mail_log(d)
        dsn = [m for m in sink.messages if m["mail_from"] == ""][0]
        assert dsn["rcpts"] == ["alice@src.test"]
        assert b"multipart/report; report-type=delivery-status" in dsn["data"]
        assert b"Final-Recipient: rfc822; hard1@dst.test" in dsn["data"]
        assert b"Status: 5.1.1" in dsn["data"]
        assert b"Subject: mixed" in dsn["data"]  # original headers, never the body
        assert b"xxxxxxxxxx" not in dsn["data"]
        log = mail_log(d)
        assert "Bounced: DCID" in log and "- 5.1.1 - Bad destination mailbox address ('550'" in log
        assert "was generated for bounce of MID" in log
        s = d.ctl_json("status")
        assert s["counters"]["5xx_hard_bounces"]["uptime"] == 1
        assert s["counters"]["gen_bounce_recipients"]["uptime"] == 1

        # softonce: 451 first, accepted after delivernow.
        code, _ = send_message(d.smtp_port, "alice@src.test", ["softonce@dst.test"], make_body("soft@t"))
        assert code == 250
        assert wait_for(lambda: "pending till" in mail_log(d), timeout=15)
        assert "Delayed: DCID" in mail_log(d) and "- 4.3.0 -" in mail_log(d)
        assert active(d) == 1
        rows = d.ctl_json("showrecipients")["recipients"]
        assert rows[0]["recipient"] == "softonce@dst.test" and rows[0]["state"] == "deferred"
        assert d.ctl_json("delivernow", "all")["recipients"] >= 1
        assert wait_for(lambda: active(d) == 0, timeout=15), mail_log(d)
        assert any(m["rcpts"] == ["softonce@dst.test"] for m in sink.messages)
        assert d.ctl_json("status")["counters"]["soft_bounced_events"]["uptime"] == 1
    finally:
        d.cleanup()
        sink.close()


def test_dead_host_is_held_then_runbook_recovers_it():
    dead_port = free_port()  # nothing listens here yet
    live = SmtpSink()
    d = delivery_daemon(f"dead.test [127.0.0.1]:{dead_port}\nALL [127.0.0.1]:{live.port}\n",
                        extra='[logging]\nlevel = "trace"\n')
    try:
        for i in range(5):
            assert send_message(d.smtp_port, "a@src.test", [f"u{i}@dead.test"], make_body(f"dead-{i}@t"))[0] == 250
            assert send_message(d.smtp_port, "a@src.test", [f"u{i}@live.test"], make_body(f"live-{i}@t"))[0] == 250
        # The live domain is unaffected by the dead one.
        assert wait_for(lambda: len(live.messages) == 5, timeout=15)
        # Step 1: tophosts shows the waiting mail, the dead host marked '*'.
        assert wait_for(lambda: d.ctl_json("hoststatus", "dead.test")["status"] == "down", timeout=10)
        top = d.ctl("tophosts", "active_rcpts").stdout
        row = [l for l in top.splitlines() if "dead.test" in l][0]
        assert row.split()[0] == "1*" and row.split()[2] == "5", top
        assert "the.euq.queue" in top and "Hosts marked with '*'" in top
        # Step 2: hoststatus says down; the mail is held, not bounced.
        hs = d.ctl("hoststatus", "dead.test").stdout
        assert "Host up/down:         down" in hs
        assert "Active Recipients                   5" in hs
        assert "Connection Error: DCID" in mail_log(d) and "domain: dead.test" in mail_log(d)
        assert d.ctl_json("status")["counters"]["hard_bounced_recipients"]["uptime"] == 0
        # The daemon log says when the host went down, and traces each SMTP state change.
        assert "host dead.test: unknown -> down (all_candidates_failed)" in d.read_log()
        assert re.search(r"ICID \d+ SMTP state rcpt -> data", d.read_log()), d.read_log()[-3000:]
        # Step 3: the destination comes back; delivernow all retries at once.
        sink = SmtpSink(port=dead_port)
        try:
            out = d.ctl("delivernow", "all").stdout
            assert "recipients scheduled for immediate delivery" in out
            assert wait_for(lambda: len(sink.messages) == 5, timeout=15), mail_log(d)
            assert wait_for(lambda: d.ctl_json("hoststatus", "dead.test")["status"] == "up", timeout=5)
            assert "host dead.test: down -> up (greeting_reached)" in d.read_log()
        finally:
            sink.close()
        # Unknown hosts: exit 1 and the ESA message.
        r = d.ctl("hoststatus", "never.test", check=False)
        assert r.returncode == 1 and "No record of host: never.test" in r.stderr
    finally:
        d.cleanup()
        live.close()


def test_connection_error_line_keeps_the_banner_reply_code():
    # A server that turns the connection away in its greeting: the operator reads its code
    # (421: come back later, 554: go away), not only its text.
    busy = SmtpSink()
    busy.greeting = "421 4.3.2 busy.test too many connections, try later"
    d = delivery_daemon(f"busy.test [127.0.0.1]:{busy.port}\n")
    try:
        assert send_message(d.smtp_port, "a@src.test", ["u@busy.test"], make_body("busy@t"))[0] == 250
        assert wait_for(lambda: "Connection Error: DCID" in mail_log(d), timeout=15), mail_log(d)
        line = [l for l in mail_log(d).splitlines() if "Connection Error: DCID" in l][0]
        assert "details: 421 4.3.2 busy.test too many connections, try later" in line, line
        assert active(d) == 1  # held for a retry, not bounced
    finally:
        d.cleanup()
        busy.close()


def test_mx_resolution_nxdomain_and_dig():
    dns_proc, dns_port = start_dns()
    sink = SmtpSink()
    d = delivery_daemon("", dns_port=dns_port, port=sink.port)
    try:
        # The sender's domain resolves too, so the DSN for the NXDOMAIN recipient is delivered.
        sender = "a@deliver.esad.test"
        assert send_message(d.smtp_port, sender, ["x@deliver.esad.test"], make_body("mx@t"))[0] == 250
        assert send_message(d.smtp_port, sender, ["y@implicit.esad.test"], make_body("imp@t"))[0] == 250
        assert send_message(d.smtp_port, sender, ["z@nowhere.esad.test"], make_body("nx@t"))[0] == 250
        assert wait_for(lambda: len([m for m in sink.messages if m["mail_from"] == sender]) == 2, timeout=15), mail_log(d)
        assert wait_for(lambda: any(m["mail_from"] == "" for m in sink.messages), timeout=15), mail_log(d)
        assert wait_for(lambda: "Bad destination host" in mail_log(d), timeout=10)
        assert "DNS Hard Error looking up nowhere.esad.test (MX): NXDomain" in mail_log(d)
        h = d.ctl_json("hoststatus", "deliver.esad.test")
        assert [m["host"] for m in h["mx_records"]] == ["mx-local.esad.test", "mx-backup.esad.test"]
        assert any(ip["ip"] == "127.0.0.1" for ip in h["ordered_ips"])
        assert d.ctl_json("status")["counters"]["dns_hard_bounces"]["uptime"] == 1
        out = d.ctl("dig", "mx", "deliver.esad.test").stdout
        assert ";; QUESTION SECTION:" in out and ";; ANSWER SECTION:" in out
        assert "IN  MX    10 mx-local.esad.test." in out, out
        r = d.ctl("dig", "a", "nowhere.esad.test", check=False)
        assert r.returncode == 1 and "nxdomain" in r.stdout
        # NODATA: the name exists (it has MX records) but no TXT record: no answer, exit 1.
        r = d.ctl("dig", "txt", "deliver.esad.test", check=False)
        assert r.returncode == 1, (r.returncode, r.stdout)
        # The DSN types a DNS cause as ours, not as an SMTP reply.
        dsn = [m for m in sink.messages if m["mail_from"] == ""][0]["data"]
        assert b"Diagnostic-Code: X-Esad; DNS Hard Error" in dsn, dsn
        assert b"Diagnostic-Code: smtp;" not in dsn
    finally:
        d.cleanup()
        sink.close()
        dns_proc.terminate()


def test_starttls_delivery_is_logged():
    d0 = Daemon(start=False)
    cert, key = make_cert(d0.dir, "sink.test")
    sink = SmtpSink(tls_cert=cert, tls_key=key)
    d = delivery_daemon(f"ALL [127.0.0.1]:{sink.port}\n")
    try:
        assert send_message(d.smtp_port, "a@src.test", ["t@tls.test"], make_body("tls@t"))[0] == 250
        assert wait_for(lambda: len(sink.messages) == 1, timeout=15), mail_log(d)
        assert sink.messages[0]["tls"] is True
        assert "TLS success protocol TLSv1." in mail_log(d)
    finally:
        d.cleanup()
        d0.cleanup()
        sink.close()


def test_restart_keeps_deferred_mail_and_delivers_it():
    dead_port = free_port()
    d = delivery_daemon(f"ALL [127.0.0.1]:{dead_port}\n")
    try:
        for i in range(4):
            assert send_message(d.smtp_port, "a@src.test", [f"r{i}@later.test"], make_body(f"later-{i}@t"))[0] == 250
        assert wait_for(lambda: d.ctl_json("hoststatus", "later.test")["status"] == "down", timeout=10)
        assert d.stop() == 0
        sink = SmtpSink(port=dead_port)
        try:
            d.start()
            # Recovery put all four back in the queue (they may already be on their way).
            assert "spool: recovered 4 messages, 4 recipients" in d.read_log(), d.read_log()
            assert wait_for(lambda: len(sink.messages) == 4, timeout=15), mail_log(d)
            assert wait_for(lambda: spool_messages(d.state) == [], timeout=5)
        finally:
            sink.close()
    finally:
        d.cleanup()


def test_null_mx_and_servfail():
    dns_proc, dns_port = start_dns()
    sink = SmtpSink()
    d = delivery_daemon("", dns_port=dns_port, port=sink.port)
    try:
        sender = "a@deliver.esad.test"
        assert send_message(d.smtp_port, sender, ["x@nullmx.esad.test"], make_body("null@t"))[0] == 250
        assert send_message(d.smtp_port, sender, ["y@servfail.esad.test"], make_body("sf@t"))[0] == 250
        assert wait_for(lambda: "5.1.10" in mail_log(d), timeout=10), mail_log(d)
        assert wait_for(lambda: "Delayed: DCID 0" in mail_log(d), timeout=10), mail_log(d)
        log = mail_log(d)
        bounced = [l for l in log.splitlines() if "Bounced:" in l]
        assert len(bounced) == 1 and "5.1.10" in bounced[0], bounced
        assert "Recipient address has null MX" in bounced[0] and "Unknown address" not in bounced[0]
        # SERVFAIL is temporary: held, never bounced, and reported as what the server said.
        assert "servfail" not in " ".join(bounced)
        assert d.ctl_json("hoststatus", "servfail.esad.test")["gauges"]["active_recipients"] == 1
        delayed = [l for l in log.splitlines() if "Delayed: DCID 0" in l][0]
        assert "general failure" in delayed and "Could not contact" not in delayed, delayed
    finally:
        d.cleanup()
        sink.close()
        dns_proc.terminate()


def test_dns_temporary_failure_is_shown_deferred_while_the_host_is_held():
    dns_proc, dns_port = start_dns()
    d = delivery_daemon("", dns_port=dns_port,
                        extra='[bounce_profiles.default]\ninitial_retry = "1s"\n')
    try:
        assert send_message(d.smtp_port, "a@src.test", ["y@servfail.esad.test"], make_body("h@t"))[0] == 250
        assert wait_for(lambda: "Delayed: DCID 0" in mail_log(d), timeout=10), mail_log(d)
        time.sleep(2)  # the recipient's own 1 s retry has passed; the host hold (60 s) has not
        rows = d.ctl_json("showrecipients", "host", "servfail.esad.test")["recipients"]
        assert [r["state"] for r in rows] == ["deferred"], rows
    finally:
        d.cleanup()
        dns_proc.terminate()


def test_backoff_retry_then_expiry_with_dsn():
    sink = SmtpSink()
    profile = '[bounce_profiles.default]\ninitial_retry = "1s"\nmax_retry = "2s"\nmax_retries = 2\n'
    d = delivery_daemon(f"ALL [127.0.0.1]:{sink.port}\n", extra=profile)
    try:
        # softonce: 451, then delivered by the retry timer alone (no delivernow).
        assert send_message(d.smtp_port, "a@src.test", ["softonce2@dst.test"], make_body("b1@t"))[0] == 250
        assert wait_for(lambda: any(m["rcpts"] == ["softonce2@dst.test"] for m in sink.messages), timeout=10), mail_log(d)
        # soft forever: retried until max_retries, then expired with a DSN to the sender.
        assert send_message(d.smtp_port, "a@src.test", ["soft9@dst.test"], make_body("b2@t"))[0] == 250
        assert wait_for(lambda: "Delivery expired" in mail_log(d), timeout=20), mail_log(d)
        assert wait_for(lambda: any(m["mail_from"] == "" and b"Status: 5.4.7" in m["data"] for m in sink.messages),
                        timeout=10)
        s = d.ctl_json("status")["counters"]
        assert s["expired_hard_bounces"]["uptime"] == 1
        assert s["soft_bounced_events"]["uptime"] >= 3
        assert s["completed_recipients"]["uptime"] == s["hard_bounced_recipients"]["uptime"] + \
            s["delivered_recipients"]["uptime"] + s["deleted_recipients"]["uptime"]
    finally:
        d.cleanup()
        sink.close()


def test_twenty_percent_dead_does_not_block_the_rest():
    live = SmtpSink()
    dead_port = free_port()
    routes = "".join(f"dead{i}.test [127.0.0.1]:{dead_port}\n" for i in range(2)) + f"ALL [127.0.0.1]:{live.port}\n"
    d = delivery_daemon(routes)
    try:
        for rnd in range(3):
            for i in range(10):
                dom = f"dead{i}.test" if i < 2 else f"live{i}.test"
                assert send_message(d.smtp_port, "a@src.test", [f"u{rnd}@{dom}"], make_body(f"p-{rnd}-{i}@t"))[0] == 250
        assert wait_for(lambda: len(live.messages) == 24, timeout=20), mail_log(d)
        assert active(d) == 6
        top = d.ctl_json("tophosts")
        down = {h["host"] for h in top["hosts"] if h["down"]}
        assert down == {"dead0.test", "dead1.test"}, top
    finally:
        d.cleanup()
        live.close()


def test_drop_after_final_dot_is_retried_or_counted_with_possible_delivery():
    for possible in (False, True):
        sink = SmtpSink()
        extra = '[bounce_profiles.default]\ninitial_retry = "1s"\n'
        d = delivery_daemon(f"ALL [127.0.0.1]:{sink.port}\n", extra=extra,
                            delivery_extra="possible_delivery = true\n" if possible else "")
        try:
            assert send_message(d.smtp_port, "a@src.test", ["dropdotonce@dst.test"], make_body("drop@t"))[0] == 250
            if possible:
                assert wait_for(lambda: "possible delivery" in mail_log(d), timeout=10), mail_log(d)
                assert wait_for(lambda: active(d) == 0, timeout=5)
                time.sleep(1.5)
                assert len(sink.messages) == 1  # not retried: no duplicate
            else:
                # Not delivered as far as we know: retried, so the sink sees it twice.
                assert wait_for(lambda: len(sink.messages) == 2, timeout=15), mail_log(d)
                assert "Delayed: DCID" in mail_log(d)
                assert wait_for(lambda: active(d) == 0, timeout=5)
        finally:
            d.cleanup()
            sink.close()


def test_real_postfix_smtp_sink_peer():
    port = free_port()
    sink = subprocess.Popen(["/usr/sbin/smtp-sink", "-u", "root", "-c", f"127.0.0.1:{port}", "100"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    d = delivery_daemon(f"ALL [127.0.0.1]:{port}\n")
    try:
        for i in range(20):
            assert send_message(d.smtp_port, "a@src.test", [f"r{i}@pf.test"], make_body(f"pf-{i}@t"))[0] == 250
        assert wait_for(lambda: d.ctl_json("status")["counters"]["delivered_recipients"]["uptime"] == 20,
                        timeout=20), mail_log(d)
        assert d.ctl_json("hoststatus", "pf.test")["status"] == "up"
    finally:
        d.cleanup()
        sink.terminate()


def test_reload_changes_a_route_live():
    a, b = SmtpSink(), SmtpSink()
    d = delivery_daemon(f"ALL [127.0.0.1]:{a.port}\n")
    try:
        assert send_message(d.smtp_port, "x@src.test", ["r1@route.test"], make_body("r1@t"))[0] == 250
        assert wait_for(lambda: len(a.messages) == 1, timeout=10)
        with open(os.path.join(d.dir, "routes.txt"), "w") as f:
            f.write(f"ALL [127.0.0.1]:{b.port}\n")
        assert "Configuration reloaded" in d.ctl("reload").stdout
        assert send_message(d.smtp_port, "x@src.test", ["r2@route.test"], make_body("r2@t"))[0] == 250
        assert wait_for(lambda: len(b.messages) == 1, timeout=10), mail_log(d)
        assert len(a.messages) == 1
        assert d.ctl_json("hoststatus", "route.test")["routes"] == [f"[127.0.0.1]:{b.port}"]
        # A broken routes file is refused; the running routes stay.
        with open(os.path.join(d.dir, "routes.txt"), "w") as f:
            f.write("route.test [127.0.0.1]:notaport\n")
        d.ctl("reload", check=False)
        assert "keeping the old routes" in d.read_log()
        assert d.ctl_json("hoststatus", "route.test")["routes"] == [f"[127.0.0.1]:{b.port}"]
    finally:
        d.cleanup()
        a.close()
        b.close()


def test_graceful_stop_under_load_loses_nothing():
    import threading
    sink = SmtpSink()
    d = delivery_daemon(f"ALL [127.0.0.1]:{sink.port}\n", extra="")
    acked, lock, stop = set(), threading.Lock(), threading.Event()

    def client(cid):
        n = 0
        while not stop.is_set():
            n += 1
            mid = f"gs-{cid}-{n}@t"
            try:
                code, _ = send_message(d.smtp_port, "a@src.test", [f"r{cid}@d{n % 5}.test"], make_body(mid))
            except (OSError, ConnectionError):
                continue
            if code == 250:
                with lock:
                    acked.add(mid)

    try:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        d.signal(signal.SIGTERM)
        assert d.proc.wait(15) == 0, d.read_log()
        stop.set()
        for t in threads:
            t.join(10)
        assert len(acked) > 20, len(acked)
        # Everything acknowledged was delivered or is still queued; restart delivers the rest.
        d.start()
        def all_there():
            got = {m["data"].split(b"Message-ID: <")[1].split(b">")[0].decode() for m in sink.messages}
            return acked <= got
        assert wait_for(all_there, timeout=30), (len(acked), len(sink.messages))
    finally:
        stop.set()
        d.cleanup()
        sink.close()


def test_shutdown_deadline_cuts_a_hanging_peer():
    sink = SmtpSink()
    d = delivery_daemon(f"ALL [127.0.0.1]:{sink.port}\n")
    try:
        with open(d.config_path) as f:
            text = f.read()
        with open(d.config_path, "w") as f:
            f.write(text.replace('hostname = "esad.test"\n', 'hostname = "esad.test"\nshutdown_timeout = "1s"\n'))
        d.stop()
        d.start()
        assert send_message(d.smtp_port, "a@src.test", ["hangdot@hang.test"], make_body("hang@t"))[0] == 250
        assert wait_for(lambda: len(sink.messages) == 1, timeout=10)  # the peer has it, never answers
        t0 = time.time()
        d.signal(signal.SIGTERM)
        assert d.proc.wait(10) == 0
        assert time.time() - t0 < 5
        assert "deadline passed" in d.read_log()
        # Not acknowledged by the peer: still queued for the next start.
        assert len(spool_messages(d.state)) == 1
    finally:
        d.cleanup()
        sink.close()


def test_delay_warning_dsn_after_second_attempt():
    sink = SmtpSink()
    profile = '[bounce_profiles.default]\ninitial_retry = "1s"\nmax_retry = "1s"\ndelay_warning = true\n'
    d = delivery_daemon(f"ALL [127.0.0.1]:{sink.port}\n", extra=profile)
    try:
        assert send_message(d.smtp_port, "a@src.test", ["soft7@dst.test"], make_body("dw@t", subject="slow"))[0] == 250
        assert wait_for(lambda: any(m["mail_from"] == "" for m in sink.messages), timeout=15), mail_log(d)
        dsn = [m for m in sink.messages if m["mail_from"] == ""][0]
        assert dsn["rcpts"] == ["a@src.test"]
        assert b"Action: delayed" in dsn["data"] and b"Will-Retry-Until:" in dsn["data"]
        assert b"Delayed Mail" in dsn["data"]
        assert "was generated for delay warning of MID" in mail_log(d)
        time.sleep(2.5)  # further attempts: no second warning
        assert len([m for m in sink.messages if m["mail_from"] == ""]) == 1
        assert d.ctl_json("status")["counters"]["gen_bounce_recipients"]["uptime"] == 0
        assert active(d) == 1  # still being retried
    finally:
        d.cleanup()
        sink.close()


def test_delivery_stage_deadlines_are_configurable():
    # Defect (issue #13): the client's RFC 5321 §4.5.3.2 deadlines could not be configured.
    # A peer that never answers the final dot is given up after data_done_timeout.
    sink = SmtpSink()
    d = delivery_daemon(f"ALL [127.0.0.1]:{sink.port}\n", delivery_extra='data_done_timeout = "1s"\n')
    try:
        assert send_message(d.smtp_port, "a@src.test", ["hangdot@hang.test"], make_body("slow@t"))[0] == 250
        assert wait_for(lambda: len(sink.messages) >= 1, timeout=10)
        assert wait_for(lambda: d.ctl_json("hoststatus", "hang.test")["counters"]["soft_bounced_events"] >= 1,
                        timeout=30), mail_log(d)
        assert len(spool_messages(d.state)) == 1  # not acknowledged: still queued
    finally:
        d.cleanup()
        sink.close()


if __name__ == "__main__":
    run_tests([test_static_route_delivery_and_log_lines, test_hard_bounce_generates_dsn_and_soft_bounce_is_retried,
               test_dead_host_is_held_then_runbook_recovers_it,
               test_connection_error_line_keeps_the_banner_reply_code, test_mx_resolution_nxdomain_and_dig,
               test_starttls_delivery_is_logged, test_restart_keeps_deferred_mail_and_delivers_it,
               test_null_mx_and_servfail, test_dns_temporary_failure_is_shown_deferred_while_the_host_is_held,
               test_backoff_retry_then_expiry_with_dsn,
               test_twenty_percent_dead_does_not_block_the_rest,
               test_drop_after_final_dot_is_retried_or_counted_with_possible_delivery,
               test_real_postfix_smtp_sink_peer, test_reload_changes_a_route_live,
               test_graceful_stop_under_load_loses_nothing, test_shutdown_deadline_cuts_a_hanging_peer,
               test_delay_warning_dsn_after_second_attempt,
               test_delivery_stage_deadlines_are_configurable])
