"""Ownership as on Linux, checked against a local folder: root and a second local user
(uid/gid 65534, no groups) on an ``-o allow_other`` mount. chown rules, set-user/group-ID
bits cleared on write and chown, sticky folders restricting deletion and rename.

The same script runs in a local folder and in the mount; the outputs must be equal.
"""

from __future__ import annotations

import os
import subprocess
import tempfile

import pytest

from tests.mount.conftest import Mount

NOBODY = 65534
# each line: who runs it (root/other), then a command; its exit status and output are kept
SCRIPT = [
    ("root", "mkdir sticky && chmod 1777 sticky && echo r > sticky/rootfile && "
             "chmod 666 sticky/rootfile && mkdir open && chmod 777 open"),
    ("other", "rm -f sticky/rootfile"),  # sticky: not the entry's nor the folder's owner
    ("other", "mv sticky/rootfile sticky/moved"),
    ("other", "echo o > sticky/own && rm sticky/own && echo o > sticky/own2"),
    ("root", "rm sticky/own2"),  # root may
    ("other", "echo x > open/mine"),
    ("other", "chown 0 open/mine"),  # not the owner's to give away
    ("other", "chgrp 0 open/mine"),  # not a group of the caller
    ("other", "chgrp 65534 open/mine"),  # its own group: fine
    ("root", "chown 1234:4321 open/mine"),  # root: anything
    ("root", "echo s > open/suid && chmod 6777 open/suid"),
    ("other", "echo more >> open/suid"),  # a write by another user clears S_ISUID/S_ISGID
    ("root", "stat -c '%n %a' open/suid"),
    ("root", "chmod 6755 open/suid && chown 65534 open/suid"),  # chown clears them too
    # a set-group-ID folder: what is made in it takes its group, a folder keeps the bit
    ("root", "chgrp 4321 open && chmod 2777 open"),
    ("other", "mkdir open/sub && echo f > open/sub/f && ln -s f open/sub/l"),
    ("root", "stat -c '%n %a %u %g' sticky sticky/* open/mine open/suid open open/sub "
             "open/sub/f && stat -c '%n %u %g' open/sub/l"),
]


def _run(root: str) -> list[tuple[str, int, str]]:
    seen = []
    for who, cmd in SCRIPT:
        argv = ["bash", "-c", cmd]
        if who == "other":
            argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                    *argv]
        done = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=60)
        seen.append((cmd, done.returncode, done.stdout))
    return seen


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_ownership_rules_match_a_local_folder(make_mount, account) -> None:  # type: ignore[no-untyped-def]
    local = tempfile.mkdtemp(prefix="posix-own-", dir="/tmp")
    try:
        os.chmod(local, 0o777)
        expected = _run(local)
    finally:
        subprocess.run(["rm", "-rf", local], check=False)
    assert expected[1][1] != 0 and expected[3][1] == 0  # (the reference itself is sound)
    assert expected[12][2] == "open/suid 777\n"  # the write cleared both bits
    m: Mount = make_mount(account, "allow_other")
    os.chmod(m.path, 0o777)
    assert _run(str(m.path)) == expected
