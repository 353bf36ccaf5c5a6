"""``cloudgrpc mount|umount|status|sync``: the mount's part of the user CLI.

``cloudgrpc.cli`` imports this module lazily (pyfuse3 is an optional extra) and hands it the
arguments after the program name: ``main(["mount", "~/Cloud", "-o", "allow_other"])``.
It also runs on its own: ``python -m cloudgrpc_fusefs.mount_cli mount DIR``.

``mount`` goes to the background by default: it starts the daemon as a child process and
returns once the daemon reports the mount ready (so ``ls`` works right after), or prints
the daemon's error. ``-f`` keeps it in the foreground.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cloudgrpc_proto.display import printable
from cloudgrpc_proto.private_files import PrivatePathError, open_private

from . import control
from .mount_support import MOUNT_MISSING, MOUNT_MISSING_EXIT, is_missing_mount_support

MiB = 1024 * 1024
OUR_OPTIONS = {"cache_dir", "cache_size", "read_ahead", "upload_workers", "ttl", "threads",
               "upload_delay", "delete_delay", "prefetch", "kernel_read_ahead", "direct_reads",
               "queue_folders"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cloudgrpc", description="Mount a CloudGrpc account.")
    parser.add_argument("--server", default=None,
                        help="gateway HOST:PORT (default $CLOUDGRPC_SERVER or localhost:50051)")
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("mount", help="mount the signed-in account at DIR")
    m.add_argument("directory")
    m.add_argument("-f", "--foreground", action="store_true", help="stay in the foreground")
    m.add_argument("-o", dest="options", action="append", default=[],
                   help="comma-separated options: allow_other, cache_dir=D, cache_size=MiB, "
                        "read_ahead=N (chunks), upload_workers=N (default 8), ttl=S, "
                        "prefetch=0|1, direct_reads=0|1 (chunks from the nodes), "
                        "queue_folders=0|1 (mkdir and folder mv answered at once), "
                        "and other FUSE options")
    m.add_argument("-d", "--debug", action="store_true", help="log every request")
    m.add_argument("--server", dest="mount_server", default=None, help=argparse.SUPPRESS)
    m.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    u = sub.add_parser("umount", help="upload pending writes, then unmount DIR")
    u.add_argument("directory")
    u.add_argument("--timeout", type=float, default=600.0,
                   help="seconds to wait for pending uploads (default 600)")
    u.add_argument("--force", action="store_true",
                   help="unmount even if uploads are left (the daemon keeps retrying them)")
    s = sub.add_parser("status", help="pending and running uploads of the mounts")
    s.add_argument("directory", nargs="?")
    s.add_argument("--json", action="store_true")
    y = sub.add_parser("sync", help="wait until every staged write is stored")
    y.add_argument("directory", nargs="?")
    y.add_argument("--timeout", type=float, default=0.0, help="give up after this many seconds")
    return parser


def _split_options(raw: list[str]) -> tuple[set[str], dict[str, str]]:
    fuse: set[str] = set()
    ours: dict[str, str] = {}
    for group in raw:
        for item in group.split(","):
            item = item.strip()
            if not item:
                continue
            key, _, value = item.partition("=")
            if key in OUR_OPTIONS:
                ours[key] = value
            else:
                fuse.add(item)
    return fuse, ours


def _mount(args: argparse.Namespace, server: str | None) -> int:
    # gRPC and pyfuse3 (the optional ``fuse`` extra) only when mounting: ``sync`` and
    # ``status`` run in scripts and loops and start without them
    from cloudgrpc_proto import errors

    try:
        from .daemon import MountConfig, run
        from .vfs import Options
    except ImportError as exc:
        if not is_missing_mount_support(exc):
            raise
        print(f"cloudgrpc: {MOUNT_MISSING}", file=sys.stderr)
        return MOUNT_MISSING_EXIT

    mountpoint = os.path.abspath(os.path.expanduser(args.directory))
    if not os.path.isdir(mountpoint):
        print(f"cloudgrpc: {mountpoint}: not a directory", file=sys.stderr)
        return 2
    fuse, ours = _split_options(args.options)
    options = Options()
    if "cache_size" in ours:
        options.cache_bytes = int(float(ours["cache_size"]) * MiB)
    if "read_ahead" in ours:
        options.read_ahead = int(ours["read_ahead"])
    if "upload_workers" in ours:
        options.upload_workers = max(1, int(ours["upload_workers"]))
    if "ttl" in ours:
        options.ttl = float(ours["ttl"])
    if "threads" in ours:
        options.threads = max(2, int(ours["threads"]))
    options.threads = max(options.threads, options.upload_workers + 8)
    if "upload_delay" in ours:
        options.upload_delay = float(ours["upload_delay"])
    if "delete_delay" in ours:
        options.delete_delay = float(ours["delete_delay"])
    if "kernel_read_ahead" in ours:
        options.kernel_read_ahead_kb = int(ours["kernel_read_ahead"])
    if "prefetch" in ours:
        options.prefetch = ours["prefetch"].lower() not in ("0", "no", "off", "false")
    if "direct_reads" in ours:
        options.direct_reads = ours["direct_reads"].lower() not in ("0", "no", "off", "false")
    if "queue_folders" in ours:
        options.queue_folders = ours["queue_folders"].lower() not in ("0", "no", "off", "false")
    cache_dir = Path(os.path.expanduser(ours["cache_dir"])) if ours.get("cache_dir") else None
    if not args.foreground:
        return _spawn_background(args, server, mountpoint)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = MountConfig(mountpoint, server=server, fuse_options=fuse, cache_dir=cache_dir,
                         options=options, debug=args.debug, ready_fd=args.ready_fd)
    try:
        return run(config)
    except errors.CloudError as exc:
        print(f"cloudgrpc: cannot mount: {printable(exc.message)}", file=sys.stderr)
        return exc.exit_code
    except RuntimeError as exc:  # pyfuse3.init: not a mount point, no /dev/fuse...
        print(f"cloudgrpc: cannot mount {mountpoint}: {exc}", file=sys.stderr)
        return 1
    except PrivatePathError as exc:  # a cache, staging or runtime folder that is not ours
        print(f"cloudgrpc: cannot mount: {exc}", file=sys.stderr)
        return 1


def _spawn_background(args: argparse.Namespace, server: str | None, mountpoint: str) -> int:
    """Run the daemon as a detached child; return once it says the mount is ready."""
    read_fd, write_fd = os.pipe()
    argv = [sys.executable, "-m", "cloudgrpc_fusefs.mount_cli"]
    if server:
        argv += ["--server", server]
    argv += ["mount", mountpoint, "-f", "--ready-fd", str(write_fd)]
    for group in args.options:
        argv += ["-o", group]
    if args.debug:
        argv.append("-d")
    logfile = control.log_path(mountpoint)
    log_fd = open_private(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    with os.fdopen(log_fd, "ab") as log, open(os.devnull, "rb") as devnull:
        child = subprocess.Popen(argv, stdin=devnull, stdout=log, stderr=log,
                                 pass_fds=(write_fd,), start_new_session=True)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        answer = pipe.readline()
    if answer.strip() == b"ready":
        print(f"cloudgrpc: mounted at {mountpoint} (pid {child.pid}, log {logfile})")
        return 0
    code = child.wait()
    tail = _tail(logfile)
    print(f"cloudgrpc: mount failed (exit {code}):\n{tail}", file=sys.stderr)
    return code or 1


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _sockets(directory: str | None) -> list[Path]:
    if directory:
        path = control.socket_path(os.path.abspath(os.path.expanduser(directory)))
        return [path] if path.exists() else []
    return control.live_sockets()


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _metrics_line(m: dict[str, Any]) -> str:
    """The mount's counts in one line (``--json`` has them all, named as in the README)."""
    return (f"  queue {m.get('upload_queue_depth', 0)} ({_human(m.get('bytes_pending_upload', 0))}"
            f" to send); since mount {m.get('uploads_done', 0)} uploads "
            f"({_human(m.get('bytes_uploaded', 0))}), {m.get('uploads_failed', 0)} failed, "
            f"{_human(m.get('bytes_downloaded', 0))} downloaded; cache "
            f"{m.get('chunk_cache_hits', 0)} hits / {m.get('chunk_cache_misses', 0)} misses, "
            f"{_human(m.get('chunk_cache_bytes', 0))} of "
            f"{_human(m.get('chunk_cache_capacity', 0))}; read-ahead "
            f"{m.get('read_ahead_hits', 0)} hits")


def _print_status(reply: dict[str, Any]) -> None:
    print(f"{reply.get('mountpoint')}: {reply.get('pending', 0)} pending, "
          f"{reply.get('running', 0)} running, {reply.get('retrying', 0)} retrying, "
          f"{reply.get('failed', 0)} failed; change feed {reply.get('watch')}")
    metrics = reply.get("metrics")
    if metrics:
        print(_metrics_line(metrics))
    for job in reply.get("uploads", []):
        line = (f"  {job['state']:<8} {job['path']}  {_human(job['bytes_done'])} / "
                f"{_human(job['bytes_total'])}")
        if job.get("error"):
            line += f"  ({job['error']})"
        print(printable(line))  # paths and errors may carry others' names
    if reply.get("deletes_pending") or reply.get("deletes_failed"):
        print(f"  deletes and folder changes: {reply.get('deletes_pending', 0)} queued "
              f"({reply.get('deletes_retrying', 0)} retrying), "
              f"{reply.get('deletes_failed', 0)} failed")
    for item in reply.get("deletes", []):
        line = f"  {item.get('kind', 'delete')} {item['state']:<8} {item['path']}"
        if item.get("error"):
            line += f"  ({item['error']})"
        print(printable(line))  # paths and errors may carry others' names
    if reply.get("recovering"):
        print("  uploading staged copies left by a crashed mount...")
    for item in reply.get("recovered", []):
        line = f"  {'recovered' if item['state'] == 'uploaded' else 'NOT recovered'} " \
               f"{item['path']}"
        if item.get("renamed_to"):
            line += f" (as {item['renamed_to']})"
        if item.get("error"):
            line += f"  ({item['error']}; staged copy kept at {item['copy']})"
        print(printable(line))  # paths and errors may carry others' names


def _status(args: argparse.Namespace) -> int:
    import json

    socks = _sockets(args.directory)
    if not socks:
        print("cloudgrpc: no mount running" + (f" at {args.directory}" if args.directory
                                               else ""), file=sys.stderr)
        return 1
    for path in socks:
        try:
            reply = control.request(path, {"cmd": "status"})
        except OSError as exc:
            print(f"cloudgrpc: {path}: {exc}", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps(reply, indent=2, sort_keys=True))
        else:
            _print_status(reply)
    return 0


def _sync(args: argparse.Namespace) -> int:
    socks = _sockets(args.directory)
    if not socks:
        print("cloudgrpc: no mount running", file=sys.stderr)
        return 1
    status = 0
    for path in socks:
        reply = control.request(path, {"cmd": "sync", "timeout": args.timeout or None},
                                timeout=None)
        if reply.get("ok"):
            print(f"{reply.get('mountpoint')}: all writes stored")
        else:
            status = 1
            print(f"{reply.get('mountpoint')}: {len(reply.get('left', []))} uploads or "
                  "queued changes left:")
            for job in reply.get("left", []):
                print(printable(f"  {job['state']:<8} {job['path']}  {job.get('error', '')}"))
    return status


def _umount(args: argparse.Namespace) -> int:
    mountpoint = os.path.abspath(os.path.expanduser(args.directory))
    path = control.socket_path(mountpoint)
    if path.exists():
        try:
            reply = control.request(path, {"cmd": "sync", "timeout": args.timeout},
                                    timeout=args.timeout + 30)
        except OSError as exc:
            reply = {"ok": True, "error": str(exc)}
        if not reply.get("ok") and not args.force:
            left = reply.get("left", [])
            print(f"cloudgrpc: {len(left)} uploads or deletes not stored yet; not unmounting "
                  "(--force to unmount anyway):", file=sys.stderr)
            for job in left:
                print(printable(f"  {job['state']:<8} {job['path']}  {job.get('error', '')}"),
                      file=sys.stderr)
            return 1
    done = subprocess.run(["fusermount3", "-u", mountpoint], capture_output=True, text=True)
    if done.returncode != 0:
        print(f"cloudgrpc: {done.stderr.strip() or 'fusermount3 failed'}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + 30
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``cloudgrpc mount|umount|status|sync``; returns the exit status."""
    args = _parser().parse_args(argv)
    server = getattr(args, "mount_server", None) or args.server
    try:
        if args.command == "mount":
            return _mount(args, server)
        if args.command == "umount":
            return _umount(args)
        if args.command == "status":
            return _status(args)
        return _sync(args)
    except PrivatePathError as exc:  # the runtime folder is not ours: one line, no trace
        print(f"cloudgrpc: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
