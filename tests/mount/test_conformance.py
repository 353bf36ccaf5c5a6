"""The POSIX conformance run (``posix_conformance.py``) on an ``-o allow_other`` mount, as
root and as a second local user (uid/gid 65534, no groups), each compared case by case
with the same run in a local ext4 folder by the same user.

The runner is the system Python reading the script from stdin, so the second user needs
no access to the project's files.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.mount import posix_conformance
from tests.mount.conftest import Mount

NOBODY = 65534
SCRIPT = Path(posix_conformance.__file__)


def _observe(root: str, user: str) -> dict[str, object]:
    argv = ["/usr/bin/python3", "-", root]
    if user == "other":
        argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]
    with SCRIPT.open("rb") as script:
        done = subprocess.run(argv, stdin=script, capture_output=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_conformance_run_matches_a_local_folder_for_root_and_another_user(  # type: ignore[no-untyped-def]
        make_mount, account) -> None:
    m: Mount = make_mount(account, "allow_other")
    os.chmod(m.path, 0o777)
    local = tempfile.mkdtemp(prefix="posix-conf-", dir="/tmp")
    failures: list[str] = []
    try:
        os.chmod(local, 0o777)
        for user in ("root", "other"):
            for root in (local, str(m.path)):
                os.mkdir(f"{root}/{user}", 0o777)
                os.chmod(f"{root}/{user}", 0o777)
            expected = _observe(f"{local}/{user}", user)
            # (the reference itself is sound: these differ between the two users)
            assert expected["open_permissions"][0] == ("ok" if user == "root" else "EACCES")
            passed, bad = posix_conformance.compare(expected, _observe(f"{m.path}/{user}", user))
            print(f"conformance as {user}: {passed}/{len(expected)} cases equal "
                  f"({posix_conformance.observations(expected)} observations)")
            failures += [f"[{user}] {line}" for line in bad]
    finally:
        subprocess.run(["rm", "-rf", local], check=False)
    assert not failures, "\n".join(failures)
