"""WatchChanges: a subscriber gets its account's changes, except those it made itself."""

from __future__ import annotations

import threading
import time

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto.client import CALL_ORIGIN, CloudClient
from tests.cluster import Cluster


class Watcher:
    """A WatchChanges stream read on a thread, as the mount reads it."""

    def __init__(self, client: CloudClient, origin: str) -> None:
        token = CALL_ORIGIN.set(origin)
        try:
            self.stream = client.watch_changes()
        finally:
            CALL_ORIGIN.reset(token)
        self.events: list[pb.ChangeEvent] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for event in self.stream:
            self.events.append(event)

    def names(self) -> list[str]:
        return [e.name for e in self.events if e.kind != "hello"]

    def close(self) -> None:
        self.stream.cancel()


def _until(check, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_own_changes_are_not_echoed(shared_cluster: Cluster) -> None:
    c = shared_cluster
    acct = c.sign_up()
    with CloudClient(c.address, session_token=acct.token) as client:
        mine, plain = Watcher(client, "mount-a"), Watcher(client, "")
        try:
            _until(lambda: len(mine.events) == 1 and len(plain.events) == 1)
            assert mine.events[0].kind == "hello" and mine.events[0].echo_free
            assert plain.events[0].kind == "hello" and not plain.events[0].echo_free
            token = CALL_ORIGIN.set("mount-a")
            try:
                client.create_folder("made-by-a")
                client.upload_small_files([])  # a call with nothing in it changes nothing
            finally:
                CALL_ORIGIN.reset(token)
            token = CALL_ORIGIN.set("mount-b")
            try:
                client.create_folder("made-by-b")
            finally:
                CALL_ORIGIN.reset(token)
            client.create_folder("made-by-nobody")
            _until(lambda: plain.names() == ["made-by-a", "made-by-b", "made-by-nobody"])
            _until(lambda: mine.names() == ["made-by-b", "made-by-nobody"])
        finally:
            mine.close()
            plain.close()
