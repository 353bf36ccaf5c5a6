"""POSIX behaviour through the mount: open flags, rename rules, mode and time bits, errno."""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import stat
import subprocess
import time

import pytest

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import errors
from cloudgrpc_proto.client import CloudClient
from tests.mount.conftest import Mount, eventually

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
AT_FDCWD = -100
_libc = ctypes.CDLL(None, use_errno=True)


def renameat2(old: str, new: str, flags: int) -> None:
    if _libc.renameat2(AT_FDCWD, old.encode(), AT_FDCWD, new.encode(), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _errno(fn, *args) -> int:  # type: ignore[no-untyped-def]
    with pytest.raises(OSError) as info:
        fn(*args)
    return info.value.errno


def write(path: str, data: bytes, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> None:
    fd = os.open(path, flags, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def test_open_flags(mnt: Mount) -> None:
    p = str(mnt.path / "f")
    fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640)
    os.write(fd, b"hello")
    os.close(fd)
    assert _errno(os.open, p, os.O_CREAT | os.O_EXCL | os.O_WRONLY) == errno.EEXIST
    # O_APPEND writes at the end whatever the offset
    fd = os.open(p, os.O_WRONLY | os.O_APPEND)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, b" world")
    os.close(fd)
    assert read(p) == b"hello world"
    # O_TRUNC empties
    write(p, b"x")
    assert read(p) == b"x"
    # O_RDWR: read back what was written on the same descriptor, write in the middle
    fd = os.open(p, os.O_RDWR)
    os.pwrite(fd, b"abcdef", 0)
    os.pwrite(fd, b"ZZ", 2)
    assert os.pread(fd, 100, 0) == b"abZZef"
    os.fsync(fd)  # returns once stored on the nodes
    os.close(fd)
    assert read(p) == b"abZZef"
    assert _errno(os.open, str(mnt.path / "missing"), os.O_RDONLY) == errno.ENOENT


def test_rename_semantics(mnt: Mount) -> None:
    d = str(mnt.path)
    write(f"{d}/a", b"A")
    write(f"{d}/b", b"B")
    os.rename(f"{d}/a", f"{d}/b")  # replaces
    assert read(f"{d}/b") == b"A" and not os.path.exists(f"{d}/a")
    os.rename(f"{d}/b", f"{d}/b")  # same name: nothing happens
    assert read(f"{d}/b") == b"A"
    os.mkdir(f"{d}/dir1")
    os.mkdir(f"{d}/dir2")
    write(f"{d}/dir2/inner", b"i")
    assert _errno(os.rename, f"{d}/dir1", f"{d}/dir2") == errno.ENOTEMPTY
    assert _errno(os.rename, f"{d}/b", f"{d}/dir1") == errno.EISDIR
    assert _errno(os.rename, f"{d}/dir1", f"{d}/b") == errno.ENOTDIR
    os.mkdir(f"{d}/empty")
    os.rename(f"{d}/dir1", f"{d}/empty")  # over an empty folder
    assert os.path.isdir(f"{d}/empty") and not os.path.exists(f"{d}/dir1")
    assert _errno(os.rename, f"{d}/dir2", f"{d}/dir2/inner2") == errno.EINVAL
    write(f"{d}/c", b"C")
    assert _errno(renameat2, f"{d}/c", f"{d}/b", RENAME_NOREPLACE) == errno.EEXIST
    renameat2(f"{d}/c", f"{d}/c2", RENAME_NOREPLACE)
    assert read(f"{d}/c2") == b"C"
    assert _errno(renameat2, f"{d}/c2", f"{d}/b", RENAME_EXCHANGE) in (errno.EINVAL,
                                                                        errno.ENOTSUP)
    assert read(f"{d}/b") == b"A" and read(f"{d}/c2") == b"C"
    assert _errno(os.rename, f"{d}/nope", f"{d}/x") == errno.ENOENT


def test_folder_rename_is_one_operation(mnt: Mount) -> None:
    mnt.sh("mkdir -p big/a/b && for i in $(seq 1 30); do echo $i > big/a/b/f$i; done")
    mnt.sh("mv big moved")
    assert mnt.sh("cat moved/a/b/f30").stdout == "30\n"
    assert mnt.sh("ls moved/a/b | wc -l").stdout.strip() == "30"


def test_mode_owner_and_time_bits(mnt: Mount) -> None:
    p = str(mnt.path / "m")
    write(p, b"data")
    os.chmod(p, 0o600)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    os.chmod(p, 0o4755)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o4755
    os.mkdir(str(mnt.path / "d"), 0o700)
    assert stat.S_IMODE(os.stat(str(mnt.path / "d")).st_mode) == 0o700
    os.chown(p, 1234, 4321)
    st = os.stat(p)
    assert (st.st_uid, st.st_gid) == (1234, 4321)
    os.utime(p, ns=(1_500_000_000_000_000_000, 1_600_000_000_123_456_789))
    st = os.stat(p)
    assert st.st_mtime_ns == 1_600_000_000_123_456_789
    assert st.st_atime_ns == 1_500_000_000_000_000_000
    before = time.time_ns()
    time.sleep(0.01)
    write(p, b"new", os.O_WRONLY | os.O_APPEND)
    assert os.stat(p).st_mtime_ns >= before
    # cp -p keeps the mtime through the upload that follows it
    mnt.sh("touch -d '2001-02-03 04:05:06' /tmp/.mount-src-$$ 2>/dev/null; "
           "echo z > src.txt && touch -d '2001-02-03 04:05:06' src.txt && cp -p src.txt cp.txt")
    assert mnt.cli("sync").returncode == 0
    assert mnt.sh("date -r cp.txt +%Y").stdout.strip() == "2001"


def test_errno_on_error_paths(mnt: Mount) -> None:
    d = str(mnt.path)
    os.mkdir(f"{d}/dir")
    write(f"{d}/dir/f", b"1")
    assert _errno(os.mkdir, f"{d}/dir") == errno.EEXIST
    assert _errno(os.rmdir, f"{d}/dir") == errno.ENOTEMPTY
    assert _errno(os.unlink, f"{d}/dir") in (errno.EISDIR, errno.EPERM)
    assert _errno(os.rmdir, f"{d}/dir/f") == errno.ENOTDIR
    assert _errno(os.listdir, f"{d}/dir/f") == errno.ENOTDIR
    assert _errno(os.open, f"{d}/{'n' * 256}", os.O_CREAT | os.O_WRONLY) == errno.ENAMETOOLONG
    assert _errno(os.mkdir, f"{d}/{'n' * 256}") == errno.ENAMETOOLONG
    write(f"{d}/{'n' * 255}", b"ok")  # NAME_MAX itself is fine
    assert _errno(os.stat, f"{d}/{'n/' * 2100}") == errno.ENAMETOOLONG  # PATH_MAX
    assert _errno(os.link, f"{d}/dir", f"{d}/hard") == errno.EPERM  # a folder
    assert _errno(os.open, f"{d}/.cloudgrpc-status", os.O_WRONLY) in (errno.EACCES,
                                                                       errno.EPERM)
    assert _errno(os.mkdir, f"{d}/.trash/x") in (errno.EACCES, errno.EPERM)
    assert _errno(os.rmdir, f"{d}/Shared") in (errno.EBUSY, errno.EACCES, errno.EPERM)
    assert _errno(os.symlink, "x" * 4096, f"{d}/longlink") == errno.ENAMETOOLONG
    assert _errno(os.readlink, f"{d}/dir/f") == errno.EINVAL


OLD_NS = 1_000_000_000_123_456_789


def _time_changes(root: str) -> dict[str, list[tuple[bool, bool]]]:
    """Which times each operation moves: for every watched path, (mtime moved, ctime
    moved). Run on a local folder and on the mount, the answers must match."""
    out: dict[str, list[tuple[bool, bool]]] = {}

    def did(label: str, op, *watched: str) -> None:  # type: ignore[no-untyped-def]
        for path in watched:
            os.utime(path, ns=(OLD_NS, OLD_NS))
        before = [os.stat(path).st_ctime_ns for path in watched]
        time.sleep(0.02)  # tmpfs keeps ctime at clock-tick precision
        op()
        out[label] = [(os.stat(p).st_mtime_ns != OLD_NS, os.stat(p).st_ctime_ns != c)
                      for p, c in zip(watched, before, strict=True)]

    d, e = f"{root}/d", f"{root}/e"
    os.mkdir(d)
    os.mkdir(e)
    did("create", lambda: write(f"{d}/f", b"12345"), d)
    did("write", lambda: write(f"{d}/f", b"6", os.O_WRONLY | os.O_APPEND), d, f"{d}/f")
    did("o_trunc", lambda: os.close(os.open(f"{d}/f", os.O_WRONLY | os.O_TRUNC)), f"{d}/f", d)
    did("chmod", lambda: os.chmod(f"{d}/f", 0o600), f"{d}/f", d)
    did("symlink", lambda: os.symlink("f", f"{d}/l"), d)
    did("mkdir", lambda: os.mkdir(f"{d}/sub"), d)
    did("rmdir", lambda: os.rmdir(f"{d}/sub"), d)
    did("rename", lambda: os.rename(f"{d}/f", f"{e}/g"), d, e)
    did("unlink", lambda: os.unlink(f"{d}/l"), d)
    write(f"{e}/h", b"x")
    did("unlink2", lambda: os.unlink(f"{e}/h"), e)
    # utimensat: UTIME_OMIT leaves a time alone, UTIME_NOW sets the clock's time
    os.utime(f"{e}/g", ns=(OLD_NS, OLD_NS))
    _libc_utimensat(f"{e}/g", atime="now", mtime="omit")
    st = os.stat(f"{e}/g")
    out["utime_now_omit"] = [(st.st_mtime_ns == OLD_NS, st.st_atime_ns > OLD_NS)]
    return out


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


def _libc_utimensat(path: str, atime: str, mtime: str) -> None:
    special = {"now": UTIME_NOW, "omit": UTIME_OMIT}
    times = (_Timespec * 2)(_Timespec(0, special[atime]), _Timespec(0, special[mtime]))
    if _libc.utimensat(AT_FDCWD, path.encode(), times, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def test_times_move_as_on_a_local_filesystem(mnt: Mount, tmp_path) -> None:  # type: ignore[no-untyped-def]
    local = tmp_path / "local"
    local.mkdir()
    expected = _time_changes(str(local))
    assert expected["create"] == [(True, True)]  # (the reference itself is sound)
    assert _time_changes(str(mnt.path)) == expected


def test_times_and_modes_survive_cp_a_and_a_remount(make_mount, account,  # type: ignore[no-untyped-def]
                                                     tmp_path) -> None:
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "f1").write_bytes(b"one")
    (src / "a" / "f2").write_bytes(b"two" * 1000)
    (src / "a" / "empty").write_bytes(b"")
    os.chmod(src / "a" / "f2", 0o640)
    old = os.umask(0)
    try:
        os.close(os.open(src / "a" / "zero", os.O_CREAT | os.O_WRONLY, 0))
    finally:
        os.umask(old)
    os.chmod(src / "a" / "b", 0o750)
    for i, path in enumerate(["a/b/f1", "a/f2", "a/empty", "a/zero", "a/b", "a", "."]):
        os.utime(src / path, ns=(1_300_000_000_000_000_007 + i, 1_200_000_000_111_111_111 + i))

    def tree(root) -> dict[str, tuple[int, int, bytes]]:  # type: ignore[no-untyped-def]
        seen = {}
        for dirpath, _, files in os.walk(root):
            for name in [".", *files]:
                p = os.path.join(dirpath, name)
                st = os.lstat(p)
                data = b"" if name == "." else read(p)
                seen[os.path.relpath(p, root)] = (st.st_mode, st.st_mtime_ns, data)
        return seen

    first = make_mount(account)
    # pax keeps nanoseconds (tar's default format keeps seconds)
    first.sh(f"cp -a {src} ./copy && mkdir untar && "
             f"tar --format=posix -C {src} -cf - . | tar -C untar -xpf -")
    assert tree(first.path / "copy") == tree(src)
    assert first.cli("sync").returncode == 0
    first.umount()
    again = make_mount(account)
    assert tree(again.path / "copy") == tree(src)
    unpacked = tree(again.path / "untar")
    unpacked.pop(".")  # (the folder tar extracted into is the mount's own)
    assert unpacked == {k: v for k, v in tree(src).items() if k != "."}
    # a file made with mode 0 (umask 0) is mode 0 on the mount too
    assert stat.S_IMODE(os.stat(again.path / "copy" / "a" / "zero").st_mode) == 0


def _unlinked_while_open(root: str) -> list[object]:
    """What descriptors see of a file unlinked while they have it open."""
    os.mkdir(f"{root}/u")
    p = f"{root}/u/f"
    write(p, b"hello world")
    rw = os.open(p, os.O_RDWR)
    ro = os.open(p, os.O_RDONLY)
    os.unlink(p)
    seen: list[object] = [os.fstat(rw).st_nlink, os.pread(rw, 100, 0), os.path.exists(p),
                          sorted(os.listdir(f"{root}/u"))]
    os.pwrite(rw, b"HELLO", 0)
    os.write(rw, b"!")
    seen += [os.pread(ro, 100, 0), os.fstat(ro).st_size]
    os.close(rw)
    seen += [os.pread(ro, 100, 0)]
    os.close(ro)
    write(p, b"new")  # the name is free for a new file
    seen += [read(p)]
    return seen


def test_a_file_unlinked_while_open_lives_until_the_last_close(mnt: Mount, tmp_path) -> None:  # type: ignore[no-untyped-def]
    local = tmp_path / "local"
    local.mkdir()
    expected = _unlinked_while_open(str(local))
    assert expected[0] == 0 and expected[1] == b"hello world"
    assert _unlinked_while_open(str(mnt.path)) == expected
    # the trash holds it as it was when it was removed (what rm of a closed file does)
    assert mnt.sh("cat .trash/f").stdout == "hello world"


def _hard_links(root: str) -> list[object]:
    """What ln, rm and mv do with several names of one file."""
    h = f"{root}/h"
    os.makedirs(f"{h}/sub")
    a, b, c = f"{h}/a", f"{h}/sub/b", f"{h}/c"
    write(a, b"alpha")
    os.link(a, b)
    sa, sb = os.stat(a), os.stat(b)
    seen: list[object] = [sa.st_nlink, sb.st_nlink, sa.st_ino == sb.st_ino]
    write(b, b"written through b")  # O_TRUNC through one name, read through the other
    seen.append(read(a))
    os.chmod(a, 0o600)
    seen.append(stat.S_IMODE(os.stat(b).st_mode))
    os.link(a, c)
    seen.append(os.stat(b).st_nlink)
    ctime = os.stat(b).st_ctime_ns
    time.sleep(0.02)
    os.unlink(a)  # one name goes, the file stays
    seen += [os.path.exists(a), read(b), os.stat(c).st_nlink, os.stat(b).st_ctime_ns != ctime]
    os.rename(b, c)  # two names of one file: rename(2) does nothing
    seen += [sorted(os.listdir(h)), os.path.exists(b)]
    write(f"{h}/x", b"new x")
    os.rename(f"{h}/x", c)  # mv over a link replaces that name only
    seen += [read(c), read(b), os.stat(b).st_nlink, os.stat(c).st_nlink]
    seen += [_errno(os.rmdir, f"{h}/sub")]  # a folder holding only a link is not empty
    seen += [_errno(os.link, f"{h}/sub", f"{h}/dirlink"), _errno(os.link, b, c)]
    return seen


def test_hard_links(make_mount, account, tmp_path) -> None:  # type: ignore[no-untyped-def]
    local = tmp_path / "local"
    local.mkdir()
    expected = _hard_links(str(local))
    assert expected[:3] == [2, 2, True] and expected[-2:] == [errno.EPERM, errno.EEXIST]
    mnt = make_mount(account)
    assert _hard_links(str(mnt.path)) == expected
    # links stay in one account: a file someone shared (write) is another filesystem's
    friend = mnt.cluster.sign_up()
    shared = friend.upload(b"theirs", "theirs.txt").file_id
    mnt.cluster.files.ShareFile(pb.ShareFileRequest(
        session_token=friend.token, file_id=shared, share_with_email=account.email,
        permission="write"), timeout=10)
    assert _errno(os.link, mnt.path / "Shared" / "theirs.txt", mnt.path / "mine") == errno.EXDEV
    assert _errno(os.link, mnt.path / "h" / "c", mnt.path / ".trash" / "c") in (
        errno.EACCES, errno.EPERM)
    assert not os.path.exists(mnt.path / "mine")
    # shell tools, and the names kept across a remount with one inode
    mnt.sh("echo one > l1 && ln l1 l2 && ln l2 sub-l3 && rm l1 && echo two >> l2")
    assert mnt.sh("stat -c %h l2 sub-l3 && cat sub-l3").stdout == "2\n2\none\ntwo\n"
    assert mnt.cli("sync").returncode == 0
    mnt.umount()
    again = make_mount(account)
    st2, st3 = os.stat(again.path / "l2"), os.stat(again.path / "sub-l3")
    assert (st2.st_ino, st2.st_nlink) == (st3.st_ino, 2)
    assert read(str(again.path / "sub-l3")) == b"one\ntwo\n"
    assert not os.path.exists(again.path / "l1")
    assert read(str(again.path / "h" / "sub" / "b")) == b"written through b"
    assert os.stat(again.path / "h" / "sub" / "b").st_nlink == 1
    # nothing went to the trash: each removed name had another
    assert sorted(os.listdir(again.path / ".trash")) == []
    # a second mount of the account links it too; the first one sees the third name
    other = make_mount(account)
    other.sh("ln l2 l4")
    eventually(lambda: "l4" in os.listdir(again.path), 15)
    assert os.stat(again.path / "l4").st_nlink == 3 and os.stat(again.path / "l4").st_ino == \
        st2.st_ino
    os.unlink(again.path / "l2")
    os.unlink(again.path / "sub-l3")
    assert read(str(other.path / "l4")) == b"one\ntwo\n"
    assert sorted(os.listdir(again.path / ".trash")) == []
    # the last name goes to the trash as any file does
    os.unlink(again.path / "l4")
    assert again.sh("cat .trash/l4").stdout == "one\ntwo\n"


def _odd_tree(src) -> None:  # type: ignore[no-untyped-def]
    """Hard links, a fifo, symlinks, a sparse file, odd modes and owners, set times on
    files and folders (set last, as cp -a, tar and rsync -a do)."""
    (src / "d" / "e").mkdir(parents=True)
    (src / "one").write_bytes(b"1" * 5000)
    os.link(src / "one", src / "d" / "one-again")
    os.link(src / "one", src / "d" / "e" / "one-third")
    (src / "two").write_bytes(b"two")
    os.link(src / "two", src / "d" / "two-again")
    (src / "solo").write_bytes(b"solo")
    with open(src / "sparse", "wb") as handle:
        handle.seek(5 * 1024 * 1024)
        handle.write(b"end of a hole")
    os.mkfifo(src / "d" / "fifo", 0o640)
    os.symlink("../two", src / "d" / "to-two")
    os.symlink("nowhere", src / "dangling")
    os.chmod(src / "two", 0o640)
    os.chmod(src / "solo", 0o4711)
    os.chmod(src / "d" / "e", 0o701)
    os.chown(src / "solo", 1234, 4321)
    os.chown(src / "d" / "fifo", 0, 4321)
    os.lchown(src / "dangling", 1234, 1234)
    os.chown(src / "d", 4321, 1234)
    for i, p in enumerate(["one", "two", "solo", "sparse", "d/fifo", "d/e", "d", "."]):
        os.utime(src / p, ns=(1_300_000_000_000_000_007 + i, 1_200_000_000_111_111_111 + i))
    # (rsync compares a symlink's time to the second and leaves one made in the same second
    # as its source alone, on ext4 too: every link here gets a time of long ago)
    for i, link in enumerate(["d/to-two", "dangling"]):
        os.utime(src / link, ns=(1_300_000_000_000_000_099 + i, 1_200_000_000_000_000_099 + i),
                 follow_symlinks=False)


def _tree(root) -> dict[str, tuple[object, ...]]:  # type: ignore[no-untyped-def]
    """Everything cp -a, tar and rsync -aH keep: type and mode, owner, mtime to the
    nanosecond, link count and which names share one file, content or link target."""
    seen, inodes = {}, {}
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted([*files, *dirs]):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            group = inodes.setdefault(st.st_ino, len(inodes))
            if stat.S_ISREG(st.st_mode):
                body: object = read(p)
            elif stat.S_ISLNK(st.st_mode):
                body = os.readlink(p)
            else:
                body = None
            nlink = None if stat.S_ISDIR(st.st_mode) else st.st_nlink  # (counted as ext4 does
            # in test_folder_link_counts; tar makes folders in another order than cp)
            seen[os.path.relpath(p, root)] = (st.st_mode, st.st_uid, st.st_gid,
                                              st.st_mtime_ns, nlink, group, body)
    return seen


def test_odd_tree_round_trips_through_rsync_cp_and_tar(make_mount, account,  # type: ignore[no-untyped-def]
                                                       tmp_path) -> None:
    if shutil.which("rsync") is None:
        pytest.skip("rsync is not installed (scripts/system-packages.sh test)")
    src = tmp_path / "src"
    _odd_tree(src)
    expected = _tree(src)
    assert expected["d/fifo"][5] != expected["d/to-two"][5]  # (the reference is sound)
    mnt = make_mount(account)
    mnt.sh(f"rsync -aH {src}/ ./r/ && cp -a {src} ./c && mkdir t && "
           f"tar --format=posix -C {src} -cf - . | tar -C t -xpf -")
    copies = ("r", "c", "t")
    for copy in copies:
        assert _tree(mnt.path / copy) == expected, copy
    assert mnt.cli("sync").returncode == 0
    mnt.umount()
    again = make_mount(account)  # a new mount starts with an empty cache
    second = make_mount(account)  # and a second mount of the account reads the same
    for m in (again, second):
        for copy in copies:
            assert _tree(m.path / copy) == expected, copy


def _folder_links(root: str) -> list[int]:
    """A folder's st_nlink as folders come and go in it (2 + its subfolders on Linux)."""
    p = f"{root}/p"
    os.mkdir(p)
    seen = [os.stat(p).st_nlink]
    os.mkdir(f"{p}/a")
    os.mkdir(f"{p}/b")
    write(f"{p}/f", b"files do not count")
    seen.append(os.stat(p).st_nlink)
    os.rmdir(f"{p}/a")
    seen.append(os.stat(p).st_nlink)
    os.rename(f"{p}/b", f"{root}/b")
    seen.append(os.stat(p).st_nlink)
    os.rename(f"{root}/b", f"{p}/b")
    seen.append(os.stat(p).st_nlink)
    return seen


def test_folder_link_counts_and_largest_file(make_mount, account, tmp_path) -> None:  # type: ignore[no-untyped-def]
    local = tmp_path / "local"
    local.mkdir()
    expected = _folder_links(str(local))
    assert expected == [2, 4, 3, 2, 3]
    mnt = make_mount(account)
    assert _folder_links(str(mnt.path)) == expected
    os.mkdir(mnt.path / "p" / "c")
    # a folder this mount never listed: the gateway's count
    assert mnt.cli("sync").returncode == 0
    mnt.umount()
    again = make_mount(account)
    assert os.stat(again.path / "p").st_nlink == 4
    # beyond the largest file size: EFBIG (not EDQUOT), and nothing changes
    p = str(again.path / "p" / "f")
    assert _errno(os.truncate, p, 999_999_999_999_999) == errno.EFBIG
    fd = os.open(p, os.O_RDWR)
    try:
        assert _errno(os.ftruncate, fd, 1 << 45) == errno.EFBIG
        assert _errno(os.pwrite, fd, b"x", 1 << 45) == errno.EFBIG
    finally:
        os.close(fd)
    assert read(p) == b"files do not count"
    st = os.stat(p)
    assert st.st_blocks * 512 >= st.st_size > 0
    # symlink loops are the kernel's: ELOOP
    os.symlink("loop2", again.path / "loop1")
    os.symlink("loop1", again.path / "loop2")
    assert _errno(os.open, str(again.path / "loop1"), os.O_RDONLY) == errno.ELOOP


SPECIAL_SCRIPT = (
    "mkdir sp && cd sp && mkfifo -m 640 fifo && mknod -m 600 null c 1 3 && "
    "mknod -m 660 loop b 7 0 && "
    "python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind(\"sock\")' && "
    "mv null null2 && mkfifo gone && rm gone && "
    "(echo through > fifo &) && timeout 10 cat fifo"
)
LIST = "cd sp && stat -c '%n %F %a %t %T %s' * && ls -l | cut -c1-10"


def test_fifos_sockets_and_devices_are_entries(make_mount, account, tmp_path) -> None:  # type: ignore[no-untyped-def]
    local = tmp_path / "local"
    local.mkdir()

    def run(cmd: str, cwd) -> str:  # type: ignore[no-untyped-def]
        done = subprocess.run(["bash", "-c", cmd], cwd=cwd, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert run(SPECIAL_SCRIPT, local) == "through\n"  # a fifo's I/O is the kernel's
    expected = run(LIST, local)
    assert "fifo" in expected and "character special file" in expected
    m = make_mount(account)
    assert m.sh(SPECIAL_SCRIPT).stdout == "through\n"
    assert m.sh(LIST).stdout == expected
    assert m.cli("sync").returncode == 0
    m.umount()
    again = make_mount(account)  # kept across a remount: type, mode, device number
    assert again.sh(LIST).stdout == expected
    # nodev, nosuid: a device entry opens nothing, even for root; nor can it be shared
    options = [line.split()[3] for line in open("/proc/mounts")
               if line.split()[1] == str(again.path)][0].split(",")
    assert "nodev" in options and "nosuid" in options
    assert _errno(os.open, str(again.path / "sp" / "null2"), os.O_RDONLY) == errno.EACCES
    friend = again.cluster.sign_up()
    with CloudClient(again.cluster.address, session_token=account.token) as client:
        null = client.stat(path="/sp/null2").file
        assert stat.S_ISCHR(null.mode) and null.rdev == os.makedev(1, 3)
        with pytest.raises(errors.InvalidArgument):
            client.share_file(null.file_id, friend.email)
    again.sh("cd sp && rm fifo null2 && mv loop loop2")
    assert again.sh("ls sp").stdout.split() == ["loop2", "sock"]


def test_link_beyond_the_largest_count_is_emlink(mnt: Mount) -> None:
    """The gateway's count of names is what counts (links made by other clients): its
    refusal at 65,000 names is EMLINK, and no name is made."""
    import sqlalchemy as sa

    write(str(mnt.path / "f"), b"x")
    assert mnt.cli("sync").returncode == 0
    with CloudClient(mnt.cluster.address, session_token=mnt.account.token) as client:
        file_id = client.stat(path="/f").file.file_id
    engine = sa.create_engine(mnt.cluster.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE files SET nlink = 65000 WHERE id = :id"),
                         {"id": file_id})
    finally:
        engine.dispose()
    assert _errno(os.link, mnt.path / "f", mnt.path / "g") == errno.EMLINK
    assert not os.path.exists(mnt.path / "g")
