"""esad as systemd runs it, without systemd (issue 12); tests/system/test_nspawn.py repeats
these under systemd 252 itself.

* every reload path (SIGHUP, `esactl reload`, a rejected file) ends with READY=1 and the
  running STATUS= after its RELOADING=1, or systemd keeps the unit "reloading";
* with $JOURNAL_STREAM naming stderr, every record carries its syslog priority ("<4>");
* a daemon.control_group that esad cannot apply (not root, not a member) stops the start-up
  with exit status 2 and a message naming the fix; as a member, the socket gets the group.
"""
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time

from esad_harness import ESAD, Daemon, Skip, run_tests


class Notify:
    """A NOTIFY_SOCKET that records every datagram esad sends."""

    def __init__(self, d):
        self.path = os.path.join(d.dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(20)

    def until(self, predicate, what):
        got = []
        while True:
            try:
                msg = self.sock.recv(4096).decode()
            except socket.timeout:
                raise AssertionError(f"no {what} within 20 s; got {got}")
            if msg == "WATCHDOG=1":
                continue
            got.append(msg)
            if predicate(msg):
                return got

    def close(self):
        self.sock.close()


def start_with_notify(d, n):
    os.environ["NOTIFY_SOCKET"] = n.path
    try:
        d.start(wait=False)
    finally:
        del os.environ["NOTIFY_SOCKET"]
    return n.until(lambda m: "READY=1" in m, "READY=1")[-1]


def status_of(msg):
    m = re.search(r"^STATUS=(.*)$", msg, re.M)
    return m.group(1) if m else None


def test_every_reload_path_ends_with_ready_and_status():
    d = Daemon(start=False)
    n = Notify(d)
    try:
        ready = start_with_notify(d, n)
        running = status_of(ready)
        assert running == f"Running; SMTP 127.0.0.1:{d.smtp_port}, control {d.socket}", ready

        def reload_ends_ready(trigger, what):
            trigger()
            msgs = n.until(lambda m: "RELOADING=1" in m, f"RELOADING=1 ({what})")
            msgs += n.until(lambda m: "READY=1" in m, f"READY=1 after RELOADING=1 ({what})")
            return status_of(msgs[-1])

        # SIGHUP (systemctl reload's ExecReload of old, kill -HUP).
        assert reload_ends_ready(lambda: d.signal(signal.SIGHUP), "SIGHUP") == running
        # esactl reload (the unit's ExecReload).
        assert reload_ends_ready(lambda: d.ctl("reload"), "esactl reload") == running
        # A restart-only change: applied as far as it can be, and said so.
        text = open(d.config_path).read()
        open(d.config_path, "w").write(text.replace('servers = ["127.0.0.1:9"]',
                                                    'servers = ["127.0.0.1:10"]'))
        status = reload_ends_ready(lambda: d.ctl("reload"), "restart-only change")
        assert status.startswith(running) and "restart" in status, status
        # A rejected file: READY=1 all the same, the running configuration stays.
        open(d.config_path, "w").write(text + "\n[nonsense]\nkey = 1\n")
        status = reload_ends_ready(lambda: d.ctl("reload", check=False), "rejected reload")
        assert status.startswith(running) and "last reload failed" in status, status
        open(d.config_path, "w").write(text)
        assert reload_ends_ready(lambda: d.signal(signal.SIGHUP), "SIGHUP again") == running
        assert d.ctl_json("status")["system_status"] == "Online"
        assert d.stop() == 0
    finally:
        n.close()
        d.cleanup()


def test_journal_stream_gets_priorities():
    d = Daemon(start=False)
    try:
        open(d.log_path, "ab").close()
        st = os.stat(d.log_path)
        os.environ["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        try:
            d.start()
        finally:
            del os.environ["JOURNAL_STREAM"]
        text = open(d.config_path).read()
        open(d.config_path, "w").write(text.replace('servers = ["127.0.0.1:9"]',
                                                    'servers = ["127.0.0.1:10"]'))
        d.ctl("reload")
        open(d.config_path, "w").write(text + "\n[nonsense]\nkey = 1\n")
        d.ctl("reload", check=False)
        assert d.stop() == 0
        lines = d.read_log().splitlines()
        esad_lines = [line for line in lines if not line.startswith("==")]  # ASan notes
        assert esad_lines and all(re.match(r"^<[0-7]>", line) for line in esad_lines), lines
        assert "<4>reload: dns.servers changed; it takes effect after a restart" in lines
        assert any(re.match(r"^<3>reload: .*nonsense", line) for line in lines), lines
        assert any(re.match(r"^<6>esad .* started", line) for line in lines), lines
        # The journal stamps records itself: no timestamp of our own.
        assert not any(re.match(r"^<\d>\d{4}-\d\d-\d\d ", line) for line in lines)
    finally:
        d.cleanup()


def test_stderr_elsewhere_keeps_plain_lines():
    """A stale JOURNAL_STREAM (stderr redirected since) is not the journal."""
    d = Daemon(start=False)
    try:
        os.environ["JOURNAL_STREAM"] = "1:2"
        try:
            d.start()
        finally:
            del os.environ["JOURNAL_STREAM"]
        assert d.stop() == 0
        assert re.search(r"^\d{4}-\d\d-\d\d \S+ info esad .* started", d.read_log(), re.M), \
            d.read_log()
    finally:
        d.cleanup()


def run_as_nobody(d, groups):
    """Starts esad as nobody (supplementary `groups`, a list of gids) and waits for its exit
    or for it to become ready."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or not setpriv:
        raise Skip("needs root and setpriv (util-linux) to run esad as another user")
    nobody = pwd.getpwnam("nobody")
    for root, dirs, files in os.walk(d.dir):
        for name in [root] + [os.path.join(root, f) for f in dirs + files]:
            os.chown(name, nobody.pw_uid, nobody.pw_gid)
    group_args = ["--groups=" + ",".join(map(str, groups))] if groups else ["--clear-groups"]
    d.log = open(d.log_path, "ab")
    d.proc = subprocess.Popen(
        [setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", *group_args,
         os.path.abspath(ESAD), "--config", d.config_path],
        stdout=d.log, stderr=subprocess.STDOUT)


def with_control_group(d, group):
    text = open(d.config_path).read()
    open(d.config_path, "w").write(text.replace("[daemon]\n",
                                                f'[daemon]\ncontrol_group = "{group}"\n'))


def test_control_group_not_applicable_fails_clearly():
    d = Daemon(start=False)
    try:
        with_control_group(d, "daemon")  # gid 1 in Debian's base-passwd; nobody is not in it
        run_as_nobody(d, groups=[])
        rc = d.proc.wait(30)
        log = d.read_log()
        assert rc == 2, (rc, log)
        assert "daemon.control_group: esad runs as uid 65534, which is not a member of group " \
               "'daemon'" in log, log
        assert "SupplementaryGroups=daemon" in log, log
        assert not os.path.exists(d.socket)
    finally:
        d.cleanup()


def test_control_group_member_gets_socket_group():
    d = Daemon(start=False)
    try:
        with_control_group(d, "daemon")
        run_as_nobody(d, groups=[1])
        deadline = time.time() + 30
        while not os.path.exists(d.socket):
            assert d.proc.poll() is None, d.read_log()
            assert time.time() < deadline, d.read_log()
            time.sleep(0.05)
        assert os.stat(d.socket).st_gid == 1
        assert os.stat(os.path.dirname(d.socket)).st_gid == 1
        assert oct(os.stat(os.path.dirname(d.socket)).st_mode & 0o777) == "0o750"
        # Root may always connect; the daemon runs and answers.
        d.wait_ready()
        assert d.stop() == 0
    finally:
        d.cleanup()


if __name__ == "__main__":
    run_tests([
        test_every_reload_path_ends_with_ready_and_status,
        test_journal_stream_gets_priorities,
        test_stderr_elsewhere_keeps_plain_lines,
        test_control_group_not_applicable_fails_clearly,
        test_control_group_member_gets_socket_group,
    ])
