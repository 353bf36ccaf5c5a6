"""The session in the keyring: file backend for tests, explicit fallback on headless boxes."""

from __future__ import annotations

import json
import pathlib
import stat

import keyring
import keyring.backend
import keyring.backends.fail
import pytest

from cloudgrpc_proto import session_store
from cloudgrpc_proto.session_store import Session, SessionStore, SessionStoreError

SESSION = Session(
    email="ada@example.com",
    user_id="u-1",
    session_token="s3cret-session",
    refresh_token="s3cret-refresh",
    expires_at=1_900_000_000,
)


def test_round_trip_with_the_file_backend(_isolated_keyring: pathlib.Path) -> None:
    store = SessionStore("127.0.0.1:42001")
    assert store.load() is None
    store.save(SESSION)
    assert store.load() == SESSION
    assert SessionStore("127.0.0.1:42002").load() is None  # one secret per server
    assert "PlaintextKeyring" in store.describe()
    assert store.clear() is True
    assert store.load() is None
    assert store.clear() is False


def test_secret_is_one_json_document(_isolated_keyring: pathlib.Path) -> None:
    store = SessionStore("gw:50051")
    store.save(SESSION)
    raw = store.backend.get_password("cloudgrpc", "gw:50051")
    assert json.loads(raw) == {
        "email": "ada@example.com",
        "user_id": "u-1",
        "session_token": "s3cret-session",
        "refresh_token": "s3cret-refresh",
        "expires_at": 1_900_000_000,
    }


def test_tokens_stay_out_of_repr() -> None:
    text = repr(SESSION)
    assert "s3cret" not in text and "ada@example.com" in text


def _fallback_file(data_home: pathlib.Path) -> pathlib.Path:
    return data_home / "cloudgrpc" / "keyring_pass.cfg"


def test_headless_fallback_is_explicit_and_private(
    _isolated_keyring: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND")
    monkeypatch.setattr(keyring, "get_keyring", lambda: keyring.backends.fail.Keyring())
    store = SessionStore("gw:1")
    store.save(SESSION)
    path = _fallback_file(_isolated_keyring)
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert str(path) in store.describe() and "no OS keyring" in store.describe()
    assert SessionStore("gw:1").load() == SESSION


def test_keyrings_alt_default_is_not_taken_for_an_os_keyring(
    _isolated_keyring: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keyrings.alt.file import PlaintextKeyring

    monkeypatch.delenv("PYTHON_KEYRING_BACKEND")
    monkeypatch.setattr(keyring, "get_keyring", lambda: PlaintextKeyring())
    store = SessionStore("gw:2")
    store.save(SESSION)
    assert _fallback_file(_isolated_keyring).is_file()


class _BrokenOsKeyring(keyring.backend.KeyringBackend):
    priority = 5  # looks like Secret Service...

    def get_password(self, service, username):  # ...but there is no D-Bus session
        raise RuntimeError("cannot connect to the session bus")

    def set_password(self, service, username, password):
        raise RuntimeError("cannot connect to the session bus")

    def delete_password(self, service, username):
        raise RuntimeError("cannot connect to the session bus")


def test_os_keyring_failing_at_use_falls_back(
    _isolated_keyring: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND")
    monkeypatch.setattr(keyring, "get_keyring", lambda: _BrokenOsKeyring())
    store = SessionStore("gw:3")
    store.save(SESSION)
    assert "OS keyring failed" in store.describe()
    assert SessionStore("gw:3").load() == SESSION  # a new store fails over the same way
    assert store.load() == SESSION


def test_a_backend_the_user_chose_is_obeyed(
    _isolated_keyring: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    store = SessionStore("gw:4")
    with pytest.raises(SessionStoreError, match="fail.Keyring"):
        store.save(SESSION)
    assert not _fallback_file(_isolated_keyring).exists()


def test_damaged_entry_reads_as_signed_out(_isolated_keyring: pathlib.Path) -> None:
    store = SessionStore("gw:5")
    store.backend.set_password("cloudgrpc", "gw:5", "{not json")
    assert store.load() is None


def test_fallback_path_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert session_store.fallback_path() == tmp_path / "cloudgrpc" / "keyring_pass.cfg"
