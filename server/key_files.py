"""The keys a cluster needs that live outside the database, by name.

A database copy alone does not bring a cluster back: nodes prove themselves with the
cluster secret (which also signs the read tokens clients show to nodes), one-time codes
are hashed under the OTP key, the admin CLI holds the admin key, and the Campay stand-in's
control API has its own key. The gateway keeps each in ``DATA_DIR/NAME`` (0600) unless
the environment sets it; a metadata backup carries them, and a restore writes them back.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cloudgrpc_proto.errors import AlreadyExists
from cloudgrpc_proto.private_files import private_dir, read_private, write_private

from .config import Settings

ADMIN_KEY_FILE = "admin_key"
CLUSTER_SECRET_FILE = "cluster_secret"
OTP_KEY_FILE = "otp_key"
STANDIN_KEY_FILE = "campay_standin_key"

# The environment variable that overrides each key file (the stand-in key has none).
KEY_ENV: dict[str, str] = {
    ADMIN_KEY_FILE: "ADMIN_KEY",
    CLUSTER_SECRET_FILE: "CLUSTER_SECRET",
    OTP_KEY_FILE: "OTP_KEY",
}


def cluster_keys(settings: Settings) -> dict[str, str]:
    """The keys this gateway runs with (resolved settings, plus the stand-in's key file
    when there is one), by file name. Secrets: never log the values."""
    keys = {ADMIN_KEY_FILE: settings.admin_key, CLUSTER_SECRET_FILE: settings.cluster_secret,
            OTP_KEY_FILE: settings.otp_key}
    try:
        keys[STANDIN_KEY_FILE] = read_private(
            settings.data_dir / STANDIN_KEY_FILE).decode("utf-8").strip()
    except FileNotFoundError:
        pass
    return {name: value for name, value in keys.items() if value}


@dataclass
class KeyPlan:
    """What restoring a backup's keys into a data folder will do."""

    data_dir: Path
    write: dict[str, str] = field(default_factory=dict)   # missing or replaced (told to)
    replaced: list[str] = field(default_factory=list)     # different file, overwritten
    kept: list[str] = field(default_factory=list)         # the same key is there already
    # Set in the environment to another value: the environment wins at start.
    environment_differs: list[str] = field(default_factory=list)


def plan_key_restore(data_dir: Path, keys: Mapping[str, str], overwrite: bool,
                     environ: Mapping[str, str] = os.environ) -> KeyPlan:
    """Compare a backup's keys with ``data_dir``; ``AlreadyExists`` names the files that
    hold a different key unless ``overwrite`` (nothing is written here)."""
    plan = KeyPlan(data_dir)
    conflicts: list[str] = []
    for name, value in sorted(keys.items()):
        if name not in (*KEY_ENV, STANDIN_KEY_FILE) or "/" in name:
            continue  # a name this version does not know: never a path of our choosing
        current = _read_key(data_dir / name)
        if current == value:
            plan.kept.append(name)
        elif current is None or overwrite:
            plan.write[name] = value
            if current is not None:
                plan.replaced.append(name)
        else:
            conflicts.append(name)
        env_name = KEY_ENV.get(name)
        if env_name and environ.get(env_name, "").strip() not in ("", value):
            plan.environment_differs.append(env_name)
    if conflicts:
        listed = ", ".join(str(data_dir / n) for n in conflicts)
        raise AlreadyExists(
            f"{listed} already hold(s) a different key than the backup: move them away, or "
            "pass --overwrite-keys to replace them (nodes and admin CLIs must then use the "
            "backup's keys)")
    return plan


def write_keys(plan: KeyPlan) -> None:
    """Write the planned keys, each 0600 (temporary file, fsync, rename) in a 0700 folder."""
    private_dir(plan.data_dir)
    for name, value in plan.write.items():
        write_private(plan.data_dir / name, (value + "\n").encode("utf-8"))


def _read_key(path: Path) -> str | None:
    try:
        return read_private(path).decode("utf-8").strip()
    except FileNotFoundError:
        return None
