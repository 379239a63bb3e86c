"""kill -9 while esad injects AND delivers: nothing acknowledged is lost, and what is delivered
twice is bounded by the transactions in flight at each kill (journal records are written the
moment they exist, so a process kill loses none of them; only a transaction whose outcome was
not yet recorded is repeated).

ESAD_DELIVERY_ROUNDS (default 4) sets the number of kills; ESAD_DELIVERY_SEED replays a run
(the seed is printed); ESAD_KEEP_DIR=1 keeps the daemon's directory (logs, spool). Every
message delivered twice is listed with where its first copy arrived and whether the spool still
held it at the kill that followed; one it no longer held ("gone") is a finished message that
came back after a crash, a failure whatever the count. Runs for the default spool layout
(segment) and for [spool] layout = "flat", "hashed" and "rocksdb" (where built).
"""
import os
import random
import re
import time

from esad_harness import (Injector, delivery_daemon, make_body, require_rocksdb, spool_messages, wait_for,
                          run_tests)
from smtp_sink import SmtpSink

ROUNDS = int(os.environ.get("ESAD_DELIVERY_ROUNDS", "4"))
MAX_CONNECTIONS = 6  # [delivery] max_concurrency: at most this many transactions in flight
MESSAGE_ID = re.compile(rb"Message-ID: <([^>]+)>")


def repeated(sink, kills, live_at_kill):
    """For each message delivered twice: where its first copy arrived, counted in messages
    before the kill that followed it (a transaction in flight at the kill is among the last
    few; a finished message that came back after a crash is far earlier)."""
    first, out = {}, []
    for i, m in enumerate(list(sink.messages)):
        found = MESSAGE_ID.search(m["data"])
        if not found:
            continue
        k = found.group(1).decode()
        if k in first:
            ki = next((j for j, n in enumerate(kills) if n > first[k]), None)
            kill = kills[ki] if ki is not None else None
            live = ""
            if live_at_kill and ki is not None:
                live = " live" if k in live_at_kill[ki] else " gone"
            before = kill - first[k] if kill else "?"
            out.append(f"{k}: first copy {before} messages before a kill,{live}")
        else:
            first[k] = i
    return out


def test_kill9_during_delivery_repeats_only_in_flight_transactions(spool=""):
    seed = int(os.environ.get("ESAD_DELIVERY_SEED", str(random.randrange(1 << 32))))
    print(f"seed {seed} rounds {ROUNDS}", flush=True)
    rng = random.Random(seed)
    sink = SmtpSink()
    d = delivery_daemon(f"ALL [127.0.0.1]:{sink.port}\n", start=False,
                        delivery_extra=f"max_concurrency = {MAX_CONNECTIONS}\n", extra=spool)
    acked, attempted = set(), set()
    kills = []  # how many messages the sink had received at each kill
    live_at_kill = []

    def message(rnd, cid, seq):
        mid = f"dl-{seed}-{rnd}-{cid}-{seq}@test"
        return mid, "s@src.test", [f"r{seq}@d{seq % 7}.test"], make_body(mid, size=rng.choice([600, 5000]))

    def delivered():
        c = {}
        for m in list(sink.messages):
            found = MESSAGE_ID.search(m["data"])
            if found:
                k = found.group(1).decode()
                c[k] = c.get(k, 0) + 1
        return c

    try:
        for rnd in range(ROUNDS):
            d.start()
            inj = Injector(d.smtp_port, message, rnd, clients=4)
            # Let delivery get going (mail reaches the sink) before the kill.
            before = len(sink.messages)
            wait_for(lambda: len(sink.messages) > before + 20, timeout=30)
            time.sleep(rng.uniform(0.1, 0.8))
            d.kill9()
            kills.append(len(sink.messages))
            live_at_kill.append({m.get("message_id") for m in spool_messages(d.state)})
            inj.stop()
            acked |= inj.acked
            attempted |= inj.attempted
        d.start()  # recovery after the last crash; the queue must drain
        drained = wait_for(lambda: acked <= set(delivered()) and not spool_messages(d.state),
                           timeout=120, interval=0.5)
        c = delivered()
        missing = sorted(acked - set(c))
        duplicates = sum(n - 1 for n in c.values())
        print(f"messages {len(acked)} kills {ROUNDS} missing {len(missing)} duplicates {duplicates} "
              f"({duplicates / ROUNDS:.1f} per kill, at most {MAX_CONNECTIONS} in flight)", flush=True)
        lines = repeated(sink, kills, live_at_kill)
        for line in lines:
            print("  repeated " + line, flush=True)
        assert drained and not missing, (missing[:10], d.read_log()[-3000:])
        assert set(c) <= attempted, "a message never sent was delivered"
        assert len(acked) > 20 * ROUNDS, f"only {len(acked)} messages acknowledged: test too weak"
        assert not [l for l in lines if l.endswith(" gone")], "finished messages came back"
        assert duplicates <= MAX_CONNECTIONS * ROUNDS, duplicates
    finally:
        if os.environ.get("ESAD_KEEP_DIR"):
            d.stop()
            print("kept " + d.dir, flush=True)
        else:
            d.cleanup()
        sink.close()


def test_kill9_during_delivery_flat_layout():
    test_kill9_during_delivery_repeats_only_in_flight_transactions(spool='[spool]\nlayout = "flat"\n')


def test_kill9_during_delivery_hashed_layout():
    test_kill9_during_delivery_repeats_only_in_flight_transactions(spool='[spool]\nlayout = "hashed"\n')


def test_kill9_during_delivery_rocksdb_layout():
    require_rocksdb()
    test_kill9_during_delivery_repeats_only_in_flight_transactions(spool='[spool]\nlayout = "rocksdb"\n')


if __name__ == "__main__":
    run_tests([test_kill9_during_delivery_repeats_only_in_flight_transactions,
               test_kill9_during_delivery_flat_layout, test_kill9_during_delivery_hashed_layout,
               test_kill9_during_delivery_rocksdb_layout])
