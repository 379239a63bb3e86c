"""esad as a systemd service: the unit, its hardening score, the example configuration, the
man pages, the bash completion and the Debian package (issue 6).

The package test builds the package as docs/install.md says (tests/support/esad_package.py:
a cached RelWithDebInfo tree in build/package, then `cpack -G DEB`) and unpacks the .deb
into a scratch root with `dpkg -x`. tests/system/test_nspawn.py installs the same package
in a Debian 12 booted with systemd, and runs lintian on it.
"""
import os
import re
import shutil
import tempfile
import tomllib
from pathlib import Path

from esad_harness import ESACTL, ESAD, Daemon, run_tests
from esad_package import build_deb, run

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "esad.service"
WEB_UNIT = ROOT / "systemd" / "esad-web.service"
ESAD_WEB = os.environ.get("ESAD_WEB_BIN", "build/test/esad-web")
EXAMPLE_CONFIG = ROOT / "systemd" / "esad.toml"
MAX_EXPOSURE = 2.5


def have(tool):
    return shutil.which(tool) is not None


def skip(reason):
    print(f"SKIP: {reason}", flush=True)


def unit_directives(text):
    """[Service]/[Unit]/[Install] directives as name -> list of values."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def unit_with_binaries(unit, binaries, dest):
    """`unit` written to `dest` with each installed path in `binaries` (installed path ->
    the binary to use) replaced: verify needs the commands to exist."""
    text = unit.read_text()
    for installed, binary in binaries.items():
        assert f"={installed} " in text, (unit, installed)
        text = text.replace(f"={installed} ", f"={os.path.abspath(binary)} ")
    path = Path(dest) / unit.name
    path.write_text(text)
    return path


def units_for_host(tmp, root=None):
    """Both units with their commands pointing at the binaries under test, or at those
    unpacked below `root`."""
    def binary(installed, built):
        return root / installed.lstrip("/") if root else built
    return [unit_with_binaries(UNIT, {p: binary(p, b) for p, b in (("/usr/sbin/esad", ESAD),
                                                                   ("/usr/bin/esactl", ESACTL))},
                               tmp),
            unit_with_binaries(WEB_UNIT, {"/usr/sbin/esad-web": binary("/usr/sbin/esad-web",
                                                                       ESAD_WEB)}, tmp)]


# --- the unit --------------------------------------------------------------------------------

def test_unit_verifies():
    if not have("systemd-analyze"):
        return skip("systemd-analyze not installed")
    with tempfile.TemporaryDirectory() as tmp:
        # Documentation= man pages are checked in test_deb_contents, against the package.
        for unit in units_for_host(tmp):
            r = run("systemd-analyze", "verify", "--man=no", unit, check=False)
            assert r.returncode == 0 and unit.name not in r.stderr, r.stderr


def test_unit_directives():
    d = unit_directives(UNIT.read_text())

    def one(key):
        assert key in d, f"{key} missing"
        return d[key][-1]

    assert one("Type") == "notify"
    assert one("ExecStart") == "/usr/sbin/esad --config /etc/esad/esad.toml"
    # Synchronous: `systemctl reload` returns once esad applied the file, and fails when
    # esad rejected it (a SIGHUP would return before either).
    assert one("ExecReload") == "/usr/bin/esactl reload"
    assert one("RestartPreventExitStatus") == "2"
    assert one("Restart") == "on-failure"
    assert re.fullmatch(r"\d+s", one("WatchdogSec")), one("WatchdogSec")
    for key in ("User", "Group", "StateDirectory", "RuntimeDirectory", "LogsDirectory",
                "ConfigurationDirectory"):
        assert one(key) == "esad", key
    assert one("CapabilityBoundingSet") == "CAP_NET_BIND_SERVICE"
    assert one("AmbientCapabilities") == "CAP_NET_BIND_SERVICE"
    assert one("RestrictAddressFamilies") == "AF_UNIX AF_INET AF_INET6"
    assert "@system-service" in d["SystemCallFilter"]
    assert one("UMask") == "0027"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices",
                "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
                "ProtectControlGroups", "ProtectClock", "ProtectHostname", "RestrictNamespaces",
                "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality",
                "MemoryDenyWriteExecute"):
        assert one(key) == "yes", key
    assert one("ProtectSystem") == "strict"
    assert one("SystemCallArchitectures") == "native"
    # The control socket checks control_group members through /proc/<peer>/status:
    # hidepid would hide other users' esactl processes.
    assert "ProtectProc" not in d
    # Enough descriptors for every connection at the configured limits, each with a file.
    conf = tomllib.loads(uncommented_example())
    inbound = conf["listener"]["max_connections"]
    outbound = conf["delivery"]["max_concurrency"]
    assert int(one("LimitNOFILE")) >= 2 * inbound + 2 * outbound + 1024, one("LimitNOFILE")


def test_unit_security_exposure():
    """esad.service and esad-web.service (the Delivery Status page, hardened like esad's)."""
    if not have("systemd-analyze"):
        return skip("systemd-analyze not installed")
    for unit in (UNIT, WEB_UNIT):
        r = run("systemd-analyze", "security", "--offline=yes", unit, check=False)
        m = re.search(r"Overall exposure level for " + re.escape(unit.name) + r": (\d+\.\d+)",
                      r.stdout)
        if m is None and "--offline" in r.stderr:
            return skip("systemd-analyze security --offline is not supported here")
        assert m, r.stdout + r.stderr
        score = float(m.group(1))
        print(f"systemd-analyze security {unit.name}: exposure {score}", flush=True)
        assert score <= MAX_EXPOSURE, f"exposure {score} > {MAX_EXPOSURE}:\n{r.stdout}"


def test_sysusers_and_tmpfiles():
    if not (have("systemd-sysusers") and have("systemd-tmpfiles")):
        return skip("systemd-sysusers / systemd-tmpfiles not installed")
    with tempfile.TemporaryDirectory() as root:
        install_like_package(ROOT, Path(root))
        check_user_and_dirs(Path(root))


def install_like_package(src, root):
    (root / "usr/lib/sysusers.d").mkdir(parents=True)
    (root / "usr/lib/tmpfiles.d").mkdir(parents=True)
    (root / "etc/esad").mkdir(parents=True)
    shutil.copy(src / "systemd/esad.sysusers.conf", root / "usr/lib/sysusers.d/esad.conf")
    shutil.copy(src / "systemd/esad.tmpfiles.conf", root / "usr/lib/tmpfiles.d/esad.conf")
    shutil.copy(src / "systemd/esad.toml", root / "etc/esad/esad.toml")


def check_user_and_dirs(root):
    """What the postinst does, against a scratch root."""
    run("systemd-sysusers", f"--root={root}")
    passwd = (root / "etc/passwd").read_text()
    m = re.search(r"^esad:x:(\d+):(\d+):[^:]*:/var/lib/esad:(/usr/sbin/nologin|/sbin/nologin)$",
                  passwd, re.M)
    assert m, passwd
    uid, gid = int(m.group(1)), int(m.group(2))
    assert uid < 1000, "esad must be a system user"
    run("systemd-tmpfiles", f"--root={root}", "--create")
    for d in ("var/lib/esad", "var/log/esad", "run/esad"):
        st = (root / d).stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (uid, gid, 0o750), (d, st)
    # Setgid, which esad under RestrictSUIDSGID= cannot make itself (docs/capture.md).
    st = (root / "var/lib/esad/captures").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (uid, gid, 0o2770), st
    st = (root / "etc/esad/esad.toml").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, gid, 0o640), st


# --- the example configuration -----------------------------------------------------------

def config_keys_from_source():
    """section -> keys, from the reader functions in common/config.cc."""
    src = (ROOT / "common" / "config.cc").read_text()
    functions = {
        "daemon": "read_daemon", "listener": "read_listener", "delivery": "read_delivery",
        "bounce_profiles.default": "read_bounce_profile",
        "destinations.default": "read_destination", "logging": "read_logging",
        "metrics": "read_metrics",
    }
    keys = {}
    for section, fn in functions.items():
        body = re.search(r"void " + fn + r"\(.*?\n}\n", src, re.S).group(0)
        keys[section] = set(re.findall(r'r\.read(?:_int|_duration)?\("(\w+)"', body))
    for section in ("dns", "routes", "spool"):
        body = re.search(r'top\.subtable\("' + section + r'"\).*?r\.reject_unknown', src,
                         re.S).group(0)
        keys[section] = set(re.findall(r'r\.read(?:_int|_duration)?\("(\w+)"', body))
    assert all(keys.values()), keys
    return keys


def uncommented_example():
    """The example with every "#key = default" line switched on."""
    return re.sub(r"^#(?=[a-z_]+ = )", "", EXAMPLE_CONFIG.read_text(), flags=re.M)


def test_example_config_lists_every_key():
    conf = tomllib.loads(uncommented_example())
    manual = (ROOT / "docs" / "esad.toml.5").read_text()
    for section, keys in config_keys_from_source().items():
        table = conf
        for part in section.split("."):
            table = table[part]
        missing, stale = keys - set(table), set(table) - keys
        assert not missing, (f"[{section}] {sorted(missing)}: read by common/config.cc but not "
                             "in systemd/esad.toml; document them there and in docs/esad.toml.5")
        assert not stale, f"[{section}] {sorted(stale)}: in systemd/esad.toml, not in config.cc"
        for key in keys:
            assert re.search(r"^\.TP\n\.BR? [^\n]*\b" + key + r"\b", manual, re.M), \
                f"esad.toml.5: {key}"


def test_example_config_is_valid_and_matches_the_unit():
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in (("as-shipped.toml", EXAMPLE_CONFIG.read_text()),
                           ("all-keys.toml", uncommented_example())):
            path = Path(tmp) / name
            path.write_text(text)
            r = run(ESAD, "--config", path, "--check-config", check=False)
            assert r.returncode == 0, (name, r.stderr)
    conf = tomllib.loads(EXAMPLE_CONFIG.read_text())
    # The directories systemd creates for the unit are the ones the daemon uses.
    assert conf["daemon"]["state_dir"] == "/var/lib/esad"
    assert conf["daemon"]["control_socket"] == "/run/esad/esad.sock"
    assert conf["logging"]["dir"] == "/var/log/esad"
    assert conf["listener"]["address"] == "127.0.0.1:25"
    assert "user" not in conf["daemon"], "under systemd User= does the privilege drop"


def test_example_config_runs():
    """The shipped settings start a daemon (paths redirected to a temp dir, unprivileged port)."""
    text = EXAMPLE_CONFIG.read_text()
    d = Daemon(start=False)
    try:
        text = (text.replace('"/var/lib/esad"', f'"{d.state}"')
                .replace('"/run/esad/esad.sock"', f'"{d.socket}"')
                .replace('"/var/log/esad"', f'"{d.dir}/logs"')
                .replace('"127.0.0.1:25"', f'"127.0.0.1:{d.smtp_port}"'))
        Path(d.config_path).write_text(text)
        d.start()
        status = d.ctl_json("status")
        assert status["system_status"], status
        assert os.path.isdir(os.path.join(d.dir, "logs"))
        assert d.stop() == 0
    finally:
        d.cleanup()


# --- man pages and completion --------------------------------------------------------------

def registered_commands():
    r = run(ESACTL, "help")
    return [line.split()[0] for line in r.stdout.splitlines() if re.match(r"^  [a-z]", line)]


def test_man_pages_render_cleanly():
    if not have("groff"):
        return skip("groff not installed")
    for page in ("esad.8", "esad.toml.5", "esactl.1", "esad-web.8"):
        r = run("groff", "-man", "-Tutf8", "-wall", "-z", ROOT / "docs" / page, check=False,
                env={**os.environ, "LC_ALL": "C.UTF-8"})
        assert r.returncode == 0 and not r.stderr.strip(), (page, r.stderr)
    esactl_page = (ROOT / "docs" / "esactl.1").read_text()
    for cmd in registered_commands():
        assert re.search(r"^\.TP\n\.BR? " + cmd + r"\b", esactl_page, re.M), f"esactl.1: {cmd}"


COMPLETION_SHIM = r"""
# Stand-ins for the bash-completion library, enough for _esactl.
_init_completion() { words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD; cur=${words[cword]};
                     prev=${words[cword-1]}; }
_filedir() { COMPREPLY=(FILES); }
source "$COMPLETION"
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=()
_esactl "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"""


def complete(*words):
    r = run("bash", "-c", COMPLETION_SHIM, "complete", *words,
            env={**os.environ, "COMPLETION": str(ROOT / "docs" / "esactl.bash-completion")})
    return sorted(w for w in r.stdout.split("\n") if w)


def test_bash_completion():
    esactl = os.path.abspath(ESACTL)
    commands = registered_commands()
    assert {"status", "version", "resetcounters", "reload"} <= set(commands), commands
    assert complete(esactl, "") == sorted(commands + ["help"])
    assert complete(esactl, "re") == sorted(c for c in commands if c.startswith("re"))
    assert complete(esactl, "--socket", "/tmp/x", "--json", "st") == ["status"]
    assert complete(esactl, "--socket", "") == ["FILES"]
    assert complete(esactl, "--js") == ["--json"]
    assert complete(esactl, "status", "") == ["detail"]
    assert complete(esactl, "help", "") == sorted(commands)
    assert complete(esactl, "status", "detail", "") == []


# --- the Debian package --------------------------------------------------------------------

EXPECTED_FILES = {
    "usr/sbin/esad": 0o755,
    "usr/bin/esactl": 0o755,
    "usr/lib/systemd/system/esad.service": 0o644,
    "usr/lib/sysusers.d/esad.conf": 0o644,
    "usr/lib/tmpfiles.d/esad.conf": 0o644,
    "etc/esad/esad.toml": 0o644,
    "usr/share/doc/esad/esad.toml.example": 0o644,
    "usr/share/doc/esad/install.md": 0o644,
    "usr/share/doc/esad/systemd.md": 0o644,
    "usr/share/doc/esad/copyright": 0o644,
    "usr/share/doc/esad/changelog.gz": 0o644,
    "usr/share/man/man1/esactl.1.gz": 0o644,
    "usr/share/man/man5/esad.toml.5.gz": 0o644,
    "usr/share/man/man8/esad.8.gz": 0o644,
    "usr/share/man/man8/esad-web.8.gz": 0o644,
    "usr/share/bash-completion/completions/esactl": 0o644,
    "usr/sbin/esad-web": 0o755,
    "usr/libexec/esad/esad-capture": 0o755,  # postinst: root:esad 0750 + cap_net_raw
    "usr/lib/systemd/system/esad-web.service": 0o644,
    "usr/share/doc/esad/capture.md": 0o644,
    "usr/share/doc/esad/web.md": 0o644,
}
DEPENDS = ["libuv1", "libc-ares2", "libssl3", "libspdlog1.10", "libfmt9",
           "libsystemd0", "libedit2", "libidn2-0", "libpcap0.8", "libmicrohttpd12"]


def test_deb_contents():
    for tool in ("cpack", "dpkg", "dpkg-deb"):
        if not have(tool):
            return skip(f"{tool} not installed")
    with tempfile.TemporaryDirectory(prefix="esad-deb-") as tmp:
        tmp = Path(tmp)
        deb, ddeb = build_deb(tmp / "out")

        info = run("dpkg-deb", "-I", deb).stdout
        fields = dict(re.findall(r"^ (\w[\w-]*): (.*)$", info, re.M))
        assert fields["Package"] == "esad", info
        assert not re.search(r"@localhost\b", fields["Maintainer"]), fields["Maintainer"]
        description = run("dpkg-deb", "-f", deb, "Description").stdout
        assert all(len(line) <= 80 for line in description.splitlines()), description
        depends = [d.strip().split()[0] for d in fields["Depends"].split(",")]
        # Exactly the libraries the binaries link (toml++ is compiled in, header-only).
        assert sorted(set(depends) - {"libc6", "libstdc++6"}) == sorted(DEPENDS), fields["Depends"]

        # Every file in the archive, with its mode (dpkg -c) ...
        listing = {}
        for line in run("dpkg", "-c", deb).stdout.splitlines():
            perms, _, _, _, _, path = line.split(None, 5)
            listing[path.removeprefix("./").split(" -> ")[0]] = perms
        for path, mode in EXPECTED_FILES.items():
            assert path in listing, (path, sorted(listing))
            want = "-" + "".join(c if mode & (1 << (8 - i)) else "-"
                                 for i, c in enumerate("rwxrwxrwx"))
            assert listing[path] == want, (path, listing[path], want)
        # ... and nothing enabled: no symlinks into *.wants, nothing under /etc/systemd.
        assert not [p for p in listing if p.startswith("etc/systemd") or ".wants" in p]

        # Maintainer scripts: they create the user and directories and enable nothing.
        control = tmp / "control"
        run("dpkg-deb", "-e", deb, control)
        assert (control / "conffiles").read_text().split() == ["/etc/esad/esad.toml"]
        code = {}
        for script in ("postinst", "prerm", "postrm"):
            path = control / script
            assert os.access(path, os.X_OK), script
            run("sh", "-n", path)
            text = path.read_text()
            code[script] = "\n".join(line for line in text.splitlines()
                                     if not line.lstrip().startswith("#"))
            # Nothing enabled or started; Debian's helpers rather than raw systemctl.
            assert not re.search(r"\benable\b|--now|\bstart\b", code[script]), (script, text)
            for line in code[script].splitlines():
                assert "systemctl" not in line or "daemon-reload" in line, (script, line)
        assert "systemd-sysusers /usr/lib/sysusers.d/esad.conf" in code["postinst"]
        assert "systemd-tmpfiles --create /usr/lib/tmpfiles.d/esad.conf" in code["postinst"]
        # Recorded for purge; restarted on upgrade only when running.
        assert "deb-systemd-helper update-state esad.service" in code["postinst"]
        assert "deb-systemd-helper update-state esad.socket" in code["postinst"]
        assert "deb-systemd-helper update-state esad-web.service" in code["postinst"]
        assert "deb-systemd-invoke try-restart esad.service esad-web.service" in code["postinst"]
        # Removal stops the socket before the service, so nothing starts esad again, and
        # the Delivery Status page, whose binary goes away too.
        assert "deb-systemd-invoke stop esad.socket esad.service esad-web.service" \
            in code["prerm"]
        assert "deb-systemd-helper purge esad.service esad.socket esad-web.service" \
            in code["postrm"]

        # Stripped binaries here, their debug symbols in the .ddeb by build id.
        dbg = [line.split()[-1] for line in run("dpkg", "-c", ddeb).stdout.splitlines()]
        # esad, esactl, esad-web, esad-capture
        assert len([p for p in dbg if p.endswith(".debug")]) == 4, dbg

        # Unpacked into a scratch root: the files are the repository's, the binaries run.
        root = tmp / "root"
        run("dpkg", "-x", deb, root)
        for path in EXPECTED_FILES:
            assert (root / path).is_file(), path
        assert (root / "usr/lib/systemd/system/esad.service").read_text() == UNIT.read_text()
        assert (root / "etc/esad/esad.toml").read_text() == EXAMPLE_CONFIG.read_text()
        for binary in ("usr/sbin/esad", "usr/bin/esactl"):
            sections = run("readelf", "-S", "-W", root / binary).stdout
            assert ".debug_info" not in sections and ".symtab" not in sections, binary
        version = run(root / "usr/sbin/esad", "--version").stdout.split()[1]
        assert fields["Version"].startswith(version), (version, fields["Version"])
        run(root / "usr/bin/esactl", "--version")
        r = run(root / "usr/sbin/esad", "--config", root / "etc/esad/esad.toml", "--check-config")
        assert "is valid" in r.stdout
        if have("systemd-analyze"):
            # The installed units with their man pages: Documentation= must resolve.
            for unit in units_for_host(tmp, root):
                assert (root / "usr/lib/systemd/system" / unit.name).is_file(), unit.name
                r = run("systemd-analyze", "verify", unit, check=False,
                        env={**os.environ, "MANPATH": str(root / "usr/share/man")})
                assert r.returncode == 0 and unit.name not in r.stderr, r.stderr
            web_doc = unit_directives(WEB_UNIT.read_text())["Documentation"][-1]
            assert "man:esad-web(8)" in web_doc, web_doc
        if have("systemd-sysusers") and have("systemd-tmpfiles"):
            check_user_and_dirs(root)


if __name__ == "__main__":
    run_tests([
        test_unit_verifies,
        test_unit_directives,
        test_unit_security_exposure,
        test_sysusers_and_tmpfiles,
        test_example_config_lists_every_key,
        test_example_config_is_valid_and_matches_the_unit,
        test_example_config_runs,
        test_man_pages_render_cleanly,
        test_bash_completion,
        test_deb_contents,
    ])
