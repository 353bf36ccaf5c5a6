"""The mount's commands (``mount``, ``umount``, ``status``, ``sync``) as ``cloudgrpc`` runs them.

They are found in the command line before the rest of the CLI is loaded and handed to
``cloudgrpc_fusefs.mount_cli``: ``cloudgrpc sync`` and ``cloudgrpc status`` run in shell
loops and scripts, and without the gRPC client they start in a quarter of the time. Only the
global options that matter to a mount (``--server``, ``--tls-ca``) are read here.
"""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Sequence

from .mount_support import MOUNT_MISSING, MOUNT_MISSING_EXIT, is_missing_mount_support
from .output import Output

MOUNT_COMMANDS = ("mount", "umount", "status", "sync")
GLOBAL_WITH_VALUE = ("--server", "--timeout", "--tls-ca")


class GlobalOptionError(Exception):
    """A global option before a mount command is malformed (exit 2, as a usage error)."""


def split_mount(argv: Sequence[str]) -> tuple[list[str], str, list[str]] | None:
    """(global options, command, rest) when the command is one of the mount's."""
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in GLOBAL_WITH_VALUE:
            i += 2
            continue
        if token.startswith("-"):
            i += 1
            continue
        if token in MOUNT_COMMANDS:
            return list(argv[:i]), token, list(argv[i + 1 :])
        return None
    return None


class _Globals(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise GlobalOptionError(f"{message} (see cloudgrpc --help)")


def _global_options(argv: list[str]) -> argparse.Namespace:
    parser = _Globals(prog="cloudgrpc", add_help=False)
    parser.add_argument("--server", default=None)
    parser.add_argument("--tls-ca", default=None)
    parser.add_argument("--timeout", type=float, default=None)
    parser.add_argument("--debug", action="store_true")
    known, _ = parser.parse_known_args(argv)
    return known


def run_mount(
    global_argv: list[str],
    command: str,
    rest: list[str],
    server: str | None = None,
    tls_ca: str | None = None,
    out: Output | None = None,
) -> int:
    """Run one of the mount's commands; returns its exit status."""
    out = out or Output()
    if global_argv:
        try:
            known = _global_options(global_argv)
        except GlobalOptionError as exc:
            out.error(str(exc))
            return 2
        server = known.server or server
        tls_ca = known.tls_ca or tls_ca
    try:
        module = importlib.import_module("cloudgrpc_fusefs.mount_cli")
    except ImportError as exc:
        if is_missing_mount_support(exc):
            out.error(MOUNT_MISSING)
            return MOUNT_MISSING_EXIT
        raise
    if tls_ca:
        os.environ["CLOUDGRPC_TLS_CA"] = tls_ca
    forward = (["--server", server] if server else []) + [command, *rest]
    return int(module.main(forward) or 0)
