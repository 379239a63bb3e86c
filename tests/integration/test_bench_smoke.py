"""Smoke run of the benchmark harness (bench/run --smoke): 2,000 messages through esad and
through a throwaway Postfix, in a private network namespace. Not a performance test: it
only proves the harness still works end to end and reports real numbers for both MTAs.
Needs root (unshare, Postfix instance); bench/run installs postfix with apt-get if missing.
"""
import json
import os
import re
import subprocess
import tempfile

from esad_harness import ESACTL, ESAD, run_tests

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "run")
NUM = r"[0-9]+(?:\.[0-9]+)?"


def test_bench_smoke():
    if os.geteuid() != 0:
        print("skip: bench/run needs root")
        return
    with tempfile.TemporaryDirectory(prefix="bench-smoke-") as tmp:
        results = os.path.join(tmp, "results.jsonl")
        r = subprocess.run(
            ["/usr/bin/python3", BENCH, "--smoke", "--esad", os.path.abspath(ESAD),
             "--esactl", os.path.abspath(ESACTL), "--results", results,
             "--delivery-grace", "10", "--timeout", "180"],
            capture_output=True, text=True, timeout=280)
        out = r.stdout
        assert r.returncode == 0, f"bench/run exited {r.returncode}:\n{out}\n{r.stderr}"
        print(out)

        # Machine facts and isolation: only lo in the namespace, nothing sent elsewhere.
        assert re.search(r"^machine: nproc=\d+ cpu=", out, re.M), out
        assert "network: private netns, interfaces: lo;" in out, out
        assert "non-loopback bytes in this namespace: 0" in out, out

        summary = re.search(r"^SUMMARY healthy: (.*)$", out, re.M)
        assert summary, out
        s = summary.group(1)
        # Injection is real for both MTAs; Postfix relays end to end.
        assert re.search(rf"inject esad={NUM} postfix={NUM} ratio={NUM}x", s), s
        assert re.search(rf"cpu_ms/msg esad={NUM} postfix={NUM}", s), s
        assert re.search(rf"rss_MiB esad={NUM} postfix={NUM}", s), s
        assert re.search(rf"e2e esad=(n/a|{NUM}) postfix={NUM}", s), s

        runs = [json.loads(line) for line in open(results)]
        by = {x["mta"]: x for x in runs if x.get("kind") == "run"}
        assert set(by) == {"esad", "postfix"}, runs
        for mta, x in by.items():
            assert x["messages"] == 2000 and x["inject_failures"] == 0, x
            assert x["inject_msg_s"] > 0 and x["cpu_ms"] > 0 and x["peak_rss_kib"] > 0, x
        assert by["postfix"]["sink_messages"] == 2000, by["postfix"]
        assert by["postfix"]["e2e_msg_s"] > 0, by["postfix"]

        esad = by["esad"]
        if esad["delivery_available"]:
            # Delivery exists: end-to-end numbers must be real and complete.
            assert re.search(rf"e2e esad={NUM} ", s), s
            assert esad["sink_messages"] == 2000 and esad["e2e_msg_s"] > 0, esad
        else:
            assert "esad end-to-end: n/a (delivery not available)" in out, out
            assert "e2e esad=n/a" in s, s
            assert esad["sink_messages"] == 0 and esad["e2e_msg_s"] is None, esad
            # Everything accepted is queued: nothing lost.
            assert esad["esad_active_recipients"] == 2000, esad


if __name__ == "__main__":
    run_tests([test_bench_smoke])
