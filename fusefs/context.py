"""What every ``cloudgrpc`` command runs with: the gateway address, the client, the output.

Built once per process (and kept across the commands of ``cloudgrpc shell``), so a shell
session reuses one channel and one session, and a refreshed token is stored once.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from cloudgrpc_proto import errors
from cloudgrpc_proto.channel import default_target
from cloudgrpc_proto.client import CloudClient, not_signed_in
from cloudgrpc_proto.session_store import SessionStore

from .output import Output
from .remote import Resolver


class UsageError(Exception):
    """A command line that does not parse; exit status 2 like argparse."""

    exit_code = 2


@dataclass
class Context:
    server: str | None = None
    timeout: float = 30.0
    tls_ca: str | None = None
    debug: bool = False
    out: Output = field(default_factory=Output)
    interactive: bool = False  # inside ``cloudgrpc shell``
    cwd: str = "/"
    _client: CloudClient | None = None
    _store: SessionStore | None = None
    _resolver: Resolver | None = None
    readline: Any = None

    @property
    def target(self) -> str:
        return default_target(self.server)

    @property
    def store(self) -> SessionStore:
        if self._store is None:
            self._store = SessionStore(self.target)
        return self._store

    @property
    def client(self) -> CloudClient:
        if self._client is None:
            self._client = CloudClient.from_session_store(
                self.target, store=self.store, timeout=self.timeout, tls_ca=self.tls_ca
            )
        return self._client

    def signed_in_client(self) -> CloudClient:
        """The client, refusing early (no network) when nobody is signed in."""
        client = self.client
        if not client.signed_in:
            raise errors.Unauthenticated(not_signed_in(self.target))
        return client

    @property
    def resolver(self) -> Resolver:
        if self._resolver is None:
            self._resolver = Resolver(self.signed_in_client(), self.cwd)
        self._resolver.cwd = self.cwd
        return self._resolver

    def prompt(self, text: str) -> str:
        """Read one line from stdin (after printing ``text``); EOF is a usage error."""
        if sys.stdin.isatty():
            try:
                answer = input(text)
            except EOFError:
                raise UsageError("no answer given") from None
            if self.readline is not None:  # keep one-time codes out of the shell history
                n = self.readline.get_current_history_length()
                if n:
                    self.readline.remove_history_item(n - 1)
            return answer
        print(text, end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        print(file=sys.stderr)  # the answer is not echoed: end the prompt's line
        if not line:
            raise UsageError("no answer given (stdin is closed)")
        return line.rstrip("\n")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
            self._resolver = None
