"""Temporary failures in the middle of a session never lose a recipient nor deliver one twice.

aiosmtpd receivers: one answers 452 4.5.3 to the second RCPT of every transaction; the
others answer 421 4.3.2 and close once, each at one stage: the greeting, EHLO, MAIL, the
first RCPT, the second RCPT, DATA, the final dot. esad retries (initial_retry 1 s; the test
also says `delivernow all` now and then, as an operator would, so that a host marked down
by a 421 greeting is tried again). In the end every recipient has been accepted by its
receiver exactly once (a 421 after the final dot means the message was not taken).
"""
import collections
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from esad_harness import run_tests  # noqa: E402
from interop_peers import Receiver, active, esad_daemon, inject, mail_log, recipients  # noqa: E402

STAGES = ["greeting", "ehlo", "mail", "rcpt", "rcpt2", "data", "dot"]


def test_452_and_421_at_each_stage_deliver_every_recipient_once():
    receivers = {}
    d = None
    try:
        receivers["r452.test"] = Receiver(rcpt_452_second=True)
        for stage in STAGES:
            receivers[f"f421-{stage}.test"] = Receiver(fail_421_at=stage)
        routes = "".join(f"{dom} [127.0.0.1]:{rx.port}\n" for dom, rx in receivers.items())
        d = esad_daemon(routes)
        expected = {}
        for dom in receivers:
            rcpts = [f"one@{dom}", f"two@{dom}", f"three@{dom}"]
            if dom == "r452.test":
                rcpts.append(f"four@{dom}")
            expected[dom] = rcpts
            inject(d.smtp_port, "a@src.test", rcpts,
                   f"Subject: {dom}\r\nMessage-ID: <{dom}@src.test>\r\n\r\nonce\r\n".encode())
        # A second message to the 452 receiver in the same connection's reach.
        inject(d.smtp_port, "a@src.test", ["five@r452.test", "six@r452.test"],
               b"Subject: again\r\nMessage-ID: <again@src.test>\r\n\r\nonce\r\n")
        expected["r452.test"] += ["five@r452.test", "six@r452.test"]

        deadline = time.time() + 120
        last_kick = time.time()
        while time.time() < deadline:
            if active(d) == 0:
                break
            if time.time() - last_kick > 3:
                d.ctl("delivernow", "all", check=False)
                last_kick = time.time()
            time.sleep(0.2)
        report = {dom: sorted(rx.delivered_to()) for dom, rx in receivers.items()}
        assert active(d) == 0, (f"still queued: {recipients(d)}\ndelivered: {report}\n"
                                f"{mail_log(d)}")
        problems = []
        for dom, rx in receivers.items():
            counts = collections.Counter(rx.delivered_to())
            for r in expected[dom]:
                if counts[r] != 1:
                    problems.append(f"{dom}: {r} accepted {counts[r]} times")
            extra = set(counts) - set(expected[dom])
            if extra:
                problems.append(f"{dom}: unexpected recipients {extra}")
            if dom.startswith("f421") and not rx.failed_once:
                problems.append(f"{dom}: the 421 was never given (test did not exercise it)")
        # Nothing bounced: every failure was temporary.
        s = d.ctl_json("status")
        assert s["counters"]["delivered_recipients"]["uptime"] == sum(map(len, expected.values()))
        assert not problems, "\n".join(problems) + "\n" + mail_log(d)
        # The 452 receiver saw the second recipient deferred to a later transaction.
        assert len(receivers["r452.test"].accepted) >= 3, receivers["r452.test"].accepted
    finally:
        if d:
            d.cleanup()
        for rx in receivers.values():
            rx.close()


if __name__ == "__main__":
    run_tests([test_452_and_421_at_each_stage_deliver_every_recipient_once])
