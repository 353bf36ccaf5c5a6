"""What the ``cloudgrpc`` CLI prints, and where.

Rich tables, colours and progress bars only when a human watches (a TTY); plain, stable,
grep-able lines otherwise, because scripts and tests read them. Messages go to stdout unless
stdout carries file data (``download X -``), errors always to stderr, one line each.

Everything shown passes through ``cloudgrpc_proto.display.printable`` here, in one place:
names, emails and messages come from other users and the server, and an escape sequence in
them must not reach the terminal (rich output uses ``Text`` objects, never markup, for
them). ``json()`` needs no escaping: ``json.dumps`` writes control characters as escapes.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from cloudgrpc_proto.display import markup_safe, printable

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_size(n: int | float) -> str:
    """1536 -> '1.5 KiB'; sizes in powers of 1024 as ``df -h`` and ``ls -h`` use."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} {_UNITS[-1]}"  # pragma: no cover


def format_time(iso: str = "", ns: int = 0) -> str:
    """'2026-11-25 07:40' from an ISO string or nanoseconds since the epoch ('' if neither)."""
    if iso:
        text = iso.replace("T", " ")
        return text[:16]
    if ns:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(ns / 1e9))
    return ""


def one_line(text: str) -> str:
    """``text`` on one line (whitespace runs become one space), unprintables escaped."""
    return printable(" ".join(str(text).split()))


class Output:
    """The CLI's voice. ``data_on_stdout`` moves every message to stderr."""

    def __init__(self, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.data_on_stdout = False
        self._lock = threading.Lock()
        self._console: Any = None
        self._err_console: Any = None

    # -- terminals -------------------------------------------------------------------------

    @staticmethod
    def _isatty(stream: TextIO) -> bool:
        try:
            return stream.isatty()
        except (AttributeError, ValueError):
            return False

    @property
    def rich_stdout(self) -> bool:
        return not self.data_on_stdout and self._isatty(self.stdout)

    @property
    def rich_stderr(self) -> bool:
        return self._isatty(self.stderr)

    def console(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self.stdout, highlight=False, emoji=False)
        return self._console

    def err_console(self) -> Any:
        if self._err_console is None:
            from rich.console import Console

            self._err_console = Console(file=self.stderr, highlight=False, emoji=False)
        return self._err_console

    @property
    def _msg_stream(self) -> TextIO:
        return self.stderr if self.data_on_stdout else self.stdout

    # -- messages --------------------------------------------------------------------------

    def _emit(self, text: str, style: str = "", mark: str = "") -> None:
        text = printable(text)
        with self._lock:
            rich_ok = self._isatty(self._msg_stream)
            if rich_ok:
                console = self.err_console() if self.data_on_stdout else self.console()
                from rich.text import Text

                line = Text(f"{mark} " if mark else "", style=style)
                line.append(text)
                console.print(line)
            else:
                print(text, file=self._msg_stream, flush=True)

    def info(self, text: str) -> None:
        self._emit(text)

    def success(self, text: str) -> None:
        self._emit(text, "green", "✓")

    def note(self, text: str) -> None:
        self._emit(text, "cyan", "ℹ")

    def warn(self, text: str) -> None:
        with self._lock:
            if self.rich_stderr:
                from rich.text import Text

                line = Text("warning:", style="yellow")
                line.append(f" {one_line(text)}")
                self.err_console().print(line)
            else:
                print(f"warning: {one_line(text)}", file=self.stderr, flush=True)

    def error(self, text: str) -> None:
        with self._lock:
            line = f"cloudgrpc: {one_line(text)}"
            if self.rich_stderr:
                from rich.text import Text

                self.err_console().print(Text(line, style="bold red"))
            else:
                print(line, file=self.stderr, flush=True)

    def json(self, value: Any) -> None:
        print(json.dumps(value, indent=2, sort_keys=False), file=self.stdout, flush=True)

    def table(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[str]],
        *,
        title: str = "",
        right: Sequence[str] = (),
        keep_whole: Sequence[str] = ("id", "share id"),
    ) -> None:
        """A rich table on a TTY; aligned plain columns (header first) otherwise."""
        title = printable(title)
        rows = [[printable(cell) for cell in row] for row in rows]
        with self._lock:
            if self.rich_stdout:
                from rich.table import Table
                from rich.text import Text

                table = Table(title=Text(title) if title else None, show_edge=False,
                              header_style="bold")
                for col in columns:
                    keep = col in keep_whole  # ids must stay copy-pasteable
                    table.add_column(
                        col,
                        justify="right" if col in right else "left",
                        no_wrap=keep,
                        min_width=36 if keep else None,
                        overflow="fold",
                    )
                for row in rows:
                    table.add_row(*(Text(cell) for cell in row))  # never parsed as markup
                self.console().print(table)
                return
            widths = [len(c) for c in columns]
            for row in rows:
                widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=False)]
            out = self._msg_stream
            if title:
                print(title, file=out)

            def fmt(cells: Sequence[str]) -> str:
                parts = []
                for col, width, cell in zip(columns, widths, cells, strict=False):
                    parts.append(cell.rjust(width) if col in right else cell.ljust(width))
                return "  ".join(parts).rstrip()

            print(fmt(columns), file=out)
            for row in rows:
                print(fmt(row), file=out)
            out.flush()

    def pairs(self, rows: Sequence[tuple[str, str]]) -> None:
        """'key:  value' lines, keys aligned (bold keys on a TTY)."""
        rows = [(printable(key), printable(value)) for key, value in rows]
        width = max((len(k) for k, _ in rows), default=0) + 1
        with self._lock:
            if self.rich_stdout:
                from rich.text import Text

                for key, value in rows:
                    line = Text()
                    line.append(f"{key + ':':<{width}}  ", style="bold")
                    line.append(value)
                    self.console().print(line, soft_wrap=True)
                return
            out = self._msg_stream
            for key, value in rows:
                print(f"{key + ':':<{width}}  {value}", file=out)
            out.flush()

    # -- progress --------------------------------------------------------------------------

    @contextmanager
    def progress(self, total: int, description: str) -> Iterator[Progress]:
        """A byte progress bar on a TTY stderr, a silent counter otherwise."""
        if not self.rich_stderr:
            yield Progress(None, None)
            return
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as RichProgress

        bar = RichProgress(
            TextColumn("{task.description}", table_column=None),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.err_console(),
            transient=True,
        )
        with bar:
            task = bar.add_task(markup_safe(description), total=total)  # a markup column
            yield Progress(bar, task)


class Progress:
    """Handle on one progress bar (or nothing); thread-safe like rich's Progress."""

    def __init__(self, bar: Any, task: Any) -> None:
        self._bar = bar
        self._task = task
        self.done = 0

    def advance(self, amount: int) -> None:
        self.done += amount
        if self._bar is not None:
            self._bar.advance(self._task, amount)

    def describe(self, text: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=markup_safe(text))

    def log(self, text: str) -> None:
        """A line above the bar (rich keeps the bar at the bottom)."""
        if self._bar is not None:
            self._bar.console.print(printable(text), highlight=False, markup=False,
                                    emoji=False)
