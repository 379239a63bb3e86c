"""Real mail software as esad's peers, on 127.0.0.1, for the interop tests (tests/interop).

    ca = TestCA(dir)                       # openssl: a private CA, CA-signed and self-signed certs
    pf = Postfix(dir, "mx.test", domains=["pf.test"], tls=ca.issue("mx-local.esad.test"))
    pf.start(); pf.messages(); pf.maillog(); pf.stop()
    ex = Exim(dir, domains=["exim.test"])  # the Debian exim4 binary unpacked by .ci/deps.sh
    rx = Receiver(...)                     # an aiosmtpd server with scripted replies

Postfix is a second instance of the installed package: its own config_directory,
queue_directory, data_directory and maillog_file under the test's folder, smtpd on a free
loopback port, mail delivered by the virtual(8) agent into one maildir per instance.
Exim runs from the folder `.ci/deps.sh test` unpacked it into ($ESAD_INTEROP_CACHE, default
/var/cache/esad-interop), with an nss_wrapper passwd naming its compiled-in user, so the
installed Postfix is not replaced. Tests needing a peer that is not available call skip().
"""
import asyncio
import email
import email.policy
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from esad_harness import free_port
from smtp_sink import SmtpSink

SKIP = 77  # CTest SKIP_RETURN_CODE of the interop tests

# CTest ends a test that runs over its TIMEOUT with SIGTERM: turn it into SystemExit so the
# tests' finally blocks stop the daemonized peers (a Postfix master outlives its starter).
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

CACHE = os.environ.get("ESAD_INTEROP_CACHE", "/var/cache/esad-interop")
POSTFIX = "/usr/sbin/postfix"
NSS_WRAPPER = "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so"
PEER_UID = 65534  # nobody: owner of the peers' mailboxes and Exim's spool


def skip(reason):
    print("SKIP: " + reason, flush=True)
    sys.exit(SKIP)


def peer_tmpdir():
    """A scratch folder the peers' unprivileged processes (postfix, nobody) can traverse."""
    d = tempfile.mkdtemp(prefix="esad-interop-")
    os.chmod(d, 0o755)
    return d


def wait_until(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    if not predicate():
        raise AssertionError("timed out waiting for " + what)


def _listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def wait_port(port, timeout=20):
    wait_until(lambda: _listening(port), timeout, f"a listener on 127.0.0.1:{port}")


def read_maildir(path):
    """Messages of a maildir (new/ and cur/), oldest first, as bytes with CRLF line ends."""
    files = glob.glob(os.path.join(path, "new", "*")) + glob.glob(os.path.join(path, "cur", "*"))
    files.sort(key=lambda p: (os.stat(p).st_mtime_ns, p))
    out = []
    for p in files:
        with open(p, "rb") as f:
            out.append(f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    return out


def split_message(raw):
    """(headers, body) of a stored message (bytes, CRLF)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    return head + b"\r\n", body


def header_values(raw, name):
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    return [str(v) for v in msg.get_all(name, [])]


# --- certificates -------------------------------------------------------------------------

class TestCA:
    """A private certificate authority made with the openssl command line."""

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.cert = os.path.join(directory, "ca.crt")
        self.key = os.path.join(directory, "ca.key")
        self._openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                      "-subj", "/CN=esad interop test CA", "-keyout", self.key, "-out", self.cert,
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def _openssl(self, *args):
        r = subprocess.run(["openssl", *args], capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError("openssl %s: %s" % (" ".join(args[:2]), r.stderr))

    def issue(self, name, tag=None):
        """A certificate for `name` (CN and subjectAltName) signed by this CA: (cert, key)."""
        base = os.path.join(self.dir, tag or name)
        key, csr, cert, ext = base + ".key", base + ".csr", base + ".crt", base + ".ext"
        self._openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + name,
                      "-keyout", key, "-out", csr)
        with open(ext, "w") as f:
            f.write(f"subjectAltName=DNS:{name}\nextendedKeyUsage=serverAuth\n"
                    "basicConstraints=CA:FALSE\n")
        self._openssl("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
                      "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", cert)
        os.chmod(key, 0o644)  # read by the peers' unprivileged processes
        return cert, key

    def self_signed(self, name, tag=None):
        base = os.path.join(self.dir, (tag or name) + "-self")
        key, cert = base + ".key", base + ".crt"
        self._openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                      "-subj", "/CN=" + name, "-addext", "subjectAltName=DNS:" + name,
                      "-keyout", key, "-out", cert)
        os.chmod(key, 0o644)
        return cert, key


# --- Postfix ------------------------------------------------------------------------------

MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix:
    """A private Postfix instance (needs root, as in CI).

    domains: delivered into this instance's maildir (virtual(8)); recipients whose local
    part starts with "bad" are refused 550 5.1.1. relayhost: "[127.0.0.1]:PORT" to relay
    everything else there (mynetworks = 127.0.0.0/8 may relay). tls: (cert, key) to offer
    STARTTLS.
    """

    def __init__(self, directory, hostname, domains=(), relayhost=None, tls=None, port=None,
                 extra=None):
        if os.geteuid() != 0:
            skip("a private Postfix instance needs root")
        if not os.path.exists(POSTFIX):
            skip("postfix is not installed (.ci/deps.sh test installs it)")
        self.dir = directory
        self.hostname = hostname
        self.port = port or free_port()
        self.conf = os.path.join(directory, "conf")
        self.queue = os.path.join(directory, "queue")
        self.data = os.path.join(directory, "data")
        self.mail = os.path.join(directory, "mail")
        self.log_path = os.path.join(directory, "maillog")
        for d in (self.conf, self.queue, self.data, self.mail):
            os.makedirs(d, exist_ok=True)
        shutil.chown(self.data, "postfix", "postfix")
        shutil.chown(self.mail, PEER_UID, PEER_UID)
        os.chmod(self.dir, 0o755)
        with open(os.path.join(self.conf, "reject_bad"), "w") as f:
            f.write("/^bad/ 550 5.1.1 no such user here\n")
        params = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue,
            "data_directory": self.data,
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": hostname,
            "mydomain": hostname,
            "myorigin": hostname,
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "maillog_file": self.log_path,
            "maillog_file_prefixes": directory,
            "syslog_name": "postfix-" + hostname,
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "biff": "no",
            "smtputf8_enable": "yes",
            "message_size_limit": "52428800",
            "virtual_mailbox_domains": " ".join(domains),
            "virtual_mailbox_base": self.mail,
            "virtual_mailbox_maps": "static:box/",
            "virtual_uid_maps": f"static:{PEER_UID}",
            "virtual_gid_maps": f"static:{PEER_UID}",
            "virtual_minimum_uid": "100",
            "virtual_mailbox_limit": "104857600",
            "smtpd_recipient_restrictions":
                "check_recipient_access regexp:" + os.path.join(self.conf, "reject_bad"),
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "disable_dns_lookups": "yes",
            "smtp_tls_security_level": "none",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "delay_warning_time": "0",
            "smtpd_tls_loglevel": "1",
        }
        if relayhost:
            params["relayhost"] = relayhost
        if tls:
            params.update({"smtpd_tls_cert_file": tls[0], "smtpd_tls_key_file": tls[1],
                           "smtpd_tls_security_level": "may",
                           "smtpd_tls_received_header": "yes"})
        params.update(extra or {})
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            for k, v in params.items():
                f.write(f"{k} = {v}\n")
        self._write_master()
        self.started = False

    def _postfix(self, *args, check=True):
        r = subprocess.run([POSTFIX, "-c", self.conf, *args], capture_output=True, text=True)
        if check and r.returncode != 0:
            raise AssertionError(f"postfix {' '.join(args)} failed: {r.stdout}{r.stderr}\n" +
                                 self.maillog())
        return r

    def _write_master(self):
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(listen=f"127.0.0.1:{self.port}"))

    def start(self):
        # The free port may be taken by someone else's connection before master binds it:
        # then try another one.
        for attempt in range(5):
            r = self._postfix("start", check=False)
            if r.returncode == 0:
                break
            if "Address already in use" not in self.maillog() or attempt == 4:
                raise AssertionError(f"postfix start failed: {r.stdout}{r.stderr}\n" +
                                     self.maillog())
            self.port = free_port()
            self._write_master()
        self.started = True
        wait_port(self.port)
        return self

    def stop(self):
        if self.started:
            self._postfix("stop", check=False)
            # Wait for the master to go: its pid file disappears.
            pid_file = os.path.join(self.queue, "pid", "master.pid")
            wait_until(lambda: not os.path.exists(pid_file) or not _pid_alive(pid_file), 20,
                       "postfix master to exit")
            self.started = False

    def maillog(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def messages(self):
        return read_maildir(os.path.join(self.mail, "box"))

    def delivered_to(self):
        """The Delivered-To address of each stored message (one per recipient)."""
        return [header_values(m, "Delivered-To")[0] for m in self.messages()]


def _pid_alive(pid_file):
    try:
        with open(pid_file) as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
        return True
    except (OSError, ValueError):
        return False


# --- Exim ---------------------------------------------------------------------------------

def exim_binary():
    """The unpacked exim4 daemon (.ci/deps.sh test), or None."""
    path = os.path.join(CACHE, "exim", "usr", "sbin", "exim4")
    return path if os.access(path, os.X_OK) else None


class Exim:
    """Exim 4 from the Debian package, run from its unpacked folder with its own config.

    Started as root with -C, Exim drops to its exim user for good (a -C configuration is
    not trusted); it re-executes itself for deliveries from `exim_path`. The Debian binary
    names its user "Debian-exim", which the nss_wrapper passwd maps to nobody.
    """

    def __init__(self, directory, hostname, domains, tls=None, port=None, extra=""):
        if os.geteuid() != 0:
            skip("Exim's private instance is set up as root (its spool belongs to nobody)")
        binary = exim_binary()
        if not binary:
            skip(f"Exim is not unpacked under {CACHE}/exim (run .ci/deps.sh test)")
        if not os.path.exists(NSS_WRAPPER):
            skip("libnss-wrapper is not installed (.ci/deps.sh test installs it)")
        if os.stat(binary).st_mode & 0o4000:
            skip(f"{binary} is setuid: run .ci/deps.sh test again to unpack it without")
        self.binary = binary
        self.dir = directory
        self.port = port or free_port()
        self.spool = os.path.join(directory, "spool")
        self.logdir = os.path.join(directory, "log")
        self.mail = os.path.join(directory, "maildir")
        for d in (self.spool, self.logdir, self.mail):
            os.makedirs(d, exist_ok=True)
            shutil.chown(d, PEER_UID, PEER_UID)
        os.chmod(directory, 0o755)
        self.passwd = os.path.join(directory, "passwd")
        self.group = os.path.join(directory, "group")
        with open(self.passwd, "w") as f:
            f.write(f"root:x:0:0:root:/root:/bin/sh\nDebian-exim:x:{PEER_UID}:{PEER_UID}::/nonexistent:/bin/false\n")
        with open(self.group, "w") as f:
            f.write(f"root:x:0:\nDebian-exim:x:{PEER_UID}:\n")
        tls_conf = "tls_advertise_hosts =\n"
        if tls:
            tls_conf = (f"tls_advertise_hosts = *\ntls_certificate = {tls[0]}\n"
                        f"tls_privatekey = {tls[1]}\n")
        self.config = os.path.join(directory, "exim.conf")
        with open(self.config, "w") as f:
            f.write(f"""\
exim_path = {binary}
keep_environment = LD_PRELOAD : NSS_WRAPPER_PASSWD : NSS_WRAPPER_GROUP
primary_hostname = {hostname}
spool_directory = {self.spool}
log_file_path = {self.logdir}/%slog
log_selector = +all -arguments
pid_file_path = {directory}/exim.pid
daemon_smtp_ports = {self.port}
local_interfaces = 127.0.0.1
domainlist local_domains = {" : ".join(domains)}
host_lookup =
rfc1413_hosts =
smtputf8_advertise_hosts = *
accept_8bitmime = true
message_size_limit = 50M
acl_smtp_rcpt = acl_rcpt
{tls_conf}{extra}
begin acl
acl_rcpt:
  deny    local_parts = ^bad.*
          message = 5.1.1 no such user here
  accept  domains = +local_domains
  deny    message = relay not permitted

begin routers
local:
  driver = accept
  domains = +local_domains
  transport = store

begin transports
store:
  driver = appendfile
  directory = {self.mail}
  maildir_format
  user = Debian-exim
  group = Debian-exim
  envelope_to_add
  return_path_add
""")
        self.proc = None

    def env(self):
        e = dict(os.environ)
        e.update({"LD_PRELOAD": NSS_WRAPPER, "NSS_WRAPPER_PASSWD": self.passwd,
                  "NSS_WRAPPER_GROUP": self.group})
        return e

    def start(self):
        self.out = open(os.path.join(self.dir, "exim.out"), "ab")
        for attempt in range(5):
            self.proc = subprocess.Popen([self.binary, "-C", self.config, "-bdf",
                                          "-oX", str(self.port)], env=self.env(),
                                         stdout=self.out, stderr=subprocess.STDOUT)
            try:
                wait_until(lambda: self.proc.poll() is not None or _listening(self.port), 20,
                           f"exim on port {self.port}")
            except AssertionError:
                raise AssertionError("exim did not start:\n" + self.mainlog())
            if self.proc.poll() is None:
                return self
            # Exited: most likely the port was taken meanwhile; try another one.
            if attempt == 4:
                raise AssertionError("exim did not start:\n" + self.mainlog())
            self.port = free_port()
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def mainlog(self):
        try:
            with open(os.path.join(self.logdir, "mainlog"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def messages(self):
        return read_maildir(self.mail)

    def delivered_to(self):
        return [header_values(m, "Envelope-to")[0] for m in self.messages()]


# --- aiosmtpd scripted receivers ----------------------------------------------------------

def have_aiosmtpd():
    try:
        import aiosmtpd.smtp  # noqa: F401
        return True
    except ImportError:
        return False


class Receiver:
    """An aiosmtpd SMTP server in a thread of the test, with scripted behaviour.

    eight_bit=False: EHLO does not offer 8BITMIME. smtputf8: offer SMTPUTF8; strict_utf8:
    a non-ASCII address in MAIL/RCPT without the SMTPUTF8 parameter gets 553 5.6.7.
    rcpt_452_second: the 2nd RCPT of every transaction gets 452 4.5.3.
    fail_421_at: one of "greeting", "ehlo", "mail", "rcpt", "rcpt2", "data", "dot": the
    first session that reaches that stage gets 421 4.3.2 there and is closed; later ones
    are served normally.
    tls: (cert, key) to offer STARTTLS.

    .accepted: one dict per transaction answered 250 after the final dot (mail_from, rcpts,
    mail_options, data, tls, peer); .commands: every command line received, per session.
    """

    def __init__(self, eight_bit=True, smtputf8=True, strict_utf8=True, rcpt_452_second=False,
                 fail_421_at=None, tls=None):
        if not have_aiosmtpd():
            skip("python3-aiosmtpd is not installed (.ci/deps.sh test installs it)")
        import ssl
        from aiosmtpd.smtp import SMTP
        self.eight_bit = eight_bit
        self.smtputf8 = smtputf8
        self.strict_utf8 = strict_utf8
        self.rcpt_452_second = rcpt_452_second
        self.fail_421_at = fail_421_at
        self.failed_once = False
        self.accepted = []
        self.sessions = 0
        self.lock = threading.Lock()
        self.port = free_port()
        tls_context = None
        if tls:
            tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls_context.load_cert_chain(*tls)
        receiver = self

        class ScriptedSMTP(SMTP):
            async def _handle_client(self):
                with receiver.lock:
                    receiver.sessions += 1
                if receiver._fail_now("greeting"):
                    await self.push("421 4.3.2 greeting: service not available, closing channel")
                    self.transport.close()
                    return
                await super()._handle_client()

            async def smtp_DATA(self, arg):
                if self.envelope.rcpt_tos and receiver._fail_now("data"):
                    await self.push("421 4.3.2 data: service not available, closing channel")
                    self.transport.close()
                    return
                await super().smtp_DATA(arg)

        self.loop = asyncio.new_event_loop()
        handler = _Handler(self)

        def factory():
            return ScriptedSMTP(handler, enable_SMTPUTF8=smtputf8, decode_data=False,
                                hostname="rx.test", tls_context=tls_context,
                                require_starttls=False, data_size_limit=60 * 1024 * 1024,
                                loop=self.loop)

        started = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(
                self.loop.create_server(factory, "127.0.0.1", self.port))
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        started.wait(10)

    def _fail_now(self, stage):
        with self.lock:
            if self.fail_421_at == stage and not self.failed_once:
                self.failed_once = True
                return True
        return False

    def close(self):
        def stop():
            self.server.close()
            self.loop.stop()
        self.loop.call_soon_threadsafe(stop)
        self.thread.join(10)

    def delivered_to(self):
        with self.lock:
            return [r for m in self.accepted for r in m["rcpts"]]


class _Handler:
    def __init__(self, rx):
        self.rx = rx

    def _close_after_reply(self, server):
        asyncio.get_event_loop().call_later(0.05, server.transport.close)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.rx._fail_now("ehlo"):
            self._close_after_reply(server)
            return ["421 4.3.2 ehlo: service not available, closing channel"]
        if not self.rx.eight_bit:
            responses = [r for r in responses if "8BITMIME" not in r]
        return responses

    def _utf8_refused(self, session, address, options):
        if not self.rx.strict_utf8 or all(ord(c) < 0x80 for c in address):
            return False
        return not self.rx.smtputf8 or not getattr(session, "smtputf8", False)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.rx._fail_now("mail"):
            self._close_after_reply(server)
            return "421 4.3.2 mail: service not available, closing channel"
        session.smtputf8 = any(o.upper() == "SMTPUTF8" for o in mail_options)
        if self._utf8_refused(session, address, mail_options):
            return "553 5.6.7 non-ASCII address without SMTPUTF8"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        session.rcpt_count = 0
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        session.rcpt_count = getattr(session, "rcpt_count", 0) + 1
        stage = "rcpt" if session.rcpt_count == 1 else "rcpt2"
        if self.rx._fail_now(stage):
            self._close_after_reply(server)
            return f"421 4.3.2 {stage}: service not available, closing channel"
        if self._utf8_refused(session, address, rcpt_options):
            return "553 5.6.7 non-ASCII address without SMTPUTF8"
        if address.lower().startswith("bad"):
            return "550 5.1.1 no such user here"
        if self.rx.rcpt_452_second and session.rcpt_count == 2:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        # Called after the final dot (the DATA command itself: ScriptedSMTP.smtp_DATA).
        if self.rx._fail_now("dot"):
            self._close_after_reply(server)
            return "421 4.3.2 dot: service not available, closing channel"
        with self.rx.lock:
            self.rx.accepted.append({
                # aiosmtpd keeps the null reverse-path as "<>"; recorded as "".
                "mail_from": "" if envelope.mail_from == "<>" else envelope.mail_from,
                "rcpts": list(envelope.rcpt_tos),
                "mail_options": list(envelope.mail_options), "data": envelope.original_content
                if envelope.original_content is not None else envelope.content,
                "tls": session.ssl is not None, "ssl": session.ssl})
        return "250 2.0.0 OK queued"


# --- a raw peer whose TLS stack is broken -------------------------------------------------

class BrokenTlsServer(SmtpSink):
    """Offers STARTTLS, answers 220 to it and then sends bytes that are not TLS.

    Without STARTTLS it takes mail like any server. .sessions: one dict per connection
    {starttls, commands (each line received before STARTTLS), after_starttls (raw bytes)};
    .accepted: the transactions answered 250 (all of them in plaintext, necessarily).
    """

    def __init__(self):
        self.sessions = []
        self.accepted = []
        super().__init__()  # SmtpSink's listener and accept loop; _session is this one

    def _session(self, conn):
        s = {"starttls": False, "commands": [], "after_starttls": b""}
        with self.lock:
            self.sessions.append(s)
        conn.settimeout(30)
        f = conn.makefile("rwb")

        def send(line):
            f.write(line.encode() + b"\r\n")
            f.flush()

        try:
            send("220 broken.test ESMTP")
            mail_from, rcpts = None, []
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line.decode("utf-8", "replace").rstrip("\r\n")
                s["commands"].append(cmd)
                verb = cmd.split(" ")[0].upper()
                if verb in ("EHLO", "HELO"):
                    f.write(b"250-broken.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                            b"250-STARTTLS\r\n250 ENHANCEDSTATUSCODES\r\n")
                    f.flush()
                elif verb == "STARTTLS":
                    s["starttls"] = True
                    send("220 2.0.0 Ready to start TLS")
                    f.write(b"this is no TLS record at all\r\n" * 4)
                    f.flush()
                    # Keep whatever the client sends next (a TLS alert, or cleartext).
                    while True:
                        try:
                            chunk = conn.recv(65536)
                        except OSError:
                            return
                        if not chunk:
                            return
                        s["after_starttls"] += chunk
                elif verb == "MAIL":
                    mail_from, rcpts = cmd[10:].split(">")[0].lstrip("<"), []
                    send("250 2.1.0 ok")
                elif verb == "RCPT":
                    rcpts.append(cmd[8:].split(">")[0].lstrip("<"))
                    send("250 2.1.5 ok")
                elif verb == "DATA":
                    send("354 go")
                    data = b""
                    while True:
                        l = f.readline()
                        if not l or l == b".\r\n":
                            break
                        data += l[1:] if l.startswith(b".") else l
                    with self.lock:
                        self.accepted.append({"mail_from": mail_from, "rcpts": rcpts,
                                              "data": data, "tls": False})
                    send("250 2.0.0 queued")
                elif verb == "QUIT":
                    send("221 2.0.0 bye")
                    return
                else:
                    send("250 2.0.0 ok")
        except OSError:
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def delivered_to(self):
        with self.lock:
            return [r for m in self.accepted for r in m["rcpts"]]


# --- esad side ----------------------------------------------------------------------------

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE_DNS = os.path.join(HERE, "fake_dns.py")


def start_dns():
    """The scripted DNS server of tests/support (mx-local.esad.test is 127.0.0.1)."""
    p = subprocess.Popen(["/usr/bin/python3", FAKE_DNS, "--idle", "600"], stdout=subprocess.PIPE,
                         text=True)
    return p, int(p.stdout.readline().split()[0])


def esad_daemon(routes, extra="", dns_port=None, listen_port=None):
    """esad delivering by the given smtproutes text; retries after 1 s so that a test sees
    the second attempt quickly; `extra` is more TOML (whole sections)."""
    from esad_harness import Daemon
    d = Daemon(start=False, listen_port=listen_port)
    routes_path = os.path.join(d.dir, "routes.txt")
    with open(routes_path, "w") as f:
        f.write(routes)
    dns = (f'[dns]\nservers = ["127.0.0.1:{dns_port}"]\nallow_loopback = true\ntimeout_ms = 500\n'
           if dns_port else '[dns]\nservers = ["127.0.0.1:9"]\ntimeout_ms = 200\n')
    d.write_config(f'[routes]\nfile = "{routes_path}"\n{dns}'
                   '[bounce_profiles.default]\ninitial_retry = "1s"\nmax_retry = "2s"\n' + extra)
    d.start()
    return d


def mail_log(d):
    try:
        with open(os.path.join(d.state, "logs", "mail.current"), encoding="utf-8",
                  errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def domain_debug_log(d):
    out = ""
    for p in sorted(glob.glob(os.path.join(d.state, "logs", "domain_debug*"))):
        with open(p, encoding="utf-8", errors="replace") as f:
            out += f.read()
    return out


def dot_stuff(content):
    """DATA transparency for content with CRLF line ends, plus the final dot."""
    lines = content.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n" for l in lines) + b".\r\n"


def inject(port, sender, rcpts, content, smtputf8=False, eight_bit=False):
    """One SMTP transaction into esad (or any server); returns the final reply text."""
    from esad_harness import SmtpClient
    c = SmtpClient(port, timeout=60)
    try:
        assert c.reply()[0] == 220
        c.cmd("EHLO client.test")
        params = (" SMTPUTF8" if smtputf8 else "") + (" BODY=8BITMIME" if eight_bit else "")
        code, text = c.cmd(f"MAIL FROM:<{sender}>{params}")
        assert code == 250, text
        for r in rcpts:
            code, text = c.cmd(f"RCPT TO:<{r}>")
            assert code == 250, (r, text)
        code, text = c.cmd("DATA")
        assert code == 354, text
        c.send(dot_stuff(content))
        code, text = c.reply()
        assert code == 250, f"content refused: {text}"
        c.cmd("QUIT")
        return text
    finally:
        c.close()


def recipients(d):
    return d.ctl_json("showrecipients", "all", "--limit", "1000")["recipients"]


def active(d):
    return d.ctl_json("status")["gauges"]["active_recipients"]
