"""Showing text that came from other people on a terminal, safely.

Names, emails, full names, device names, event and payment messages and mime types come from
users (or from a server relaying them) and reach other users' terminals. Printed raw, an ESC
or C1 sequence inside them clears the screen, sets the window title or rewrites what the
reader sees; a bidi override reverses the rest of the line; and rich renders ``[blink]`` in
them as markup. Every CLI therefore passes such text through this module before printing:

- ``printable(text)``: unprintable code points (C0 controls, DEL, C1 controls, format
  characters such as bidi overrides and zero-width marks, line/paragraph separators,
  surrogates, unassigned code points) become visible escapes (``\\x1b``, ``\\u202e``), so the
  reader sees that they are there and the terminal never acts on them;
- ``markup_safe(text)``: the same, then escaped for rich markup, for text placed inside a
  markup string;
- ``safe_text(text, style)``: a rich ``Text`` (never parsed as markup) of the printable form.

JSON output needs none of this: ``json.dumps`` already writes every control character as an
escape (and, with the default ``ensure_ascii``, every non-ASCII one).
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # rich is a dependency of the CLIs only, not of the servers
    from rich.text import Text

# Unicode general categories a terminal must not receive as-is: controls (C0, DEL, C1),
# format characters (bidi embeddings/overrides/isolates, zero-width marks, BOM, soft hyphen,
# tag characters), line and paragraph separators, surrogates and unassigned code points.
UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Cn"})
# Format characters that only join or shape what is around them (emoji sequences, Indic and
# Persian scripts) and cannot move or hide text: kept, so such names still read correctly.
_KEPT_FORMAT = frozenset({"\u200c", "\u200d"})
_cache: dict[str, bool] = {}


def is_unprintable(char: str) -> bool:
    """Whether one code point must be escaped before it reaches a terminal."""
    known = _cache.get(char)
    if known is None:
        known = (unicodedata.category(char) in UNPRINTABLE_CATEGORIES
                 and char not in _KEPT_FORMAT)
        if len(_cache) < 4096:
            _cache[char] = known
    return known


def escape_char(char: str) -> str:
    """The visible escape of one code point: ``\\x1b``, ``\\u202e`` or ``\\U000e0001``."""
    point = ord(char)
    if point <= 0xFF:
        return f"\\x{point:02x}"
    if point <= 0xFFFF:
        return f"\\u{point:04x}"
    return f"\\U{point:08x}"


def printable(text: Any) -> str:
    """``text`` (made a string) with every unprintable code point written as an escape."""
    value = text if isinstance(text, str) else str(text)
    if value.isprintable() and value.isascii():  # the common case, checked in C
        return value
    return "".join(escape_char(c) if is_unprintable(c) else c for c in value)


def has_unprintable(text: str) -> bool:
    """Whether ``printable(text)`` would change anything."""
    return any(is_unprintable(c) for c in text)


def markup_safe(text: Any) -> str:
    """``printable(text)`` escaped for rich markup, for user text inside a markup string."""
    from rich.markup import escape

    return escape(printable(text))


def safe_text(text: Any, style: str = "", **kwargs: Any) -> Text:
    """A rich ``Text`` of ``printable(text)``: shown literally, never parsed as markup."""
    from rich.text import Text

    return Text(printable(text), style=style, **kwargs)
