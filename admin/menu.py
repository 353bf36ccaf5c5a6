"""The seed's interactive admin menu.

Reads its choices line by line from stdin, so it works on a terminal and with stdin piped
(end of input is the same as "8 Exit"). Event monitoring (5) runs in the background and
prints events between the menu's own output until it is stopped (6) or the menu exits.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import IO

from rich.console import Console, RenderableType

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto.client import CloudClient
from cloudgrpc_proto.display import printable, safe_text
from cloudgrpc_proto.errors import CloudError

from . import render
from .monitor import EventMonitor

RULE = "=" * 60
MENU = [
    "View System Status",
    "List All Users",
    "List Storage Nodes",
    "Get User Details",
    "Start Real-Time Event Monitoring",
    "Stop Event Monitoring",
    "Refresh Display",
    "Exit",
]


class AdminMenu:
    def __init__(self, client: CloudClient, admin_key: str, console: Console,
                 stdin: IO[str] | None = None) -> None:
        self.client = client
        self.key = admin_key
        self.console = console
        self.stdin = stdin or sys.stdin
        self._print_lock = threading.Lock()
        self.monitor: EventMonitor | None = None
        try:
            self._interactive = self.stdin.isatty()
        except (AttributeError, ValueError):
            self._interactive = False

    def out(self, *items: RenderableType, **kwargs: object) -> None:
        with self._print_lock:
            for item in items:
                self.console.print(item, **kwargs)  # type: ignore[arg-type]

    def ask(self, prompt: str) -> str | None:
        with self._print_lock:
            self.console.print(prompt, end="", markup=False)
            self.console.file.flush()
        line = self.stdin.readline()
        if not self._interactive:
            # Piped input is not echoed by a terminal: echo it, so the transcript reads well.
            with self._print_lock:
                self.console.print(printable(line.strip()) if line else "", markup=False,
                                   highlight=False)
        if not line:
            return None
        return line.strip()

    def show_menu(self) -> None:
        lines = [RULE, "CLOUD STORAGE ADMIN MONITOR", RULE]
        lines += [f"{i}. {label}" for i, label in enumerate(MENU, 1)]
        if self.monitor is not None and self.monitor.running:
            lines.append("(event monitoring is on)")
        lines.append(RULE)
        self.out("\n".join(lines))

    def run(self) -> int:
        # Fail early, with the right exit code, on a wrong key or an unreachable gateway.
        self.show_status()
        actions: dict[str, Callable[[], None]] = {
            "1": self.show_status, "2": self.show_users, "3": self.show_nodes,
            "4": self.show_user, "5": self.start_monitor, "6": self.stop_monitor,
            "7": self.refresh,
        }
        try:
            while True:
                self.show_menu()
                choice = self.ask("Select an option (1-8): ")
                if choice is None or choice in ("8", "q", "quit", "exit"):
                    self.out("Goodbye.")
                    return 0
                action = actions.get(choice)
                if action is None:
                    self.out(safe_text(f"Unknown option {choice!r}: choose 1-8."))
                    continue
                try:
                    action()
                except CloudError as exc:
                    self.out(safe_text(f"Error: {exc.message}", "red"))
        finally:
            self.stop_monitor(quiet=True)

    # --- the options -------------------------------------------------------------------

    def show_status(self) -> None:
        self.out(render.status_view(self.client.system_status(self.key)))

    def show_users(self) -> None:
        self.out(render.users_view(list(self.client.list_users(self.key).users)))

    def show_nodes(self) -> None:
        self.out(render.nodes_view(list(self.client.list_nodes(self.key).nodes)))

    def show_user(self) -> None:
        email = self.ask("User email: ")
        if not email:
            self.out("No email given.")
            return
        self.out(*render.user_view(self.client.user_details(email, self.key)))

    def start_monitor(self) -> None:
        if self.monitor is not None and self.monitor.running:
            self.out("Event monitoring is already on (6 stops it).")
            return

        def show(event: pb.SystemEvent) -> None:
            self.out(render.event_line(event), soft_wrap=True)

        self.monitor = EventMonitor(self.client, self.key, show, history=10,
                                    notice=lambda m: self.out(safe_text(f"[monitor] {m}",
                                                                        "yellow")))
        self.monitor.start()
        self.out("Event monitoring started: events appear as they happen (6 stops it).")

    def stop_monitor(self, quiet: bool = False) -> None:
        if self.monitor is None or not self.monitor.running:
            if not quiet:
                self.out("Event monitoring is not running.")
            return
        self.monitor.stop()
        if not quiet:
            self.out(f"Event monitoring stopped ({self.monitor.shown} events shown).")

    def refresh(self) -> None:
        if self.console.is_terminal:
            self.console.clear()
        self.show_status()
        self.show_nodes()
