"""Checks on text that other users will see printed: names, full names, device names.

A control character (C0, DEL, C1) in such a string can drive the terminal of whoever lists
it (clear the screen, set the window title, hide text). The CLIs escape what they print, but
the gateway refuses these characters at the door too, so no other client ever receives them.
Kept apart from the namespace so accounts and files share one rule without importing each
other.
"""

from __future__ import annotations

from cloudgrpc_proto.errors import InvalidArgument

_CONTROL = frozenset(chr(c) for c in (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)))


def check_printable(value: str, field: str) -> str:
    """Refuse a string holding a control character (C0, DEL, C1), naming the field: for
    every string another user may see printed (names here; full names and device names
    can use it too)."""
    bad = next((ch for ch in value if ch in _CONTROL), None)
    if bad is not None:
        raise InvalidArgument(f"{field}: control character U+{ord(bad):04X} not allowed")
    return value
