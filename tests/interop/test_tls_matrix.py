"""Every destination TLS policy against every kind of peer, checked at the peer.

Peers: Postfix with a certificate from the test CA for the MX name (mx-local.esad.test), with
a self-signed certificate for that name, with a CA-signed certificate for another name, a
server that offers STARTTLS and then sends bytes that are not TLS, and Exim 4 with a
CA-signed certificate. esad trusts the test CA
([delivery] tls_ca_file); each policy × peer is its own destination domain, routed by
name to the peer's port (the scripted DNS resolves the MX name to 127.0.0.1).

Expected (README, TLS):
  none              plaintext to everyone (Postfix's Received says "with ESMTP")
  preferred         encrypted to all three Postfix ("with ESMTPS"); the broken stack may be
                    retried in plaintext
  preferred-verify  encrypted to all three Postfix, verified only with the CA-signed
                    certificate, never plaintext because a certificate did not verify; the
                    broken stack may be retried in plaintext (the handshake failed)
  required          encrypted to all three Postfix; the broken stack: deferred, never plaintext
  required-verify   encrypted and verified to the CA-signed Postfix; everything else
                    deferred, nothing delivered, never plaintext
"""
import os
import shutil
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from esad_harness import run_tests  # noqa: E402
from interop_peers import (BrokenTlsServer, Exim, Postfix, TestCA, domain_debug_log,  # noqa: E402
                           esad_daemon, header_values, inject, mail_log, peer_tmpdir,
                           recipients, start_dns, wait_until)

MX = "mx-local.esad.test"
POLICIES = ["none", "preferred", "preferred-verify", "required", "required-verify"]
PEERS = ["ca", "self", "wrong", "broken", "exim"]

# policy, peer -> "plain" (delivered without TLS), "tls" (delivered encrypted, not
# necessarily verified), "verified" (delivered encrypted and verified), "deferred"
# (not delivered, held), "plain-retry" (delivered in plaintext after a failed handshake).
EXPECTED = {
    ("none", "ca"): "plain", ("none", "self"): "plain", ("none", "wrong"): "plain",
    ("none", "broken"): "plain",
    ("preferred", "ca"): "tls", ("preferred", "self"): "tls", ("preferred", "wrong"): "tls",
    ("preferred", "broken"): "plain-retry",
    ("preferred-verify", "ca"): "verified", ("preferred-verify", "self"): "unverified",
    ("preferred-verify", "wrong"): "unverified", ("preferred-verify", "broken"): "plain-retry",
    ("required", "ca"): "tls", ("required", "self"): "tls", ("required", "wrong"): "tls",
    ("required", "broken"): "deferred",
    ("required-verify", "ca"): "verified", ("required-verify", "self"): "deferred",
    ("required-verify", "wrong"): "deferred", ("required-verify", "broken"): "deferred",
    # Exim 4 with the CA-signed certificate: the same as the CA-signed Postfix.
    ("none", "exim"): "plain", ("preferred", "exim"): "tls",
    ("preferred-verify", "exim"): "verified", ("required", "exim"): "tls",
    ("required-verify", "exim"): "verified",
}


def domain(policy, peer):
    return f"{policy}.{peer}.tls.test"


def rcpt(policy, peer):
    return f"u@{domain(policy, peer)}"


def received_by_peer(raw):
    """The Received header the peer (Postfix or Exim) added: the first one."""
    return header_values(raw, "Received")[0]


def test_tls_policy_matrix():
    tmp = peer_tmpdir()
    pfs, brokens, d, dns, ex = {}, {}, None, None, None
    try:
        ca = TestCA(os.path.join(tmp, "ca"))
        certs = {"ca": ca.issue(MX, tag="good"), "self": ca.self_signed(MX),
                 "wrong": ca.issue("wrong-name.esad.test")}
        for peer, cert in certs.items():
            pfs[peer] = Postfix(os.path.join(tmp, "pf-" + peer), f"{peer}.peer.test",
                                domains=[domain(p, peer) for p in POLICIES], tls=cert)
        ex = Exim(os.path.join(tmp, "exim"), "exim.peer.test",
                  domains=[domain(p, "exim") for p in POLICIES], tls=ca.issue(MX, tag="exim"))
        starters = [threading.Thread(target=pf.start) for pf in [*pfs.values(), ex]]
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        for pf in pfs.values():
            assert pf.started, pf.maillog()
        assert ex.proc and ex.proc.poll() is None, ex.mainlog()
        # One broken server per policy, so that each session is known to be that policy's.
        brokens = {p: BrokenTlsServer() for p in POLICIES}
        dns, dns_port = start_dns()

        def port(p, peer):
            if peer == "broken":
                return brokens[p].port
            return ex.port if peer == "exim" else pfs[peer].port

        routes = "".join(f"{domain(p, peer)} {MX}:{port(p, peer)}\n"
                         for p in POLICIES for peer in PEERS)
        dest = "".join(f'[destinations."{domain(p, peer)}"]\ntls = "{p}"\n'
                       for p in POLICIES for peer in PEERS)
        debug = ", ".join(f'"{domain(p, peer)}"' for p in POLICIES for peer in PEERS)
        d = esad_daemon(routes, dns_port=dns_port,
                        extra=f'[delivery]\ntls_ca_file = "{ca.cert}"\n{dest}'
                              f'[logging]\ndomain_debug = [{debug}]\n')
        for p in POLICIES:
            for peer in PEERS:
                inject(d.smtp_port, "a@src.test", [rcpt(p, peer)],
                       f"Subject: {p} {peer}\r\nMessage-ID: <{p}.{peer}@src.test>\r\n\r\n"
                       f"policy {p} to peer {peer}\r\n".encode())

        def delivered():
            out = {}
            for peer, pf in pfs.items():
                for m in pf.messages():
                    out[header_values(m, "Delivered-To")[0]] = m
            for m in ex.messages():
                out[header_values(m, "Envelope-to")[0]] = m
            for b in brokens.values():
                for r in b.delivered_to():
                    out[r] = b
            return out

        deferred = {rcpt(p, peer) for (p, peer), e in EXPECTED.items() if e == "deferred"}
        deliverable = {rcpt(p, peer) for (p, peer) in EXPECTED} - deferred

        def settled():
            if not deliverable <= set(delivered()):
                return False
            rows = {r["recipient"]: r for r in recipients(d)}
            return all(r in rows and rows[r]["attempts"] >= 1 for r in deferred)

        try:
            wait_until(settled, 120, "every delivery made and every deferral recorded")
        except AssertionError:
            raise AssertionError(
                f"delivered: {sorted(delivered())}\nqueued: {recipients(d)}\n"
                f"esad mail log:\n{mail_log(d)}")
        got = delivered()
        rows = {r["recipient"]: r for r in recipients(d)}
        problems = []
        for (p, peer), expected in sorted(EXPECTED.items()):
            r = rcpt(p, peer)
            if expected == "deferred":
                if r in got:
                    problems.append(f"{p} x {peer}: delivered, expected deferred")
                elif r not in rows:
                    problems.append(f"{p} x {peer}: no longer queued (bounced?)")
                continue
            if peer == "broken":
                continue  # checked at the server below
            hdr = received_by_peer(got[r])
            encrypted = any(f" with {w} " in hdr for w in ("ESMTPS", "UTF8SMTPS", "esmtps",
                                                            "utf8esmtps"))
            if expected == "plain" and encrypted:
                problems.append(f"{p} x {peer}: encrypted, expected plaintext: {hdr}")
            if expected != "plain" and not encrypted:
                problems.append(f"{p} x {peer}: delivered in PLAINTEXT: {hdr}")
        # required-verify to the self-signed / wrong-name Postfix: it never saw the recipient.
        for peer in ("self", "wrong"):
            if rcpt("required-verify", peer) in pfs[peer].maillog():
                problems.append(f"required-verify x {peer}: Postfix saw the recipient:\n"
                                f"{pfs[peer].maillog()}")
        # The broken stacks, per policy.
        for p, b in brokens.items():
            tried = [s for s in b.sessions if s["starttls"]]
            for s in tried:
                if b"MAIL FROM" in s["after_starttls"] or b"EHLO" in s["after_starttls"]:
                    problems.append(f"{p} x broken: cleartext SMTP after STARTTLS in the same "
                                    f"session: {s['after_starttls'][:200]!r}")
            if p == "none":
                if tried:
                    problems.append("none x broken: STARTTLS was tried")
                continue
            if not tried:
                problems.append(f"{p} x broken: STARTTLS never tried: {b.sessions}")
            if p.startswith("required"):
                mails = [c for s in b.sessions for c in s["commands"] if c.upper().startswith("MAIL")]
                if mails:
                    problems.append(f"{p} x broken: MAIL sent in plaintext: {mails}")
        # Verification as esad recorded it (domain debug log).
        def recorded(dom, text):
            return lambda: text in _debug_for(domain_debug_log(d), dom)
        for dom, text in [(domain("preferred-verify", "ca"), "certificate verified"),
                          (domain("required-verify", "exim"), "certificate verified"),
                          (domain("required-verify", "ca"), "certificate verified"),
                          (domain("preferred-verify", "self"), "certificate not verified"),
                          (domain("preferred-verify", "wrong"), "certificate not verified")]:
            try:
                wait_until(recorded(dom, text), 10, f"'{text}' for {dom}")
            except AssertionError:
                problems.append(f"{dom}: '{text}' not in the domain debug log:\n"
                                f"{_debug_for(domain_debug_log(d), dom)[-1500:]}")
        assert not problems, "\n".join(problems) + "\n\nesad mail log:\n" + mail_log(d)
    finally:
        if d:
            d.cleanup()
        for pf in pfs.values():
            pf.stop()
        if ex:
            ex.stop()
        for b in brokens.values():
            b.close()
        if dns:
            dns.terminate()
        shutil.rmtree(tmp, ignore_errors=True)


def _debug_for(log, dom):
    return "\n".join(line for line in log.splitlines() if f"domain {dom}:" in line)


if __name__ == "__main__":
    run_tests([test_tls_policy_matrix])
