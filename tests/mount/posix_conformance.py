"""A POSIX conformance run on the core syscalls, in the manner of pjdfstest.

Each case makes what it needs in a fresh empty folder, calls the syscalls it is about and
returns what a program would observe: the errno of every failing call, file types, modes,
link counts, sizes, owners, content, and which times moved. The same cases run in a local
ext4 folder and in the mount, as root and as a second local user; a case passes when the
mount's observations equal the local folder's. The local run proves the case itself right.

Standard library only, so that any user can run it with the system Python:

    python3 tests/mount/posix_conformance.py DIR            # observations as JSON
    python3 tests/mount/posix_conformance.py --compare LOCAL MOUNTED
                                                            # passed / total, and the diffs

Nothing here depends on inode numbers, atime (relatime), folder sizes or st_blocks beyond
"covers the size", which legitimately differ between filesystems.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import socket
import stat
import sys
import time
from collections.abc import Callable

OLD_NS = 1_000_000_000_123_456_789
SET_NS = 1_234_567_890_987_654_321
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
_libc = ctypes.CDLL(None, use_errno=True)

Case = Callable[[str], list[object]]
CASES: dict[str, Case] = {}


def case(fn: Case) -> Case:
    CASES[fn.__name__] = fn
    return fn


def e(fn: Callable[..., object], *args: object, **kwargs: object) -> str:
    """'ok', or the errno name the call failed with."""
    try:
        result = fn(*args, **kwargs)
    except OSError as err:
        return errno.errorcode.get(err.errno or 0, str(err.errno))
    if isinstance(result, int) and fn is os.open:
        os.close(result)
    return "ok"


def kind(mode: int) -> str:
    for test, name in ((stat.S_ISREG, "reg"), (stat.S_ISDIR, "dir"), (stat.S_ISLNK, "lnk"),
                       (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "sock"), (stat.S_ISCHR, "chr"),
                       (stat.S_ISBLK, "blk")):
        if test(mode):
            return name
    return "?"


def st(path: str) -> str:
    """Type, permission bits, link count, size (files and links), owner of an entry."""
    s = os.lstat(path)
    size = s.st_size if kind(s.st_mode) in ("reg", "lnk") else "-"
    perms = stat.S_IMODE(s.st_mode)
    return f"{kind(s.st_mode)} {perms:o} {s.st_nlink} {size} {s.st_uid}:{s.st_gid}"


def write(path: str, data: bytes = b"", mode: int = 0o644,
          flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> None:
    fd = os.open(path, flags, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def moved(op: Callable[[], object], *watched: str) -> list[str]:
    """Run op; for each watched path say which of its mtime (m) and ctime (c) moved."""
    for path in watched:
        os.utime(path, ns=(OLD_NS, OLD_NS), follow_symlinks=False)
    before = [os.lstat(path).st_ctime_ns for path in watched]
    time.sleep(0.012)  # past the clock tick ext4 stamps ctime with
    op()
    seen = []
    for path, ctime in zip(watched, before, strict=True):
        s = os.lstat(path)
        seen.append(("m" if s.st_mtime_ns != OLD_NS else "-")
                    + ("c" if s.st_ctime_ns != ctime else "-"))
    return seen


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def utimensat(path: str, atime: int | str, mtime: int | str, flags: int = 0) -> None:
    def spec(value: int | str) -> _Timespec:
        if value == "now":
            return _Timespec(0, UTIME_NOW)
        if value == "omit":
            return _Timespec(0, UTIME_OMIT)
        assert isinstance(value, int)
        return _Timespec(value // 10**9, value % 10**9)

    times = (_Timespec * 2)(spec(atime), spec(mtime))
    if _libc.utimensat(AT_FDCWD, path.encode(), times, flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def is_root() -> bool:
    return os.geteuid() == 0


# --- open -----------------------------------------------------------------------------

@case
def open_creates_with_the_mode_less_umask(d: str) -> list[object]:
    out: list[object] = []
    for mode in (0o644, 0o600, 0o777, 0o000, 0o4755, 0o1777):
        write(f"{d}/f{mode:o}", mode=mode)
        out.append(st(f"{d}/f{mode:o}"))
    return out


@case
def open_error_paths(d: str) -> list[object]:
    write(f"{d}/f", b"x")
    os.mkdir(f"{d}/dir")
    os.symlink("dangling", f"{d}/dl")
    os.symlink("f", f"{d}/lf")
    creat = os.O_CREAT | os.O_WRONLY
    return [
        e(os.open, f"{d}/f", creat | os.O_EXCL),
        e(os.open, f"{d}/none", os.O_RDONLY),
        e(os.open, f"{d}/none/x", creat),
        e(os.open, f"{d}/f/x", creat),
        e(os.open, f"{d}/f", os.O_RDONLY | os.O_DIRECTORY),
        e(os.open, f"{d}/dir", os.O_WRONLY),
        e(os.open, f"{d}/dir", os.O_RDWR),
        e(os.open, f"{d}/dir", creat),
        e(os.open, f"{d}/{'n' * 256}", creat),
        e(os.open, f"{d}/{'n' * 255}", creat),
        e(os.open, f"{d}/dl", creat | os.O_EXCL),
        e(os.open, f"{d}/lf", os.O_RDONLY | os.O_NOFOLLOW),
        e(os.open, f"{d}/dl", creat),  # creates the link's target
        sorted(os.listdir(d)).__len__(),
    ]


@case
def open_creat_keeps_an_existing_file(d: str) -> list[object]:
    write(f"{d}/f", b"keep", mode=0o600)
    fd = os.open(f"{d}/f", os.O_CREAT | os.O_WRONLY, 0o777)
    os.close(fd)
    return [st(f"{d}/f"), read(f"{d}/f").decode()]


@case
def open_trunc_moves_times(d: str) -> list[object]:
    write(f"{d}/f", b"data")
    write(f"{d}/g", b"data")
    return [
        moved(lambda: os.close(os.open(f"{d}/f", os.O_WRONLY | os.O_TRUNC)), f"{d}/f", d),
        moved(lambda: os.close(os.open(f"{d}/g", os.O_WRONLY)), f"{d}/g"),
        os.stat(f"{d}/f").st_size,
    ]


@case
def open_symlink_loops(d: str) -> list[object]:
    os.symlink("b", f"{d}/a")
    os.symlink("a", f"{d}/b")
    os.symlink("self", f"{d}/self")
    return [e(os.open, f"{d}/a", os.O_RDONLY), e(os.stat, f"{d}/self"),
            e(os.open, f"{d}/a/x", os.O_CREAT | os.O_WRONLY), e(os.mkdir, f"{d}/a/x")]


@case
def open_permissions(d: str) -> list[object]:
    write(f"{d}/none", b"x", mode=0o000)
    write(f"{d}/wo", b"x", mode=0o200)
    write(f"{d}/ro", b"x", mode=0o400)
    os.chmod(f"{d}/none", 0o000)
    os.chmod(f"{d}/wo", 0o200)
    os.chmod(f"{d}/ro", 0o400)
    os.mkdir(f"{d}/rx", 0o555)
    os.mkdir(f"{d}/noexec", 0o777)
    write(f"{d}/noexec/f", b"x")
    os.chmod(f"{d}/noexec", 0o666)
    out = [e(os.open, f"{d}/none", os.O_RDONLY), e(os.open, f"{d}/wo", os.O_RDONLY),
           e(os.open, f"{d}/wo", os.O_WRONLY), e(os.open, f"{d}/ro", os.O_WRONLY),
           e(os.open, f"{d}/ro", os.O_RDONLY), e(os.open, f"{d}/rx/new", os.O_CREAT | os.O_WRONLY),
           e(os.stat, f"{d}/noexec/f"), e(os.listdir, f"{d}/noexec")]
    os.chmod(f"{d}/noexec", 0o777)
    os.chmod(f"{d}/rx", 0o755)
    return out


@case
def open_fifo(d: str) -> list[object]:
    os.mkfifo(f"{d}/p", 0o644)
    return [e(os.open, f"{d}/p", os.O_RDWR), e(os.open, f"{d}/p", os.O_WRONLY | os.O_NONBLOCK),
            e(os.open, f"{d}/p", os.O_RDONLY | os.O_NONBLOCK), st(f"{d}/p")]


# --- mkdir / rmdir --------------------------------------------------------------------

@case
def mkdir_modes_and_link_counts(d: str) -> list[object]:
    out: list[object] = []
    for mode in (0o755, 0o700, 0o777, 0o1777, 0o000):
        os.mkdir(f"{d}/d{mode:o}", mode)
        out.append(st(f"{d}/d{mode:o}"))
    out.append(os.stat(d).st_nlink)
    os.rmdir(f"{d}/d755")
    out.append(os.stat(d).st_nlink)
    os.makedirs(f"{d}/a/b/c")
    out += [os.stat(f"{d}/a").st_nlink, os.stat(f"{d}/a/b/c").st_nlink]
    os.chmod(f"{d}/d0", 0o755)
    return out


@case
def mkdir_error_paths(d: str) -> list[object]:
    write(f"{d}/f")
    os.mkdir(f"{d}/dir")
    os.symlink("dir", f"{d}/l")
    os.mkdir(f"{d}/ro", 0o555)
    out = [e(os.mkdir, f"{d}/dir"), e(os.mkdir, f"{d}/f"), e(os.mkdir, f"{d}/l"),
           e(os.mkdir, f"{d}/none/x"), e(os.mkdir, f"{d}/f/x"), e(os.mkdir, f"{d}/{'n' * 256}"),
           e(os.mkdir, f"{d}/ro/x")]
    os.chmod(f"{d}/ro", 0o755)
    return out


@case
def mkdir_and_rmdir_move_parent_times(d: str) -> list[object]:
    os.mkdir(f"{d}/p")
    return [moved(lambda: os.mkdir(f"{d}/p/s"), f"{d}/p"),
            moved(lambda: os.rmdir(f"{d}/p/s"), f"{d}/p")]


@case
def rmdir_error_paths(d: str) -> list[object]:
    os.makedirs(f"{d}/full/sub")
    write(f"{d}/f")
    os.mkdir(f"{d}/dir")
    os.symlink("dir", f"{d}/l")
    os.makedirs(f"{d}/ro/empty")
    os.chmod(f"{d}/ro", 0o555)
    out = [e(os.rmdir, f"{d}/full"), e(os.rmdir, f"{d}/f"), e(os.rmdir, f"{d}/none"),
           e(os.rmdir, f"{d}/l"), e(os.rmdir, f"{d}/dir/."), e(os.rmdir, f"{d}/ro/empty"),
           e(os.rmdir, f"{d}/dir"), os.path.exists(f"{d}/dir")]
    os.chmod(f"{d}/ro", 0o755)
    return out


# --- unlink ---------------------------------------------------------------------------

@case
def unlink_kinds(d: str) -> list[object]:
    write(f"{d}/f", b"x")
    os.symlink("f", f"{d}/l")
    os.mkfifo(f"{d}/p")
    os.mkdir(f"{d}/dir")
    out = [e(os.unlink, f"{d}/l"), os.path.exists(f"{d}/f"), e(os.unlink, f"{d}/p"),
           e(os.unlink, f"{d}/dir"), e(os.unlink, f"{d}/none"), e(os.unlink, f"{d}/f/x"),
           moved(lambda: os.unlink(f"{d}/f"), d), sorted(os.listdir(d))]
    return out


@case
def unlink_needs_write_on_the_folder(d: str) -> list[object]:
    os.mkdir(f"{d}/ro")
    write(f"{d}/ro/f", b"x")
    os.chmod(f"{d}/ro", 0o555)
    out = [e(os.unlink, f"{d}/ro/f"), os.path.exists(f"{d}/ro/f")]
    os.chmod(f"{d}/ro", 0o755)
    return out


@case
def unlink_of_one_link_moves_the_others_ctime(d: str) -> list[object]:
    write(f"{d}/a", b"x")
    os.link(f"{d}/a", f"{d}/b")
    return [moved(lambda: os.unlink(f"{d}/a"), f"{d}/b"), st(f"{d}/b")]


# --- rename ---------------------------------------------------------------------------

@case
def rename_files(d: str) -> list[object]:
    write(f"{d}/a", b"A")
    write(f"{d}/b", b"B")
    os.mkdir(f"{d}/dir")
    out = [moved(lambda: os.rename(f"{d}/a", f"{d}/b"), d), read(f"{d}/b").decode(),
           os.path.exists(f"{d}/a")]
    out.append(moved(lambda: os.rename(f"{d}/b", f"{d}/dir/c"), d, f"{d}/dir"))
    out.append(sorted(os.listdir(f"{d}/dir")))
    os.rename(f"{d}/dir/c", f"{d}/dir/c")  # onto itself: nothing happens
    out.append(read(f"{d}/dir/c").decode())
    return out


@case
def rename_moves_the_entrys_ctime(d: str) -> list[object]:
    write(f"{d}/a", b"A")
    os.mkdir(f"{d}/s")
    return [_renamed_ctime(f"{d}/a", f"{d}/b"), _renamed_ctime(f"{d}/s", f"{d}/t")]


def _renamed_ctime(old: str, new: str) -> str:
    os.utime(old, ns=(OLD_NS, OLD_NS))
    before = os.lstat(old).st_ctime_ns
    time.sleep(0.012)
    os.rename(old, new)
    s = os.lstat(new)
    return ("m" if s.st_mtime_ns != OLD_NS else "-") + ("c" if s.st_ctime_ns != before else "-")


@case
def rename_folders(d: str) -> list[object]:
    os.makedirs(f"{d}/a/sub")
    os.mkdir(f"{d}/b")
    os.mkdir(f"{d}/empty")
    os.makedirs(f"{d}/full/x")
    write(f"{d}/f")
    out = [e(os.rename, f"{d}/a", f"{d}/a/sub/in"), e(os.rename, f"{d}/a", f"{d}/f"),
           e(os.rename, f"{d}/f", f"{d}/empty"), e(os.rename, f"{d}/b", f"{d}/full"),
           e(os.rename, f"{d}/none", f"{d}/x"), e(os.rename, f"{d}/f", f"{d}/none/x"),
           e(os.rename, f"{d}/a", f"{d}/{'n' * 256}")]
    out.append([os.stat(f"{d}/a").st_nlink, os.stat(f"{d}/b").st_nlink])
    out.append(e(os.rename, f"{d}/a/sub", f"{d}/b/sub"))
    out.append([os.stat(f"{d}/a").st_nlink, os.stat(f"{d}/b").st_nlink])
    out.append(e(os.rename, f"{d}/b", f"{d}/empty"))  # onto an empty folder: replaces it
    out.append(sorted(os.listdir(d)))
    out.append(sorted(os.listdir(f"{d}/empty")))
    return out


@case
def rename_links_fifos_and_same_inode(d: str) -> list[object]:
    write(f"{d}/f", b"x")
    os.symlink("f", f"{d}/l")
    os.mkfifo(f"{d}/p")
    os.link(f"{d}/f", f"{d}/h")
    out = [e(os.rename, f"{d}/l", f"{d}/l2"), os.readlink(f"{d}/l2"), st(f"{d}/f"),
           e(os.rename, f"{d}/p", f"{d}/p2"), st(f"{d}/p2"),
           e(os.rename, f"{d}/f", f"{d}/h"), sorted(os.listdir(d))]
    return out


@case
def rename_needs_write_on_both_folders(d: str) -> list[object]:
    os.mkdir(f"{d}/ro")
    write(f"{d}/ro/f")
    write(f"{d}/g")
    os.chmod(f"{d}/ro", 0o555)
    out = [e(os.rename, f"{d}/ro/f", f"{d}/f"), e(os.rename, f"{d}/g", f"{d}/ro/g"),
           sorted(os.listdir(f"{d}/ro"))]
    os.chmod(f"{d}/ro", 0o755)
    return out


# --- truncate / ftruncate -------------------------------------------------------------

@case
def truncate_sizes_and_content(d: str) -> list[object]:
    write(f"{d}/f", b"0123456789")
    out: list[object] = []
    os.truncate(f"{d}/f", 4)
    out.append(read(f"{d}/f"))
    os.truncate(f"{d}/f", 8)
    out.append(read(f"{d}/f"))
    os.truncate(f"{d}/f", 0)
    out.append(read(f"{d}/f"))
    out.append(moved(lambda: os.truncate(f"{d}/f", 3), f"{d}/f", d))
    out.append(moved(lambda: os.truncate(f"{d}/f", 3), f"{d}/f"))
    fd = os.open(f"{d}/f", os.O_RDWR)
    try:
        out.append(moved(lambda: os.ftruncate(fd, 1), f"{d}/f"))
        out.append(os.fstat(fd).st_size)
    finally:
        os.close(fd)
    return [repr(x) if isinstance(x, bytes) else x for x in out]


@case
def truncate_error_paths(d: str) -> list[object]:
    write(f"{d}/f", b"x")
    os.mkdir(f"{d}/dir")
    write(f"{d}/ro", b"x", mode=0o444)
    os.chmod(f"{d}/ro", 0o444)
    fd = os.open(f"{d}/f", os.O_RDONLY)
    try:
        ro_fd = e(os.ftruncate, fd, 0)
    finally:
        os.close(fd)
    out = [e(os.truncate, f"{d}/f", -1), e(os.truncate, f"{d}/dir", 0),
           e(os.truncate, f"{d}/none", 0), e(os.truncate, f"{d}/f", 999999999999999),
           ro_fd, e(os.truncate, f"{d}/ro", 0), os.stat(f"{d}/f").st_size]
    return out


@case
def sparse_file(d: str) -> list[object]:
    fd = os.open(f"{d}/s", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.pwrite(fd, b"end", 64 * 1024 * 1024)
    finally:
        os.close(fd)
    s = os.stat(f"{d}/s")
    with open(f"{d}/s", "rb") as handle:
        handle.seek(32 * 1024 * 1024)
        middle = handle.read(4)
    # (st_blocks is not compared: the mount counts a hole as stored, as JuiceFS does)
    return [s.st_size, repr(middle)]


@case
def beyond_the_largest_file(d: str) -> list[object]:
    fd = os.open(f"{d}/f", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        return [e(os.pwrite, fd, b"x", 1 << 45), e(os.ftruncate, fd, 1 << 45),
                os.fstat(fd).st_size]
    finally:
        os.close(fd)


@case
def blocks_cover_the_size(d: str) -> list[object]:
    write(f"{d}/f", os.urandom(100_000))
    s = os.stat(f"{d}/f")
    return [s.st_blocks * 512 >= s.st_size, s.st_blocks * 512 < s.st_size + 64 * 1024]


# --- chmod / chown --------------------------------------------------------------------

@case
def chmod_bits_and_times(d: str) -> list[object]:
    write(f"{d}/f")
    os.mkdir(f"{d}/dir")
    os.symlink("f", f"{d}/l")
    out: list[object] = []
    for mode in (0o600, 0o4755, 0o2755, 0o1755, 0o7777, 0o000):
        out.append(e(os.chmod, f"{d}/f", mode))
        out.append(st(f"{d}/f"))
    out.append(moved(lambda: os.chmod(f"{d}/dir", 0o700), f"{d}/dir"))
    out.append(st(f"{d}/dir"))
    os.chmod(f"{d}/l", 0o640)  # follows the link
    out += [st(f"{d}/f"), e(os.chmod, f"{d}/none", 0o644)]
    return out


@case
def chmod_and_chown_by_others(d: str) -> list[object]:
    """What a user may do to entries another user owns (run as root, chown first)."""
    write(f"{d}/f")
    out: list[object] = []
    if is_root():
        os.chown(f"{d}/f", 1234, 4321)
        out += [st(f"{d}/f"), e(os.chown, f"{d}/f", -1, -1), st(f"{d}/f")]
        out.append(moved(lambda: os.chown(f"{d}/f", 1235, -1), f"{d}/f"))
        os.chmod(f"{d}/f", 0o6755)
        os.chown(f"{d}/f", 1236, -1)  # a chown clears set-user/group-ID on a file
        out.append(st(f"{d}/f"))
        os.chown(f"{d}/f", 0, 0)
    else:
        uid, gid = os.getuid(), os.getgid()
        parent = f"{d}/.."  # root's folder, open to all
        out += [e(os.chmod, parent, 0o777), e(os.chown, parent, uid, -1)]
        out += [e(os.chown, f"{d}/f", 0, -1), e(os.chown, f"{d}/f", -1, 0),
                e(os.chown, f"{d}/f", uid, gid), st(f"{d}/f")]
        os.chmod(f"{d}/f", 0o2755)  # a group it is in: kept
        out.append(st(f"{d}/f"))
    return out


@case
def lchown_changes_the_link(d: str) -> list[object]:
    write(f"{d}/f")
    os.symlink("f", f"{d}/l")
    if not is_root():
        return [e(os.lchown, f"{d}/l", 0, 0)]
    os.lchown(f"{d}/l", 1234, 4321)
    return [st(f"{d}/l"), st(f"{d}/f")]


# --- utimensat ------------------------------------------------------------------------

@case
def utimensat_values(d: str) -> list[object]:
    write(f"{d}/f", b"x")
    os.symlink("f", f"{d}/l")
    out: list[object] = []
    utimensat(f"{d}/f", SET_NS, SET_NS + 1)
    s = os.stat(f"{d}/f")
    out.append([s.st_atime_ns == SET_NS, s.st_mtime_ns == SET_NS + 1])
    utimensat(f"{d}/f", "omit", OLD_NS)
    s = os.stat(f"{d}/f")
    out.append([s.st_atime_ns == SET_NS, s.st_mtime_ns == OLD_NS])
    utimensat(f"{d}/f", "now", "omit")
    s = os.stat(f"{d}/f")
    out.append([s.st_atime_ns > SET_NS, s.st_mtime_ns == OLD_NS])
    before = os.stat(f"{d}/f").st_ctime_ns
    time.sleep(0.012)
    utimensat(f"{d}/f", "omit", "omit")
    out.append(os.stat(f"{d}/f").st_ctime_ns == before)  # both omitted: nothing changes
    utimensat(f"{d}/l", SET_NS, SET_NS, AT_SYMLINK_NOFOLLOW)
    out.append([os.lstat(f"{d}/l").st_mtime_ns == SET_NS, os.stat(f"{d}/f").st_mtime_ns == OLD_NS])
    out.append(e(utimensat, f"{d}/none", "now", "now"))
    return out


@case
def utimensat_permissions(d: str) -> list[object]:
    """Setting given times needs ownership; setting now needs write permission."""
    write(f"{d}/mine", b"x")
    if is_root():
        os.chown(f"{d}/mine", 1234, 1234)
        return [e(utimensat, f"{d}/mine", SET_NS, SET_NS), e(utimensat, f"{d}/mine", "now", "now")]
    return [e(utimensat, f"{d}/mine", SET_NS, SET_NS), e(utimensat, d + "/..", SET_NS, SET_NS)]


# --- symlink / link -------------------------------------------------------------------

@case
def symlinks(d: str) -> list[object]:
    write(f"{d}/f", b"x")
    out: list[object] = [moved(lambda: os.symlink("f", f"{d}/l"), d), st(f"{d}/l"),
                         os.readlink(f"{d}/l"), e(os.symlink, "x", f"{d}/l"),
                         e(os.symlink, "x", f"{d}/f"), e(os.symlink, "x" * 4096, f"{d}/long"),
                         e(os.symlink, "x" * 4095, f"{d}/max"), e(os.readlink, f"{d}/f"),
                         e(os.symlink, "x", f"{d}/none/l"), read(f"{d}/l").decode()]
    os.symlink("/absolute/target/" + "y" * 100, f"{d}/abs")
    out += [os.readlink(f"{d}/abs"), os.lstat(f"{d}/abs").st_size]
    return out


@case
def hard_links(d: str) -> list[object]:
    write(f"{d}/f", b"x")
    os.mkdir(f"{d}/dir")
    os.symlink("f", f"{d}/l")
    os.mkfifo(f"{d}/p")
    out = [moved(lambda: os.link(f"{d}/f", f"{d}/g"), f"{d}/f", d), st(f"{d}/g"),
           e(os.link, f"{d}/f", f"{d}/g"), e(os.link, f"{d}/dir", f"{d}/dl"),
           e(os.link, f"{d}/none", f"{d}/x"), e(os.link, f"{d}/f", f"{d}/none/x"),
           e(os.link, f"{d}/l", f"{d}/l2"), st(f"{d}/l2"), e(os.link, f"{d}/p", f"{d}/p2"),
           st(f"{d}/p")]
    return out


# --- special files --------------------------------------------------------------------

@case
def fifos_sockets_devices(d: str) -> list[object]:
    out: list[object] = [moved(lambda: os.mkfifo(f"{d}/p", 0o640), d), st(f"{d}/p"),
                         e(os.mkfifo, f"{d}/p")]
    sock = socket.socket(socket.AF_UNIX)
    try:
        out.append(e(sock.bind, f"{d}/s"))
    finally:
        sock.close()
    out.append(st(f"{d}/s"))
    out.append(e(os.mknod, f"{d}/c", 0o600 | stat.S_IFCHR, os.makedev(1, 3)))
    out.append(e(os.mknod, f"{d}/b", 0o600 | stat.S_IFBLK, os.makedev(7, 0)))
    out.append(e(os.mknod, f"{d}/r", 0o600 | stat.S_IFREG))
    for name in ("c", "b", "r"):
        if os.path.lexists(f"{d}/{name}"):
            s = os.lstat(f"{d}/{name}")
            out.append([st(f"{d}/{name}"), os.major(s.st_rdev), os.minor(s.st_rdev)])
    if os.path.lexists(f"{d}/c"):  # (not opened: the mount is nodev, see the README)
        out.append(e(os.rename, f"{d}/c", f"{d}/c2"))
    out.append(sorted(os.listdir(d)))
    return out


# --- the runner -----------------------------------------------------------------------

def run(root: str) -> dict[str, object]:
    os.umask(0o022)
    results: dict[str, object] = {}
    for name, fn in CASES.items():
        d = os.path.join(root, name)
        os.mkdir(d)
        try:
            results[name] = fn(d)
        except Exception as err:  # noqa: BLE001 - a crashed case is an observation too
            results[name] = f"raised {type(err).__name__}: {err}"
    return results


def observations(results: dict[str, object]) -> int:
    """How many things the cases observed (an errno, a stat line, a time change...)."""
    return sum(len(v) if isinstance(v, list) else 1 for v in results.values())


def compare(expected: dict[str, object], got: dict[str, object]) -> tuple[int, list[str]]:
    """How many cases match, and a line per case that does not."""
    bad = [f"{name}: expected {json.dumps(want)} got {json.dumps(got.get(name))}"
           for name, want in expected.items() if got.get(name) != want]
    return len(expected) - len(bad), bad


def main(argv: list[str]) -> int:
    if argv[:1] == ["--compare"] and len(argv) == 3:
        expected, got = run(argv[1]), run(argv[2])
        passed, bad = compare(expected, got)
        print(f"{passed}/{len(expected)} cases equal ({100 * passed / len(expected):.0f} %), "
              f"{observations(expected)} observations")
        for line in bad:
            print(line)
        return 0 if not bad else 1
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(run(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
