"""The Prometheus endpoint ([metrics] address, docs/metrics.md) against the real binary,
scraped with curl: the exposition format (checked by a parser of the text format here, and by
`promtool check metrics` when it is installed), counters and gauges after injection, the
per-host series (top N by active recipients plus every down host), a live reload of
top_hosts, and the HTTP edges (404, oversize head, a client that sends nothing)."""
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import time

from esad_harness import Daemon, free_port, make_body, run_tests, send_message, wait_for
from smtp_sink import SmtpSink

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"'
SAMPLE = re.compile(r"^(" + NAME + r")(?:\{(.*)\})? (\S+)(?: (-?\d+))?$")


def parse_exposition(text):
    """Parses (and validates) the Prometheus text format 0.0.4. Returns
    {family: {"type": ..., "help": ..., "samples": {frozenset(labels.items()): value}}}."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    families, current = {}, None
    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = f"line {n}: {line!r}"
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                assert re.fullmatch(NAME, name), where
                fam = families.setdefault(name, {"type": None, "help": None, "samples": {}})
                if parts[1] == "TYPE":
                    assert fam["type"] is None, "second TYPE for " + where
                    assert not fam["samples"], "TYPE after samples: " + where
                    assert parts[3] in ("counter", "gauge", "histogram", "summary", "untyped"), where
                    fam["type"] = parts[3]
                    current = name
                else:
                    assert fam["help"] is None, "second HELP for " + where
                    fam["help"] = parts[3] if len(parts) > 3 else ""
                    assert not re.search(r"\\[^\\n]", fam["help"]), "bad escape in HELP " + where
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample: " + where
        name, labels_text, value = m.group(1), m.group(2), m.group(3)
        assert name == current, f"sample outside its family ({current}): {where}"
        labels = {}
        if labels_text:
            pos = 0
            while pos < len(labels_text):
                lm = re.compile(LABEL).match(labels_text, pos)
                assert lm, "bad labels: " + where
                assert lm.group(1) not in labels, "repeated label: " + where
                labels[lm.group(1)] = (lm.group(2).replace("\\n", "\n").replace('\\"', '"')
                                       .replace("\\\\", "\\"))
                pos = lm.end()
                if pos < len(labels_text):
                    assert labels_text[pos] == ",", "bad label separator: " + where
                    pos += 1
        v = float(value)  # raises on a malformed value
        assert not math.isnan(v), where
        fam = families[name]
        if fam["type"] == "counter":
            assert name.endswith("_total") and v >= 0, where
        key = frozenset(labels.items())
        assert key not in fam["samples"], "duplicate series: " + where
        fam["samples"][key] = v
    for name, fam in families.items():
        assert fam["type"] and fam["help"], f"{name}: HELP and TYPE expected"
    return families


def value(families, name, **labels):
    return families[name]["samples"].get(frozenset(labels.items()))


def hosts_in(families, name="esad_host_active_recipients"):
    return {dict(k)["host"]: v for k, v in families[name]["samples"].items()}


def curl(url):
    """(status, headers, body) of a GET with curl."""
    r = subprocess.run(["curl", "-sS", "-i", "--max-time", "10", url], capture_output=True,
                       timeout=20)
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    return status, headers, body.decode()


def scrape(port):
    status, headers, body = curl(f"http://127.0.0.1:{port}/metrics")
    assert status == 200, (status, body)
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8", headers
    assert int(headers["content-length"]) == len(body.encode())
    assert headers["connection"] == "close"
    if shutil.which("promtool"):
        r = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True,
                           text=True)
        # promtool's lint rules are advice; only parse errors fail.
        assert "error while linting" not in r.stdout + r.stderr, r.stdout + r.stderr
    return parse_exposition(body)


def metrics_daemon(top_hosts, routes):
    d = Daemon(start=False)
    d.metrics_port = free_port()
    routes_path = os.path.join(d.dir, "routes.txt")
    with open(routes_path, "w") as f:
        f.write(routes)
    d.extra = (f'[metrics]\naddress = "127.0.0.1:{d.metrics_port}"\ntop_hosts = {{top}}\n'
               f'[routes]\nfile = "{routes_path}"\n')
    d.write_config(d.extra.format(top=top_hosts))
    d.start()
    return d


def test_scrape_counters_gauges_and_bounded_hosts():
    if not shutil.which("curl"):
        print("SKIP: curl not installed", flush=True)
        return
    live = SmtpSink()
    dead_port = free_port()  # nothing listens there
    routes = (f"dead0.test [127.0.0.1]:{dead_port}\ndead1.test [127.0.0.1]:{dead_port}\n"
              f"ALL [127.0.0.1]:{live.port}\n")
    d = metrics_daemon(3, routes)
    try:
        f = scrape(d.metrics_port)
        assert value(f, "esad_messages_received_total") == 0
        assert value(f, "esad_recovering") == 0
        assert value(f, "esad_start_time_seconds") > 0
        # The loop's busy share is sampled once a second: a ratio, and the same in status.
        assert f["esad_event_loop_busy_ratio"]["type"] == "gauge"
        assert 0 <= value(f, "esad_event_loop_busy_ratio") <= 1
        assert wait_for(lambda: 0 < d.ctl_json("status")["event_loop"]["busy_60s"] < 1, timeout=10)
        assert f["esad_messages_received_total"]["type"] == "counter"
        assert f["esad_active_recipients"]["type"] == "gauge"
        assert hosts_in(f) == {}
        (info,) = f["esad_info"]["samples"]
        assert dict(info)["hostname"] == "esad.test"

        # Held queue: every host has active recipients and none was tried yet.
        d.ctl("suspenddel")
        for dom, n in (("a.test", 3), ("b.test", 2), ("dead0.test", 1), ("dead1.test", 1)):
            rcpts = [f"u{i}@{dom}" for i in range(n)]
            assert send_message(d.smtp_port, "s@src.test", rcpts, make_body(f"m-{dom}@t"))[0] == 250
        f = scrape(d.metrics_port)
        assert value(f, "esad_messages_received_total") == 4
        assert value(f, "esad_recipients_received_total") == 7
        assert value(f, "esad_active_recipients") == 7
        assert value(f, "esad_destinations") == 4
        assert value(f, "esad_delivery_suspended") == 1
        assert value(f, "esad_spool_bytes") > 0
        assert value(f, "esad_oldest_message_timestamp_seconds") > 0
        # top_hosts = 3: the three busiest (a tie broken by name), dead1.test left out.
        assert hosts_in(f) == {"a.test": 3, "b.test": 2, "dead0.test": 1}, hosts_in(f)
        assert value(f, "esad_host_down", host="a.test") == 0

        # Delivery resumes: a and b are delivered, dead0/dead1 go down and stay listed.
        d.ctl("resumedel")
        assert wait_for(lambda: len(live.messages) == 2, timeout=15)
        assert wait_for(lambda: value(scrape(d.metrics_port), "esad_hosts_down") == 2, timeout=15)
        f = scrape(d.metrics_port)
        assert value(f, "esad_delivered_recipients_total") == 5
        assert value(f, "esad_completed_recipients_total") == 5
        assert value(f, "esad_active_recipients") == 2
        assert value(f, "esad_delivery_suspended") == 0
        assert hosts_in(f) == {"dead0.test": 1, "dead1.test": 1, "a.test": 0}, hosts_in(f)
        assert hosts_in(f, "esad_host_down") == {"dead0.test": 1, "dead1.test": 1, "a.test": 0}
        assert value(f, "esad_host_delivered_recipients_total", host="a.test") == 3
        assert value(f, "esad_host_soft_bounced_events_total", host="dead0.test") >= 1
        # Delivery content in memory: bounded by the budget, all given back once sent.
        assert value(f, "esad_delivery_content_budget_bytes") == 64 << 20
        assert value(f, "esad_delivery_content_bytes") == 0
        assert value(f, "esad_delivery_content_waiting_sessions") == 0
        content = d.ctl_json("status")["delivery_content"]
        assert content["budget_bytes"] == 64 << 20 and content["in_use_bytes"] == 0, content
        assert 0 < content["peak_bytes"] <= 64 << 20, content

        # top_hosts changes on reload: with 0 only the down hosts remain.
        d.write_config(d.extra.format(top=0))
        d.signal(signal.SIGHUP)
        assert wait_for(lambda: set(hosts_in(scrape(d.metrics_port))) == {"dead0.test", "dead1.test"},
                        timeout=10)
        assert value(scrape(d.metrics_port), "esad_reloads_total") >= 1
    finally:
        d.cleanup()
        live.close()


def raw_request(port, data, timeout=10):
    """Sends data, returns everything read until the server closes (b"" when it resets)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    out = b""
    try:
        if data:
            s.sendall(data)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
    except ConnectionResetError:
        return out
    finally:
        s.close()


def test_http_edges():
    if not shutil.which("curl"):
        print("SKIP: curl not installed", flush=True)
        return
    d = metrics_daemon(20, "")
    try:
        port = d.metrics_port
        assert curl(f"http://127.0.0.1:{port}/")[0] == 404
        assert curl(f"http://127.0.0.1:{port}/metrics/x")[0] == 404
        assert curl(f"http://127.0.0.1:{port}/metrics?x=1")[0] == 200
        r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                            f"http://127.0.0.1:{port}/metrics"], capture_output=True, text=True)
        assert r.stdout == "404", r.stdout
        assert raw_request(port, b"GET /metrics HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200 OK\r\n")
        assert raw_request(port, b"nonsense\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        # A head that never ends is cut off at 8 KiB.
        assert raw_request(port, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000).startswith(
            b"HTTP/1.1 431 ")
        # A client that sends nothing is closed after the 5 s deadline, not kept forever.
        start = time.time()
        assert raw_request(port, b"", timeout=15) == b""
        assert 4 <= time.time() - start < 10
        # Idle clients cannot hold the endpoint: past 16 they are closed at once, and the 16
        # are closed at their deadline, after which a scrape gets through again.
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        try:
            assert wait_for(lambda: raw_request(port, b"GET /metrics HTTP/1.1\r\n\r\n")
                            .startswith(b"HTTP/1.1 200"), timeout=10)
        finally:
            for s in idle:
                s.close()
        # The daemon still answers and stops cleanly.
        assert d.ctl_json("status")["system_status"]
        assert d.stop() == 0
    finally:
        d.cleanup()


def test_metrics_off_by_default_and_bad_address_rejected():
    d = Daemon(start=False)
    try:
        d.write_config('[metrics]\naddress = "nonsense"\n')
        r = subprocess.run([os.environ.get("ESAD_BIN", "build/test/esad"), "--config",
                            d.config_path, "--check-config"], capture_output=True, text=True)
        assert r.returncode == 2 and "metrics.address" in r.stderr, r.stderr
        d.write_config("")
        d.start()
        assert "metrics:" not in d.read_log()
    finally:
        d.cleanup()


if __name__ == "__main__":
    run_tests([
        test_scrape_counters_gauges_and_bounded_hosts,
        test_http_edges,
        test_metrics_off_by_default_and_bad_address_rejected,
    ])
