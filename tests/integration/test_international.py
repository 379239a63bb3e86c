"""Internationalized mail against the real binary and scripted peers on 127.0.0.1:

* a U-label recipient domain is resolved by its A-label (DNS knows only that), delivered with
  the address as sent, and shown by both names in tophosts/hoststatus;
* a DSN to an SMTPUTF8 sender keeps the UTF-8 addresses (RFC 6533) and is sent with SMTPUTF8,
  so a strict receiver accepts it;
* 8-bit content to a server without 8BITMIME arrives as 7-bit MIME, never raw.
"""
import os
import subprocess

from esad_harness import Daemon, SmtpClient, run_tests, wait_for
from smtp_sink import SmtpSink

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE_DNS = os.path.join(HERE, "..", "support", "fake_dns.py")
MUNCHEN = "m\u00fcnchen.esad.test"


def start_dns():
    p = subprocess.Popen(["/usr/bin/python3", FAKE_DNS, "--idle", "300"], stdout=subprocess.PIPE,
                         text=True)
    return p, int(p.stdout.readline().split()[0])


def dns_daemon(dns_port, sink_port, routes=""):
    d = Daemon(start=False)
    routes_path = os.path.join(d.dir, "routes.txt")
    with open(routes_path, "w") as f:
        f.write(routes)
    d.write_config(f'[routes]\nfile = "{routes_path}"\n[delivery]\nport = {sink_port}\n'
                   f'[dns]\nservers = ["127.0.0.1:{dns_port}"]\nallow_loopback = true\n'
                   'timeout_ms = 500\n')
    d.start()
    return d


def mail_log(d):
    with open(os.path.join(d.state, "logs", "mail.current"), encoding="utf-8",
              errors="replace") as f:
        return f.read()


def inject(port, sender, rcpts, body, smtputf8=False, eight_bit=False):
    c = SmtpClient(port)
    try:
        assert c.reply()[0] == 220
        c.cmd("EHLO client.test")
        params = (" SMTPUTF8" if smtputf8 else "") + (" BODY=8BITMIME" if eight_bit else "")
        code, text = c.cmd(f"MAIL FROM:<{sender}>{params}")
        assert code == 250, text
        for r in rcpts:
            code, text = c.cmd(f"RCPT TO:<{r}>")
            assert code == 250, text
        assert c.cmd("DATA")[0] == 354
        c.send(body.replace(b"\r\n.", b"\r\n..") + b"\r\n.\r\n")
        code, text = c.reply()
        assert code == 250, text
        c.cmd("QUIT")
    finally:
        c.close()


def test_idn_recipient_resolved_by_a_label_and_shown_by_both_names():
    dns, dns_port = start_dns()
    sink = SmtpSink(smtputf8=True)
    d = dns_daemon(dns_port, sink.port)
    try:
        rcpt = "j\u00f6rg@" + MUNCHEN
        inject(d.smtp_port, "a@src.test", [rcpt], b"Subject: idn\r\n\r\nhello\r\n", smtputf8=True)
        assert wait_for(lambda: len(sink.messages) == 1, timeout=20), mail_log(d)
        assert sink.messages[0]["rcpts"] == [rcpt]  # the U-label address, as sent
        assert "SMTPUTF8" in sink.messages[0]["params"]
        assert "NXDomain" not in mail_log(d)
        top = d.ctl_json("tophosts")["hosts"]
        row = [h for h in top if h["host"] == "xn--mnchen-3ya.esad.test"]
        assert row and row[0]["host_unicode"] == MUNCHEN, top
        # The operator may type either name.
        for name in (MUNCHEN, "xn--mnchen-3ya.esad.test"):
            h = d.ctl_json("hoststatus", name)
            assert h["host"] == "xn--mnchen-3ya.esad.test" and h["host_unicode"] == MUNCHEN
            assert h["counters"]["delivered_recipients"] == 1
        out = d.ctl("hoststatus", MUNCHEN).stdout
        assert "'xn--mnchen-3ya.esad.test' (" + MUNCHEN + ")" in out, out
    finally:
        d.cleanup()
        sink.close()
        dns.terminate()


def test_dsn_to_a_utf8_sender_is_rfc6533_and_sent_with_smtputf8():
    dns, dns_port = start_dns()
    sink = SmtpSink(smtputf8=True)
    d = dns_daemon(dns_port, sink.port)
    try:
        sender = "ok-s\u00ebnd\u00e9r@deliver.esad.test"
        rcpt = "hard-\u00fc@deliver.esad.test"  # the sink answers 550 to "hard*"
        inject(d.smtp_port, sender, [rcpt], "Subject: x\r\n\r\nbody\r\n".encode(), smtputf8=True)
        assert wait_for(lambda: any(m["mail_from"] == "" for m in sink.messages), timeout=20), \
            (sink.messages, mail_log(d))
        dsn = [m for m in sink.messages if m["mail_from"] == ""][0]
        assert dsn["rcpts"] == [sender]
        assert "SMTPUTF8" in dsn["params"]
        data = dsn["data"].decode("utf-8")
        assert f"To: <{sender}>" in data, data
        assert f"Final-Recipient: utf-8; {rcpt}" in data, data
        assert "Content-Type: message/global-delivery-status" in data
        assert "\\xc3" not in data, data
    finally:
        d.cleanup()
        sink.close()
        dns.terminate()


def test_8bit_body_to_a_7bit_server_is_converted():
    dns, dns_port = start_dns()
    sink = SmtpSink(eight_bit=False)
    d = dns_daemon(dns_port, sink.port, routes=f"seven.test [127.0.0.1]:{sink.port}\n")
    try:
        body = "Subject: caf\r\n\r\nGr\u00fc\u00dfe aus M\u00fcnchen\r\n".encode()
        inject(d.smtp_port, "a@src.test", ["u@seven.test"], body, eight_bit=True)
        # Undeclared 8-bit (no BODY=8BITMIME) is just as 8-bit.
        inject(d.smtp_port, "a@src.test", ["v@seven.test"], body)
        assert wait_for(lambda: len(sink.messages) == 2, timeout=20), mail_log(d)
        for m in sink.messages:
            assert all(b < 0x80 for b in m["data"]), m["data"]
            assert "BODY=8BITMIME" not in m["params"]
            assert b"Content-Transfer-Encoding: quoted-printable" in m["data"]
            assert b"Gr=C3=BC=C3=9Fe aus M=C3=BCnchen" in m["data"]
    finally:
        d.cleanup()
        sink.close()
        dns.terminate()


if __name__ == "__main__":
    run_tests([test_idn_recipient_resolved_by_a_label_and_shown_by_both_names,
               test_dsn_to_a_utf8_sender_is_rfc6533_and_sent_with_smtputf8,
               test_8bit_body_to_a_7bit_server_is_converted])
