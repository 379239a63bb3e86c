"""Walking skeleton against the real binaries: status, protocol abuse, peer credentials,
signals, config checking, stale and live control sockets, esactl exit codes."""
import json
import os
import pwd
import signal
import socket
import subprocess
import time

from esad_harness import ESACTL, ESAD, Daemon, read_line, run_tests


def test_status_human_and_json():
    d = Daemon()
    try:
        r = d.ctl("status")
        assert r.returncode == 0
        assert "Status as of:" in r.stdout
        assert "Up since:" in r.stdout
        assert "System status:                 Online" in r.stdout
        assert "Message ID (MID)" in r.stdout
        data = d.ctl_json("status")
        assert data["system_status"] == "Online"
        assert data["hostname"] == "esad.test"
        assert data["counters"]["messages_received"] == {"reset": 0, "uptime": 0, "lifetime": 0}
        assert set(data["current_ids"]) == {"mid", "icid", "dcid"}
        assert abs(data["status_as_of"] - time.time()) < 5
        assert data["up_since"] <= data["status_as_of"]
        v = d.ctl_json("version")
        assert v["protocol"] == 1
    finally:
        d.cleanup()


def test_garbage_gets_errors_and_daemon_keeps_serving():
    d = Daemon()
    try:
        # An idle client stays connected through all of the abuse below.
        idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        idle.connect(d.socket)
        cases = [
            (b"this is not json\n", "bad_request"),
            (b'{"v":1,"id":1,"cmd":"status"\n', "bad_request"),
            (b'{"v":9,"id":2,"cmd":"status"}\n', "unsupported_version"),
            (b'{"v":1,"id":3,"cmd":"no-such-command"}\n', "unknown_command"),
            (b'{"v":1,"id":4,"cmd":"st\xff\xfe"}\n', "bad_request"),
            (b'{"v":1,"id":5,"cmd":"x","args":' + b"[" * 100000 + b"\n", "bad_request"),
            (b"\x00\x01\x02\n", "bad_request"),
        ]
        for raw, code in cases:
            reply = d.request(raw)
            assert reply is not None and reply["ok"] is False, raw[:40]
            assert reply["error"]["code"] == code, (raw[:40], reply)
        # Oversize line: too_large and the connection is closed.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(d.socket)
        try:
            s.sendall(b"x" * (1024 * 1024 + 10))
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = json.loads(read_line(s))
        assert reply["error"]["code"] == "too_large"
        assert s.recv(10) == b""  # closed by the daemon
        s.close()
        # Several requests pipelined on one connection are answered in order.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(d.socket)
        s.sendall(b'{"v":1,"id":11,"cmd":"version"}\n{"v":1,"id":12,"cmd":"version"}\n')
        f = s.makefile("rb")
        assert json.loads(f.readline())["id"] == 11
        assert json.loads(f.readline())["id"] == 12
        s.close()
        # The idle client is unaffected.
        idle.sendall(b'{"v":1,"id":99,"cmd":"status"}\n')
        reply = json.loads(read_line(idle))
        assert reply["id"] == 99 and reply["ok"] is True
        idle.close()
        assert d.proc.poll() is None
        assert d.ctl("status").returncode == 0
    finally:
        d.cleanup()


def _connect_as_nobody(path):
    """Forks a child that drops to `nobody` and tries the socket; returns (rc, stdout)."""
    nobody = pwd.getpwnam("nobody")
    r = subprocess.run([ESACTL, "--socket", path, "--json", "status"], capture_output=True,
                       text=True, user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[],
                       timeout=20)
    return r


def test_unprivileged_peer_is_refused():
    d = Daemon()
    try:
        run_dir = os.path.dirname(d.socket)
        assert os.stat(run_dir).st_mode & 0o777 == 0o750
        assert os.stat(d.socket).st_mode & 0o777 == 0o660
        # The 0750 directory already stops an unrelated user (exit 3: unreachable).
        r = _connect_as_nobody(d.socket)
        assert r.returncode == 3, r
        # Open the filesystem permissions: SO_PEERCRED still refuses the peer.
        os.chmod(d.dir, 0o755)
        os.chmod(run_dir, 0o777)
        os.chmod(d.socket, 0o777)
        r = _connect_as_nobody(d.socket)
        assert r.returncode == 1, r
        assert "permission denied" in r.stderr
        assert json.loads(r.stdout)["error"]["code"] == "forbidden"
        assert "refused peer" in d.read_log()
        assert d.ctl("status").returncode == 0
    finally:
        d.cleanup()


def test_sigterm_exits_zero_quickly():
    d = Daemon()
    try:
        t0 = time.time()
        d.signal(signal.SIGTERM)
        rc = d.proc.wait(5)
        assert rc == 0, d.read_log()
        assert time.time() - t0 < 1.0
        assert not os.path.exists(d.socket)
        assert "esad stopped" in d.read_log()
    finally:
        d.cleanup()


def test_sighup_reloads_and_reports_restart_only_changes():
    d = Daemon()
    try:
        with open(d.config_path, "a") as f:
            f.write('[logging]\nlevel = "debug"\n')
        d.signal(signal.SIGHUP)
        deadline = time.time() + 5
        while "configuration reloaded" not in d.read_log() and time.time() < deadline:
            time.sleep(0.05)
        assert "configuration reloaded" in d.read_log()
        # A restart-only change is reported by esactl reload; the daemon keeps running.
        d.write_config(f'[delivery]\nport = 2600\n')
        with open(d.config_path) as f:
            text = f.read()
        with open(d.config_path, "w") as f:
            f.write(text.replace(f"127.0.0.1:{d.smtp_port}", "127.0.0.1:1"))
        r = d.ctl("reload")
        assert "listener.address changed: takes effect after a restart" in r.stdout
        # A broken file is rejected and the running configuration is kept.
        with open(d.config_path, "a") as f:
            f.write("[logging]\nlevel = \"loud\"\n")
        r = d.ctl("reload", check=False)
        assert r.returncode == 1
        assert "logging.level" in r.stderr
        assert d.ctl("status").returncode == 0
    finally:
        d.cleanup()


def test_check_config_names_key_and_exits_2():
    d = Daemon(start=False)
    try:
        d.write_config("max_recipients = -4\n")
        r = subprocess.run([ESAD, "--config", d.config_path, "--check-config"],
                           capture_output=True, text=True)
        assert r.returncode == 2
        assert "listener.max_recipients" in r.stderr
        assert ":7:" in r.stderr  # the line number of the bad key
        d.write_config()
        r = subprocess.run([ESAD, "--config", d.config_path, "--check-config"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        r = subprocess.run([ESAD, "--config", "/nonexistent.toml"], capture_output=True, text=True)
        assert r.returncode == 2 and "cannot read file" in r.stderr
        r = subprocess.run([ESAD, "--bogus-flag"], capture_output=True, text=True)
        assert r.returncode == 2
        r = subprocess.run([ESAD, "--version"], capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout.startswith("esad ")
    finally:
        d.cleanup()


def test_stale_socket_replaced_live_socket_refused():
    d = Daemon()
    try:
        # A second daemon on the same socket must refuse to start.
        second = subprocess.run([ESAD, "--config", d.config_path], capture_output=True,
                                text=True, timeout=10)
        assert second.returncode == 1
        assert "already running" in second.stderr
        assert d.ctl("status").returncode == 0
        # A crash leaves the socket file behind; the next start replaces it.
        d.kill9()
        assert os.path.exists(d.socket)
        d.start()
        assert "replacing stale socket" in d.read_log()
        assert d.ctl("status").returncode == 0
    finally:
        d.cleanup()


def test_esactl_exit_codes_and_socket_override():
    d = Daemon()
    try:
        r = d.ctl("no-such-command", check=False)
        assert r.returncode == 2 and "unknown command" in r.stderr
        r = d.ctl("status", "bogus", check=False)
        assert r.returncode == 2
        r = subprocess.run([ESACTL, "--socket", d.dir + "/nope.sock", "status"],
                           capture_output=True, text=True)
        assert r.returncode == 3
        assert "nope.sock" in r.stderr and "No such file" in r.stderr
        env = dict(os.environ, ESACTL_SOCKET=d.socket)
        r = subprocess.run([ESACTL, "--json", "status"], capture_output=True, text=True, env=env)
        assert r.returncode == 0 and json.loads(r.stdout)["system_status"] == "Online"
        r = subprocess.run([ESACTL, "help", "status"], capture_output=True, text=True)
        assert r.returncode == 0 and "usage: esactl status" in r.stdout
        d.ctl("resetcounters")
        assert d.ctl_json("status")["last_counter_reset"] is not None
    finally:
        d.cleanup()


def test_sd_notify_ready_watchdog_stopping():
    d = Daemon(start=False)
    sock_path = os.path.join(d.dir, "notify.sock")
    n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    n.bind(sock_path)
    n.settimeout(5)
    try:
        os.environ["NOTIFY_SOCKET"] = sock_path
        os.environ["WATCHDOG_USEC"] = "200000"
        try:
            d.start(wait=False)
        finally:
            del os.environ["NOTIFY_SOCKET"]
            del os.environ["WATCHDOG_USEC"]
        got = []
        deadline = time.time() + 5
        while time.time() < deadline and not any("READY=1" in m for m in got):
            got.append(n.recv(4096).decode())
        assert any("READY=1" in m and "STATUS=" in m for m in got), got
        # Watchdog pings at half the interval: several within 0.5 s.
        t0, pings = time.time(), 0
        while time.time() - t0 < 0.5:
            if "WATCHDOG=1" in n.recv(4096).decode():
                pings += 1
        assert pings >= 3, pings
        d.signal(signal.SIGTERM)
        deadline = time.time() + 5
        msgs = []
        while time.time() < deadline and not any("STOPPING=1" in m for m in msgs):
            msgs.append(n.recv(4096).decode())
        assert any("STOPPING=1" in m for m in msgs), msgs
        assert d.proc.wait(5) == 0
    finally:
        n.close()
        d.cleanup()


if __name__ == "__main__":
    run_tests([test_status_human_and_json, test_garbage_gets_errors_and_daemon_keeps_serving,
               test_unprivileged_peer_is_refused, test_sigterm_exits_zero_quickly,
               test_sighup_reloads_and_reports_restart_only_changes,
               test_check_config_names_key_and_exits_2, test_stale_socket_replaced_live_socket_refused,
               test_esactl_exit_codes_and_socket_override, test_sd_notify_ready_watchdog_stopping])
