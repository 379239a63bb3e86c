"""Socket activation (issue 6, systemd/esad.socket): esad takes its SMTP listener (and, when
given, its control socket) from sd_listen_fds instead of binding listener.address.

* under Debian's `systemd-socket-activate` (SKIP when it is not installed): the first client's
  connection starts esad, which greets it on the inherited socket and spools its mail;
* with the sockets held by the test itself, as systemd holds them across a restart: a client
  that connects while esad is stopped is queued, not refused, and greeted by the next esad;
  esactl works over an inherited control socket, which esad leaves in place on exit;
* `systemd-analyze verify` of esad.socket with esad.service.
"""
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from esad_harness import (ESAD, Daemon, SmtpClient, free_port, make_body, run_tests,
                          send_message, spool_messages)

ROOT = Path(__file__).resolve().parents[2]


def skip(reason):
    print(f"SKIP: {reason}", flush=True)


def connect_retry(port, timeout=10):
    deadline = time.time() + timeout
    while True:
        try:
            return SmtpClient(port, timeout=20)
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)


def send_on(client, sender, rcpt, body):
    """One transaction on a connected client whose greeting was not read yet."""
    code, text = client.reply()
    assert code == 220, text
    client.cmd("EHLO client.test")
    assert client.cmd(f"MAIL FROM:<{sender}>")[0] == 250
    assert client.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
    assert client.cmd("DATA")[0] == 354
    client.send(body + b"\r\n.\r\n")
    code, text = client.reply()
    client.cmd("QUIT")
    client.close()
    return code, text


def daemon_not_listening_on_its_address():
    """A Daemon config whose listener.address is a port nothing uses: proof that the
    inherited socket, not the configured address, serves SMTP."""
    d = Daemon(start=False)
    d.configured_port = d.smtp_port
    return d


def test_under_systemd_socket_activate():
    tool = shutil.which("systemd-socket-activate")
    if not tool:
        return skip("systemd-socket-activate not installed (Debian: systemd)")
    d = daemon_not_listening_on_its_address()
    port = free_port()
    d.log = open(d.log_path, "ab")
    d.proc = subprocess.Popen([tool, "-l", f"127.0.0.1:{port}", "--fdname=smtp",
                               os.path.abspath(ESAD), "--config", d.config_path],
                              stdout=d.log, stderr=subprocess.STDOUT)
    try:
        # The first connection makes systemd-socket-activate exec esad with the socket.
        client = connect_retry(port)
        code, text = send_on(client, "a@src.test", "b@dst.test", make_body("sa-1@t"))
        assert code == 250, text
        status = d.wait_ready()
        assert status["listener"] == f"127.0.0.1:{port}", status
        log = d.read_log()
        assert "socket activation: SMTP listener on inherited fd 3 (smtp)" in log, log
        # listener.address was not bound.
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", d.configured_port)) != 0
        assert send_message(port, "a@src.test", ["c@dst.test"], make_body("sa-2@t"))[0] == 250
        assert {m["message_id"] for m in spool_messages(d.state)} == {"sa-1@t", "sa-2@t"}
        assert d.stop() == 0, d.read_log()
    finally:
        d.cleanup()


class Activator:
    """Holds listening sockets like systemd does and starts esad with them (LISTEN_FDS)."""

    def __init__(self, control_path=None):
        self.smtp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.smtp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.smtp.bind(("127.0.0.1", 0))
        self.smtp.listen(64)
        self.port = self.smtp.getsockname()[1]
        self.socks, self.names = [self.smtp], ["smtp"]
        if control_path:
            os.makedirs(os.path.dirname(control_path), exist_ok=True)
            self.control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.control.bind(control_path)
            self.control.listen(16)
            self.socks.append(self.control)
            self.names.append("control")

    def start(self, d):
        fds = [s.fileno() for s in self.socks]

        def move_fds():  # in the child: the sockets become 3, 4, ... (not close-on-exec)
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
            for i, fd in enumerate(high):
                os.dup2(fd, 3 + i)
                os.close(fd)

        env = dict(os.environ, LISTEN_FDS=str(len(fds)), LISTEN_FDNAMES=":".join(self.names))
        d.log = open(d.log_path, "ab")
        # sh sets LISTEN_PID to its own pid, which exec hands on to esad.
        d.proc = subprocess.Popen(
            ["sh", "-c", 'export LISTEN_PID=$$; exec "$0" "$@"', os.path.abspath(ESAD),
             "--config", d.config_path],
            env=env, preexec_fn=move_fds, close_fds=False, stdout=d.log,
            stderr=subprocess.STDOUT)
        return d.wait_ready()

    def close(self):
        for s in self.socks:
            s.close()


def test_restart_queues_connections_instead_of_refusing_them():
    d = daemon_not_listening_on_its_address()
    act = Activator(control_path=d.socket)
    try:
        status = act.start(d)
        assert status["listener"] == f"127.0.0.1:{act.port}", status
        log = d.read_log()
        assert "control socket on inherited fd 4 (control)" in log, log
        assert send_message(act.port, "a@src.test", ["b@dst.test"], make_body("r-1@t"))[0] == 250
        assert d.stop() == 0, d.read_log()
        # The inherited control socket belongs to the activator: esad left it in place.
        assert os.path.exists(d.socket)

        # esad is down: a client still connects (the kernel queues it) ...
        waiting = SmtpClient(act.port, timeout=30)
        # ... and the next esad, on the same socket, greets it and takes its mail.
        act.start(d)
        code, text = send_on(waiting, "a@src.test", "c@dst.test", make_body("r-2@t"))
        assert code == 250, text
        assert d.ctl_json("status")["gauges"]["active_recipients"] == 2
        assert {m["message_id"] for m in spool_messages(d.state)} == {"r-1@t", "r-2@t"}
        assert d.stop() == 0, d.read_log()
    finally:
        d.cleanup()
        act.close()


def test_unusable_inherited_sockets_are_ignored():
    """A datagram socket and a second TCP socket are closed; the named one is used."""
    d = daemon_not_listening_on_its_address()
    act = Activator()
    extra_tcp = socket.socket()
    extra_tcp.bind(("127.0.0.1", 0))
    extra_tcp.listen(1)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    # Order: the unnamed TCP socket first, so "smtp" must win by name.
    act.socks = [extra_tcp, udp, act.smtp]
    act.names = ["unknown", "unknown", "smtp"]
    try:
        status = act.start(d)
        assert status["listener"] == f"127.0.0.1:{act.port}", status
        log = d.read_log()
        assert "SMTP listener on inherited fd 5 (smtp)" in log, log
        assert log.count("closing inherited fd") == 2, log
        assert send_message(act.port, "a@src.test", ["b@dst.test"], make_body("i-1@t"))[0] == 250
        assert d.stop() == 0
    finally:
        d.cleanup()
        act.close()
        extra_tcp.close()
        udp.close()


def test_socket_unit_verifies():
    if not shutil.which("systemd-analyze"):
        return skip("systemd-analyze not installed")
    with tempfile.TemporaryDirectory() as tmp:
        service = (ROOT / "systemd" / "esad.service").read_text().replace(
            "ExecStart=/usr/sbin/esad ", f"ExecStart={os.path.abspath(ESAD)} ")
        Path(tmp, "esad.service").write_text(service)
        shutil.copy(ROOT / "systemd" / "esad.socket", Path(tmp, "esad.socket"))
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", Path(tmp, "esad.socket")],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "esad." not in r.stderr, r.stderr
    text = (ROOT / "systemd" / "esad.socket").read_text()
    assert "FileDescriptorName=smtp" in text and "Service=esad.service" in text
    assert "ListenStream=127.0.0.1:25" in text


if __name__ == "__main__":
    run_tests([
        test_under_systemd_socket_activate,
        test_restart_queues_connections_instead_of_refusing_them,
        test_unusable_inherited_sockets_are_ignored,
        test_socket_unit_verifies,
    ])
