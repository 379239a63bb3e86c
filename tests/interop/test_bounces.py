"""Bounces as a sender's software reads them.

Postfix as the receiving MX refuses recipients whose local part starts with "bad"
(550 5.1.1). The senders' domain is an aiosmtpd server that offers SMTPUTF8 and refuses a
UTF-8 address sent without the SMTPUTF8 parameter (553 5.6.7, as Postfix and Exim do).

* ASCII sender: the DSN is parsed by flufl.bounce (Mailman's bounce parser), which must find
  exactly the refused recipient, as a permanent failure.
* UTF-8 sender (message received with SMTPUTF8): the DSN is sent with SMTPUTF8 (else the
  strict server refuses it and it is lost), it is RFC 6533 (message/global-delivery-status,
  "utf-8" address type for the UTF-8 recipient), and the addresses are the real UTF-8
  text, not log escapes. flufl.bounce does not read RFC 6533 reports; it must at least not
  extract a wrong address. The report is read with Python's email parser.
* Null sender <>: no DSN at all.
* A message received with SMTPUTF8 to a server that does not offer SMTPUTF8 (aiosmtpd without
  it): nothing is sent to that server; the UTF-8 sender gets a DSN with 5.6.7 (RFC 6531 §3.2).
"""
import email
import email.parser
import email.policy
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from esad_harness import run_tests  # noqa: E402
from interop_peers import (Postfix, Receiver, active, esad_daemon, inject, mail_log,  # noqa: E402
                           peer_tmpdir, skip, wait_until)

UTF8_SENDER = "\u00e5lice-s\u00ebnd\u00e9r@snd.test"
UTF8_BAD = "bad-\u00fc\u00f1\u00ee@pf.test"


def report_blocks(raw):
    """The header blocks of the message/(global-)delivery-status part of a DSN."""
    msg = email.message_from_bytes(raw, policy=email.policy.SMTPUTF8)
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    boundary = msg.get_boundary().encode()
    for segment in raw.split(b"--" + boundary):
        head, _, body = segment.partition(b"\r\n\r\n")
        if re.search(rb"(?i)content-type:\s*message/(global-)?delivery-status", head):
            blocks = [b for b in re.split(rb"\r\n\r\n", body.strip(b"\r\n")) if b.strip()]
            parser = email.parser.BytesHeaderParser(policy=email.policy.SMTPUTF8)
            return head, [parser.parsebytes(b + b"\r\n\r\n") for b in blocks]
    raise AssertionError("no delivery-status part in:\n" + raw.decode(errors="replace"))


def test_dsns_for_ascii_and_utf8_senders_and_none_for_null_sender():
    try:
        from flufl.bounce import all_failures, scan_message
    except ImportError:
        skip("python3-flufl.bounce is not installed (.ci/deps.sh test installs it)")
    tmp = peer_tmpdir()
    pf = senders = noutf8 = d = None
    try:
        pf = Postfix(os.path.join(tmp, "mx"), "mx.pf.test", domains=["pf.test"])
        pf.start()
        senders = Receiver(smtputf8=True, strict_utf8=True)
        noutf8 = Receiver(smtputf8=False)
        d = esad_daemon(f"pf.test [127.0.0.1]:{pf.port}\nsnd.test [127.0.0.1]:{senders.port}\n"
                        f"noutf8.test [127.0.0.1]:{noutf8.port}\n")
        inject(d.smtp_port, "alice@snd.test", ["bad1@pf.test", "ok1@pf.test"],
               b"From: <alice@snd.test>\r\nSubject: ascii sender\r\n"
               b"Message-ID: <ascii@snd.test>\r\n\r\nhello\r\n")
        inject(d.smtp_port, UTF8_SENDER, [UTF8_BAD, "bad2@pf.test", "ok2@pf.test"],
               f"From: <{UTF8_SENDER}>\r\nSubject: utf-8 sender\r\n"
               f"Message-ID: <utf8@snd.test>\r\n\r\nhall\u00f6\r\n".encode(),
               smtputf8=True, eight_bit=True)
        inject(d.smtp_port, UTF8_SENDER, ["u@noutf8.test"],
               f"From: <{UTF8_SENDER}>\r\nSubject: to a server without SMTPUTF8\r\n"
               f"Message-ID: <noutf8@snd.test>\r\n\r\nhall\u00f6\r\n".encode(),
               smtputf8=True, eight_bit=True)
        inject(d.smtp_port, "", ["bad3@pf.test"],
               b"From: <mailer-daemon@snd.test>\r\nSubject: null sender\r\n"
               b"Message-ID: <null@snd.test>\r\n\r\nhello\r\n")
        try:
            wait_until(lambda: active(d) == 0 and len(senders.accepted) >= 3, 60,
                       "the three DSNs delivered")
        except AssertionError:
            raise AssertionError(f"DSNs: {senders.accepted}\n{mail_log(d)}\n{pf.maillog()}")
        assert sorted(pf.delivered_to()) == ["ok1@pf.test", "ok2@pf.test"], pf.delivered_to()
        assert all(m["mail_from"] == "" for m in senders.accepted), senders.accepted
        # No DSN for the null sender, only the three above.
        assert sorted(m["rcpts"][0] for m in senders.accepted) == \
            sorted(["alice@snd.test", UTF8_SENDER, UTF8_SENDER]), senders.accepted
        s = d.ctl_json("status")["counters"]
        assert s["gen_bounce_recipients"]["uptime"] == 3, s
        dsns = {m["rcpts"][0]: m for m in senders.accepted if b"noutf8.test" not in m["data"]}

        # Nothing reached the server without SMTPUTF8; its recipient bounced 5.6.7.
        assert noutf8.accepted == [], noutf8.accepted
        [refused] = [m for m in senders.accepted if b"u@noutf8.test" in m["data"]]
        head, blocks = report_blocks(refused["data"])
        assert [(str(b["Final-Recipient"]).strip(), str(b["Status"]).strip())
                for b in blocks[1:]] == [("rfc822; u@noutf8.test", "5.6.7")], refused["data"]

        # ASCII sender: flufl.bounce finds exactly the refused recipient, permanently.
        ascii_dsn = email.message_from_bytes(dsns["alice@snd.test"]["data"])
        assert scan_message(ascii_dsn) == {b"bad1@pf.test"}, dsns["alice@snd.test"]["data"]
        temporary, permanent = all_failures(ascii_dsn)
        assert (temporary, permanent) == (set(), {b"bad1@pf.test"}), (temporary, permanent)

        # UTF-8 sender: sent with SMTPUTF8; RFC 6533 report with the real addresses.
        m = dsns[UTF8_SENDER]
        assert "SMTPUTF8" in [o.upper() for o in m["mail_options"]], m["mail_options"]
        raw = m["data"]
        msg = email.message_from_bytes(raw, policy=email.policy.SMTPUTF8)
        assert UTF8_SENDER in str(msg["To"]), msg["To"]
        head, blocks = report_blocks(raw)
        assert b"message/global-delivery-status" in head, head
        per_rcpt = {}
        for b in blocks[1:]:
            kind, _, addr = str(b["Final-Recipient"]).partition(";")
            per_rcpt[addr.strip()] = (kind.strip().lower(), str(b["Action"]).strip(),
                                      str(b["Status"]).strip())
        assert per_rcpt == {UTF8_BAD: ("utf-8", "failed", "5.1.1"),
                            "bad2@pf.test": ("rfc822", "failed", "5.1.1")}, per_rcpt
        # flufl.bounce has no RFC 6533 support; whatever it extracts must be a real address.
        found = scan_message(email.message_from_bytes(raw))
        assert found <= {b"bad2@pf.test", UTF8_BAD.encode()}, found
        # Nowhere a log escape of UTF-8 text (the server's reply quotes the address in UTF-8;
        # the DSN goes out with SMTPUTF8 and its report type is the UTF-8 one).
        escaped = re.findall(rb"[^\r\n]*\\x[0-9a-fA-F]{2}[^\r\n]*", raw)
        assert not escaped, ("log escapes (\\xNN) in the DSN to a UTF-8 sender:\n" +
                             "\n".join(e.decode(errors="replace") for e in escaped))
    finally:
        if d:
            d.cleanup()
        if pf:
            pf.stop()
        for rx in (senders, noutf8):
            if rx:
                rx.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run_tests([test_dsns_for_ascii_and_utf8_senders_and_none_for_null_sender])
