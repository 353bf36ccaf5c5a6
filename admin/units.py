"""Sizes and times as operators type and read them.

Sizes are binary, as the seed counts them (``5 GB`` = 5 * 1024**3 bytes); ``GiB`` and
``G`` are accepted as the same. Times accept a unix timestamp, an ISO date or date-time
(UTC unless it names an offset) or a span back from now: ``90s``, ``30m``, ``24h``,
``7d``, ``2w``.
"""

from __future__ import annotations

import datetime as dt
import re

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_SPAN_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_size(text: str) -> int:
    """``"5GB"`` -> 5368709120; a plain number is bytes. ValueError if malformed."""
    m = _SIZE.match(text or "")
    if not m or (m.group(3).lower() == "i"):
        raise ValueError(f"not a size: {text!r} (examples: 500MB, 5GB, 1.5GiB, 1048576)")
    number, prefix = float(m.group(1)), m.group(2).lower()
    if not prefix and m.group(3).lower() not in ("", "b"):
        raise ValueError(f"not a size: {text!r}")
    return int(round(number * _UNITS[prefix]))


def human_size(n: int | float) -> str:
    """Bytes for people: ``0 B``, ``512 B``, ``1.5 KB``, ``250.0 MB``, ``2.00 GB``."""
    n = float(n)
    sign = "-" if n < 0 else ""
    n = abs(n)
    if n < 1024:
        return f"{sign}{int(n)} B"
    for unit in ("KB", "MB", "GB", "TB"):
        n /= 1024
        if n < 1024 or unit == "TB":
            return f"{sign}{n:.2f} {unit}" if unit in ("GB", "TB") else f"{sign}{n:.1f} {unit}"
    raise AssertionError("unreachable")


def parse_when(text: str, now: dt.datetime | None = None) -> int:
    """A point in time as unix seconds (0 for an empty text). ValueError if malformed."""
    text = (text or "").strip()
    if not text:
        return 0
    now = now or dt.datetime.now(dt.UTC)
    if text.isdigit():
        return int(text)
    m = _SPAN.match(text)
    if m:
        return int(now.timestamp() - float(m.group(1)) * _SPAN_S[m.group(2).lower()])
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a time: {text!r} (examples: 7d, 24h, 2026-01-31, "
                         "2026-01-31T08:00, 1767168000)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp())


def parse_iso(text: str) -> dt.datetime | None:
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def ago(text: str, now: dt.datetime | None = None, suffix: str = " ago") -> str:
    """An ISO timestamp as an age: ``4s ago``, ``12m ago``, ``3h ago``, ``5d ago``."""
    when = parse_iso(text)
    if when is None:
        return "never"
    seconds = max(0, int(((now or dt.datetime.now(dt.UTC)) - when).total_seconds()))
    for limit, unit, size in ((60, "s", 1), (3600, "m", 60), (86400, "h", 3600)):
        if seconds < limit:
            return f"{seconds // size}{unit}{suffix}"
    return f"{seconds // 86400}d{suffix}"


def local_time(text: str, with_date: bool = False) -> str:
    """An ISO timestamp in the local time zone: ``14:03:07`` (or ``2026-01-31 14:03``)."""
    when = parse_iso(text)
    if when is None:
        return "-"
    local = when.astimezone()
    return local.strftime("%Y-%m-%d %H:%M") if with_date else local.strftime("%H:%M:%S")
