"""Test harness for the real esad and esactl binaries.

Daemon(config_text) starts esad on a private temporary state dir and control socket and
waits until `esactl status` answers; ctl(...) runs esactl against it. Binaries come from
$ESAD_BIN / $ESACTL_BIN (set by CTest). Everything listens on 127.0.0.1 or a Unix socket.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

ESAD = os.environ.get("ESAD_BIN", "build/test/esad")
ESACTL = os.environ.get("ESACTL_BIN", "build/test/esactl")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Daemon:
    def __init__(self, config_extra="", listen_port=None, start=True, keep_dir=None):
        self.dir = keep_dir or tempfile.mkdtemp(prefix="esad-test-")
        self.state = os.path.join(self.dir, "state")
        self.socket = os.path.join(self.dir, "run", "esad.sock")
        self.config_path = os.path.join(self.dir, "esad.toml")
        self.smtp_port = listen_port or free_port()
        self.log_path = os.path.join(self.dir, "esad.log")
        self.proc = None
        self.write_config(config_extra)
        if start:
            self.start()

    def write_config(self, extra=""):
        """[daemon] and [listener] (extra lines first go into [listener]). Unless the test
        configures them, DNS points at a closed loopback port and every domain is routed to a
        closed loopback port: nothing ever leaves the machine and mail stays queued."""
        tail = ""
        if "[dns]" not in extra:
            tail += '[dns]\nservers = ["127.0.0.1:9"]\ntimeout_ms = 200\n'
        if "[routes]" not in extra:
            routes = os.path.join(self.dir, "hold.routes")
            with open(routes, "w") as f:
                f.write("ALL [127.0.0.1]:9\n")
            tail += f'[routes]\nfile = "{routes}"\n'
        with open(self.config_path, "w") as f:
            f.write(
                f'[daemon]\nstate_dir = "{self.state}"\ncontrol_socket = "{self.socket}"\n'
                f'hostname = "esad.test"\n'
                f'[listener]\naddress = "127.0.0.1:{self.smtp_port}"\n' + extra + "\n" + tail
            )

    def start(self, wait=True, extra_args=()):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [ESAD, "--config", self.config_path, *extra_args],
            stdout=self.log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self.proc

    # Generous bounds: they only cap a wait that ends at the event, and CI runs this suite
    # beside the system tier's package build and a browser on 2 cores.
    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"esad exited early with {self.proc.returncode}:\n{self.read_log()}")
            r = self.ctl("--json", "status", check=False)
            # Ready means recovered and listening, not just answering on the control socket.
            if r.returncode == 0 and json.loads(r.stdout).get("listener"):
                return json.loads(r.stdout)
            time.sleep(0.05)
        raise AssertionError("esad did not become ready:\n" + self.read_log())

    def ctl(self, *args, check=True, input=None, env=None, timeout=30):
        full_env = dict(os.environ)
        full_env.pop("ESACTL_SOCKET", None)
        if env:
            full_env.update(env)
        r = subprocess.run([ESACTL, "--socket", self.socket, *args], capture_output=True,
                           text=True, input=input, env=full_env, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"esactl {args} exited {r.returncode}: {r.stderr}")
        return r

    def ctl_json(self, *args):
        return json.loads(self.ctl("--json", *args).stdout)

    def request(self, obj_or_bytes, timeout=5):
        """Sends one raw line on the control socket; returns the parsed reply line."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(self.socket)
        data = obj_or_bytes if isinstance(obj_or_bytes, bytes) else (json.dumps(obj_or_bytes) + "\n").encode()
        s.sendall(data)
        line = read_line(s)
        s.close()
        return json.loads(line) if line else None

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("esad did not stop on SIGTERM:\n" + self.read_log())
        return self.proc.returncode if self.proc else None

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def cleanup(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def read_line(sock):
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf.decode(errors="replace").strip()


class Skip(Exception):
    """Raised by a test that cannot run here; the message says why."""


SKIP_RETURN_CODE = 77  # CTest's SKIP_RETURN_CODE for the integration tests


def run_tests(tests):
    """Minimal runner: each test gets a fresh failure report; exit 1 if any failed, else 77
    (a CTest skip) if any raised Skip, else 0."""
    import sys
    import traceback
    failed = skipped = 0
    only = sys.argv[1:]
    for t in tests:
        if only and t.__name__ not in only:
            continue
        start = time.time()
        try:
            t()
            print(f"ok   {t.__name__} ({time.time() - start:.2f}s)", flush=True)
        except Skip as e:
            skipped += 1
            print(f"SKIP {t.__name__}: {e}", flush=True)
        except Exception:
            failed += 1
            print(f"FAIL {t.__name__}", flush=True)
            traceback.print_exc()
    sys.exit(1 if failed else SKIP_RETURN_CODE if skipped else 0)


SPOOL_DUMP = os.environ.get("SPOOL_DUMP_BIN", "build/test/tests/spool_dump")
FAULT_SHIM = os.environ.get("FAULT_SHIM", "build/test/tests/libfault_shim.so")


def queue_files(state_dir):
    """Paths of the message files in the spool queue, in either layout (queue/<MID> flat,
    queue/<xx>/<MID> hashed), sorted by MID."""
    queue = os.path.join(state_dir, "spool", "queue")
    found = []
    for name in os.listdir(queue):
        path = os.path.join(queue, name)
        if os.path.isdir(path) and not os.path.islink(path):
            found += [os.path.join(path, n) for n in os.listdir(path)]
        else:
            found.append(path)
    return sorted(found, key=os.path.basename)


def require_rocksdb():
    """Skips the calling test when esad was built without RocksDB ([spool] layout "rocksdb")."""
    r = subprocess.run(["ldd", ESAD], capture_output=True, text=True)
    if "librocksdb" not in r.stdout:
        raise Skip("esad was built without RocksDB")


def spool_messages(state_dir):
    """Decoded messages in the spool queue (via the spool_dump helper)."""
    r = subprocess.run([SPOOL_DUMP, state_dir], capture_output=True, text=True, check=True)
    msgs = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    for m in msgs:
        if "message_id" in m:
            m["message_id"] = m["message_id"].strip("<>")
    return msgs


class SmtpClient:
    """A raw SMTP client over a socket: send exact bytes, read whole replies. The default
    timeout is long: the reply to the final dot waits for a durable commit, which a disk busy
    with other tests' fsyncs held for 17 s once (a client may wait 10 minutes, RFC 5321
    4.5.3.2.6); a test that expects silence sets its own, shorter timeout."""

    def __init__(self, port, host="127.0.0.1", timeout=120):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def reply(self):
        """Reads one complete (possibly multi-line) reply; returns (code, text)."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed; partial: %r" % self.buf)
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode(errors="replace"))
            if len(line) < 4 or line[3:4] != b"-":
                return int(lines[-1][:3]), "\n".join(lines)

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def closed(self, timeout=5):
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


def send_message(port, sender, rcpts, body, helo="client.test"):
    """One transaction; returns the final reply (code, text) of DATA (or the failing step)."""
    c = SmtpClient(port)
    try:
        code, text = c.reply()
        if code != 220:
            return code, text
        c.cmd("EHLO " + helo)
        code, text = c.cmd(f"MAIL FROM:<{sender}>")
        if code != 250:
            return code, text
        ok = 0
        for r in rcpts:
            code, text = c.cmd(f"RCPT TO:<{r}>")
            ok += code == 250
        if not ok:
            return code, text
        code, text = c.cmd("DATA")
        if code != 354:
            return code, text
        c.send(body.replace(b"\r\n.", b"\r\n..") + b"\r\n.\r\n")
        result = c.reply()
        try:
            c.cmd("QUIT")
        except (ConnectionError, OSError):
            pass
        return result
    finally:
        c.close()


def make_cert(dirname, cn="esad.test"):
    """A throwaway self-signed certificate and key in dirname: (cert_path, key_path)."""
    cert, key = os.path.join(dirname, cn + ".crt"), os.path.join(dirname, cn + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=" + cn, "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return cert, key


def make_body(message_id, size=2000, subject="test"):
    head = f"From: a@x.test\r\nTo: b@y.test\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n\r\n"
    line = "x" * 70 + "\r\n"
    body = line * max(1, size // len(line))
    return (head + body).encode()


def wait_for(predicate, timeout=10, interval=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def mail_log(d):
    """The daemon's ESA-style mail log so far."""
    with open(os.path.join(d.state, "logs", "mail.current")) as f:
        return f.read()


def delivery_daemon(routes="", extra="", dns_port=None, port=25, delivery_extra="", start=True):
    """A (started) Daemon whose mail goes by these static routes (and DNS, if given) to port."""
    d = Daemon(start=False)
    routes_path = os.path.join(d.dir, "routes.txt")
    with open(routes_path, "w") as f:
        f.write(routes)
    dns = f'servers = ["127.0.0.1:{dns_port}"]\nallow_loopback = true\ntimeout_ms = 500\n' if dns_port else \
        'servers = ["127.0.0.1:9"]\ntimeout_ms = 200\n'
    d.write_config(f'[routes]\nfile = "{routes_path}"\n[delivery]\nport = {port}\n{delivery_extra}[dns]\n{dns}' + extra)
    if start:
        d.start()
    return d


class Injector:
    """Client threads sending one message after another until stop() (kill -9 tests).
    next_message(round_label, cid, seq) -> (message_id, sender, rcpts, body). attempted and
    acked (answered 250) hold the Message-IDs; a refused connection is simply retried."""

    def __init__(self, port, next_message, label, clients=4):
        self.attempted, self.acked = set(), set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._seq = 0
        self._threads = [threading.Thread(target=self._client, args=(port, next_message, label, i))
                         for i in range(clients)]
        for th in self._threads:
            th.start()

    def _client(self, port, next_message, label, cid):
        while not self._stop.is_set():
            with self._lock:
                self._seq += 1
                mid, sender, rcpts, body = next_message(label, cid, self._seq)
                self.attempted.add(mid)
            try:
                code, _ = send_message(port, sender, rcpts, body)
            except (OSError, ConnectionError):
                continue
            if code == 250:
                with self._lock:
                    self.acked.add(mid)

    def stop(self):
        self._stop.set()
        for th in self._threads:
            th.join(10)
