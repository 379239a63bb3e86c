"""esactl packetcapture against the real esad, esactl and esad-capture (docs/capture.md).

A delivery over plain SMTP and one over STARTTLS are captured; tshark reads the pcapng file
back and finds the plain MAIL FROM, does not find the TLS one without keys, and finds it
with the TLS key log that esad wrote because the domain was under domaindebug (and only
then: a TLS delivery to another domain adds nothing to the key log). The size limit stops a
capture; a disk below the reserve stops the capture and not the mail; without CAP_NET_RAW
`packetcapture start` fails with a clear message and exit 1; a damaged status file is shown
as such and never trusted."""
import os
import stat
import subprocess

from esad_harness import Daemon, make_body, make_cert, send_message, wait_for, run_tests, free_port
from smtp_sink import SmtpSink
from test_delivery import delivery_daemon, mail_log

TSHARK = "/usr/bin/tshark"


def mail_froms(path, ports, keylog=None):
    """The MAIL FROM parameters tshark finds in a capture, SMTP decoded on `ports`."""
    args = [TSHARK, "-n", "-r", path]
    for p in ports:
        args += ["-d", f"tcp.port=={p},smtp"]
    if keylog:
        args += ["-o", f"tls.keylog_file:{keylog}"]
    # On 2 CPUs the "any" device can record a stream's segments out of order; read the
    # capture the way an operator's Wireshark does (two passes, out-of-order reassembly).
    args += ["-2", "-o", "tcp.reassemble_out_of_order:TRUE"]
    args += ["-Y", 'smtp.req.command == "MAIL"', "-T", "fields", "-e", "smtp.req.parameter"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, HOME=os.path.dirname(path)))
    assert r.returncode == 0, r.stderr
    return r.stdout


def capture_debug(path, ports, keylog):
    """What an operator would look at when a capture does not decrypt: the conversations,
    the TLS records tshark saw and its TLS debug log."""
    dbg = path + ".tls-debug"
    args = [TSHARK, "-n", "-2", "-r", path, "-o", f"tls.keylog_file:{keylog}", "-o", f"tls.debug_file:{dbg}"]
    for p in ports:
        args += ["-d", f"tcp.port=={p},smtp"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    tail = open(dbg).read()[-3000:] if os.path.exists(dbg) else ""
    return r.stdout[-4000:] + "\n--- tls debug ---\n" + tail


def capture_status(d):
    return d.ctl_json("packetcapture", "status")


def test_plain_and_starttls_capture_read_back():
    plain = SmtpSink()
    d0 = Daemon(start=False)
    cert, key = make_cert(d0.dir, "sink.test")
    tls = SmtpSink(tls_cert=cert, tls_key=key)
    d = delivery_daemon(f"plain.test [127.0.0.1]:{plain.port}\n"
                        f"tls.test [127.0.0.1]:{tls.port}\nother.test [127.0.0.1]:{tls.port}\n")
    try:
        st = capture_status(d)
        assert st["capture"] is None and st["keylog"]["enabled"] is False
        assert st["default_filter"] == f"tcp port 25 or tcp port {d.smtp_port}", st
        out = d.ctl("packetcapture", "status").stdout
        assert "Packet capture: not running" in out and "TLS key log:    off" in out, out

        # A TLS delivery to a domain not under domaindebug: no key log lines.
        assert send_message(d.smtp_port, "early@src.test", ["o@other.test"], make_body("o@t"))[0] == 250
        assert wait_for(lambda: len(tls.messages) == 1, timeout=15), mail_log(d)
        keylog = st["keylog"]["path"]
        assert keylog == os.path.join(d.state, "captures", "tls_keylog.current")
        assert os.path.getsize(keylog) == 0  # never for a domain without domaindebug

        r = d.ctl("packetcapture", "start", "--port", str(plain.port), "--port", str(tls.port))
        assert "Packet capture started: " in r.stdout, r.stdout
        assert f"(tcp port {plain.port} or tcp port {tls.port})" in r.stdout
        st = capture_status(d)
        cap = st["capture"]
        assert cap["running"] is True
        path = cap["path"]
        assert path.startswith(os.path.join(d.state, "captures", "capture-")) and path.endswith(".pcapng")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
        # One capture at a time.
        again = d.ctl("packetcapture", "start", check=False)
        assert again.returncode == 1 and "already running" in again.stderr, again.stderr

        d.ctl("domaindebug", "add", "tls.test")
        out = d.ctl("packetcapture", "status").stdout
        assert "Packet capture: running" in out, out
        assert "TLS key log:    ON for tls.test (domaindebug)" in out, out

        assert send_message(d.smtp_port, "plainsender@src.test", ["p@plain.test"], make_body("p@t"))[0] == 250
        assert send_message(d.smtp_port, "tlssender@src.test", ["t@tls.test"], make_body("t@t"))[0] == 250
        assert wait_for(lambda: len(plain.messages) == 1 and len(tls.messages) == 2, timeout=15), mail_log(d)
        assert tls.messages[1]["tls"] is True
        assert stat.S_IMODE(os.stat(keylog).st_mode) == 0o640
        # Every secret of the session, not just the first line (TLS 1.3 writes five).
        assert wait_for(lambda: any(k in open(keylog).read()
                                    for k in ("CLIENT_TRAFFIC_SECRET_0", "CLIENT_RANDOM")), timeout=10)
        keys = open(keylog).read()
        # Idle connections close after 2 s: wait for the QUITs so the capture is complete.
        assert wait_for(lambda: d.ctl_json("status")["gauges"]["current_outbound_connections"] == 0,
                        timeout=10)

        r = d.ctl("packetcapture", "stop")
        assert "Packet capture stopped: " + path in r.stdout, r.stdout
        cap = capture_status(d)["capture"]
        assert cap["running"] is False and cap["stop_reason"] == "stop requested" and cap["packets"] > 10, cap
        assert cap["dropped"] == 0, cap  # a gap would hide the conversation
        listing = d.ctl("packetcapture", "list").stdout
        assert os.path.basename(path) in listing and "TLS key log: " in listing, listing
        assert d.ctl_json("packetcapture", "list")["captures"][-1]["path"] == path

        ports = [plain.port, tls.port]
        clear = mail_froms(path, ports)
        assert "FROM:<plainsender@src.test>" in clear, (clear, cap, subprocess.run(
            [TSHARK, "-n", "-r", path, "-q", "-z", "conv,tcp"], capture_output=True, text=True).stdout)
        assert "tlssender@src.test" not in clear, clear  # encrypted without the keys
        decrypted = mail_froms(path, ports, keylog=keylog)
        assert "FROM:<tlssender@src.test>" in decrypted, (decrypted, cap, keys, capture_debug(path, ports, keylog))
    finally:
        subprocess.run([os.environ.get("ESACTL_BIN", "build/test/esactl"), "--socket", d.socket,
                        "packetcapture", "stop"], capture_output=True)
        d.cleanup()
        d0.cleanup()
        plain.close()
        tls.close()


def test_size_limit_stops_capture():
    sink = SmtpSink()
    d = delivery_daemon(f"ALL [127.0.0.1]:{sink.port}\n",
                        extra="[capture]\nmax_size_bytes = 20000\nkeep = 2\n")
    try:
        for _ in range(3):  # rotation by count: at most 2 files kept
            d.ctl("packetcapture", "start", "--port", str(sink.port), "--duration", "1")
            assert wait_for(lambda: capture_status(d)["capture"]["running"] is False, timeout=10)
        assert len(d.ctl_json("packetcapture", "list")["captures"]) == 2
        r = d.ctl("packetcapture", "start", "--port", str(sink.port))
        assert "Limits:         20,000 bytes, 600s" in r.stdout, r.stdout
        for i in range(4):
            assert send_message(d.smtp_port, "a@src.test", [f"r{i}@big.test"],
                                make_body(f"big-{i}@t", size=8000))[0] == 250
        assert wait_for(lambda: len(sink.messages) == 4, timeout=15), mail_log(d)
        assert wait_for(lambda: capture_status(d)["capture"]["running"] is False, timeout=10)
        cap = capture_status(d)["capture"]
        assert cap["stop_reason"] == "size limit", cap
        assert os.path.getsize(cap["path"]) <= 20000
        assert "stopped (size limit)" in d.ctl("packetcapture", "status").stdout
        # The truncated file is still a valid capture.
        assert "FROM:<a@src.test>" in mail_froms(cap["path"], [sink.port])
    finally:
        d.cleanup()
        sink.close()


def test_disk_reserve_stops_the_capture_not_the_mail():
    sink = SmtpSink()
    d = delivery_daemon(f"ALL [127.0.0.1]:{sink.port}\n",
                        extra="[capture]\nmin_free_bytes = 1125899906842624\n")  # 1 PiB reserve
    try:
        d.ctl("packetcapture", "start", "--port", str(sink.port))
        assert wait_for(lambda: capture_status(d)["capture"]["running"] is False, timeout=10)
        cap = capture_status(d)["capture"]
        assert cap["stop_reason"].startswith("disk nearly full"), cap
        assert send_message(d.smtp_port, "a@src.test", ["r@disk.test"], make_body("disk@t"))[0] == 250
        assert wait_for(lambda: len(sink.messages) == 1, timeout=15), mail_log(d)
    finally:
        d.cleanup()
        sink.close()


def test_helper_gives_up_privileges():
    """esad as root with [daemon] user = nobody: the captures directory is nobody's, and the
    helper started by root esactl runs as nobody with no capabilities once capturing."""
    if os.geteuid() != 0:
        print("SKIP: needs root", flush=True)
        return
    saved = os.environ.get("ASAN_OPTIONS")
    from test_privileges import daemon_as, nobody, proc_status  # turns leak checks off
    if saved is None:
        os.environ.pop("ASAN_OPTIONS", None)
    else:
        os.environ["ASAN_OPTIONS"] = saved
    # A process that changed its uid cannot be checked by LeakSanitizer at exit.
    env = {"ASAN_OPTIONS": "detect_leaks=0"}
    uid, gid = nobody()
    os.environ["ASAN_OPTIONS"] = "detect_leaks=0"  # for the daemon that changes its uid
    try:
        d = daemon_as("nobody")
    finally:
        if saved is None:
            os.environ.pop("ASAN_OPTIONS", None)
        else:
            os.environ["ASAN_OPTIONS"] = saved
    try:
        captures = os.path.join(d.state, "captures")
        st = os.stat(captures)
        assert st.st_uid == uid and stat.S_IMODE(st.st_mode) == 0o2770, (st.st_uid, oct(st.st_mode))
        d.ctl("packetcapture", "start", env=env)
        cap = capture_status(d)["capture"]
        status = proc_status(cap["pid"])
        assert status["Uid"] == [str(uid)] * 4 and status["Gid"][0] == str(gid), status
        for key in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
            assert int(status[key][0], 16) == 0, (key, status[key])
        assert status["NoNewPrivs"] == ["1"]
        fst = os.stat(cap["path"])
        assert fst.st_uid == uid and stat.S_IMODE(fst.st_mode) == 0o640
        d.ctl("packetcapture", "stop", env=env)
        assert capture_status(d)["capture"]["running"] is False
    finally:
        d.cleanup()


def test_without_cap_net_raw_start_fails_clearly():
    d = delivery_daemon("")
    try:
        esactl = os.environ.get("ESACTL_BIN", "build/test/esactl")
        r = subprocess.run(["setpriv", "--inh-caps=-all", "--bounding-set=-net_raw", "--",
                            esactl, "--socket", d.socket, "packetcapture", "start"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
        assert "packet capture needs CAP_NET_RAW" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert capture_status(d)["capture"] is None
        # Bad filters are refused before anything is written.
        r = d.ctl("packetcapture", "start", "--filter", "port nonsense(", check=False)
        assert r.returncode == 1 and "bad capture filter" in r.stderr, r.stderr
        r = d.ctl("packetcapture", "stop", check=False)
        assert r.returncode == 1 and "no packet capture is running" in r.stderr
        assert d.ctl("packetcapture", "bogus", check=False).returncode == 2
    finally:
        d.cleanup()


def test_damaged_status_file_is_reported_not_trusted():
    """A capture.status that is not a capture status (damaged, or from another version) is
    shown as a stopped capture with the reason; `stop` does not signal a pid read from it."""
    d = delivery_daemon("")
    try:
        captures = os.path.join(d.state, "captures")
        os.makedirs(captures, exist_ok=True)
        status_path = os.path.join(captures, "capture.status")
        with open(status_path, "w") as f:
            f.write('{"pid": "1", "running": true}\n')
        st = capture_status(d)["capture"]
        assert st["running"] is False, st
        assert "unreadable" in st["stop_reason"] and "pid" in st["stop_reason"], st
        out = d.ctl("packetcapture", "status").stdout
        assert "Packet capture: stopped (unreadable" in out, out
        r = d.ctl("packetcapture", "stop", check=False)
        assert r.returncode == 1 and "no packet capture is running" in r.stderr, r.stderr
        with open(status_path, "w") as f:
            f.write("{not json")
        assert "not JSON" in capture_status(d)["capture"]["stop_reason"]
    finally:
        d.cleanup()


if __name__ == "__main__":
    run_tests([test_plain_and_starttls_capture_read_back, test_size_limit_stops_capture,
               test_disk_reserve_stops_the_capture_not_the_mail, test_helper_gives_up_privileges,
               test_without_cap_net_raw_start_fails_clearly,
               test_damaged_status_file_is_reported_not_trusted])
