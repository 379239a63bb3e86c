"""Message bodies through esad to real receivers: Postfix (virtual maildir), Exim 4 (maildir)
and aiosmtpd (the raw DATA it read).

* A body with lines starting with ".", a lone ".", a 998-octet line, a line of "." + 997
  octets (999 on the wire once dot-stuffed, RFC 5321 §4.5.3.1.6: the dot does not count),
  8-bit UTF-8 text and a base64 binary part arrives byte-identical at every receiver.
* Lines longer than 998 octets (a 1,560-octet minified-CSS line starting with ".", a 2,500-
  octet line) are accepted by esad and folded on delivery the way Postfix's
  smtp_line_length_limit does (CRLF SPACE): no line over 998 octets reaches a peer, and
  removing the inserted CRLF SPACE gives the original back.
"""
import base64
import os
import random
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from esad_harness import run_tests  # noqa: E402
from interop_peers import (Exim, Postfix, Receiver, TestCA, active, esad_daemon, inject,  # noqa: E402
                           mail_log, peer_tmpdir, split_message, wait_until)

CSS = (b".c{color:red}" + b"".join(b".k%d{margin:%dpx;padding:0}" % (i, i) for i in range(80)))
CSS = CSS[:1560]
assert len(CSS) == 1560 and CSS.startswith(b".")
LONG = b"L" * 2500


def fidelity_message(mid):
    rnd = random.Random(mid)
    binary = bytes(rnd.randrange(256) for _ in range(3000))
    b64 = base64.encodebytes(binary).replace(b"\n", b"\r\n")
    head = (f"From: <a@src.test>\r\nTo: <fid@peer.test>\r\nSubject: fidelity {mid}\r\n"
            f"Message-ID: <{mid}@src.test>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n").encode()
    body = (b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n"
            b".a line that starts with a dot\r\n"
            b"..two dots\r\n"
            b".\r\n"
            b"the line above is a lone dot\r\n"
            + b"d" * 998 + b"\r\n"
            + b"." + b"d" * 997 + b"\r\n"
            + "Gr\u00fc\u00dfe aus M\u00fcnchen, \u65e5\u672c\u8a9e, \u0437\u0434\u0440\u0430\u0432\u0441\u0442\u0432\u0443\u0439\u0442\u0435\r\n".encode()
            + b"  leading spaces and a trailing tab\t\r\n"
            + b"\r\n"
            + b"--b1\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + b64
            + b"--b1--\r\n")
    return head + body, body


def long_line_message(mid):
    head = (f"From: <a@src.test>\r\nTo: <long@peer.test>\r\nSubject: long {mid}\r\n"
            f"Message-ID: <{mid}@src.test>\r\n\r\n").encode()
    body = b"<style>\r\n" + CSS + b"\r\n</style>\r\n" + LONG + b"\r\nend\r\n"
    return head + body, body


def check_identical(name, received, sent_head, sent_body):
    head, body = split_message(received)
    assert body == sent_body, (
        f"{name}: body differs\n--- sent ({len(sent_body)} octets)\n{sent_body[:1500]!r}\n"
        f"--- received ({len(body)} octets)\n{body[:1500]!r}")
    for line in sent_head.split(b"\r\n"):
        if line:
            assert line in head, (name, line, head)


def check_folded(name, received, sent_body):
    _, body = split_message(received)
    lines = body.split(b"\r\n")
    too_long = [len(l) for l in lines if len(l) > 998]
    assert not too_long, f"{name}: lines over 998 octets reached the peer: {too_long}"
    assert body.replace(b"\r\n ", b"") == sent_body, (
        f"{name}: content changed beyond CRLF SPACE folding\n{body[:3000]!r}")


def test_bodies_through_postfix_exim_and_aiosmtpd():
    tmp = peer_tmpdir()
    peers, d, rx = [], None, None
    try:
        ca = TestCA(os.path.join(tmp, "ca"))
        pf = Postfix(os.path.join(tmp, "postfix"), "mx.pf.test", domains=["pf.test"],
                     tls=ca.issue("mx.pf.test"))
        peers.append(pf)
        ex = Exim(os.path.join(tmp, "exim"), "mx.exim.test", domains=["exim.test"],
                  tls=ca.issue("mx.exim.test"))
        peers.append(ex)
        rx = Receiver()
        pf.start()
        ex.start()
        routes = (f"pf.test [127.0.0.1]:{pf.port}\nexim.test [127.0.0.1]:{ex.port}\n"
                  f"rx.test [127.0.0.1]:{rx.port}\n")
        d = esad_daemon(routes)
        sent = {}
        for dom in ("pf.test", "exim.test", "rx.test"):
            full, body = fidelity_message("fid-" + dom)
            inject(d.smtp_port, "a@src.test", [f"fid@{dom}"], full, eight_bit=True)
            sent["fid@" + dom] = (full, body)
            full, body = long_line_message("long-" + dom)
            inject(d.smtp_port, "a@src.test", [f"long@{dom}"], full)
            sent["long@" + dom] = (full, body)

        def received():
            out = {}
            for m in pf.messages():
                out.setdefault(_subject(m), m)
            for m in ex.messages():
                out.setdefault(_subject(m), m)
            for m in rx.accepted:
                out.setdefault(_subject(m["data"]), m["data"])
            return out

        try:
            wait_until(lambda: len(received()) == 6, 90, "six messages at the peers")
        except AssertionError:
            raise AssertionError(f"peers got {sorted(received())}\nesad:\n{mail_log(d)}\n"
                                 f"postfix:\n{pf.maillog()}\nexim:\n{ex.mainlog()}")
        got = received()
        for dom in ("pf.test", "exim.test", "rx.test"):
            full, body = sent["fid@" + dom]
            check_identical(dom, got["fidelity fid-" + dom], split_message(full)[0], body)
            check_folded(dom, got["long long-" + dom], sent["long@" + dom][1])
        # Encrypted where the peer offered STARTTLS (default policy "preferred").
        assert "with ESMTPS" in _first_received(got["fidelity fid-pf.test"]), \
            got["fidelity fid-pf.test"][:600]
        assert "P=esmtps" in ex.mainlog(), ex.mainlog()
        wait_until(lambda: active(d) == 0, 20, "esad to finish")
    finally:
        if d:
            d.cleanup()
        for p in peers:
            p.stop()
        if rx:
            rx.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _subject(raw):
    for line in split_message(raw)[0].split(b"\r\n"):
        if line.lower().startswith(b"subject: "):
            return line[9:].decode(errors="replace")
    return "?"


def _first_received(raw):
    head = split_message(raw)[0].decode(errors="replace")
    start = head.find("Received: ")
    end = head.find("\r\n", start)
    while head[end + 2:end + 3] in (" ", "\t"):
        end = head.find("\r\n", end + 2)
    return head[start:end]


if __name__ == "__main__":
    run_tests([test_bodies_through_postfix_exim_and_aiosmtpd])
