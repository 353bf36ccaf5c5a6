"""``cloudgrpc``: the user CLI (account, session, files, and the mount's commands).

Every failure ends as one readable line on stderr and the typed error's exit code, so
scripts can tell "not signed in" (7) from "no such file" (4) from "gateway unreachable" (12)
from "data unreadable" (14) from "the gateway answered that the cluster cannot serve" (15).
``mount``, ``umount``, ``status`` and ``sync`` belong to the mount and are handed to
``cloudgrpc_fusefs.mount_cli`` by ``mount_commands`` (imported lazily: pyfuse3 is an optional
extra); the console script (``launcher``) does so before this module is even loaded.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

from cloudgrpc_proto import errors
from cloudgrpc_proto.client import not_signed_in
from cloudgrpc_proto.environment import ConfigError
from cloudgrpc_proto.session_store import SessionStoreError

from . import account_commands as account
from . import file_commands as files
from .context import Context, UsageError
from .mount_commands import run_mount, split_mount
from .output import Output

CONNECTION_HINTS = (
    "failed to connect",
    "connection refused",
    "dns resolution",
    "connect failed",
    "name resolution",
    "socket closed",
    "connection reset",
    "no route to host",
    "failed to pick subchannel",
    "unavailable",
)

try:
    from importlib.metadata import version as _dist_version

    VERSION = _dist_version("cloudgrpc")
except Exception:  # noqa: BLE001 - running from a source tree without metadata
    VERSION = "unknown"


class ParserExit(Exception):
    """argparse wanted to exit (``--help``): the shell must survive it, ``main`` returns it."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, with one-line errors.

    A command's parser (``intermix``) takes options anywhere among its arguments, as ``cp``
    does: ``upload SRC --name X DEST`` as well as ``upload --name X SRC DEST``. Plain argparse
    stops filling ``SRC...`` at the first option and then calls ``DEST`` unrecognized.
    Arguments after ``--`` keep argparse's own rule (everything there is positional).
    """

    intermix = False
    _intermixing = False

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            print(message.rstrip(), file=sys.stderr)
        raise ParserExit(status)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if not self._intermixing and self._may_intermix(args):
            self._intermixing = True  # parse_known_intermixed_args calls back in here
            try:
                return self.parse_known_intermixed_args(args, namespace)
            finally:
                self._intermixing = False
        return super().parse_known_args(args, namespace)

    def _may_intermix(self, args: Sequence[str] | None) -> bool:
        """Only a command's own parser, without sub-commands or a REMAINDER, and no ``--``."""
        if not self.intermix or (args is not None and "--" in args):
            return False
        return all(a.nargs not in (argparse.REMAINDER, argparse.PARSER) for a in self._actions)


def _add_globals(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        metavar="HOST:PORT",
        default=None,
        help="gateway address (default: $CLOUDGRPC_SERVER or localhost:50051)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="deadline of each call (default 30)",
    )
    parser.add_argument(
        "--tls-ca",
        metavar="FILE",
        default=None,
        help="CA certificate: talk TLS to the gateway (default: $CLOUDGRPC_TLS_CA)",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of failures")


def _add_code_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--otp",
        metavar="CODE",
        help="a code you already received (nothing is sent); default: send one and prompt",
    )
    parser.add_argument(
        "--send-code", action="store_true", help="only mail a code, for a later --otp"
    )


def _add_rate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--limit-rate",
        type=files.parse_size,
        default=None,
        metavar="RATE",
        help="at most RATE bytes per second in all (e.g. 512K, 10M)",
    )


def build_parser(prog: str = "cloudgrpc") -> Parser:
    parser = Parser(
        prog=prog,
        description="CloudGrpc: your cloud drive from the command line.",
        epilog="Paths are remote paths from the account root (/docs/a.pdf); "
        "file and folder ids work wherever a path does. Exit status: 0 done, 1 failed, "
        "2 usage, 4 not found, 5 exists, 6 permission denied, 7 not signed in, "
        "8 quota or storage full, 9 busy (rate or load limit: try again shortly), "
        "10 precondition, 11 conflict, 12 gateway unreachable, 13 not supported, "
        "14 data unreadable, 15 cluster unavailable (the gateway answered: too few nodes, "
        "database down).",
    )
    _add_globals(parser)
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, func: Any, help_text: str, **kwargs: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, **kwargs)
        p.intermix = True
        p.set_defaults(func=func)
        return p

    # -- account ---------------------------------------------------------------------------
    p = command("enroll", account.cmd_enroll, "create an account (a code is mailed to EMAIL)")
    p.add_argument("email", metavar="EMAIL")
    p.add_argument("name", metavar="NAME", help="your full name (quote it)")
    _add_code_options(p)
    p = command("login", account.cmd_login, "sign in with a code mailed to EMAIL")
    p.add_argument("email", metavar="EMAIL")
    _add_code_options(p)
    command("logout", account.cmd_logout, "sign out and forget the session")
    p = command("whoami", account.cmd_whoami, "who is signed in, and where the session is kept")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = command("storage", account.cmd_storage, "allocated, used and available storage")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = command(
        "devices",
        account.cmd_devices,
        "list the account's signed-in devices, or end one (revoke ID)",
        usage="%(prog)s [--json] | revoke ID",
        epilog="exit status: 0 done, 4 no such device, 7 not signed in, "
        "12 gateway unreachable",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    dsub = p.add_subparsers(dest="action", metavar="ACTION", prog=f"{prog} devices")
    d = dsub.add_parser("list", help="the devices (the default)")
    d.add_argument("--json", action="store_true", help="machine-readable output")
    d = dsub.add_parser("revoke", help="end a device and its sessions now")
    d.add_argument("device_id", metavar="ID", help="the device's id (see cloudgrpc devices)")

    # -- files -----------------------------------------------------------------------------
    p = command(
        "upload",
        files.cmd_upload,
        "upload files (and trees with -r) into a remote folder",
        usage="%(prog)s [options] SRC... [DEST_DIR]",
    )
    p.add_argument("paths", nargs="+", metavar="SRC", help="local files ('-' = stdin)")
    p.add_argument("-r", "--recursive", action="store_true", help="upload folders and their tree")
    p.add_argument("-j", "--jobs", type=int, default=4, metavar="N", help="files in parallel (4)")
    p.add_argument(
        "-t", "--target-dir", metavar="DEST_DIR", default=None, help="remote folder (created)"
    )
    p.add_argument("--name", default="", help="remote name of a single uploaded file")
    p.add_argument("-n", "--no-clobber", action="store_true", help="skip files that exist remotely")
    p.add_argument("--no-dedup", action="store_true", help="send every byte (no chunk references)")
    _add_rate(p)
    p.add_argument("--json", action="store_true", help="print what each upload moved, as JSON")
    p = command("download", files.cmd_download, "download a file (by path or id)")
    p.add_argument("remote", metavar="REMOTE")
    p.add_argument("local", metavar="LOCAL", nargs="?", default=None, help="file, folder or -")
    p.add_argument("-r", "--recursive", action="store_true", help="download a folder's tree")
    p.add_argument("--offset", type=int, default=0, help="first byte (ranged download)")
    p.add_argument("--length", type=int, default=0, help="bytes to fetch (0 = to the end)")
    p.add_argument("-j", "--jobs", type=int, default=4, metavar="N", help="files in parallel (4)")
    _add_rate(p)
    p = command("ls", files.cmd_ls, "list a folder (name, size, type, modified, id)")
    p.add_argument("path", metavar="PATH", nargs="?", default="")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-a", "--all", action="store_true", help="include entries in the trash")
    p = command("rm", files.cmd_rm, "move to the trash (or delete with --permanent)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("-r", "--recursive", action="store_true", help="remove folders")
    p.add_argument("-f", "--force", action="store_true", help="ignore missing paths")
    p.add_argument("--permanent", action="store_true", help="skip the trash")
    p = command("mkdir", files.cmd_mkdir, "create folders")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument(
        "-p", "--parents", action="store_true", help="create parents, no error if any exist"
    )
    p = command("mv", files.cmd_mv, "move or rename a file or folder")
    p.add_argument("src", metavar="SRC")
    p.add_argument("dst", metavar="DST")
    p.add_argument("-n", "--no-clobber", action="store_true", help="never replace a file")
    p = command(
        "share",
        files.cmd_share,
        "share a file with someone, list or revoke shares",
        usage="%(prog)s PATH EMAIL [--permission read|write] | --list [PATH] | "
        "--revoke ID | --with-me",
    )
    p.add_argument("path", metavar="PATH", nargs="?")
    p.add_argument("email", metavar="EMAIL", nargs="?")
    p.add_argument("--permission", choices=("read", "write"), default="read")
    p.add_argument("--list", action="store_true", help="shares you made (of PATH)")
    p.add_argument("--with-me", action="store_true", help="files others shared with you")
    p.add_argument(
        "--revoke",
        metavar="ID",
        nargs="?",
        const="",
        default=None,
        help="revoke share ID (or PATH EMAIL)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = command("trash", files.cmd_trash, "list, restore or empty the trash")
    tsub = p.add_subparsers(dest="action", metavar="ACTION")
    t = tsub.add_parser("list", help="what is in the trash")
    t.add_argument("--json", action="store_true", help="machine-readable output")
    t = tsub.add_parser("restore", help="put an entry back (by original path or id)")
    t.add_argument("ref", metavar="PATH_OR_ID")
    t.add_argument("--to", metavar="DIR", default="", help="restore into this folder")
    t.add_argument("--name", default="", help="restore under this name")
    t = tsub.add_parser("empty", help="delete for good (everything, or the entries named)")
    t.add_argument("refs", metavar="PATH_OR_ID", nargs="*")
    t.add_argument("-y", "--yes", action="store_true", help="do not ask")
    p.set_defaults(json=False)
    command("shell", _cmd_shell, "interactive mode (the seed's commands)")

    # -- the mount (handed to mount_cli before parsing; listed here for --help) ------------
    for name, text in (
        ("mount", "mount the account at DIR (background; -f foreground)"),
        ("umount", "upload pending writes, then unmount DIR"),
        ("status", "uploads pending and in flight"),
        ("sync", "wait until every staged write is stored"),
    ):
        p = command(name, _cmd_mount_placeholder, text, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def _cmd_shell(ctx: Context, args: argparse.Namespace) -> int:
    from .shell import Shell

    return Shell(ctx, build_parser).run()


def _cmd_mount_placeholder(ctx: Context, args: argparse.Namespace) -> int:
    return run_mount([], args.command, list(args.rest), ctx.server, ctx.tls_ca, ctx.out)


# -- the mount's commands ----------------------------------------------------------------------


# -- running commands --------------------------------------------------------------------------


def _auth_message(ctx: Context, command: str, exc: errors.Unauthenticated) -> str:
    if command in ("login", "enroll"):
        return exc.message
    if "not signed in" in exc.message:
        return not_signed_in(ctx.target)
    try:
        stored = ctx.store.load()
    except SessionStoreError:
        stored = None
    email = stored.email if stored and stored.email else "EMAIL"
    return f"session on {ctx.target} expired or revoked: run cloudgrpc login {email}"


def _unavailable_message(ctx: Context, exc: errors.CloudError) -> str:
    lowered = exc.message.lower()
    if any(hint in lowered for hint in CONNECTION_HINTS):
        return f"cannot reach the gateway at {ctx.target}: {exc.message}"
    return exc.message


def run_command(ctx: Context, args: argparse.Namespace) -> int:
    """Run one parsed command; every failure becomes one stderr line and an exit code."""
    command = getattr(args, "command", "") or ""
    try:
        return int(args.func(ctx, args) or 0)
    except KeyboardInterrupt:
        ctx.out.error("interrupted")
        return 130
    except errors.Unauthenticated as exc:
        ctx.out.error(_auth_message(ctx, command, exc))
        return exc.exit_code
    except errors.ClusterUnavailable as exc:
        _debug(ctx)
        ctx.out.error(files.describe_error(exc))
        return exc.exit_code
    except (errors.Unavailable, errors.DeadlineExceeded) as exc:
        _debug(ctx)
        ctx.out.error(_unavailable_message(ctx, exc))
        return exc.exit_code
    except errors.DataLoss as exc:
        _debug(ctx)
        ctx.out.error(files.describe_error(exc))
        return exc.exit_code
    except errors.CloudError as exc:
        _debug(ctx)
        ctx.out.error(exc.message)
        return exc.exit_code
    except UsageError as exc:
        ctx.out.error(str(exc))
        return UsageError.exit_code
    except (SessionStoreError, ConfigError) as exc:
        _debug(ctx)
        ctx.out.error(str(exc))
        return 1
    except BrokenPipeError:
        # the reader went away (``cloudgrpc ls / | head``): stop quietly as ls does; what
        # is still buffered for stdout must not fail again at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as exc:
        _debug(ctx)
        ctx.out.error(files.describe_error(exc))
        return files._exit_code(exc)
    except files.Cancelled:
        ctx.out.error("interrupted")
        return 130


def _debug(ctx: Context) -> None:
    if ctx.debug:
        traceback.print_exc()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cloudgrpc`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out = Output()
    split = split_mount(argv)
    if split is not None:
        return run_mount(*split, out=out)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        out.error(str(exc))
        return UsageError.exit_code
    except ParserExit as exc:
        return exc.status
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return UsageError.exit_code
    ctx = Context(
        server=args.server, timeout=args.timeout, tls_ca=args.tls_ca, debug=args.debug, out=out
    )
    try:
        return run_command(ctx, args)
    finally:
        ctx.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
