#!/usr/bin/python3
"""Delivery memory: many concurrent outbound sessions of large messages to slow sinks.

Injects --messages messages of --size octets, each addressed to one recipient in each of
--domains domains (d0.bench ... routed to one slow sink on 127.0.0.1), so that
messages x domains deliveries are due at once; esad opens up to 5 connections per domain at
first (the slow-start window), hence --domains 400 --messages 5 = 2,000 concurrent sessions.
The sink (a child process, asyncio) accepts every connection and, once in DATA, reads 4 KiB
per --read-delay seconds, so every session stays in DATA. esad's RSS is sampled from
/proc every 0.25 s; the run ends --hold seconds after --target sessions were in DATA at once
(or at --deadline), and prints the peak RSS against --limit-mib.

  ESAD_BIN=build/release/esad ESACTL_BIN=build/release/esactl bench/memory.py
  bench/memory.py --domains 20 --messages 5     # 100 sessions (a build that loads whole messages)

As root it re-executes itself in a private network namespace (unshare --net) with small TCP
buffers (net.ipv4.tcp_wmem/tcp_rmem max 256 KiB), so the kernel does not hold gigabytes of
socket buffers for the slow sinks; no packet can leave the machine either way. The spool
holds messages x size octets (5 x 10 MB by default) under a temporary directory.
Python 3 standard library and tests/support/esad_harness.py only.
"""
import argparse
import asyncio
import os
import socket
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "support"))


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# ---- the slow sink (run as a child: python3 memory.py --sink) ----------------------------

def run_sink(read_delay, rcvbuf):
    state = {"data": 0, "conns": 0, "done": 0}

    async def handle(reader, writer):
        state["conns"] += 1
        in_data = False
        try:
            writer.write(b"220 slow sink ESMTP\r\n")
            while True:
                if not in_data:
                    line = await reader.readline()
                    if not line:
                        break
                    verb = line[:4].upper()
                    if verb == b"EHLO":
                        writer.write(b"250-sink\r\n250-8BITMIME\r\n250-PIPELINING\r\n"
                                     b"250 SIZE 100000000\r\n")
                    elif verb == b"DATA":
                        writer.write(b"354 go ahead\r\n")
                        in_data = True
                        state["data"] += 1
                        tail = b""
                    elif verb == b"QUIT":
                        writer.write(b"221 bye\r\n")
                        break
                    else:
                        writer.write(b"250 ok\r\n")
                    await writer.drain()
                    continue
                chunk = await reader.read(4096)
                if not chunk:
                    break
                tail = (tail + chunk)[-5:]
                if tail == b"\r\n.\r\n":
                    in_data = False
                    state["data"] -= 1
                    state["done"] += 1
                    writer.write(b"250 queued\r\n")
                    await writer.drain()
                    continue
                await asyncio.sleep(read_delay)
        except (ConnectionError, OSError):
            pass
        finally:
            if in_data:
                state["data"] -= 1
            state["conns"] -= 1
            writer.close()

    async def report():
        while True:
            print(f"sink {state['conns']} {state['data']} {state['done']}", flush=True)
            await asyncio.sleep(0.25)

    async def main():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # inherited by accepts
        sock.bind(("127.0.0.1", 0))
        sock.listen(4096)
        server = await asyncio.start_server(handle, sock=sock, limit=65536)
        print(f"port {sock.getsockname()[1]}", flush=True)
        asyncio.ensure_future(report())
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# ---- the driver ---------------------------------------------------------------------------

def enter_netns():
    """Re-executes in a private network namespace with small TCP buffers (root only)."""
    if os.geteuid() != 0 or os.environ.get("ESAD_BENCH_NETNS"):
        return
    env = dict(os.environ, ESAD_BENCH_NETNS="1")
    script = ("ip link set lo up && "
              "sysctl -qw net.ipv4.tcp_wmem='4096 16384 262144' && "
              "sysctl -qw net.ipv4.tcp_rmem='4096 65536 262144' && "
              'exec "$0" "$@"')
    os.execvpe("unshare", ["unshare", "--net", "sh", "-c", script, sys.executable,
                           os.path.abspath(__file__), *sys.argv[1:]], env)


def make_body(size):
    head = b"From: bench@src.bench\r\nSubject: memory bench\r\nMessage-ID: <m@bench>\r\n\r\n"
    line = b"x" * 76 + b"\r\n"
    n = (size - len(head)) // len(line)
    return head + line * n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--domains", type=int, default=400)
    ap.add_argument("--messages", type=int, default=5)
    ap.add_argument("--size", type=int, default=10_000_000)
    ap.add_argument("--target", type=int, default=0, help="sessions in DATA (default all)")
    ap.add_argument("--hold", type=float, default=30, help="seconds sampled after the target")
    ap.add_argument("--deadline", type=float, default=600)
    ap.add_argument("--read-delay", type=float, default=0.5)
    ap.add_argument("--rcvbuf", type=int, default=16384)
    ap.add_argument("--limit-mib", type=float, default=256)
    ap.add_argument("--delivery-extra", default="", help="lines for [delivery]")
    a = ap.parse_args()
    if a.sink:
        return run_sink(a.read_delay, a.rcvbuf)
    enter_netns()
    import esad_harness as h  # after the re-exec: ESAD_BIN / ESACTL_BIN from the environment

    target = a.target or a.domains * a.messages
    sink = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--sink",
                             "--read-delay", str(a.read_delay), "--rcvbuf", str(a.rcvbuf)],
                            stdout=subprocess.PIPE, text=True)
    port = int(sink.stdout.readline().split()[1])
    counts = {"conns": 0, "data": 0, "done": 0}

    def read_sink():
        for line in sink.stdout:
            f = line.split()
            if f and f[0] == "sink":
                counts["conns"], counts["data"], counts["done"] = map(int, f[1:4])

    threading.Thread(target=read_sink, daemon=True).start()
    d = h.delivery_daemon(
        routes=f"ALL [127.0.0.1]:{port}\n",
        delivery_extra=f"max_concurrency = 100000\n{a.delivery_extra}\n")
    try:
        pid = d.proc.pid
        base = rss_kib(pid)
        body = make_body(a.size)
        rcpts = [f"u@d{i}.bench" for i in range(a.domains)]
        t0 = time.time()
        for m in range(a.messages):
            code, text = h.send_message(d.smtp_port, "bench@src.bench", rcpts, body)
            if code != 250:
                sys.exit(f"injection refused: {code} {text}")
        print(f"injected {a.messages} x {len(body)} octets to {a.domains} domains "
              f"in {time.time() - t0:.1f} s; esad RSS {rss_kib(pid) / 1024:.1f} MiB",
              flush=True)
        peak = peak_at_target = 0
        max_data = 0
        reached = None
        start = time.time()
        last_print = 0
        while time.time() - start < a.deadline:
            rss = rss_kib(pid)
            peak = max(peak, rss)
            max_data = max(max_data, counts["data"])
            if counts["data"] >= target and reached is None:
                reached = time.time()
                print(f"{counts['data']} sessions in DATA after {reached - start:.1f} s",
                      flush=True)
            if reached is not None:
                peak_at_target = max(peak_at_target, rss)
                if time.time() - reached >= a.hold:
                    break
            if time.time() - last_print >= 5:
                last_print = time.time()
                print(f"  t={time.time() - start:5.1f}s sink connections {counts['conns']}, "
                      f"in DATA {counts['data']}, delivered {counts['done']}, "
                      f"esad RSS {rss / 1024:.1f} MiB", flush=True)
            time.sleep(0.25)
        log = h.mail_log(d)
        errors = [l for l in log.splitlines() if "Connection Error" in l]
        print(f"mail log: {log.count('New SMTP DCID')} connections, {len(errors)} connection "
              f"errors{': ' + errors[0] if errors else ''}", flush=True)
        verdict = "under" if peak / 1024 < a.limit_mib else "OVER"
        print(f"RESULT sessions in DATA at once: max {max_data} (target {target}); "
              f"esad RSS: idle {base / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB "
              f"({verdict} {a.limit_mib:.0f} MiB)"
              + (f", peak while >= target in DATA {peak_at_target / 1024:.1f} MiB"
                 if reached else ", target never reached"), flush=True)
    finally:
        d.kill9()
        d.cleanup()
        sink.kill()


if __name__ == "__main__":
    main()
