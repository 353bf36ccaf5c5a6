"""Fixtures of the client tests: a fake gateway on loopback, a signed-in client, a file keyring."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from cloudgrpc_proto.client import CloudClient
from tests.client.fake_gateway import Running
from tests.client.helpers import FAST_RETRY, sign_in

FILE_BACKEND = "keyrings.alt.file.PlaintextKeyring"


@pytest.fixture(autouse=True)
def _isolated_keyring(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> pathlib.Path:
    """Never touch the user's keyring: a file backend in a temporary XDG_DATA_HOME.

    The environment is inherited by the ``cloudgrpc`` subprocesses the CLI tests start.
    """
    data = tmp_path_factory.mktemp("xdg-data")
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", FILE_BACKEND)
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))
    monkeypatch.delenv("CLOUDGRPC_SERVER", raising=False)
    monkeypatch.delenv("CLOUDGRPC_TLS_CA", raising=False)
    monkeypatch.delenv("CLOUDGRPC_TLS", raising=False)
    return data


@pytest.fixture
def gateway() -> Iterator[Running]:
    running = Running()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def client(gateway: Running) -> Iterator[CloudClient]:
    c = CloudClient(gateway.target, timeout=5, retry=FAST_RETRY)
    sign_in(c)
    try:
        yield c
    finally:
        c.close()
