"""Helpers for the admin tests: the CLI run as an operator runs it, and direct DB access."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloudgrpc_proto import cloud_storage_pb2 as pb
from tests.cluster import ADMIN_KEY, Cluster

CLI = [sys.executable, "-m", "cloudgrpc_admin.cli"]


def cli_env(cluster: Cluster, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ADMIN_KEY", "DATA_DIR")}
    env.update({"CLOUDGRPC_SERVER": cluster.address, "ADMIN_KEY": ADMIN_KEY,
                "PYTHONUNBUFFERED": "1", "COLUMNS": "80", "NO_COLOR": "1",
                "CLOUDGRPC_ENV_FILE": os.devnull})
    env.update(extra)
    return {k: v for k, v in env.items() if v != ""}


def run_cli(cluster: Cluster, *args: str, timeout: float = 60, stdin: str | None = None,
            **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=cli_env(cluster, **env), input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def cli_json(cluster: Cluster, *args: str) -> Any:
    done = run_cli(cluster, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


class LiveCli:
    """A long-running CLI process (monitor, menu) whose output is collected line by line."""

    def __init__(self, cluster: Cluster, *args: str, **env: str) -> None:
        self.proc = subprocess.Popen([*CLI, *args], env=cli_env(cluster, **env),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._threads = [threading.Thread(target=self._pump, args=(s, out), daemon=True)
                         for s, out in ((self.proc.stdout, self.lines),
                                        (self.proc.stderr, self.errors))]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream: Any, out: list[str]) -> None:
        for line in stream:
            out.append(line.rstrip("\n"))

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            while seen < len(self.lines):
                line = self.lines[seen]
                seen += 1
                if predicate(line):
                    return line
            if self.proc.poll() is not None and seen >= len(self.lines):
                time.sleep(0.2)
                if seen >= len(self.lines):
                    break
            time.sleep(0.02)
        raise AssertionError(f"no matching line within {timeout}s; out={self.lines[-30:]} "
                             f"err={self.errors[-10:]} rc={self.proc.poll()}")

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def wait(self, timeout: float = 20.0) -> int:
        rc = self.proc.wait(timeout)
        for t in self._threads:
            t.join(5)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def live_cli() -> Iterator[Any]:
    started: list[LiveCli] = []

    def start(cluster: Cluster, *args: str, **env: str) -> LiveCli:
        cli = LiveCli(cluster, *args, **env)
        started.append(cli)
        return cli

    yield start
    for cli in started:
        cli.kill()


@contextlib.contextmanager
def db_session(cluster: Cluster) -> Iterator[Session]:
    """A SQLAlchemy session on the cluster's own database (for scripted rows); commits."""
    engine = sa.create_engine(cluster.database_url)
    try:
        with Session(engine) as session, session.begin():
            yield session
    finally:
        engine.dispose()


def stream_events(cluster: Cluster, history: int = -1, key: str = ADMIN_KEY,
                  types: tuple[str, ...] = ()
                  ) -> tuple[Any, list[pb.SystemEvent], threading.Thread]:
    """Start an event stream in a thread; returns (call, received events, thread)."""
    call = cluster.admin.StreamSystemEvents(pb.StreamEventsRequest(
        admin_key=key, history=history, event_types=list(types)))
    received: list[pb.SystemEvent] = []

    def pump() -> None:
        try:
            for event in call:
                received.append(event)
        except grpc.RpcError:
            pass

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return call, received, thread


def wait_event(received: list[pb.SystemEvent], predicate: Any, timeout: float = 5.0
               ) -> pb.SystemEvent:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in list(received):
            if predicate(event):
                return event
        time.sleep(0.01)
    raise AssertionError(f"no matching event within {timeout}s: "
                         f"{[(e.event_type, e.message) for e in received][-20:]}")
