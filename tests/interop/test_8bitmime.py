"""8-bit content to a server that does not offer 8BITMIME (aiosmtpd with 8BITMIME removed
from its EHLO reply): RFC 6152 §3 leaves two choices, convert to 7 bit or bounce with 5.6.3.
Either way no octet over 127 may reach that server. When converted, the text a reader sees
(the decoded MIME parts) is the text that was sent; when bounced, the sender's DSN says 5.6.3.
The same messages to a server that offers 8BITMIME arrive byte-identical.
"""
import email
import email.policy
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from esad_harness import run_tests  # noqa: E402
from interop_peers import (Receiver, active, esad_daemon, inject, mail_log, split_message,  # noqa: E402
                           wait_until)

TEXT = "Gr\u00fc\u00dfe aus M\u00fcnchen \u2014 \u65e5\u672c\u8a9e\r\n.a dotted line\r\n"

MESSAGES = {
    # A declared 8-bit text part.
    "mime": (b"From: <a@src.test>\r\nSubject: mime\r\nMessage-ID: <mime@src.test>\r\n"
             b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
             b"Content-Transfer-Encoding: 8bit\r\n\r\n" + TEXT.encode()),
    # Multipart: an 8-bit text part next to a base64 attachment that must stay as it is.
    "multi": (b"From: <a@src.test>\r\nSubject: multi\r\nMessage-ID: <multi@src.test>\r\n"
              b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"xx\"\r\n\r\n"
              b"--xx\r\nContent-Type: text/plain; charset=utf-8\r\n"
              b"Content-Transfer-Encoding: 8bit\r\n\r\n" + TEXT.encode() +
              b"--xx\r\nContent-Type: application/octet-stream\r\n"
              b"Content-Transfer-Encoding: base64\r\n\r\nAAECAwQFBgcICQ==\r\n--xx--\r\n"),
    # No MIME headers at all, 8-bit body (undeclared in the envelope too).
    "bare": (b"From: <a@src.test>\r\nSubject: bare\r\nMessage-ID: <bare@src.test>\r\n\r\n" +
             TEXT.encode()),
}


def text_parts(raw):
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    return [p.get_content().replace("\r\n", "\n") for p in msg.walk()
            if p.get_content_maintype() == "text"]


def test_8bit_to_a_server_without_8bitmime():
    seven = eight = senders = d = None
    try:
        seven = Receiver(eight_bit=False)
        eight = Receiver(eight_bit=True)
        senders = Receiver()
        d = esad_daemon(f"seven.test [127.0.0.1]:{seven.port}\n"
                        f"eight.test [127.0.0.1]:{eight.port}\n"
                        f"src.test [127.0.0.1]:{senders.port}\n")
        for name, content in MESSAGES.items():
            declared = name != "bare"
            inject(d.smtp_port, "a@src.test", [f"{name}@seven.test"], content, eight_bit=declared)
            inject(d.smtp_port, "a@src.test", [f"{name}@eight.test"], content, eight_bit=declared)
        wait_until(lambda: active(d) == 0, 60, "esad to finish:\n" + mail_log(d))
        # The 8BITMIME server: byte-identical.
        by_rcpt = {m["rcpts"][0]: m for m in eight.accepted}
        for name, content in MESSAGES.items():
            m = by_rcpt[f"{name}@eight.test"]
            assert split_message(m["data"])[1] == split_message(content)[1], (name, m["data"])
        # The 7-bit server: never an octet over 127; converted with the text intact, or bounced
        # with 5.6.3.
        got = {m["rcpts"][0]: m for m in seven.accepted}
        dsns = [m for m in senders.accepted if m["mail_from"] == ""]
        problems = []
        for m in seven.accepted:
            high = [b for b in m["data"] if b > 127]
            if high:
                problems.append(f"{m['rcpts']}: {len(high)} octets over 127 sent to a 7-bit "
                                f"server:\n{m['data'][:800]!r}")
            if any(o.upper() == "BODY=8BITMIME" for o in m["mail_options"]):
                problems.append(f"{m['rcpts']}: BODY=8BITMIME sent to a server without 8BITMIME")
        for name, content in MESSAGES.items():
            r = f"{name}@seven.test"
            if r in got:
                want = [t.replace("\r\n", "\n") for t in text_parts(content)]
                if name == "bare":
                    want = [TEXT.replace("\r\n", "\n")]
                have = text_parts(got[r]["data"])
                if have != want:
                    problems.append(f"{name}: text changed by the conversion:\n{have!r}\n"
                                    f"!=\n{want!r}\n{got[r]['data']!r}")
            else:
                dsn = [m for m in dsns if r.encode() in m["data"]]
                if not dsn or b"Status: 5.6.3" not in dsn[0]["data"]:
                    problems.append(f"{name}: neither delivered nor bounced 5.6.3: {dsn}")
        assert not problems, "\n".join(problems) + "\n" + mail_log(d)
    finally:
        if d:
            d.cleanup()
        for rx in (seven, eight, senders):
            if rx:
                rx.close()


if __name__ == "__main__":
    run_tests([test_8bit_to_a_server_without_8bitmime])
