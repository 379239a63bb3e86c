"""The operator runbook (SEED-RUNBOOK.md) end to end against the running binaries.

Mail is queued for a domain whose MX points at a host that refuses connections. Step 1:
tophosts active_rcpts shows the count and the '*'. Step 2: hoststatus says down with the
connection error. Step 3: dig mx shows the records from the test DNS server; telnet to the
MX fails; the destination comes back (the sink starts) and telnet shows its 220 banner;
delivernow all; the recipients are delivered, hoststatus says up and the counters add up;
findevent shows the message's history and domaindebug captured the conversation."""
import os

from esad_harness import make_body, send_message, wait_for, run_tests, free_port
from smtp_sink import SmtpSink
from test_delivery import delivery_daemon, mail_log, start_dns


def test_runbook_end_to_end():
    dns_proc, dns_port = start_dns()
    port = free_port()
    d = delivery_daemon("", dns_port=dns_port, port=port,
                        extra='[logging]\ndomain_debug = ["deadmx.esad.test"]\n')
    sink = None
    try:
        for i in range(5):
            code, _ = send_message(d.smtp_port, "ops@deliver.esad.test", [f"user{i}@deadmx.esad.test"],
                                   make_body(f"runbook-{i}@t", subject=f"runbook {i}"))
            assert code == 250
        assert wait_for(lambda: d.ctl_json("hoststatus", "deadmx.esad.test")["status"] == "down", timeout=15), \
            mail_log(d)

        # Step 1: how many are waiting, and is the host marked down.
        out = d.ctl("tophosts", "active_rcpts").stdout
        lines = out.splitlines()
        assert lines[1].startswith("Status as of: ")
        assert lines[2] == "Hosts marked with '*' were down as of the last delivery attempt."
        row = [l for l in lines if "deadmx.esad.test" in l][0].split()
        assert row[0] == "1*" and row[2] == "5", out
        for q in ("the.encryption.queue", "the.euq.queue", "the.euq.release.queue"):
            assert q in out

        # Step 2: host status down, with the connection error.
        hs = d.ctl("hoststatus", "deadmx.esad.test").stdout
        assert "Host mail status for: 'deadmx.esad.test'" in hs
        assert "Host up/down:         down" in hs
        assert "Active Recipients                   5" in hs
        assert "Connection refused" in hs or "connection refused" in hs, hs
        assert "mx-dead.esad.test" in hs  # MX Records from the resolver cache

        # Step 3: DNS, then a manual connection to the MX.
        dig = d.ctl("dig", "mx", "deadmx.esad.test").stdout
        assert ";; QUESTION SECTION:" in dig and "MX    10 mx-dead.esad.test." in dig, dig
        r = d.ctl("telnet", "mx-dead.esad.test", str(port), input="", check=False)
        assert r.returncode == 1 and "Trying 127.0.0.3..." in r.stdout
        assert "Unable to connect to remote host" in r.stderr

        # The destination comes back.
        sink = SmtpSink(host="127.0.0.3", port=port)
        r = d.ctl("telnet", "mx-dead.esad.test", str(port), input="QUIT\n")
        assert "Connected to mx-dead.esad.test." in r.stdout
        assert "220 sink.test ESMTP scripted" in r.stdout, r.stdout

        # Retry everything now.
        assert "recipients scheduled for immediate delivery" in d.ctl("delivernow", "all").stdout
        assert wait_for(lambda: len(sink.messages) == 5, timeout=15), mail_log(d)
        h = d.ctl_json("hoststatus", "deadmx.esad.test")
        assert h["status"] == "up"
        assert h["counters"]["delivered_recipients"] == 5
        assert h["gauges"]["active_recipients"] == 0
        c = d.ctl_json("status")["counters"]
        assert c["completed_recipients"]["uptime"] == (c["delivered_recipients"]["uptime"] +
                                                       c["hard_bounced_recipients"]["uptime"] +
                                                       c["deleted_recipients"]["uptime"])
        assert c["delivered_recipients"]["uptime"] == 5
        assert c["soft_bounced_events"]["uptime"] >= 1

        # Message tracking: the whole story of one message.
        mid = [m for m in d.ctl_json("findevent", "--recipient", "user0@deadmx.esad.test")["messages"]][0]["mid"]
        story = d.ctl("findevent", str(mid)).stdout
        for needle in ["queued for delivery", "Connection Error", "Delayed:", "pending till",
                       "Message done DCID", f"Message finished MID {mid} done"]:
            assert needle in story, (needle, story)

        # Domain debug log: the conversation, both directions.
        dd = os.path.join(d.state, "logs", "domain_debug.current")
        assert wait_for(lambda: os.path.exists(dd) and "C: MAIL FROM:<ops@deliver.esad.test>" in open(dd).read(),
                        timeout=5)
        text = open(dd).read()
        assert "S: 220 sink.test ESMTP scripted" in text and "domain deadmx.esad.test" in text
    finally:
        d.cleanup()
        if sink:
            sink.close()
        dns_proc.terminate()


if __name__ == "__main__":
    run_tests([test_runbook_end_to_end])
