"""A bare Debian machine in two commands: ``make demo`` / ``make test`` set up what they need.

The Makefile must make sure the Debian packages are there before it builds the virtualenv
(pip cannot build pyfuse3 without libfuse3-dev and pkg-config), and
``scripts/system-packages.sh`` must either install the missing ones (root) or name them in
one line and stop (anyone else), never calling apt-get then. apt-get itself is replaced by a
recorder on PATH: nothing here installs or removes a package.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "system-packages.sh"
NOBODY = 65534
NO_SUCH_PACKAGE = "cloudgrpc-no-such-package"
FAKE_APT_GET = """#!/bin/sh
echo "DEBIAN_FRONTEND=$DEBIAN_FRONTEND $*" >> "{calls}"
exit 0
"""


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CLOUDGRPC_SYSTEM_PACKAGES")}
    env.update(extra)
    return env


def _make_dry_run(target: str, venv: Path) -> list[str]:
    done = subprocess.run(
        ["make", "-n", target, f"VENV={venv}"], cwd=ROOT, env=_clean_env(),
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def _index(lines: list[str], needle: str) -> int:
    found = [i for i, line in enumerate(lines) if needle in line]
    assert found, f"{needle!r} not in {lines}"
    return found[0]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize(("target", "group", "runner"),
                         [("demo", "demo", "scripts/demo.sh"), ("test", "test", "scripts/test.sh")])
def test_make_installs_debian_packages_before_the_virtualenv(
    target: str, group: str, runner: str, tmp_path: Path
) -> None:
    lines = _make_dry_run(target, tmp_path / "venv")  # no venv yet: as on a fresh clone
    packages = _index(lines, f"scripts/system-packages.sh {group}")
    venv = _index(lines, "-m venv")
    pip = _index(lines, "pip install")
    assert packages < venv < pip < _index(lines, runner), lines


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_install_alone_checks_the_build_packages_first(tmp_path: Path) -> None:
    lines = _make_dry_run("install", tmp_path / "venv")
    assert _index(lines, "scripts/system-packages.sh install") < _index(lines, "-m venv"), lines


def test_the_script_alone_owns_the_package_list() -> None:
    def listed(group: str) -> set[str]:
        out = subprocess.run([str(SCRIPT), "list", group], env=_clean_env(),
                             capture_output=True, text=True, check=True).stdout
        return set(out.split())

    install, demo, test = listed("install"), listed("demo"), listed("test")
    assert {"libfuse3-dev", "pkg-config", "python3-venv"} <= install
    assert install <= demo and "fuse3" in demo and "postgresql" not in demo
    assert demo <= test and {"postgresql", "iproute2", "openssl"} <= test
    for caller in ("Makefile", ".ci/run", "scripts/demo.sh"):  # nobody repeats the list
        text = (ROOT / caller).read_text()
        assert "libfuse3-dev" not in text and "apt-get install" not in text, caller


@pytest.fixture
def fake_apt() -> Iterator[tuple[dict[str, str], Path]]:
    """PATH with a recording ``apt-get`` first, in a folder any user may write to."""
    folder = Path(tempfile.mkdtemp(prefix="cloudgrpc-apt-"))
    folder.chmod(0o777)
    calls = folder / "apt-calls"
    apt = folder / "apt-get"
    apt.write_text(FAKE_APT_GET.format(calls=calls))
    apt.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    env = _clean_env(PATH=f"{folder}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    try:
        yield env, calls
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run_script(env: dict[str, str], packages: str, as_nobody: bool) -> subprocess.CompletedProcess:
    argv = [str(SCRIPT), "demo"]
    if as_nobody:
        argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]
    return subprocess.run(argv, env={**env, "CLOUDGRPC_SYSTEM_PACKAGES": packages},
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("dpkg-query") is None,
                                reason="needs root (setpriv) on Debian")


@needs_root
def test_a_user_is_told_in_one_line_and_nothing_is_installed(fake_apt) -> None:
    env, calls = fake_apt
    done = _run_script(env, f"coreutils {NO_SUCH_PACKAGE}", as_nobody=True)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert NO_SUCH_PACKAGE in lines[0] and "coreutils" not in lines[0], lines
    assert not calls.exists(), "apt-get was called for a non-root user"


@needs_root
def test_root_installs_only_what_is_missing_without_asking(fake_apt) -> None:
    env, calls = fake_apt
    done = _run_script(env, f"coreutils {NO_SUCH_PACKAGE}", as_nobody=False)
    assert done.returncode == 0, done.stderr
    recorded = calls.read_text().splitlines()
    assert recorded[0].endswith(" update -qq"), recorded
    assert recorded[-1].startswith("DEBIAN_FRONTEND=noninteractive install -y"), recorded
    assert recorded[-1].split()[-1] == NO_SUCH_PACKAGE, recorded  # coreutils is there already


@needs_root
def test_nothing_missing_means_no_apt_get_for_anyone(fake_apt) -> None:
    env, calls = fake_apt
    for as_nobody in (True, False):
        done = _run_script(env, "coreutils", as_nobody=as_nobody)
        assert done.returncode == 0 and done.stderr == "", done.stderr
    assert not calls.exists()
