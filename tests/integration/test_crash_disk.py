"""Crash safety and disk faults against the real binary.

* kill -9 at random moments while several clients inject: after restart every message that
  got 250 is in the spool exactly once (matched by Message-ID) and no file is partial.
* Real ENOSPC on a small tmpfs spool: 452 4.3.1, never 250 for a lost message, never 5xx.
* EIO on fsync (LD_PRELOAD shim): 451 4.3.0, then 421 4.3.2 to new sessions until a probe
  write succeeds, then mail is accepted again.
"""
import collections
import os
import random
import subprocess
import tempfile
import time

from esad_harness import (FAULT_SHIM, Daemon, Injector, SmtpClient, make_body, send_message, spool_messages,
                          wait_for, run_tests)

ROUNDS = int(os.environ.get("ESAD_CRASH_ROUNDS", "12"))


def test_kill9_never_loses_an_acknowledged_message():
    seed = int(os.environ.get("ESAD_CRASH_SEED", str(random.randrange(1 << 32))))
    print(f"    seed {seed} rounds {ROUNDS} (ESAD_CRASH_SEED replays)", flush=True)
    rng = random.Random(seed)
    d = Daemon(start=False)
    acked, attempted = set(), set()

    def message(rnd, cid, seq):
        mid = f"crash-{rnd}-{cid}-{seq}@test"
        return (mid, "a@src.test", [f"r{cid}@d{seq % 7}.test"],
                make_body(mid, size=rng.choice([500, 3000, 40000])))

    try:
        for rnd in range(ROUNDS):
            d.start()
            inj = Injector(d.smtp_port, message, rnd)
            time.sleep(rng.uniform(0.2, 0.8))
            d.kill9()
            inj.stop()
            acked |= inj.acked
            attempted |= inj.attempted
        d.start()  # recovery after the last crash
        msgs = spool_messages(d.state)
        errors = [m for m in msgs if "error" in m]
        assert not errors, errors
        counts = collections.Counter(m["message_id"] for m in msgs)
        missing = acked - set(counts)
        assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:3]}"
        dupes = [k for k, v in counts.items() if v > 1]
        assert not dupes, f"duplicated: {dupes[:3]}"
        assert set(counts) <= attempted
        assert len(acked) > ROUNDS, f"only {len(acked)} messages acknowledged: test too weak"
        s = d.ctl_json("status")
        assert s["gauges"]["active_recipients"] == len(msgs)
        print(f"    {ROUNDS} crashes, {len(acked)} acknowledged, {len(msgs)} in spool", flush=True)
    finally:
        d.cleanup()


def test_enospc_on_small_tmpfs():
    d = Daemon(start=False)
    mnt = os.path.join(d.dir, "tmpfs")
    os.makedirs(mnt)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt]).returncode != 0:
        print("    SKIP: cannot mount tmpfs", flush=True)
        d.cleanup()
        return
    try:
        d.state = mnt
        d.write_config("max_message_size = 100000\n")
        with open(d.config_path) as f:
            text = f.read()
        with open(d.config_path, "w") as f:
            f.write(text.replace("[daemon]\n", "[daemon]\nspool_min_free_bytes = 0\n", 1)
                        .replace(f'state_dir = "{os.path.join(d.dir, "state")}"', f'state_dir = "{mnt}"'))
        d.start()
        acked, codes = [], collections.Counter()
        for i in range(40):
            code, text = send_message(d.smtp_port, "a@src.test", ["b@dst.test"],
                                      make_body(f"full-{i}@t", size=60000))
            codes[code] += 1
            assert code in (250, 452, 451), (code, text)
            if code == 250:
                acked.append(f"full-{i}@t")
            else:
                assert "4.3.1" in text or "4.3.0" in text, text
        assert codes[452] > 0, codes
        ids = {m["message_id"] for m in spool_messages(mnt)}
        assert set(acked) <= ids
        # No temp file is left behind by a failed commit.
        assert os.listdir(os.path.join(mnt, "spool", "tmp")) == []
        assert d.proc.poll() is None
    finally:
        d.stop()
        subprocess.run(["umount", mnt])
        d.cleanup()


def test_fsync_eio_then_recovery():
    d = Daemon(start=False)
    flag = os.path.join(d.dir, "fsync-fails")
    env_before = dict(os.environ)
    try:
        os.environ["LD_PRELOAD"] = os.path.abspath(FAULT_SHIM)
        os.environ["ESAD_FAULT_FSYNC"] = flag
        os.environ["ASAN_OPTIONS"] = os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"
        d.start(wait=False)
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    try:
        d.wait_ready()
        assert send_message(d.smtp_port, "a@src.test", ["b@dst.test"], make_body("before@t"))[0] == 250
        open(flag, "w").close()
        code, text = send_message(d.smtp_port, "a@src.test", ["b@dst.test"], make_body("during@t"))
        assert code == 451 and "4.3.0" in text, (code, text)
        # The spool is unhealthy: new sessions are turned away with 421 4.3.2.
        c = SmtpClient(d.smtp_port)
        code, text = c.reply()
        assert code == 421 and "4.3.2" in text, (code, text)
        c.close()
        os.unlink(flag)
        # A probe write succeeds within a few seconds and mail flows again.
        def accepts():
            c = SmtpClient(d.smtp_port)
            ok = c.reply()[0] == 220
            c.close()
            return ok
        assert wait_for(accepts, timeout=10, interval=0.2)
        assert send_message(d.smtp_port, "a@src.test", ["b@dst.test"], make_body("after@t"))[0] == 250
        ids = {m["message_id"] for m in spool_messages(d.state)}
        assert ids == {"before@t", "after@t"}, ids
        assert os.listdir(os.path.join(d.state, "spool", "tmp")) == []
    finally:
        d.cleanup()


if __name__ == "__main__":
    run_tests([test_kill9_never_loses_an_acknowledged_message, test_enospc_on_small_tmpfs,
               test_fsync_eio_then_recovery])
