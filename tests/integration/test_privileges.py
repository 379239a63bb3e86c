"""Privilege drop (issue 6): esad started as root with [daemon] user binds its sockets, hands
its directories to that user and runs as it; under systemd (a non-root user with the ambient
CAP_NET_BIND_SERVICE, emulated with setpriv) it drops the capability once the listener is
bound. Needs root; prints SKIP otherwise. Uses the system's `nobody` user."""
import glob
import os
import pwd
import shutil
import socket
import subprocess

from esad_harness import Daemon, make_body, run_tests, send_message, spool_messages, wait_for

# A process that changed its uid is not dumpable, and LeakSanitizer's exit check needs to
# ptrace it: leak checking is off for these daemons only (the other tests keep it).
os.environ["ASAN_OPTIONS"] = ":".join(
    x for x in [os.environ.get("ASAN_OPTIONS", ""), "detect_leaks=0"] if x)


def skip(reason):
    print(f"SKIP: {reason}", flush=True)


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.split()
    return out


def nobody():
    pw = pwd.getpwnam("nobody")
    return pw.pw_uid, pw.pw_gid


def daemon_as(user, extra="", start=True):
    """A Daemon whose temp dir the user can traverse (mkdtemp makes it 0700)."""
    d = Daemon(start=False)
    os.chmod(d.dir, 0o755)
    d.write_config(extra)
    if user:
        with open(d.config_path) as f:
            text = f.read()
        text = text.replace("[daemon]\n", f'[daemon]\nuser = "{user}"\n', 1)
        with open(d.config_path, "w") as f:
            f.write(text)
    if start:
        d.start()
    return d


def owners_below(path):
    out = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            p = os.path.join(root, name)
            out[p] = os.lstat(p).st_uid
    return out


def test_root_drops_to_user_after_binding():
    if os.geteuid() != 0:
        return skip("not root")
    uid, gid = nobody()
    d = daemon_as("nobody")
    try:
        st = proc_status(d.proc.pid)
        assert st["Uid"] == [str(uid)] * 4, st["Uid"]
        assert st["Gid"] == [str(gid)] * 4, st["Gid"]
        assert "0" not in st.get("Groups", []), st.get("Groups")
        for cap in ("CapEff", "CapPrm", "CapAmb"):
            assert int(st[cap][0], 16) == 0, (cap, st[cap])
        assert st["NoNewPrivs"] == ["1"], st["NoNewPrivs"]
        log = d.read_log()
        assert f"now running as nobody (uid {uid}, gid {gid})" in log, log

        # Mail is accepted and spooled by the unprivileged daemon, in files it owns.
        for i in range(3):
            code, text = send_message(d.smtp_port, "a@src.test", [f"b{i}@dst.test"],
                                      make_body(f"priv-{i}@t"))
            assert code == 250, text
        assert {m["message_id"] for m in spool_messages(d.state)} == {
            f"priv-{i}@t" for i in range(3)}
        owners = owners_below(d.state)
        assert owners and set(owners.values()) == {uid}, owners
        assert os.stat(d.state).st_uid == uid

        # esactl works as root and as the daemon's user.
        assert d.ctl_json("status")["gauges"]["active_recipients"] == 3
        r = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                            os.path.abspath(os.environ.get("ESACTL_BIN", "build/test/esactl")),
                            "--socket", d.socket, "--json", "status"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        # The daemon can still remove its own socket on the way out.
        assert d.stop() == 0, d.read_log()
        assert not os.path.exists(d.socket)
    finally:
        d.cleanup()


def test_root_owned_spool_is_handed_over_and_recovered():
    if os.geteuid() != 0:
        return skip("not root")
    uid, _ = nobody()
    # First run as root without `user`: a queued message in root-owned files.
    d = daemon_as("")
    try:
        assert send_message(d.smtp_port, "a@src.test", ["b@dst.test"], make_body("old@t"))[0] == 250
        assert d.stop() == 0
        assert 0 in set(owners_below(d.state).values())
        # A hard link planted in the state dir to a root file outside it stays root's.
        outside = os.path.join(d.dir, "outside-secret")
        with open(outside, "w") as f:
            f.write("root only\n")
        os.chmod(outside, 0o600)
        os.link(outside, os.path.join(d.state, "planted-link"))
        os.symlink(outside, os.path.join(d.state, "planted-symlink"))

        with open(d.config_path) as f:
            text = f.read()
        with open(d.config_path, "w") as f:
            f.write(text.replace("[daemon]\n", '[daemon]\nuser = "nobody"\n', 1))
        d.start()
        assert proc_status(d.proc.pid)["Uid"][0] == str(uid)
        assert d.ctl_json("status")["gauges"]["active_recipients"] == 1
        assert [m["message_id"] for m in spool_messages(d.state)] == ["old@t"]
        assert os.stat(outside).st_uid == 0
        assert "not handing over" in d.read_log() and "2 hard links" in d.read_log()
        owners = owners_below(d.state)
        owners.pop(os.path.join(d.state, "planted-link"))
        owners.pop(os.path.join(d.state, "planted-symlink"))
        assert set(owners.values()) == {uid}, owners
        # The recovered message is still deliverable mail: a new one joins it.
        assert send_message(d.smtp_port, "a@src.test", ["c@dst.test"], make_body("new@t"))[0] == 250
        assert wait_for(lambda: d.ctl_json("status")["gauges"]["active_recipients"] == 2)
    finally:
        d.cleanup()


def test_refuses_bad_users_and_shared_directories():
    if os.geteuid() != 0:
        return skip("not root")
    for user, message in (("no-such-user-esad", "no user named"), ("root", "is root")):
        d = daemon_as(user, start=False)
        try:
            d.start(wait=False)
            assert d.proc.wait(15) == 1
            assert message in d.read_log(), d.read_log()
        finally:
            d.cleanup()
    # A world-writable sticky directory (like /tmp) as state_dir is never chowned.
    d = daemon_as("nobody", start=False)
    shared = os.path.join(d.dir, "shared")
    os.mkdir(shared)
    os.chmod(shared, 0o1777)
    with open(d.config_path) as f:
        text = f.read()
    with open(d.config_path, "w") as f:
        f.write(text.replace(f'state_dir = "{d.state}"', f'state_dir = "{shared}"'))
    try:
        d.start(wait=False)
        assert d.proc.wait(15) == 1
        assert "shared system directory" in d.read_log(), d.read_log()
        assert os.stat(shared).st_uid == 0
    finally:
        d.cleanup()


def privileged_port():
    """A free port below 1024 on 127.0.0.1."""
    for port in range(1020, 600, -7):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise AssertionError("no free privileged port")


def test_systemd_style_ambient_capability_is_dropped_after_binding():
    if os.geteuid() != 0:
        return skip("not root")
    if not shutil.which("setpriv"):
        return skip("setpriv not installed")
    uid, gid = nobody()
    d = daemon_as("", start=False, extra="")
    d.smtp_port = privileged_port()
    d.write_config("")
    os.makedirs(d.state)
    os.makedirs(os.path.dirname(d.socket))
    for p in (d.state, os.path.dirname(d.socket)):
        os.chown(p, uid, gid)
    # As systemd runs the unit: User=, AmbientCapabilities=CAP_NET_BIND_SERVICE.
    real_esad = os.path.abspath(os.environ.get("ESAD_BIN", "build/test/esad"))
    wrapper = os.path.join(d.dir, "esad-as-service")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nexec setpriv --reuid=%d --regid=%d --clear-groups "
                "--inh-caps=+net_bind_service --ambient-caps=+net_bind_service %s \"$@\"\n"
                % (uid, gid, real_esad))
    os.chmod(wrapper, 0o755)
    import esad_harness
    saved = esad_harness.ESAD
    esad_harness.ESAD = wrapper
    try:
        d.start()
        st = proc_status(d.proc.pid)
        assert st["Uid"][0] == str(uid)
        for cap in ("CapEff", "CapPrm", "CapAmb", "CapInh"):
            assert int(st[cap][0], 16) == 0, (cap, st[cap], d.read_log())
        assert "capabilities dropped" in d.read_log()
        assert send_message(d.smtp_port, "a@src.test", ["b@dst.test"], make_body("cap@t"))[0] == 250
        assert d.stop() == 0, d.read_log()
    finally:
        esad_harness.ESAD = saved
        d.cleanup()


if __name__ == "__main__":
    run_tests([
        test_root_drops_to_user_after_binding,
        test_root_owned_spool_is_handed_over_and_recovered,
        test_refuses_bad_users_and_shared_directories,
        test_systemd_style_ambient_capability_is_dropped_after_binding,
    ])
