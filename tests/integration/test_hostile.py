"""Hostile clients against the real binary: a pipelining flood that never reads its
replies stays bounded; an exhausted MID space answers at once with 4xx; control arguments
of the wrong type are bad_args."""
import os
import socket
import subprocess
import time

from esad_harness import make_cert, Daemon, SmtpClient, run_tests, wait_for


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def flood(port, budget):
    """EHLO, MAIL, then pipelined RCPTs without ever reading a reply, until the server
    stops taking them (send would block for 3 s) or `budget` bytes went out. Returns
    (socket, bytes the kernel accepted)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    s.sendall(b"EHLO flood.test\r\nMAIL FROM:<f@flood.test>\r\n")
    chunk = b"".join(b"RCPT TO:<user%06d@dest.test>\r\n" % i for i in range(2000))
    sent = 0
    s.settimeout(3)
    try:
        while sent < budget:
            sent += s.send(chunk)
    except (socket.timeout, BlockingIOError):
        pass
    except ConnectionError:
        pass  # the session ended (max_recipients reached, then the error limit)
    return s, sent


def test_pipelining_flood_is_bounded():
    # The attack as reported: EHLO, MAIL and a flood of pipelined RCPTs never read. Default
    # limits: past max_recipients every RCPT is a 452 error and the error limit ends the
    # session; reading also pauses once 64 KiB of replies are unsent.
    d = Daemon()
    socks = []
    try:
        base = rss_kib(d.proc.pid)
        budget = 32 << 20
        totals = []
        for _ in range(4):
            s, sent = flood(d.smtp_port, budget)
            socks.append(s)
            totals.append(sent)
        # Without back-pressure the daemon reads everything (32 MiB per client) and queues a
        # reply for each RCPT; with it, it stops once 64 KiB of replies are unsent, so each
        # client gets only about its socket buffers in.
        for sent in totals:
            assert sent < 12 << 20, totals
        grown = rss_kib(d.proc.pid) - base
        assert grown < 64 * 1024, f"RSS grew {grown} KiB"
        # A client that then reads its replies gets them all, in order, and is served again.
        c = SmtpClient(d.smtp_port)
        assert c.reply()[0] == 220
        assert c.cmd("EHLO ok.test")[0] == 250
        c.close()
    finally:
        for s in socks:
            s.close()
        d.cleanup()


def test_exhausted_mid_space_answers_at_once():
    d = Daemon(config_extra='command_timeout = "60s"', start=False)
    try:
        queue = os.path.join(d.state, "spool", "queue")
        os.makedirs(queue, mode=0o700)
        with open(os.path.join(queue, "ffffffffffffffff"), "wb") as f:
            f.write(b"not a spool file")
        d.start()
        c = SmtpClient(d.smtp_port, timeout=20)
        assert c.reply()[0] == 220
        assert c.cmd("EHLO c.test")[0] == 250
        # No MID can be handed out: MAIL is refused at once (issue #11), not after DATA.
        start = time.monotonic()
        code, text = c.cmd("MAIL FROM:<a@src.test>")
        elapsed = time.monotonic() - start
        assert code == 451 and "4.3.0" in text, (code, text)
        assert elapsed < 10, elapsed  # at once, not after command_timeout
        # The session is still usable (no 421 piggy-backed on the 4xx).
        assert c.cmd("NOOP")[0] == 250
        assert "no MID available" in d.ctl_json("status")["system_status"]
        c.close()
        assert d.proc.poll() is None
    finally:
        d.cleanup()


def test_control_arguments_of_the_wrong_type_are_bad_args():
    d = Daemon()
    try:
        cases = [("tophosts", {"limit": "x"}), ("tophosts", {"limit": 1e300}),
                 ("tophosts", {"sort": 5}), ("hoststatus", {"domain": [1]}),
                 ("delivernow", {"target": 7}), ("suspenddel", {"domains": [1, 2]}),
                 ("resumedel", {"domains": [None]}), ("showrecipients", {"offset": "a"}),
                 ("showmessage", {"mid": 1.5}), ("dig", {"name": {"a": 1}})]
        for i, (cmd, args) in enumerate(cases):
            r = d.request({"v": 1, "id": i + 1, "cmd": cmd, "args": args})
            assert r is not None and r["ok"] is False, (cmd, args, r)
            assert r["error"]["code"] == "bad_args", (cmd, args, r)
        # The daemon is unharmed and well-typed requests still work.
        r = d.request({"v": 1, "id": 99, "cmd": "status", "args": {}})
        assert r["ok"] is True
    finally:
        d.cleanup()


def test_silent_control_clients_do_not_lock_out_the_operator():
    d = Daemon()
    silent = []
    try:
        for _ in range(68):  # every slot, root's reserve included (the test runs as root)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(d.socket)
            silent.append(s)
        assert d.ctl("status", check=False).returncode != 0  # locked out for now
        # Silent connections are closed once the first-request timeout passes, and esactl
        # gets in again.
        assert wait_for(lambda: d.ctl("status", check=False).returncode == 0, timeout=30)
        for s in silent:
            s.settimeout(5)
            try:
                assert s.recv(1) == b""
            except ConnectionResetError:
                pass
    finally:
        for s in silent:
            s.close()
        d.cleanup()


def test_relay_probing_is_cut_off_and_logged_sparingly():
    d = Daemon(config_extra='relay_from = ["192.0.2.0/24"]\nmax_errors = 20')
    try:
        c = SmtpClient(d.smtp_port)
        assert c.reply()[0] == 220
        assert c.cmd("EHLO probe.test")[0] == 250
        assert c.cmd("MAIL FROM:<p@probe.test>")[0] == 250
        codes = []
        try:
            for i in range(300):
                codes.append(c.cmd(f"RCPT TO:<u{i}@victim.test>")[0])
                if codes[-1] == 421:
                    break
        except ConnectionError:
            pass
        assert codes.count(554) == 20 and codes[-1] == 421, codes
        assert c.closed()
        assert wait_for(lambda: "more rejected recipients not logged" in
                        open(os.path.join(d.state, "logs", "mail.current")).read())
        log = open(os.path.join(d.state, "logs", "mail.current")).read()
        assert log.count("Rejected recipient") == 5
        assert "ICID 1 15 more rejected recipients not logged" in log
    finally:
        d.cleanup()


def test_starttls_then_silence_obeys_command_timeout():
    d = Daemon(start=False)
    try:
        cert, key = make_cert(d.dir)
        d.write_config(f'tls_cert = "{cert}"\ntls_key = "{key}"\ncommand_timeout = "2s"\n')
        d.start()
        c = SmtpClient(d.smtp_port, timeout=60)
        assert c.reply()[0] == 220
        assert c.cmd("EHLO c.test")[0] == 250
        assert c.cmd("STARTTLS")[0] == 220
        start = time.monotonic()
        assert c.closed(timeout=60)  # silence: no ClientHello ever comes
        elapsed = time.monotonic() - start
        assert elapsed < 20, elapsed  # command_timeout (2 s), not the 300 s default
    finally:
        d.cleanup()


if __name__ == "__main__":
    run_tests([test_pipelining_flood_is_bounded, test_exhausted_mid_space_answers_at_once,
               test_control_arguments_of_the_wrong_type_are_bad_args,
               test_silent_control_clients_do_not_lock_out_the_operator,
               test_relay_probing_is_cut_off_and_logged_sparingly,
               test_starttls_then_silence_obeys_command_timeout])
