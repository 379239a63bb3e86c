#!/usr/bin/python3
"""Pipelining flood: N clients each send EHLO, MAIL and then pipelined RCPT TO lines
without ever reading a reply, against a running esad; prints esad's RSS before, at the
peak and after the clients closed.

  bench/flood.py --port 2525 --pid $(pidof esad) --clients 100 --mib 21

Give esad a recipient limit above what a stalled client can send ([listener]
max_recipients = 100000) and allow relaying from the flooding address, so that every RCPT
is accepted and no error limit ends the session: only back-pressure bounds the memory."""
import argparse
import socket
import threading
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--mib", type=float, default=21, help="RCPT bytes each client tries to send")
    ap.add_argument("--stall", type=float, default=5, help="seconds a blocked send waits")
    a = ap.parse_args()
    chunk = b"".join(b"RCPT TO:<user%07d@dest.example>\r\n" % i for i in range(2000))
    budget = int(a.mib * (1 << 20))
    sent = [0] * a.clients
    socks = []
    peak = [rss_kib(a.pid)]
    base = peak[0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_kib(a.pid))
            time.sleep(0.1)

    def client(i):
        s = socket.create_connection(("127.0.0.1", a.port), timeout=a.stall)
        socks.append(s)
        s.sendall(b"EHLO flood.example\r\nMAIL FROM:<f@flood.example>\r\n")
        try:
            while sent[i] < budget:
                sent[i] += s.send(chunk)
        except OSError:
            pass

    t = threading.Thread(target=sample)
    t.start()
    workers = [threading.Thread(target=client, args=(i,)) for i in range(a.clients)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    during = rss_kib(a.pid)
    for s in socks:
        s.close()
    time.sleep(2)
    done.set()
    t.join()
    after = rss_kib(a.pid)
    print(f"clients {a.clients}, accepted by the kernel per client: "
          f"max {max(sent) / (1 << 20):.1f} MiB (of {a.mib} MiB tried)")
    print(f"esad RSS: before {base / 1024:.1f} MiB, peak {peak[0] / 1024:.1f} MiB, "
          f"while stalled {during / 1024:.1f} MiB, 2 s after close {after / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
