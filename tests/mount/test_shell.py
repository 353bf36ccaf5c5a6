"""The drive as a user sees it: plain shell commands on a real mount of a real cluster."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.mount.conftest import MiB, Mount


def test_empty_mount_lists_virtual_folders_and_df_shows_quota(mnt: Mount) -> None:
    out = mnt.sh("ls -la").stdout
    assert ".trash" in out and "Shared" in out
    df = mnt.sh("df -B1 --output=size,avail .").stdout.split("\n")[1].split()
    assert int(df[0]) == mnt.account.storage().allocated_bytes
    assert int(df[1]) == mnt.account.storage().available_bytes


def test_mkdir_p_cp_in_and_out_cmp(mnt: Mount, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3 * MiB + 123))
    mnt.sh("mkdir -p deep/er/est")
    mnt.sh(f"cp {src} deep/er/est/file.bin")
    mnt.sh(f"cmp {src} deep/er/est/file.bin")
    mnt.sh(f"cp deep/er/est/file.bin {tmp_path}/back.bin && cmp {src} {tmp_path}/back.bin")
    assert mnt.cli("sync", str(mnt.path)).returncode == 0
    # the server holds exactly the bytes
    listing = mnt.account.cluster.files
    del listing
    assert "file.bin" in mnt.sh("ls deep/er/est").stdout


def test_mv_rename_and_move_across_folders(mnt: Mount) -> None:
    mnt.sh("mkdir a b && echo one > a/x.txt")
    mnt.sh("mv a/x.txt b/y.txt")
    assert mnt.sh("cat b/y.txt").stdout == "one\n"
    assert mnt.sh("ls a").stdout == ""
    mnt.sh("mv b a/")
    assert mnt.sh("cat a/b/y.txt").stdout == "one\n"
    mnt.sh("echo two > a/z.txt && mv a/z.txt a/b/y.txt")  # over an existing file
    assert mnt.sh("cat a/b/y.txt").stdout == "two\n"
    assert sorted(mnt.sh("ls a").stdout.split()) == ["b"]


def test_rm_r_goes_to_trash_and_mv_restores(mnt: Mount) -> None:
    mnt.sh("mkdir -p tree/sub && echo a > tree/a && echo b > tree/sub/b && echo keep > k.txt")
    mnt.sh("rm -r tree")
    assert mnt.sh("ls").stdout.split() == ["Shared", "k.txt"]
    mnt.sh("rm k.txt")
    assert "k.txt" in mnt.sh("ls .trash").stdout
    mnt.sh("mv .trash/k.txt restored.txt")
    assert mnt.sh("cat restored.txt").stdout == "keep\n"
    assert "k.txt" not in mnt.sh("ls .trash").stdout
    # trash counts toward the quota; rm in .trash deletes for good
    mnt.sh("rm restored.txt && rm .trash/restored.txt")
    assert mnt.account.storage().trash_bytes == 0 or "restored" not in mnt.sh(
        "ls .trash").stdout


def test_appends_and_truncate_up_and_down(mnt: Mount) -> None:
    mnt.sh("echo first > log.txt")
    mnt.sh("echo second >> log.txt && echo third >> log.txt")
    assert mnt.sh("cat log.txt").stdout == "first\nsecond\nthird\n"
    mnt.sh("truncate -s 3 log.txt")
    assert mnt.sh("cat log.txt").stdout == "fir"
    mnt.sh("truncate -s 10000 log.txt")
    assert mnt.sh("stat -c %s log.txt").stdout.strip() == "10000"
    data = mnt.sh("head -c 3 log.txt; tail -c 4 log.txt | od -An -tx1").stdout
    assert data.startswith("fir") and "00 00 00 00" in data
    mnt.sh("truncate -s 0 log.txt")
    assert mnt.sh("stat -c %s log.txt").stdout.strip() == "0"
    assert mnt.cli("sync").returncode == 0


def test_editor_save_pattern(mnt: Mount) -> None:
    mnt.sh("printf 'v1\\n' > notes.txt")
    mnt.sh("printf 'v2\\n' > .notes.txt.swp && mv .notes.txt.swp notes.txt")
    assert mnt.sh("cat notes.txt").stdout == "v2\n"
    assert mnt.sh("ls -A").stdout.split() == [".cloudgrpc-status", ".trash", "Shared",
                                              "notes.txt"]
    # vim-style: backup by rename, write new, remove backup
    mnt.sh("mv notes.txt notes.txt~ && printf 'v3\\n' > notes.txt && rm notes.txt~")
    assert mnt.sh("cat notes.txt").stdout == "v3\n"


def test_symlinks(mnt: Mount) -> None:
    mnt.sh("echo target > t.txt && ln -s t.txt link && ln -s /etc/hostname abs")
    assert mnt.sh("readlink link").stdout == "t.txt\n"
    assert mnt.sh("cat link").stdout == "target\n"
    assert mnt.sh("stat -c %F link").stdout.strip() == "symbolic link"
    assert mnt.sh("readlink abs").stdout == "/etc/hostname\n"


def test_ls_la_of_1000_files(mnt: Mount) -> None:
    mnt.sh("mkdir many && cd many && for i in $(seq 1 1000); do : > f$i; done", timeout=240)
    out = mnt.sh("ls -la many | wc -l").stdout.strip()
    assert int(out) >= 1000
    assert mnt.sh("ls many | wc -l").stdout.strip() == "1000"


def test_status_file_and_cli_status(mnt: Mount) -> None:
    mnt.sh("head -c 1000000 /dev/urandom > blob")
    status = mnt.sh("cat .cloudgrpc-status").stdout
    assert '"pending"' in status
    done = mnt.cli("status", str(mnt.path))
    assert done.returncode == 0 and str(mnt.path) in done.stdout
    assert mnt.cli("sync", str(mnt.path)).returncode == 0
    assert '"pending": 0' in mnt.sh("cat .cloudgrpc-status").stdout


@pytest.mark.slow
def test_cp_100_mib_in_and_out(mnt: Mount, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    with open(src, "wb") as handle:
        for _ in range(100):
            handle.write(os.urandom(MiB))
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    mnt.sh(f"cp {src} big.bin", timeout=240)
    mnt.sh(f"cmp {src} big.bin", timeout=240)
    assert mnt.cli("sync", str(mnt.path), timeout=300).returncode == 0
    # through a fresh mount with an empty cache: the bytes come from the nodes
    mnt.umount()
    other = Mount(mnt.cluster, mnt.account, mnt.work).start()
    try:
        other.sh(f"cp big.bin {tmp_path}/back.bin", timeout=240)
        assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).hexdigest() == digest
        # an append re-sends only the changed tail: the other chunks go as references
        before = mnt.cluster.status().total_chunks
        other.sh("echo tail >> big.bin")
        assert other.cli("sync", str(other.path)).returncode == 0
        after = mnt.cluster.status().total_chunks
        assert after - before <= 2
        assert other.sh("stat -c %s big.bin").stdout.strip() == str(100 * MiB + 5)
    finally:
        other.umount()
        other.cleanup()
