"""esactl against the real daemon: every command's error paths (unknown domain -> exit 1 with
"No record of host", bad MID -> exit 1, usage -> exit 2, daemon down -> exit 3), suspend /
resume (421 to new SMTP clients, held delivery, status), workqueue, showmessage,
redirectrecipients to a sink, delete/bounce over more than one 10,000-recipient slice, and the
prompt: scripted through a pipe and interactive on a pty (tab completion, quit)."""
import os
import pty
import select
import subprocess
import time

from esad_harness import ESACTL, Daemon, SmtpClient, make_body, run_tests, send_message, wait_for
from smtp_sink import SmtpSink


def inject_many(port, sender, rcpts, body):
    """One transaction with every RCPT pipelined (the listener offers PIPELINING)."""
    c = SmtpClient(port)
    try:
        assert c.reply()[0] == 220
        c.cmd("EHLO client.test")
        assert c.cmd(f"MAIL FROM:<{sender}>")[0] == 250
        c.send("".join(f"RCPT TO:<{r}>\r\n" for r in rcpts))
        codes = [c.reply()[0] for _ in rcpts]
        assert codes.count(250) == len(rcpts), codes[:5]
        assert c.cmd("DATA")[0] == 354
        c.send(body + b"\r\n.\r\n")
        code, text = c.reply()
        assert code == 250, text
        c.cmd("QUIT")
    finally:
        c.close()


def queued_daemon():
    """A daemon whose mail stays queued (every domain routed to a closed port), with one
    message for dst.test; returns (daemon, mid)."""
    d = Daemon()
    code, text = send_message(d.smtp_port, "alice@src.test", ["bob@dst.test", "carol@dst.test"],
                              make_body("cli-1@t", subject="hello cli"))
    assert code == 250, text
    rows = d.ctl_json("showrecipients")["recipients"]
    return d, rows[0]["mid"]


def expect(d, args, code, needle="", stream="stderr", input=None):
    r = d.ctl(*args, check=False, input=input)
    text = r.stderr if stream == "stderr" else r.stdout
    assert r.returncode == code, (args, r.returncode, r.stdout, r.stderr)
    assert needle in text, (args, needle, r.stdout, r.stderr)
    return r


def test_unknown_domain_and_bad_mid_exit_1():
    d, mid = queued_daemon()
    try:
        for args in (["hoststatus", "nope.test"], ["delivernow", "nope.test"],
                     ["showrecipients", "host", "nope.test"],
                     ["deleterecipients", "--yes", "host", "nope.test"],
                     ["bouncerecipients", "--yes", "host", "nope.test"]):
            expect(d, args, 1, "No record of host: nope.test")
        for args in (["suspenddel", "nope.test"], ["resumedel", "nope.test"]):
            expect(d, args, 1, "No record of host: nope.test", stream="stdout")
        expect(d, ["showmessage", str(mid + 1000)], 1, f"No message with MID {mid + 1000} in the queue")
        expect(d, ["deleterecipients", "--yes", "sender", "nobody@x.test"], 1, "No messages from")
        # --json: the error object on stdout, same exit code.
        r = expect(d, ["--json", "hoststatus", "nope.test"], 1, '"not_found"', stream="stdout")
        assert "No record of host" in r.stdout
        # Nothing was touched by the failed commands.
        assert d.ctl_json("status")["gauges"]["active_recipients"] == 2
    finally:
        d.cleanup()


def test_usage_errors_exit_2():
    d, _ = queued_daemon()
    try:
        for args in (["hoststatus"], ["hoststatus", "a", "b"], ["tophosts", "bogus"],
                     ["tophosts", "--limit", "x"], ["tophosts", "--limit", "0"],
                     ["delivernow", "a", "b"], ["showrecipients", "host"],
                     ["showrecipients", "--limit", "x"], ["showmessage"], ["showmessage", "abc"],
                     ["showmessage", "0"], ["deleterecipients"], ["bouncerecipients", "host"],
                     ["redirectrecipients"], ["redirectrecipients", "--yes", "a b:c:d"],
                     ["workqueue", "pause"], ["suspend", "now"], ["resume", "x"],
                     ["dig"], ["dig", "bogus", "x.test"], ["status", "x"], ["nosuchcommand"],
                     ["help", "nosuchcommand"]):
            expect(d, args, 2)
        expect(d, ["showmessage", "abc"], 2, "usage: showmessage MID")
        expect(d, ["help", "showmessage"], 0, "usage: esactl showmessage MID", stream="stdout")
    finally:
        d.cleanup()


def test_daemon_down_exits_3():
    d = Daemon(start=False)
    try:
        for args in (["status"], ["version"], ["tophosts"], ["hoststatus", "x.test"], ["delivernow"],
                     ["suspenddel"], ["resumedel"], ["suspend"], ["resume"], ["workqueue"],
                     ["showrecipients"], ["showmessage", "1"], ["deleterecipients", "--yes", "all"],
                     ["bouncerecipients", "--yes", "all"], ["redirectrecipients", "--yes", "h.test"],
                     ["dig", "mx", "x.test"], ["resetcounters"], ["reload"]):
            r = expect(d, args, 3, d.socket)
        # The prompt needs the daemon too (its hostname).
        r = subprocess.run([ESACTL, "--socket", d.socket], input="status\n", capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 3 and d.socket in r.stderr, (r.returncode, r.stderr)
    finally:
        d.cleanup()


def test_suspend_resume_listener_and_delivery():
    sink = SmtpSink()
    d = Daemon(start=False)
    routes = os.path.join(d.dir, "sink.routes")
    with open(routes, "w") as f:
        f.write(f"ALL [127.0.0.1]:{sink.port}\n")
    d.write_config(f'[routes]\nfile = "{routes}"\n[dns]\nservers = ["127.0.0.1:9"]\n')
    d.start()
    try:
        r = expect(d, ["suspend"], 0, "Receiving suspended for Listener 127.0.0.1:", stream="stdout")
        assert "Mail delivery suspended." in r.stdout
        s = d.ctl_json("status")
        assert s["system_status"] == "Receiving and delivery suspended", s["system_status"]
        assert "Receiving and delivery suspended" in d.ctl("status").stdout
        expect(d, ["workqueue"], 0, "Status: Suspended", stream="stdout")
        # New SMTP clients are told to come back later.
        c = SmtpClient(d.smtp_port)
        code, text = c.reply()
        c.close()
        assert code == 421 and "4.3.2" in text and "suspended" in text, text
        # Delivery is held: resume receiving only through `resume`, queue one message while
        # delivery is suspended again by suspenddel.
        expect(d, ["resume"], 0, "Mail delivery resumed.", stream="stdout")
        expect(d, ["suspenddel"], 0, "Mail delivery suspended for ALL.", stream="stdout")
        assert d.ctl_json("status")["system_status"] == "Delivery suspended"
        code, text = send_message(d.smtp_port, "a@src.test", ["b@dst.test"], make_body("s-1@t"))
        assert code == 250, text
        time.sleep(1)
        assert sink.messages == []
        r = expect(d, ["resume"], 0, "No listeners were resumed.", stream="stdout")
        assert "Mail delivery resumed." in r.stdout
        assert wait_for(lambda: len(sink.messages) == 1, timeout=15)
        assert d.ctl_json("status")["system_status"] == "Online"
        r = expect(d, ["resume"], 0, "No listeners were resumed.", stream="stdout")
        assert "Mail delivery was not suspended." in r.stdout
    finally:
        d.cleanup()
        sink.close()


def test_workqueue_and_showmessage():
    d, mid = queued_daemon()
    try:
        r = expect(d, ["workqueue", "status"], 0, "Status: Operational", stream="stdout")
        assert "Messages: 0" in r.stdout
        wq = d.ctl_json("workqueue")
        assert wq["messages"] == 0 and wq["status"] == "Operational", wq
        r = expect(d, ["showmessage", str(mid)], 0, f"MID:            {mid}", stream="stdout")
        out = r.stdout
        for needle in ["Envelope From:  <alice@src.test>", "Injected:       ICID 1 from 127.0.0.1",
                       "<bob@dst.test>", "<carol@dst.test>", "Headers:", "    Subject: hello cli",
                       "    Message-ID: <cli-1@t>"]:
            assert needle in out, (needle, out)
        assert "xxxxxxxxxx" not in out  # headers only, never the body
        j = d.ctl_json("showmessage", str(mid))
        assert [x["rid"] for x in j["recipients"]] == [0, 1]
        assert all(x["host"] == "dst.test" for x in j["recipients"])
        assert "Subject: hello cli" in j["headers"]
    finally:
        d.cleanup()


def test_redirectrecipients_sends_queued_mail_to_the_host():
    d, _ = queued_daemon()
    sink = SmtpSink()
    try:
        send_message(d.smtp_port, "alice@src.test", ["dave@other.test"], make_body("cli-2@t"))
        # The held mail tried the closed port at least once.
        assert wait_for(lambda: d.ctl_json("hoststatus", "dst.test")["status"] == "down", timeout=15)
        r = expect(d, ["redirectrecipients", f"[127.0.0.1]:{sink.port}"], 1, "Cancelled.",
                   stream="stdout", input="n\n")
        assert "Are you sure you want to redirect all mail" in r.stdout
        r = expect(d, ["redirectrecipients", f"[127.0.0.1]:{sink.port}"], 0,
                   f"All mail is now redirected to [127.0.0.1]:{sink.port}.", stream="stdout", input="y\n")
        assert "3 recipients scheduled for immediate delivery." in r.stdout, r.stdout
        assert wait_for(lambda: sum(len(m["rcpts"]) for m in sink.messages) == 3, timeout=15), sink.messages
        assert wait_for(lambda: d.ctl_json("status")["gauges"]["active_recipients"] == 0, timeout=10)
        h = d.ctl_json("hoststatus", "dst.test")
        assert h["routes"] == [f"[127.0.0.1]:{sink.port}"], h["routes"]
        expect(d, ["redirectrecipients", "clear"], 0, "Redirect cleared", stream="stdout")
        assert d.ctl_json("hoststatus", "dst.test")["routes"] == ["[127.0.0.1]:9"]
    finally:
        d.cleanup()
        sink.close()


def test_delete_and_bounce_over_several_slices():
    d = Daemon("max_recipients = 1000\n")
    try:
        body = make_body("big@t", size=200)
        for i in range(12):  # 12,000 recipients: more than one 10,000-recipient slice
            inject_many(d.smtp_port, "bulk@src.test", [f"r{i}-{j}@d{j % 7}.test" for j in range(1000)], body)
        send_message(d.smtp_port, "other@src.test", [f"x{j}@d1.test" for j in range(5)], make_body("b@t"))
        assert d.ctl_json("status")["gauges"]["active_recipients"] == 12005
        r = expect(d, ["deleterecipients", "sender", "bulk@src.test"], 1, "Cancelled.", stream="stdout",
                   input="\n")
        r = expect(d, ["deleterecipients", "sender", "bulk@src.test"], 0, "12,000 recipients deleted.",
                   stream="stdout", input="y\n")
        s = d.ctl_json("status")
        assert s["gauges"]["active_recipients"] == 5
        assert s["counters"]["deleted_recipients"]["uptime"] == 12000
        j = d.ctl_json("bouncerecipients", "--yes", "host", "d1.test")
        assert j == {"recipients": 5, "messages": 1, "bounced": True, "delivery_suspended": False}, j
        # The bounce queued one DSN (to other@src.test); deleting everything takes it too.
        assert wait_for(lambda: d.ctl_json("status")["gauges"]["active_recipients"] == 1)
        expect(d, ["deleterecipients", "--yes", "all"], 0, "1 recipients deleted.", stream="stdout")
        expect(d, ["deleterecipients", "--yes", "all"], 0, "No recipients deleted.", stream="stdout")
        # The deleted messages leave the spool once their journal records are durable.
        log = open(os.path.join(d.state, "logs", "mail.current")).read()
        assert log.count("deleted by administrator") == 12001  # 12,000 + the DSN
    finally:
        d.cleanup()


def test_prompt_through_a_pipe():
    d, mid = queued_daemon()
    try:
        script = ("# comment\n\nversion\nhelp hoststatus\nhoststatus 'dst.test'\n"
                  f"showmessage {mid}\nhoststatus nope.test\nstatus\nquit\nstatus detail\n")
        r = subprocess.run([ESACTL, "--socket", d.socket], input=script, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, (r.returncode, r.stderr)
        out = r.stdout
        assert "esad.test>" not in out  # no prompt when stdin is not a terminal
        assert " on esad.test\n" in out, out
        assert "usage: esactl hoststatus DOMAIN" in out
        assert "Host mail status for: 'dst.test'" in out
        assert "Subject: hello cli" in out
        assert "No record of host: nope.test" in r.stderr
        assert out.count("System status:") == 1 and "Rates (Events Per Hour)" not in out  # quit stops
        # The exit code is the last command's.
        r = subprocess.run([ESACTL, "--socket", d.socket], input="status\nhoststatus nope.test\n",
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1, r.returncode
        r = subprocess.run([ESACTL, "--socket", d.socket], input="showmessage 'unterminated\n",
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "unterminated ' quote" in r.stderr, r.stderr
    finally:
        d.cleanup()


class Pty:
    def __init__(self, argv):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.environ["TERM"] = "dumb"
            os.execv(argv[0], argv)
        self.buf = b""

    def read_until(self, needle, timeout=20):
        needle = needle.encode()
        deadline = time.time() + timeout
        while needle not in self.buf:
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {needle!r}; got {self.buf[-2000:]!r}")
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"pty closed waiting for {needle!r}; got {self.buf[-2000:]!r}")
                self.buf += chunk
        at = self.buf.index(needle) + len(needle)
        seen, self.buf = self.buf[:at], self.buf[at:]
        return seen.decode(errors="replace")

    def send(self, text):
        os.write(self.fd, text.encode())

    def wait(self, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            try:
                if select.select([self.fd], [], [], 0.1)[0]:
                    os.read(self.fd, 4096)
            except OSError:
                time.sleep(0.05)
        os.kill(self.pid, 9)
        raise AssertionError("esactl did not exit")


def test_prompt_on_a_terminal():
    d, _ = queued_daemon()
    try:
        p = Pty([ESACTL, "--socket", d.socket])
        p.read_until("esad.test> ")
        p.send("vers\t\n")  # tab completes the command name (libedit redraws the line)
        p.read_until("esad 0.1.0 on esad.test\r\n")
        p.read_until("esad.test> ")
        p.send("hoststatus ds\t\n")  # ... and a domain the daemon knows
        p.read_until("Host mail status for: 'dst.test'")
        p.read_until("esad.test> ")
        p.send("hoststatus nope.test\n")
        p.read_until("No record of host: nope.test")
        p.read_until("esad.test> ")
        p.send("rate 1\n")  # a stream: Ctrl-C ends it and returns to the prompt
        p.read_until("Type Ctrl-C to return to the main prompt.")
        p.read_until("K-Used")
        p.send("\x03")
        p.read_until("esad.test> ")
        p.send("status\n")
        p.read_until("System status:")
        p.read_until("esad.test> ")
        p.send("quit\n")
        assert p.wait() == 0
    finally:
        d.cleanup()


def test_malformed_reply_is_reported_exit_1():
    """A reply whose data lacks a field or has one of the wrong type (a daemon of another
    version, a bug) gives a clear message naming the field and exit 1, never a crash."""
    import json as jsonlib
    import shutil
    import socket
    import tempfile
    import threading
    replies = {"status": {"version": "x"},
               "version": {"version": "x", "hostname": "h", "protocol": "one"},
               "tophosts": {"status_as_of": 1, "sort": "active_rcpts", "total_hosts": 1,
                            "hosts": [{"host": "a.test", "active_recipients": "many"}]},
               "hoststatus": {"host": "a.test"},
               "dig": {"name": "a.test", "type": "A", "status": "ok", "from_cache": False,
                       "error": "", "answers": 5},
               "packetcapture": {"dir": 5},
               "telnet": {"event": "connected", "ip": "127.0.0.1", "port": 25,
                          "host": "a.test", "source": "127.0.0.1:1"}}
    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "fake.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(8)

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                line = conn.makefile("rb").readline()
                req = jsonlib.loads(line)
                data = replies.get(req["cmd"], {})
                conn.sendall((jsonlib.dumps({"v": 1, "id": req["id"], "ok": True,
                                             "data": data}) + "\n").encode())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        for args, field in ((["status"], "hostname: missing"), (["version"], "protocol"),
                            (["tophosts"], "hosts[0]"), (["hoststatus", "a.test"], "host_unicode"),
                            (["dig", "a.test"], "answers"), (["packetcapture", "status"], "dir"),
                            (["telnet", "a.test"], "session: missing")):
            r = subprocess.run([ESACTL, "--socket", path, *args], capture_output=True, text=True,
                               timeout=30)
            assert r.returncode == 1, (args, r.returncode, r.stdout, r.stderr)
            assert "malformed reply to " + args[0] in r.stderr, (args, r.stderr)
            assert field in r.stderr, (args, field, r.stderr)
            assert r.stdout == "", (args, r.stdout)
        r = subprocess.run([ESACTL, "--socket", path, "--json", "status"], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 1, (r.returncode, r.stderr)
        assert jsonlib.loads(r.stdout)["error"]["code"] == "bad_reply", r.stdout
    finally:
        server.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run_tests([test_unknown_domain_and_bad_mid_exit_1, test_usage_errors_exit_2, test_daemon_down_exits_3,
               test_suspend_resume_listener_and_delivery, test_workqueue_and_showmessage,
               test_redirectrecipients_sends_queued_mail_to_the_host,
               test_delete_and_bounce_over_several_slices, test_prompt_through_a_pipe,
               test_prompt_on_a_terminal, test_malformed_reply_is_reported_exit_1])
