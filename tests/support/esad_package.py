"""Builds esad's Debian package the way docs/install.md says, for the package tests.

    deb, ddeb = build_deb(out_dir)
    run(*cmd, check=True, timeout=120)    # subprocess.run, raising with the output

Configures (once) and builds a RelWithDebInfo tree with prefix /usr in build/package
(override with $ESAD_PKG_BUILD_DIR), so only the first run pays for the compile, then runs
`cpack -G DEB` into out_dir. A lock file serialises concurrent callers (test_systemd and the
nspawn tier may run at the same time).
"""
import fcntl
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PKG_BUILD = Path(os.environ.get("ESAD_PKG_BUILD_DIR", ROOT / "build" / "package"))


def run(*cmd, check=True, timeout=120, **kw):
    """subprocess.run with text output; raises with the output when check and it failed."""
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,
                       **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {r.returncode}:\n"
                             f"{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r


def build_deb(out_dir):
    """Returns (path of esad_*.deb, path of esad-dbgsym_*.ddeb) in out_dir."""
    PKG_BUILD.mkdir(parents=True, exist_ok=True)
    out_dir = Path(out_dir)
    with open(PKG_BUILD.parent / (PKG_BUILD.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # Exactly the documented command: no -Werror, Debian's -O2 -g.
        run("cmake", "-S", ROOT, "-B", PKG_BUILD, "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
             "-DCMAKE_INSTALL_PREFIX=/usr", "-DESAD_TESTS=OFF", timeout=300)
        run("cmake", "--build", PKG_BUILD, "-j2", timeout=1800)
        run("cpack", "-G", "DEB", "-B", out_dir, "--config", PKG_BUILD / "CPackConfig.cmake",
             timeout=300)
    debs = list(out_dir.glob("esad_*.deb"))
    ddebs = list(out_dir.glob("esad-dbgsym_*.ddeb"))
    assert len(debs) == 1 and len(ddebs) == 1, sorted(p.name for p in out_dir.iterdir())
    return debs[0], ddebs[0]
