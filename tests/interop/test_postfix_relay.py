"""A stock Postfix as the relayhost injecting into esad (relayhost = [127.0.0.1]:<esad>), esad
delivering to a second Postfix as the receiving MX.

The mail that made real Postfix relays give up: a minified-CSS line of 1,560 octets starting
with ".". Postfix's smtp client folds it at 998 octets (smtp_line_length_limit, CRLF SPACE),
so esad receives a first piece of "." + 997 octets, 999 on the wire once dot-stuffed: the
transparency dot does not count against the line limit (RFC 5321 §4.5.3.1.6). esad must
accept it (Postfix logs status=sent) and the MX must get the content back intact. A body
with lone dots, a 998-octet line and 8-bit text relayed the same way arrives byte-identical.
"""
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from esad_harness import free_port, run_tests  # noqa: E402
from interop_peers import (Postfix, active, esad_daemon, header_values, inject,  # noqa: E402
                           mail_log, peer_tmpdir, split_message, wait_until)

CSS = (b".c{color:red}" + b"".join(b".k%d{margin:%dpx;padding:0}" % (i, i) for i in range(80)))[:1560]


def test_postfix_relayhost_into_esad_then_postfix_mx():
    tmp = peer_tmpdir()
    relay = mx = d = None
    try:
        mx = Postfix(os.path.join(tmp, "mx"), "mx.pf.test", domains=["pf.test"])
        mx.start()
        esad_port = free_port()
        relay = Postfix(os.path.join(tmp, "relay"), "relay.src.test",
                        relayhost=f"[127.0.0.1]:{esad_port}")
        relay.start()
        d = esad_daemon(f"pf.test [127.0.0.1]:{mx.port}\nALL [127.0.0.1]:9\n",
                        listen_port=esad_port)
        css_body = b"<style>\r\n" + CSS + b"\r\n</style>\r\nafter the style sheet\r\n"
        css = (b"From: <a@src.test>\r\nTo: <css@pf.test>\r\nSubject: css\r\n"
               b"Message-ID: <css@src.test>\r\n\r\n" + css_body)
        plain_body = (b".starts with a dot\r\n.\r\n" + b"d" * 998 + b"\r\n." + b"d" * 997 +
                      b"\r\n" + "Gr\u00fc\u00dfe\r\n".encode())
        plain = (b"From: <a@src.test>\r\nTo: <plain@pf.test>\r\nSubject: plain\r\n"
                 b"Message-ID: <plain@src.test>\r\nMIME-Version: 1.0\r\n"
                 b"Content-Type: text/plain; charset=utf-8\r\n"
                 b"Content-Transfer-Encoding: 8bit\r\n\r\n" + plain_body)
        inject(relay.port, "a@src.test", ["css@pf.test"], css)
        inject(relay.port, "a@src.test", ["plain@pf.test"], plain, eight_bit=True)

        def arrived():
            return {header_values(m, "Delivered-To")[0]: m for m in mx.messages()}

        try:
            wait_until(lambda: len(arrived()) == 2, 60, "both messages at the MX")
        except AssertionError:
            raise AssertionError(f"at the MX: {sorted(arrived())}\n--- relay Postfix log:\n"
                                 f"{relay.maillog()}\n--- esad mail log:\n{mail_log(d)}")
        got = arrived()
        # The relay handed both to esad.
        assert relay.maillog().count("status=sent") == 2, relay.maillog()
        # The CSS line: nothing over 998 octets reached the MX, the content is intact once
        # the CRLF SPACE folds are taken out.
        _, body = split_message(got["css@pf.test"])
        assert all(len(l) <= 998 for l in body.split(b"\r\n")), [len(l) for l in body.split(b"\r\n")]
        assert body.replace(b"\r\n ", b"") == css_body, body
        # No folding applies to the other message: byte-identical.
        assert split_message(got["plain@pf.test"])[1] == plain_body, got["plain@pf.test"]
        wait_until(lambda: active(d) == 0, 20, "esad to finish")
    finally:
        if d:
            d.cleanup()
        for p in (relay, mx):
            if p:
                p.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run_tests([test_postfix_relayhost_into_esad_then_postfix_mx])
