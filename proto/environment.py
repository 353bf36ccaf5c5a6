"""Reading configuration from the process environment and an optional ``.env`` file.

Every component (gateway, node, clients) reads its settings through these helpers so that
one ``.env`` in the working directory configures them all, the process environment always
wins over the file, and a malformed value is reported by name instead of as a traceback.
"""

from __future__ import annotations

import os
import pathlib

from .private_files import read_private

_loaded: dict[str, str] | None = None


class ConfigError(ValueError):
    """A setting is present but malformed."""


def _dotenv(path: pathlib.Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        if line.startswith("export "):
            line = line[len("export ") :]
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].strip()
        values[key.strip()] = value
    return values


def dotenv_values() -> dict[str, str]:
    """The ``.env`` file of the working directory (or ``CLOUDGRPC_ENV_FILE``), read once."""
    global _loaded
    if _loaded is None:
        path = os.environ.get("CLOUDGRPC_ENV_FILE") or ".env"
        _loaded = _dotenv(pathlib.Path(path))
    return _loaded


def get_str(name: str, default: str = "") -> str:
    if name in os.environ:
        return os.environ[name]
    return dotenv_values().get(name, default)


def get_int(name: str, default: int) -> int:
    raw = get_str(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from exc


def get_float(name: str, default: float) -> float:
    raw = get_str(name, "")
    if raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc


def get_bool(name: str, default: bool) -> bool:
    raw = get_str(name, "").strip().lower()
    if raw == "":
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def get_secret(name: str) -> str:
    """A secret setting: ``NAME`` itself, else the contents of the file ``NAME_FILE`` names.

    The file form keeps the value out of environment files, process listings and
    ``docker inspect``: a compose secret (``/run/secrets/X``), a systemd credential
    (``/run/credentials/UNIT/X``) or a root-owned file. Surrounding whitespace (the trailing
    newline of ``echo``) is stripped. A named file that cannot be read is a ``ConfigError``
    naming the file, never its contents.
    """
    value = get_str(name, "")
    if value:
        return value
    path = get_str(f"{name}_FILE", "").strip()
    if not path:
        return ""
    try:
        return read_private(path).decode("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{name}_FILE: cannot read {path}: {reason}") from None


def secret_source(name: str) -> str:
    """Which setting a secret came from (``NAME`` or ``NAME_FILE``), for banners; "" if none."""
    if get_str(name, ""):
        return name
    if get_str(f"{name}_FILE", "").strip():
        return f"{name}_FILE"
    return ""
