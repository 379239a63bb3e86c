#!/usr/bin/python3
"""fake_dns — a scripted authoritative DNS server for the resolver tests (stdlib only).

Listens on UDP and TCP 127.0.0.1, the same port (0 → chosen by the kernel), and prints one
line "PORT PID" on stdout. Serves the fixed zone below. It exits on SIGTERM, when its parent
goes away, or after --idle seconds without a query.

Special names (under esad.test):
  servfail / refused   answer SERVFAIL / REFUSED
  timeout              never answers
  garbage              a NOERROR answer whose record overruns the message
  chase                CNAME to mx.esad.test, sent without the target's records
  loop1 / loop2        a CNAME loop (the server stops after 10 hops)
  big                  40 MX records: too large for 512-byte UDP → TC bit → TCP
  huge                 ~26 KB of TXT (TCP): over the resolver's answer cap
  many                 300 A records
  count.<name>         TXT "udp=N tcp=M": queries seen for <name> (any type), not counted
Anything not in the zone is NXDOMAIN; a known name without the type is NODATA.
"""
import argparse
import os
import selectors
import signal
import socket
import struct
import sys
import time

A, NS, CNAME, SOA, PTR, MX, TXT, AAAA = 1, 2, 5, 6, 12, 15, 16, 28
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, REFUSED = 0, 1, 2, 3, 5


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def rd_a(ip):
    return socket.inet_pton(socket.AF_INET, ip)


def rd_aaaa(ip):
    return socket.inet_pton(socket.AF_INET6, ip)


def rd_mx(pref, host):
    return struct.pack("!H", pref) + encode_name(host)


def rd_txt(*strings):
    out = b""
    for s in strings:
        b = s.encode() if isinstance(s, str) else s
        out += bytes([len(b)]) + b
    return out


Z = "esad.test"
ZONE = {}  # (name, type) -> [(ttl, rdata)]
CNAMES = {}  # name -> (ttl, target)


def add(name, rtype, ttl, rdata):
    ZONE.setdefault((name, rtype), []).append((ttl, rdata))


add("mx." + Z, MX, 300, rd_mx(10, "mx1." + Z))
add("mx." + Z, MX, 300, rd_mx(20, "mx2." + Z))
add("mx." + Z, MX, 300, rd_mx(20, "MX3." + Z))
add("mx." + Z, MX, 300, rd_mx(5, "mx0." + Z))
add("mx1." + Z, A, 120, rd_a("192.0.2.1"))
add("mx1." + Z, AAAA, 180, rd_aaaa("2001:db8::1"))
add("mx2." + Z, A, 120, rd_a("192.0.2.2"))
add("mx2." + Z, A, 120, rd_a("192.0.2.3"))
add("mx3." + Z, AAAA, 120, rd_aaaa("2001:db8::3"))
add("mx0." + Z, A, 120, rd_a("192.0.2.10"))
add("v4only." + Z, A, 60, rd_a("192.0.2.4"))
add("v6only." + Z, AAAA, 60, rd_aaaa("2001:db8::6"))
add("nullmx." + Z, MX, 300, rd_mx(0, "."))
add("nullmx." + Z, A, 300, rd_a("192.0.2.99"))
add("txt." + Z, TXT, 30, rd_txt("v=spf1 -all", 'say "hi"'))
# Delivery tests (esad with [dns] allow_loopback): MX hosts on loopback addresses.
add("deliver." + Z, MX, 300, rd_mx(10, "mx-local." + Z))
add("deliver." + Z, MX, 300, rd_mx(20, "mx-backup." + Z))
add("mx-local." + Z, A, 300, rd_a("127.0.0.1"))
add("mx-backup." + Z, A, 300, rd_a("127.0.0.1"))
add("implicit." + Z, A, 300, rd_a("127.0.0.1"))
# IDN: "münchen.esad.test" exists only by its A-label.
add("xn--mnchen-3ya." + Z, MX, 300, rd_mx(10, "mx-local." + Z))
add("deadmx." + Z, MX, 300, rd_mx(10, "mx-dead." + Z))
add("mx-dead." + Z, A, 300, rd_a("127.0.0.3"))
add("1.2.0.192.in-addr.arpa", PTR, 600, encode_name("mx1." + Z))
CNAMES["alias." + Z] = (400, "alias2." + Z)
CNAMES["alias2." + Z] = (200, "mx." + Z)
CNAMES["www." + Z] = (100, "mx1." + Z)
CNAMES["chase." + Z] = (100, "mx." + Z)
CNAMES["loop1." + Z] = (100, "loop2." + Z)
CNAMES["loop2." + Z] = (100, "loop1." + Z)
for i in range(40):
    add("big." + Z, MX, 300, rd_mx(10 + i, "exchanger-number-%02d.a-rather-long-provider-name.%s" % (i, Z)))
for i in range(100):
    add("huge." + Z, TXT, 300, rd_txt("%03d" % i + "x" * 240))
for i in range(300):
    add("many." + Z, A, 300, rd_a("198.51.%d.%d" % (100 + i // 250, i % 250 + 1)))
KNOWN = {n for (n, _t) in ZONE} | set(CNAMES) | {
    s + "." + Z for s in ("servfail", "refused", "timeout", "garbage")}

COUNTS = {}  # name -> [udp, tcp]


def parse_query(data):
    if len(data) < 12:
        return None
    qid, flags, qd = struct.unpack("!HHH", data[:6])
    if qd != 1:
        return None
    pos, labels = 12, []
    while True:
        if pos >= len(data):
            return None
        n = data[pos]
        pos += 1
        if n == 0:
            break
        if n & 0xC0 or pos + n > len(data):
            return None
        labels.append(data[pos:pos + n].decode("ascii", "replace"))
        pos += n
    if pos + 4 > len(data):
        return None
    qtype, qclass = struct.unpack("!HH", data[pos:pos + 4])
    return qid, flags, ".".join(labels).lower(), qtype, data[12:pos + 4]


def rr(owner, qname, rtype, ttl, rdata):
    # The owner is compressed to the question name when it is the same (offset 12).
    name = b"\xc0\x0c" if owner == qname else encode_name(owner)
    return name + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


def respond(data, tcp):
    q = parse_query(data)
    if q is None:
        return None
    qid, flags, qname, qtype, question = q
    rd = flags & 0x0100
    if qname.startswith("count."):
        target = qname[len("count."):]
        udp_n, tcp_n = COUNTS.get(target, [0, 0])
        answers = [rr(qname, qname, TXT, 0, rd_txt("udp=%d tcp=%d" % (udp_n, tcp_n)))]
        return build(qid, rd, NOERROR, question, answers)
    COUNTS.setdefault(qname, [0, 0])[1 if tcp else 0] += 1
    short = qname[:-len(Z) - 1] if qname.endswith("." + Z) else ""
    if short == "timeout":
        return None
    if short == "servfail":
        return build(qid, rd, SERVFAIL, question, [])
    if short == "refused":
        return build(qid, rd, REFUSED, question, [])
    if short == "garbage":
        bad = b"\xc0\x0c" + struct.pack("!HHIH", A, 1, 60, 40) + b"\x01\x02"
        return build(qid, rd, NOERROR, question, [bad])
    answers, name = [], qname
    for _ in range(10):
        if name not in CNAMES:
            break
        ttl, target = CNAMES[name]
        answers.append(rr(name, qname, CNAME, ttl, encode_name(target)))
        if qtype == CNAME:
            return build(qid, rd, NOERROR, question, answers)
        name = target
        if qname.startswith("chase."):
            return build(qid, rd, NOERROR, question, answers)
    for ttl, rdata in ZONE.get((name, qtype), []):
        answers.append(rr(name, qname, qtype, ttl, rdata))
    if not answers and name not in KNOWN:
        return build(qid, rd, NXDOMAIN, question, [])
    resp = build(qid, rd, NOERROR, question, answers)
    if not tcp and len(resp) > 512:
        resp = build(qid, rd, NOERROR, question, [], truncated=True)
    return resp


def build(qid, rd, rcode, question, answers, truncated=False):
    flags = 0x8000 | 0x0400 | rd | 0x0080 | rcode  # QR AA RD? RA rcode
    if truncated:
        flags |= 0x0200
    return struct.pack("!HHHHHH", qid, flags, 1, len(answers), 0, 0) + question + b"".join(answers)


def bind_pair():
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            t.bind(("127.0.0.1", port))
        except OSError:
            u.close()
            t.close()
            continue
        t.listen(16)
        return u, t, port
    raise SystemExit("fake_dns: no free port pair")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", type=float, default=120.0)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    parent = os.getppid()
    udp, listener, port = bind_pair()
    print(port, os.getpid(), flush=True)
    sel = selectors.DefaultSelector()
    sel.register(udp, selectors.EVENT_READ, "udp")
    sel.register(listener, selectors.EVENT_READ, "listen")
    buffers = {}
    last = time.monotonic()
    while True:
        if os.getppid() != parent or time.monotonic() - last > args.idle:
            return
        for key, _ev in sel.select(timeout=0.5):
            last = time.monotonic()
            if key.data == "udp":
                data, peer = udp.recvfrom(4096)
                resp = respond(data, tcp=False)
                if resp is not None:
                    udp.sendto(resp, peer)
            elif key.data == "listen":
                conn, _ = listener.accept()
                sel.register(conn, selectors.EVENT_READ, "tcp")
                buffers[conn] = b""
            else:
                conn = key.fileobj
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    sel.unregister(conn)
                    buffers.pop(conn, None)
                    conn.close()
                    continue
                buf = buffers[conn] + chunk
                while len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
                    n = struct.unpack("!H", buf[:2])[0]
                    resp = respond(buf[2:2 + n], tcp=True)
                    buf = buf[2 + n:]
                    if resp is not None:
                        conn.sendall(struct.pack("!H", len(resp)) + resp)
                buffers[conn] = buf


if __name__ == "__main__":
    main()
