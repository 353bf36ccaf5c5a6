"""The ``cloudgrpc`` console script: the mount's commands without loading the whole CLI.

``cloudgrpc sync`` after a copy, or ``cloudgrpc status`` in a watch loop, should not pay
for importing gRPC and every command's module; they go straight to ``mount_commands``.
Everything else is ``cloudgrpc_fusefs.cli``'s.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .mount_commands import run_mount, split_mount


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cloudgrpc`` console script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    split = split_mount(args)
    if split is not None:
        return run_mount(*split)
    from .cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
