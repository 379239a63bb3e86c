"""The real-systemd tier: esad's .deb in Debian 12 booted with systemd 252 as PID 1.

The test builds the package (tests/support/esad_package.py), checks it with lintian, boots
a copy of a cached Debian 12 root tree with

    systemd-nspawn --keep-unit --register=no -b --private-network

installs the .deb with dpkg and checks, with systemctl and journalctl, what an operator
sees: start (active only after READY=1) and STATUS=; the clear failure of a control_group
esad cannot apply, then esactl with no flags as root, as a control_group member and refused
for another user; reload (systemctl and esactl) returning and applying a route change, a
rejected reload; the Delivery Status page under esad-web.service; a packet capture;
warnings at `journalctl -p warning`; watchdog restart after SIGSTOP; stop under an open
SMTP session (421 4.3.2); socket activation; an upgrade restarting a running esad and esad-web; removal
stopping the socket and esad-web; purge removing links, configuration, logs and an empty
spool, and a reinstall that is not enabled.

Root tree: /var/cache/esad-nspawn/<name> ($ESAD_NSPAWN_CACHE), made once with debootstrap
from Debian's mirror (the only network access, and only when the cache is missing) and
copied for every run, so reruns start from a clean system in seconds.

Exit status 77 (CTest SKIP_RETURN_CODE) with "SKIP: reason" when a prerequisite is missing:
not root, systemd-nspawn, nsenter, debootstrap (with no cached tree), lintian, cpack.
"""
import ctypes
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from esad_harness import SmtpClient  # noqa: E402
from esad_package import build_deb, run  # noqa: E402
from smtp_sink import SmtpSink  # noqa: E402

SKIP = 77
SUITE = "bookworm"
MIRROR = os.environ.get("ESAD_NSPAWN_MIRROR", "http://deb.debian.org/debian")
# systemd as PID 1 plus the package's run-time dependencies, so the .deb installs offline.
INCLUDE = ["systemd", "systemd-sysv", "dbus", "libuv1", "libc-ares2", "libssl3",
           "libspdlog1.10", "libfmt9", "libtomlplusplus3", "libsystemd0", "libedit2",
           "libidn2-0", "libpcap0.8", "libmicrohttpd12"]
CACHE = Path(os.environ.get("ESAD_NSPAWN_CACHE", "/var/cache/esad-nspawn"))
TREE = CACHE / (SUITE + "-" + hashlib.sha256(" ".join(INCLUDE).encode()).hexdigest()[:10])
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CLONE_NEWNET = 0x40000000
UNITS = ("esad.service", "esad.socket", "esad-web.service")  # what the package ships


def skip(reason):
    print(f"SKIP: {reason}", flush=True)
    sys.exit(SKIP)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def prerequisites():
    if os.geteuid() != 0:
        skip("needs root (systemd-nspawn, dpkg in the container)")
    for tool, package in (("systemd-nspawn", "systemd-container"), ("nsenter", "util-linux"),
                          ("lintian", "lintian"), ("cpack", "cmake"), ("dpkg-deb", "dpkg")):
        if not shutil.which(tool):
            skip(f"{tool} not installed (Debian: {package}; .ci/deps.sh test installs it)")
    if not (TREE / "usr/lib/systemd/systemd").exists() and not shutil.which("debootstrap"):
        skip(f"no cached root tree {TREE} and debootstrap not installed")


def ensure_tree():
    """The cached Debian 12 tree, made by debootstrap when missing (a lock serialises it)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    import fcntl
    with open(CACHE / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (TREE / "usr/lib/systemd/systemd").exists():
            return
        partial = TREE.with_name(TREE.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        start = time.monotonic()
        r = run("debootstrap", "--variant=minbase", "--include=" + ",".join(INCLUDE), SUITE,
                partial, MIRROR, check=False, timeout=1800)
        if r.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            skip(f"debootstrap {SUITE} from {MIRROR} failed (exit {r.returncode}): "
                 f"{(r.stdout + r.stderr).strip().splitlines()[-1:]}")
        partial.rename(TREE)
        print(f"debootstrap: {time.monotonic() - start:.0f} s, tree {TREE}", flush=True)


class Container:
    """A booted copy of the cached tree; commands run in it through nsenter."""

    def __init__(self, workdir):
        self.root = Path(workdir) / "root"
        run("cp", "-a", "--reflink=auto", TREE, self.root, timeout=600)
        self.console = open(Path(workdir) / "console.log", "w")
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "--keep-unit", "--register=no", "-b", "--private-network",
             "--console=read-only", f"--machine=esad-test-{os.getpid()}", "-D", str(self.root)],
            stdin=subprocess.DEVNULL, stdout=self.console, stderr=subprocess.STDOUT)
        self.pid = None

    def boot(self):
        """Waits until systemd in the container finished booting."""
        self.pid = wait_for(self._init_pid, 60, "the container's PID 1")
        # systemctl answers once PID 1 listens on its private socket; then wait for the boot.
        wait_for(lambda: self.sh("systemctl is-system-running", check=False).stdout.strip(),
                 120, "systemd in the container to answer")
        state = self.sh("systemctl is-system-running --wait", check=False, timeout=300).stdout
        assert state.strip() in ("running", "degraded"), (state, self.console_text())

    def _init_pid(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"systemd-nspawn exited {self.proc.returncode}:\n"
                                 f"{self.console_text()}")
        for child in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text() \
                .split():
            try:
                if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                    return int(child)
            except OSError:
                pass
        return None

    def console_text(self):
        if not self.console.closed:
            self.console.flush()
        return Path(self.console.name).read_text(errors="replace")[-3000:]

    def sh(self, script, user=None, check=True, timeout=120):
        """Runs a shell script in the container (all its namespaces), as root or `user`."""
        cmd = ["nsenter", "-t", str(self.pid), "-a", "env", "-i", f"PATH={PATH}",
               "LANG=C.UTF-8", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0"]
        if user:
            cmd += ["runuser", "-u", user, "--"]
        return run(*cmd, "sh", "-c", script, check=check, timeout=timeout)

    def prop(self, unit, name):
        return self.sh(f"systemctl show -P {name} {unit}").stdout.strip()

    def in_netns(self, fn):
        """fn() run in a thread that joined the container's network namespace: sockets it
        creates live there (127.0.0.1 is the container's loopback)."""
        result = {}

        def body():
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(f"/proc/{self.pid}/ns/net", os.O_RDONLY)
                try:
                    if libc.setns(fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns")
                finally:
                    os.close(fd)
                result["value"] = fn()
            except BaseException as e:  # handed to the caller
                result["error"] = e

        t = threading.Thread(target=body)
        t.start()
        t.join()
        if "error" in result:
            raise result["error"]
        return result["value"]

    def poweroff(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # nspawn: SIGRTMIN+3 to systemd, a poweroff
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                # Killing the container's PID 1 ends its whole PID namespace.
                if self.pid:
                    os.kill(self.pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait()
        self.console.close()


def connect(c, port=25, timeout=30):
    """An SmtpClient connected to the container's 127.0.0.1:port (greeting not read yet)."""
    def attempt():
        deadline = time.monotonic() + timeout
        while True:
            try:
                return SmtpClient(port, timeout=60)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    return c.in_netns(attempt)


def send_mail(client, sender, rcpt, subject):
    assert client.cmd("EHLO client.test")[0] == 250
    assert client.cmd(f"MAIL FROM:<{sender}>")[0] == 250
    assert client.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
    assert client.cmd("DATA")[0] == 354
    code, text = client.cmd(f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: {subject}\r\n"
                            f"Message-ID: <{subject}@client.test>\r\n\r\nhello\r\n.")
    assert code == 250, text


def status_text(c, predicate, what):
    """StatusText once it satisfies predicate (systemd reads the notification as an event)."""
    return wait_for(lambda: (lambda t: t if predicate(t) else None)(c.prop("esad", "StatusText")),
                    15, what)


def esactl(c, args, user=None, check=True):
    return c.sh(f"esactl {args}", user=user, check=check)


def journal(c, since_cursor, priority=None):
    p = f"-p {priority}" if priority else ""
    after = f"--after-cursor='{since_cursor}'" if since_cursor else ""
    return c.sh(f"journalctl -u esad -o cat --no-pager {p} {after}", check=False).stdout


def cursor(c):
    out = c.sh("journalctl -n 1 --show-cursor --no-pager", check=False).stdout
    m = re.search(r"-- cursor: (\S+)", out)
    return m.group(1) if m else ""


def in_journal(c, text, since="", priority=None, what=None):
    """Waits until `text` is in esad's journal (journald stores stream lines as events)."""
    return wait_for(lambda: (lambda j: j if text in j else None)(journal(c, since, priority)),
                    20, what or repr(text))


def set_config(c, **changes):
    """Edits /etc/esad/esad.toml: key -> value (TOML text) in its section."""
    text = (c.root / "etc/esad/esad.toml").read_text()
    for key, value in changes.items():
        section, name = key.split(".")
        block = re.search(r"^\[" + section + r"\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
        body = block.group(1)
        line = re.compile(r"^#?" + name + r" = .*$", re.M)
        body = line.sub(f"{name} = {value}", body, count=1) if line.search(body) \
            else f"{name} = {value}\n" + body
        text = text[:block.start(1)] + body + text[block.end(1):]
    (c.root / "etc/esad/esad.toml").write_text(text)


def deb_paths(deb):
    paths = []
    for line in run("dpkg-deb", "-c", deb).stdout.splitlines():
        path = line.split(None, 5)[5].split(" -> ")[0].removeprefix(".")
        if not path.endswith("/"):
            paths.append(path)
    return paths


# --- the checks, in the order an operator meets them -------------------------------------

def check_lintian(deb):
    r = run("lintian", "--fail-on", "error,warning", "--tag-display-limit", "0", deb, check=False,
            timeout=600)
    tags = [line for line in r.stdout.splitlines() if re.match(r"^[EW]: ", line)]
    assert r.returncode == 0 and not tags, r.stdout + r.stderr
    print(f"lintian: no errors or warnings ({len(r.stdout.splitlines())} info/pedantic lines)",
          flush=True)


def check_install(c, deb):
    shutil.copy(deb, c.root / "root/esad.deb")
    c.sh("dpkg -i /root/esad.deb")
    for unit in UNITS:
        assert c.sh(f"systemctl is-enabled {unit}", check=False).stdout.strip() == "disabled"
        assert c.prop(unit, "ActiveState") == "inactive"
    c.sh("getent passwd esad && test -d /var/lib/esad && test -d /var/log/esad")
    assert c.sh("stat -c '%U:%G %a' /etc/esad/esad.toml").stdout.strip() == "root:esad 640"
    # Operators: alice may use esactl through the control group, bob may not.
    c.sh("groupadd esadops && useradd -m -G esadops alice && useradd -m bob")


def check_control_group_needs_membership(c):
    """control_group set but esad not in the group: esad.service fails clearly, once."""
    set_config(c, **{"daemon.control_group": '"esadops"'})
    r = c.sh("systemctl start esad", check=False)
    assert r.returncode != 0, r.stdout
    assert c.prop("esad", "ExecMainStatus") == "2"
    log = in_journal(c, "not a member of group 'esadops'")
    assert "SupplementaryGroups=esadops" in log, log
    # Exit status 2 is a configuration error (RestartPreventExitStatus=2): no restart loop.
    assert c.prop("esad", "ActiveState") == "failed"
    c.sh("systemctl reset-failed esad")
    # The drop-in docs/install.md describes, plus a shorter watchdog for this test.
    dropin = c.root / "etc/systemd/system/esad.service.d"
    dropin.mkdir(parents=True)
    (dropin / "control-group.conf").write_text("[Service]\nSupplementaryGroups=esadops\n")
    (dropin / "test-watchdog.conf").write_text("[Service]\nWatchdogSec=10s\n")
    c.sh("systemctl daemon-reload")


def check_start_and_status(c):
    start = time.monotonic()
    c.sh("systemctl start esad")  # Type=notify: returns once READY=1 came
    print(f"systemctl start esad: {time.monotonic() - start:.1f} s", flush=True)
    assert c.prop("esad", "ActiveState") == "active"
    assert c.prop("esad", "SubState") == "running"
    status_text(c, lambda t: t == "Running; SMTP 127.0.0.1:25, control /run/esad/esad.sock",
                "the running STATUS=")
    assert "Status: \"Running; SMTP" in c.sh("systemctl status esad --no-pager",
                                             check=False).stdout
    st = c.sh("stat -c '%U:%G %a' /run/esad /run/esad/esad.sock").stdout.split("\n")
    assert st[0] == "esad:esadops 750" and st[1] == "esad:esadops 660", st


def check_esactl_access(c):
    # No --socket and no $ESACTL_SOCKET: the installed esactl finds the daemon.
    r = esactl(c, "status")
    assert re.search(r"^System status: +Online", r.stdout, re.M), r.stdout
    r = esactl(c, "--json status", user="alice")
    assert '"system_status"' in r.stdout, r.stdout
    r = esactl(c, "status", user="bob", check=False)
    assert r.returncode == 3 and "Permission denied" in r.stderr, (r.returncode, r.stderr)
    # The configuration names another socket: esactl (root reads the file) follows it.
    # (Checked without restarting esad: the path is what esactl reports it cannot reach.)
    set_config(c, **{"daemon.control_socket": '"/run/esad/other.sock"'})
    r = esactl(c, "status", check=False)
    assert r.returncode == 3 and "/run/esad/other.sock" in r.stderr, r.stderr
    set_config(c, **{"daemon.control_socket": '"/run/esad/esad.sock"'})


def check_reload_and_routes(c):
    sink = c.in_netns(lambda: SmtpSink())
    routes = c.root / "etc/esad/smtproutes.txt"
    routes.write_text("route.test [127.0.0.1]:2599\n")  # nothing listens there
    set_config(c, **{"routes.file": '"/etc/esad/smtproutes.txt"'})
    r = c.sh("timeout 30 systemctl reload esad", check=False)
    assert r.returncode == 0, ("systemctl reload did not return", r.returncode, r.stderr)
    assert c.prop("esad", "SubState") == "running"
    status_text(c, lambda t: t.startswith("Running; SMTP 127.0.0.1:25, control "), "STATUS=")

    client = connect(c)
    assert client.reply()[0] == 220
    send_mail(client, "ops@client.test", "user@route.test", "route-change")
    client.cmd("QUIT")
    # Refused at port 2599: the recipient waits for its retry.
    wait_for(lambda: "route.test" in esactl(c, "tophosts").stdout, 30, "route.test queued")
    assert not sink.messages

    routes.write_text(f"route.test [127.0.0.1]:{sink.port}\n")
    cur = cursor(c)
    r = c.sh("timeout 30 systemctl reload esad", check=False)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert c.prop("esad", "SubState") == "running"
    in_journal(c, "routes: 1 entries from /etc/esad/smtproutes.txt", cur)
    esactl(c, "delivernow route.test")
    wait_for(lambda: sink.messages, 60, "the message at the new route")
    assert sink.messages[0]["rcpts"] == ["user@route.test"], sink.messages

    # esactl reload: same end state, READY=1 and the summary back in STATUS=.
    r = esactl(c, "reload")
    assert "Configuration reloaded" in r.stdout
    assert c.prop("esad", "SubState") == "running"
    status_text(c, lambda t: t.startswith("Running; SMTP 127.0.0.1:25"), "STATUS=")

    # A broken file: `systemctl reload` fails, esad keeps running on the old configuration.
    good = (c.root / "etc/esad/esad.toml").read_text()
    (c.root / "etc/esad/esad.toml").write_text(good + "\n[nonsense]\nkey = 1\n")
    r = c.sh("timeout 30 systemctl reload esad", check=False)
    assert r.returncode not in (0, 124), (r.returncode, r.stderr)
    assert c.prop("esad", "ActiveState") == "active"
    assert c.prop("esad", "SubState") == "running"
    status_text(c, lambda t: "last reload failed" in t, "the failed reload in STATUS=")
    (c.root / "etc/esad/esad.toml").write_text(good)
    c.sh("timeout 30 systemctl reload esad")
    status_text(c, lambda t: "last reload failed" not in t, "STATUS= without the failure")
    sink.close()


def check_disk_threads_background(c):
    # The unit's system call filter lets a thread lower its own policy: after the mail above
    # went through the spool, the pool threads that ran its jobs are SCHED_BATCH (3) and the
    # event loop thread (the main thread) is still SCHED_OTHER (0).
    pid = c.prop("esad", "MainPID")
    out = c.sh(f"for t in /proc/{pid}/task/*; do echo ${{t##*/}} $(cut -d' ' -f41 $t/stat); "
               "done").stdout
    policy = dict(line.split() for line in out.splitlines() if line.strip())
    assert policy.pop(pid) == "0", out
    assert "3" in policy.values(), out
    assert "thread pool: SCHED_BATCH refused" not in journal(c, "")


def http_get(c, path):
    """(status, body) of GET http://127.0.0.1:8025<path> in the container, None while
    nothing answers there."""
    def get():
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"http://127.0.0.1:8025{path}", timeout=10) as r:
                return r.status, r.read()
        except OSError:
            return None
    return c.in_netns(get)


def check_web_unit(c):
    """esad-web.service as shipped (esad user, no capabilities, read-only file system,
    loopback only) serves the page and its data from the running esad."""
    c.sh("systemctl start esad-web")
    assert c.prop("esad-web", "ActiveState") == "active"
    status, body = wait_for(lambda: http_get(c, "/api/hosts"), 30, "esad-web on 127.0.0.1:8025")
    assert status == 200 and b'"hosts"' in body, (status, body)
    status, body = http_get(c, "/")
    assert status == 200 and b"Retry All Delivery" in body, status
    pid = c.prop("esad-web", "MainPID")
    assert c.sh(f"stat -c %U /proc/{pid}").stdout.strip() == "esad"


def check_packet_capture(c):
    """The captures directory exists under the hardened unit (RestrictSUIDSGID= forbids esad
    to make the setgid directory itself), so the TLS key log is available and root can
    capture with esactl."""
    st = c.sh("stat -c '%U:%G %a' /var/lib/esad/captures", check=False)
    assert st.stdout.strip() == "esad:esad 2770", (st.stdout, st.stderr)
    assert "packet capture: cannot create" not in journal(c, "")
    r = esactl(c, "packetcapture start --duration 60")
    assert "Packet capture started: /var/lib/esad/captures/capture-" in r.stdout, r.stdout
    status = esactl(c, "packetcapture status").stdout
    assert "Packet capture: running" in status, status
    assert "/var/lib/esad/captures/tls_keylog.current" in \
        esactl(c, "--json packetcapture status").stdout
    r = esactl(c, "packetcapture stop")
    path = re.search(r"Packet capture stopped: (\S+)", r.stdout).group(1)
    assert c.sh(f"stat -c '%U:%G %a' {path}").stdout.strip() == "esad:esad 640"


def check_journal_priorities(c):
    cur = cursor(c)
    # A restart-only change is logged as a warning at reload.
    set_config(c, **{"dns.servers": '["127.0.0.1:53"]'})
    c.sh("timeout 30 systemctl reload esad")
    in_journal(c, "configuration reloaded", cur)  # the reload's last line, at info
    # (No cursor with -p: journalctl 252 finds nothing after a cursor with a priority filter.)
    warnings = in_journal(c, "dns.servers changed", priority="warning")
    assert "configuration reloaded" not in warnings, warnings  # info stays info
    # The failed start of check_control_group_needs_membership, at error level or above.
    in_journal(c, "not a member of group", priority="err")


def check_watchdog_restart(c):
    pid = c.prop("esad", "MainPID")
    restarts = int(c.prop("esad", "NRestarts"))
    c.sh(f"kill -STOP {pid}")
    start = time.monotonic()
    wait_for(lambda: (c.prop("esad", "MainPID") not in ("0", pid)
                      and c.prop("esad", "SubState") == "running"), 90, "a watchdog restart")
    print(f"watchdog restart: {time.monotonic() - start:.1f} s (WatchdogSec=10s)", flush=True)
    assert int(c.prop("esad", "NRestarts")) == restarts + 1
    wait_for(lambda: "Watchdog timeout" in c.sh("journalctl -u esad --no-pager").stdout, 20,
             "systemd's watchdog message")


def check_stop_with_open_session(c):
    client = connect(c)
    assert client.reply()[0] == 220
    assert client.cmd("EHLO client.test")[0] == 250
    c.sh("systemctl stop esad", timeout=120)
    code, text = client.reply()
    assert code == 421 and "4.3.2" in text, text
    assert c.prop("esad", "ActiveState") == "inactive"
    assert c.prop("esad", "Result") == "success"
    assert c.prop("esad", "ExecMainStatus") == "0"


def check_socket_activation(c):
    c.sh("systemctl start esad.socket")
    assert c.prop("esad.service", "ActiveState") == "inactive"
    client = connect(c)
    code, text = client.reply()  # esad starts on this connection and greets it
    assert code == 220, text
    client.cmd("QUIT")
    assert c.prop("esad.service", "ActiveState") == "active"
    in_journal(c, "socket activation: SMTP listener on inherited fd")


def check_upgrade_restarts(c, deb):
    """Running units come back on the new binaries; none gets enabled."""
    units = ("esad", "esad-web")
    pids = {u: c.prop(u, "MainPID") for u in units}
    c.sh("dpkg -i /root/esad.deb")  # the same version again: postinst configure <old>
    for u in units:
        assert c.prop(u, "ActiveState") == "active", u
        assert c.prop(u, "MainPID") not in ("0", pids[u]), u
        assert c.sh(f"systemctl is-enabled {u}", check=False).stdout.strip() == "disabled", u


def check_remove_and_purge(c, deb):
    c.sh("systemctl enable " + " ".join(UNITS))
    assert c.prop("esad-web.service", "ActiveState") == "active"
    c.sh("dpkg -r esad")
    for unit in UNITS:  # esad-web too: its binary is gone
        assert c.prop(unit, "ActiveState") == "inactive", unit
    # Nothing listens any more: a connection is refused instead of starting esad again.
    try:
        c.in_netns(lambda: socket.create_connection(("127.0.0.1", 25), timeout=5)).close()
        raise AssertionError("port 25 still accepts connections after dpkg -r")
    except ConnectionRefusedError:
        pass
    c.sh("dpkg --purge esad")
    left = c.sh("ls -d /etc/esad /var/lib/esad /var/log/esad /run/esad "
                "/etc/systemd/system/*.wants/esad* "
                "/var/lib/systemd/deb-systemd-helper-enabled/*esad* "
                "/var/lib/systemd/deb-systemd-helper-enabled/*/*esad* 2>/dev/null",
                check=False).stdout.split()
    assert not left, left
    for path in deb_paths(deb):
        assert not (c.root / path.lstrip("/")).exists(), path
    # A reinstall after purge starts from scratch: nothing enabled.
    c.sh("dpkg -i /root/esad.deb")
    for unit in UNITS:
        assert c.sh(f"systemctl is-enabled {unit}", check=False).stdout.strip() == "disabled"
        assert c.prop(unit, "ActiveState") == "inactive"


def main():
    prerequisites()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="esad-nspawn-") as work:
        deb, _ = build_deb(Path(work) / "out")
        t_build = time.monotonic() - t0
        check_lintian(deb)
        ensure_tree()
        t1 = time.monotonic()
        c = Container(work)
        failed = False
        try:
            c.boot()
            print(f"package {t_build:.0f} s; copy and boot {time.monotonic() - t1:.0f} s",
                  flush=True)
            for step, args in ((check_install, (deb,)),
                               (check_control_group_needs_membership, ()),
                               (check_start_and_status, ()),
                               (check_esactl_access, ()),
                               (check_reload_and_routes, ()),
                               (check_disk_threads_background, ()),
                               (check_web_unit, ()),
                               (check_packet_capture, ()),
                               (check_journal_priorities, ()),
                               (check_watchdog_restart, ()),
                               (check_stop_with_open_session, ()),
                               (check_socket_activation, ()),
                               (check_upgrade_restarts, (deb,)),
                               (check_remove_and_purge, (deb,))):
                start = time.monotonic()
                step(c, *args)
                print(f"ok   {step.__name__} ({time.monotonic() - start:.1f}s)", flush=True)
        except BaseException:
            failed = True
            if c.pid:
                print("--- journal of esad in the container ---")
                print(c.sh("journalctl -u esad -u esad.socket --no-pager | tail -60",
                           check=False).stdout)
            raise
        finally:
            c.poweroff()
            if failed:
                print("--- console ---\n" + c.console_text())
    print(f"nspawn tier: {time.monotonic() - t0:.0f} s in all", flush=True)


if __name__ == "__main__":
    main()
