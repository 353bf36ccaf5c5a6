"""Where the admin CLI finds the admin key.

In order: ``--admin-key``, ``$ADMIN_KEY`` (or ``ADMIN_KEY`` in ``.env``), then the file
``$DATA_DIR/admin_key`` that the gateway writes when no ADMIN_KEY is configured (``DATA_DIR``
defaults to ``./data``, as for the gateway), so the operator of a one-machine demo needs no
configuration at all.
"""

from __future__ import annotations

import pathlib

from cloudgrpc_proto import environment
from cloudgrpc_proto.errors import PermissionDenied


def key_file() -> pathlib.Path:
    return pathlib.Path(environment.get_str("DATA_DIR", "") or "data") / "admin_key"


def resolve_admin_key(explicit: str | None = None) -> str:
    if explicit:
        return explicit.strip()
    key = environment.get_str("ADMIN_KEY", "").strip()
    if key:
        return key
    path = key_file()
    try:
        key = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        key = ""
    except OSError as exc:
        raise PermissionDenied(f"cannot read the admin key in {path}: "
                               f"{exc.strerror or exc}") from exc
    if not key:
        raise PermissionDenied(f"no admin key: pass --admin-key, set ADMIN_KEY, or run where "
                               f"{path} (written by the gateway) is readable")
    return key
