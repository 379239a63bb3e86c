"""esactl telnet and smtpping against the real binaries (esa-reference §7.2, §7.3): the daemon
connects from its delivery address to a scripted sink, esactl relays piped stdin and prints
the peer's lines; smtpping sends a probe through routing, the SMTP client and STARTTLS, timing
each stage, without spooling it. Error paths: closed port, unknown host, 5xx recipient,
required TLS not offered, the control client going away, the daemon down (exit 3)."""
import json
import os
import socket
import ssl
import subprocess
import threading
import time

from esad_harness import make_cert, ESACTL, Daemon, free_port, wait_for, run_tests
from smtp_sink import SmtpSink, StartTlsServerSide, local_listener
from test_delivery import delivery_daemon, start_dns


def lines(text):
    return [l.rstrip("\r") for l in text.splitlines()]


def stage_line(out, label):
    found = [l for l in lines(out) if l.startswith("  " + label + " ")]
    assert found, (label, out)
    assert " ms  " in found[0], (label, found[0])
    return found[0]


def test_telnet_to_sink_shows_banner_and_replies():
    sink = SmtpSink()
    # No PORT given: the delivery port is the default, as on the appliance.
    d = delivery_daemon(f"ALL [127.0.0.1]:{sink.port}\n", port=sink.port)
    try:
        r = d.ctl("telnet", "127.0.0.1", input="EHLO x\nQUIT\n")
        out = lines(r.stdout)
        assert out[:3] == ["Trying 127.0.0.1...", "Connected to 127.0.0.1.", "Escape character is '^]'."], r.stdout
        assert out[3] == "220 sink.test ESMTP scripted", r.stdout
        assert "250-sink.test" in out and "250 ENHANCEDSTATUSCODES" in out, r.stdout
        assert out.index("250-sink.test") > 3 and "221 2.0.0 bye" in out, r.stdout
        assert out[-1] == "Connection closed by foreign host.", r.stdout
        # An explicit port, and stdin ending without QUIT: esactl closes after a quiet spell.
        r = d.ctl("telnet", "127.0.0.1", str(sink.port), input="NOOP\n")
        assert "250 2.0.0 ok" in lines(r.stdout) and r.returncode == 0, r.stdout
        # --json: one event per line, peer text escaped.
        r = d.ctl("--json", "telnet", "127.0.0.1", input="QUIT\n")
        events = [json.loads(l) for l in lines(r.stdout)]
        assert [e["event"] for e in events][:3] == ["trying", "connected", "line"], events
        assert events[1]["source"] == "127.0.0.1" and events[-1]["event"] == "closed"
    finally:
        d.cleanup()
        sink.close()


def test_telnet_failures():
    d = Daemon()
    try:
        port = free_port()  # nothing listens
        r = d.ctl("telnet", "127.0.0.1", str(port), input="", check=False)
        assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
        assert "Trying 127.0.0.1..." in r.stdout
        assert "Unable to connect to remote host: Connection refused" in r.stderr, r.stderr
        r = d.ctl("telnet", "bad host!", check=False)
        assert r.returncode == 2 and "Invalid arguments when processing telnet" in r.stderr, r.stderr
        r = d.ctl("telnet", "127.0.0.1", "70000", check=False)
        assert r.returncode == 2
    finally:
        d.cleanup()


def test_telnet_resolves_names_with_the_daemon_resolver():
    dns_proc, dns_port = start_dns()
    sink = SmtpSink()
    d = delivery_daemon("", dns_port=dns_port, port=sink.port)
    try:
        r = d.ctl("telnet", "mx-local.esad.test", input="QUIT\n")
        assert "Trying 127.0.0.1..." in r.stdout and "Connected to mx-local.esad.test." in r.stdout, r.stdout
        assert "220 sink.test ESMTP scripted" in r.stdout
        r = d.ctl("telnet", "nowhere.esad.test", check=False)
        assert r.returncode == 1
        assert "nowhere.esad.test: hostname nor servname provided, or not known" in r.stderr, r.stderr
    finally:
        d.cleanup()
        sink.close()
        dns_proc.terminate()


def test_telnet_session_closes_when_esactl_goes_away():
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    port = lsock.getsockname()[1]
    closed = threading.Event()

    def peer():
        conn, _ = lsock.accept()
        conn.sendall(b"220 hello\r\n")
        conn.settimeout(20)
        try:
            while conn.recv(1024):
                pass
            closed.set()
        except OSError:
            pass
        conn.close()

    threading.Thread(target=peer, daemon=True).start()
    d = Daemon()
    try:
        p = subprocess.Popen([ESACTL, "--socket", d.socket, "telnet", "127.0.0.1", str(port)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().startswith("Trying")
        assert p.stdout.readline().startswith("Connected to")
        p.kill()
        p.wait()
        assert closed.wait(5), "the daemon kept the connection after esactl went away"
        assert wait_for(lambda: "control client went away" in d.read_log(), timeout=5), d.read_log()
    finally:
        d.cleanup()
        lsock.close()


def test_smtpping_delivers_and_times_every_stage():
    sink = SmtpSink()
    d = delivery_daemon(f"ALL [127.0.0.1]:{sink.port}\n")
    try:
        r = d.ctl("smtpping", "bob@dst.test", check=False)
        assert r.returncode == 0, (r.stdout, r.stderr)
        out = r.stdout
        assert out.startswith("Starting SMTP test to bob@dst.test from postmaster@esad.test"), out
        assert "Route: smtproutes" in out and "TLS policy: preferred" in out
        assert "dst.test via smtproutes: 1 candidate(s)" in stage_line(out, "DNS")
        assert f"127.0.0.1 port {sink.port} from 127.0.0.1" in stage_line(out, "Connect")
        assert "220 sink.test ESMTP scripted" in stage_line(out, "Banner")
        assert "250-sink.test (+4 lines)" in stage_line(out, "EHLO")
        assert "250 2.1.0 ok" in stage_line(out, "MAIL")
        assert "250 2.1.5 ok" in stage_line(out, "RCPT")
        assert "354 go" in stage_line(out, "DATA")
        assert "250 2.0.0 Ok: queued as 1" in stage_line(out, "Final")
        assert "221 2.0.0 bye" in stage_line(out, "QUIT")
        assert "Result: delivered in" in out and "not spooled" in out
        assert len(sink.messages) == 1
        m = sink.messages[0]
        assert m["mail_from"] == "postmaster@esad.test" and m["rcpts"] == ["bob@dst.test"]
        assert b"Subject: esad smtpping test" in m["data"] and b"X-Esad-Smtpping: probe" in m["data"]
        # A probe, not a delivery: nothing queued, nothing counted.
        s = d.ctl_json("status")
        assert s["counters"]["delivered_recipients"]["uptime"] == 0
        assert s["gauges"]["active_recipients"] == 0
        # --from, and the JSON twin.
        doc = d.ctl_json("smtpping", "--from", "ops@src.test", "carol@dst.test")
        assert doc["result"]["delivered"] is True and doc["result"]["spooled"] is False
        assert [s["stage"] for s in doc["stages"]] == ["dns", "connect", "banner", "ehlo", "mail", "rcpt",
                                                      "data", "final", "quit"], doc
        assert sink.messages[1]["mail_from"] == "ops@src.test"
    finally:
        d.cleanup()
        sink.close()


def test_smtpping_hard_recipient_exits_1_with_the_reply():
    sink = SmtpSink()
    d = delivery_daemon(f"ALL [127.0.0.1]:{sink.port}\n")
    try:
        r = d.ctl("smtpping", "hard1@dst.test", check=False)
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert "550 5.1.1 <hard1@dst.test>: no such user" in stage_line(r.stdout, "RCPT")
        assert "Result: not delivered (hard)" in r.stdout and "550 5.1.1" in r.stdout.split("Result:")[1]
        assert sink.messages == []
    finally:
        d.cleanup()
        sink.close()


def test_smtpping_host_option_mx_route_and_connect_failure():
    dns_proc, dns_port = start_dns()
    sink = SmtpSink()
    d = delivery_daemon("", dns_port=dns_port, port=sink.port)
    try:
        # MX through the daemon's resolver.
        r = d.ctl("smtpping", "x@deliver.esad.test", check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "deliver.esad.test via MX: 2 candidate(s)" in stage_line(r.stdout, "DNS")
        assert "(mx-local.esad.test)" in r.stdout
        # NXDOMAIN: the router's verdict, nothing sent.
        r = d.ctl("smtpping", "x@nowhere.esad.test", check=False)
        assert r.returncode == 1 and "5.1.2 Bad destination host" in stage_line(r.stdout, "DNS"), r.stdout
        # Connection refused on every candidate.
        dead = free_port()
        r = d.ctl("smtpping", "--host", f"127.0.0.1:{dead}", "x@deliver.esad.test", check=False)
        assert r.returncode == 1
        assert f"127.0.0.1 port {dead}: Connection refused" in stage_line(r.stdout, "Connect"), r.stdout
        # --host overrides the route.
        r = d.ctl("smtpping", "--host", f"[127.0.0.1]:{sink.port}", "y@nowhere.esad.test", check=False)
        assert r.returncode == 0 and "Route: host 127.0.0.1" in r.stdout, r.stdout
        r = d.ctl("smtpping", "no-at-sign", check=False)
        assert r.returncode == 2
    finally:
        d.cleanup()
        sink.close()
        dns_proc.terminate()


def test_smtpping_starttls_and_required_tls_policy():
    d0 = Daemon(start=False)
    cert, key = make_cert(d0.dir, "sink.test")
    tls_sink = SmtpSink(tls_cert=cert, tls_key=key)
    plain_sink = SmtpSink()
    routes = f"tls.test [127.0.0.1]:{tls_sink.port}\nALL [127.0.0.1]:{plain_sink.port}\n"
    d = delivery_daemon(routes, extra='[destinations."strict.test"]\ntls = "required"\n')
    try:
        r = d.ctl("smtpping", "t@tls.test", check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "220 2.0.0 go ahead" in stage_line(r.stdout, "STARTTLS")
        assert "TLSv1." in stage_line(r.stdout, "TLS") and "certificate not verified" in r.stdout
        assert tls_sink.messages[0]["tls"] is True
        # The destination's rule holds for the probe: TLS required, not offered → not sent.
        r = d.ctl("smtpping", "s@strict.test", check=False)
        assert r.returncode == 1, r.stdout
        assert "TLS policy: required" in r.stdout
        assert "TLS was required but could not be successfully negotiated" in r.stdout
        assert plain_sink.messages == []
    finally:
        d.cleanup()
        d0.cleanup()
        tls_sink.close()
        plain_sink.close()


class CloseNotifyAfterMailPeer:
    """Offers STARTTLS; inside TLS answers EHLO, then answers MAIL with "250" followed, in the
    same TCP segment, by a TLS close_notify. Whatever the client sends after that is kept raw
    (`after`) until it closes the connection."""

    def __init__(self, cert, key):
        self.cert, self.key = cert, key
        self.sock, self.port = local_listener(1)
        self.after = b""
        self.closed_tls = threading.Event()
        self.finished = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def close(self):
        self.sock.close()

    def _run(self):
        conn, _ = self.sock.accept()
        conn.settimeout(30)
        try:
            s = StartTlsServerSide(conn, self.cert, self.key, b"closing.test")
            s.line()  # EHLO
            s.send(b"250 closing.test\r\n")
            s.line()  # MAIL
            s.send(b"250 2.1.0 ok\r\n", flush=False)
            s.close_notify()
            s.flush()
            self.closed_tls.set()
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                self.after += data
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()
            self.finished.set()


def test_smtpping_sends_nothing_in_cleartext_after_the_peer_closes_tls():
    # The probe has its own TLS plumbing: once the handshake is done, a closed TLS session is
    # a lost connection there too, never a reason to go on in cleartext.
    d0 = Daemon(start=False)
    cert, key = make_cert(d0.dir, "closing.test")
    peer = CloseNotifyAfterMailPeer(cert, key)
    d = delivery_daemon(f"closing.test [127.0.0.1]:{peer.port}\n")
    try:
        r = d.ctl("smtpping", "c@closing.test", check=False, timeout=120)
        assert peer.closed_tls.is_set(), r.stdout + r.stderr
        assert peer.finished.wait(30)
        assert b"RCPT" not in peer.after and b"QUIT" not in peer.after, peer.after
        assert r.returncode == 1, r.stdout + r.stderr
    finally:
        d.cleanup()
        d0.cleanup()
        peer.close()


def test_daemon_down_exits_3():
    d = Daemon(start=False)
    try:
        for args in (["telnet", "127.0.0.1"], ["smtpping", "a@b.test"]):
            r = d.ctl(*args, check=False, input="")
            assert r.returncode == 3 and "cannot connect to esad" in r.stderr, (args, r.stderr)
    finally:
        d.cleanup()


if __name__ == "__main__":
    run_tests([test_telnet_to_sink_shows_banner_and_replies, test_telnet_failures,
               test_telnet_resolves_names_with_the_daemon_resolver,
               test_telnet_session_closes_when_esactl_goes_away,
               test_smtpping_delivers_and_times_every_stage,
               test_smtpping_hard_recipient_exits_1_with_the_reply,
               test_smtpping_host_option_mx_route_and_connect_failure,
               test_smtpping_starttls_and_required_tls_policy,
               test_smtpping_sends_nothing_in_cleartext_after_the_peer_closes_tls, test_daemon_down_exits_3])
