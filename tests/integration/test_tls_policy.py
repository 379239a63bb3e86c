"""Delivery TLS against scripted peers on 127.0.0.1: what each policy may and may not do.

* preferred-verify to a peer whose certificate does not verify (self-signed, wrong name)
  encrypts anyway and records the peer as unverified; it never retries in plaintext (a
  stricter policy never gives less protection than `preferred`).
* required-verify to the same peer delivers nothing, in any form.
* After the TLS handshake no byte goes out in cleartext: a peer that sends a bad TLS record
  in the middle of a large message sees only ciphertext afterwards, and the recipient stays
  queued (the connection is lost, not the mail).
"""
import os
import socket
import ssl
import subprocess
import threading

from esad_harness import Daemon, make_body, make_cert, run_tests, send_message, wait_for
from smtp_sink import SmtpSink, StartTlsServerSide, local_listener


def tls_daemon(routes, policy):
    d = Daemon(start=False)
    routes_path = os.path.join(d.dir, "routes.txt")
    with open(routes_path, "w") as f:
        f.write(routes)
    d.write_config(f'[routes]\nfile = "{routes_path}"\n'
                   f'[destinations."tls.test"]\ntls = "{policy}"\n')
    d.start()
    return d


def mail_log(d):
    with open(os.path.join(d.state, "logs", "mail.current")) as f:
        return f.read()


def active(d):
    return d.ctl_json("status")["gauges"]["active_recipients"]


def test_preferred_verify_encrypts_to_an_unverified_peer():
    scratch = Daemon(start=False)
    cert, key = make_cert(scratch.dir, "self-signed.invalid")
    sink = SmtpSink(tls_cert=cert, tls_key=key)
    d = tls_daemon(f"tls.test [127.0.0.1]:{sink.port}\n", "preferred-verify")
    try:
        assert send_message(d.smtp_port, "a@src.test", ["u@tls.test"], make_body("pv@t"))[0] == 250
        assert wait_for(lambda: len(sink.messages) == 1 and active(d) == 0, timeout=30), mail_log(d)
        assert sink.messages[0]["tls"] is True, "delivered in plaintext"
        assert sink.connections == 1, "retried without TLS after a verification failure"
        assert "TLS success protocol TLSv1." in mail_log(d)
    finally:
        d.cleanup()
        scratch.cleanup()
        sink.close()


def test_required_verify_delivers_nothing_to_an_unverified_peer():
    scratch = Daemon(start=False)
    cert, key = make_cert(scratch.dir, "self-signed.invalid")
    sink = SmtpSink(tls_cert=cert, tls_key=key)
    d = tls_daemon(f"tls.test [127.0.0.1]:{sink.port}\n", "required-verify")
    try:
        assert send_message(d.smtp_port, "a@src.test", ["u@tls.test"], make_body("rv@t"))[0] == 250
        assert wait_for(lambda: "TLS was required" in mail_log(d) or
                        "certificate" in mail_log(d), timeout=30), mail_log(d)
        assert wait_for(lambda: sink.connections >= 1, timeout=10)
        assert sink.messages == []
        assert active(d) == 1  # held for a retry, not bounced, not delivered
    finally:
        d.cleanup()
        scratch.cleanup()
        sink.close()


class SabotagingTlsPeer:
    """Offers STARTTLS, accepts a transaction, and after the first ~100 KB of message content
    injects a bad TLS record. Everything the client sends afterwards is kept raw
    (`after`). Later connections get a 421 greeting."""

    def __init__(self, cert, key):
        self.cert, self.key = cert, key
        self.sock, self.port = local_listener()
        self.after = b""
        self.sabotaged = threading.Event()
        self.finished = threading.Event()
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self):
        self.sock.close()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            if self.connections == 1:
                threading.Thread(target=self._first, args=(conn,), daemon=True).start()
            else:
                conn.sendall(b"421 4.3.2 not now\r\n")
                conn.close()

    def _first(self, conn):
        conn.settimeout(60)
        try:
            self._session(conn)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()
            self.finished.set()

    def _session(self, conn):
        s = StartTlsServerSide(conn, self.cert, self.key, b"sabotage.test", [b"8BITMIME"])
        assert s.line().upper().startswith(b"EHLO")
        s.send(b"250-sabotage.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
        # MAIL, RCPT, DATA (pipelined or not): answer each.
        for _ in range(3):
            line = s.line().upper()
            s.send(b"354 go\r\n" if line == b"DATA" else b"250 ok\r\n")
        while len(s.text) < 100_000:
            s.recv()
        # An application-data record that cannot decrypt: the client's engine fails.
        conn.sendall(b"\x17\x03\x03\x00\x40" + os.urandom(64))
        self.sabotaged.set()
        conn.settimeout(20)
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                self.after += data
        except socket.timeout:
            return


def test_no_cleartext_after_a_tls_failure_mid_message():
    scratch = Daemon(start=False)
    cert, key = make_cert(scratch.dir, "sabotage.test")
    peer = SabotagingTlsPeer(cert, key)
    d = tls_daemon(f"tls.test [127.0.0.1]:{peer.port}\n", "preferred")
    canary = b"CLEARTEXT-CANARY-"
    line = canary + b"y" * 60 + b"\r\n"
    body = b"Subject: big\r\nMessage-ID: <big@t>\r\n\r\n" + line * 80_000  # ~6 MB
    try:
        assert send_message(d.smtp_port, "a@src.test", ["u@tls.test"], body)[0] == 250
        assert peer.sabotaged.wait(60), mail_log(d)
        assert peer.finished.wait(60)
        assert canary not in peer.after, "message content went out in cleartext after TLS failed"
        assert b"MAIL FROM" not in peer.after and b"QUIT" not in peer.after
        # The connection was lost, the mail was not.
        assert wait_for(lambda: "TLS session" in mail_log(d), timeout=30), mail_log(d)
        assert active(d) == 1
    finally:
        d.cleanup()
        scratch.cleanup()
        peer.close()


class BrokenStarttlsOnce:
    """Offers STARTTLS, answers 220 to it, then sends bytes that are not TLS, and closes its
    listener, so the plaintext retry is refused."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.done = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        conn, _ = self.sock.accept()
        self.sock.close()  # the retry finds nobody listening
        f = conn.makefile("rwb")
        try:
            f.write(b"220 broken.test ESMTP\r\n")
            f.flush()
            f.readline()
            f.write(b"250-broken.test\r\n250 STARTTLS\r\n")
            f.flush()
            f.readline()
            f.write(b"220 2.0.0 go ahead\r\nthis is not a TLS record at all\r\n")
            f.flush()
            conn.settimeout(30)
            conn.recv(65536)
        except OSError:
            pass
        finally:
            conn.close()
            self.done.set()


def test_failed_plaintext_retry_releases_its_connection_slot():
    peer = BrokenStarttlsOnce()
    d = tls_daemon(f"tls.test [127.0.0.1]:{peer.port}\n", "preferred")
    sink = None
    try:
        assert send_message(d.smtp_port, "a@src.test", ["u@tls.test"], make_body("slot@t"))[0] == 250
        assert wait_for(lambda: "Connection Error" in mail_log(d), timeout=30), mail_log(d)

        def gauges():
            return d.ctl_json("hoststatus", "tls.test")["gauges"]
        assert wait_for(lambda: gauges()["current_outbound_connections"] == 0 and
                        gauges()["pending_outbound_connections"] == 0, timeout=15), gauges()
        # The host was reached (a greeting came): the failed retry does not mark it down.
        assert d.ctl_json("hoststatus", "tls.test")["status"] == "up"
        # Healthy again: the mail is delivered and no slot is left behind.
        sink = SmtpSink(port=peer.port)
        d.ctl("delivernow", "tls.test")
        assert wait_for(lambda: len(sink.messages) == 1 and active(d) == 0, timeout=30), mail_log(d)
        assert wait_for(lambda: gauges()["current_outbound_connections"] == 0, timeout=15), gauges()
        assert d.ctl_json("status")["gauges"]["current_outbound_connections"] == 0
    finally:
        d.cleanup()
        if sink:
            sink.close()


def test_an_unusable_tls_client_context_stops_the_start():
    d = Daemon(start=False)
    d.write_config('[delivery]\ntls_ca_file = "/nonexistent/ca.pem"\n')
    try:
        p = d.start(wait=False)
        assert p.wait(timeout=60) == 1, d.read_log()
        log = d.read_log()
        assert "cannot build the TLS client context" in log and "/nonexistent/ca.pem" in log, log
    finally:
        d.cleanup()


if __name__ == "__main__":
    run_tests([test_preferred_verify_encrypts_to_an_unverified_peer,
               test_required_verify_delivers_nothing_to_an_unverified_peer,
               test_no_cleartext_after_a_tls_failure_mid_message,
               test_failed_plaintext_retry_releases_its_connection_slot,
               test_an_unusable_tls_client_context_stops_the_start])
