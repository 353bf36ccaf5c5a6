"""The signed-in session, kept with ``keyring`` so no secret lands in a plain file of ours.

One JSON secret per gateway address (service ``cloudgrpc``, user name = the target) holds
email, user id, session token, device refresh token and expiry. The mount, the file CLI, the
payment CLI and the admin CLI all read it from here, so signing in once serves them all.

Backend choice, in order:

1. ``$PYTHON_KEYRING_BACKEND`` or keyring's own ``keyringrc.cfg``: the user chose; we obey,
   and report failures instead of silently writing elsewhere.
2. The OS keyring keyring detects (Secret Service, KWallet, macOS Keychain...).
3. Otherwise (a headless box: keyring only finds its fail/null backend, or the plaintext file
   keyrings.alt registers as a last resort) we fall back *explicitly* to
   ``keyrings.alt.file.PlaintextKeyring`` at ``$XDG_DATA_HOME/cloudgrpc/keyring_pass.cfg``
   (directory 0700, file 0600), and ``cloudgrpc whoami`` says so. The same happens when the
   OS keyring exists but fails at use time (e.g. Secret Service without a D-Bus session).
"""

from __future__ import annotations

import json
import os
import pathlib
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from cloudgrpc_proto.private_files import private_dir, private_file

SERVICE_NAME = "cloudgrpc"
ENV_BACKEND = "PYTHON_KEYRING_BACKEND"
FALLBACK_FILENAME = "keyring_pass.cfg"


@dataclass
class Session:
    """What a client needs to act for a user. Tokens are kept out of ``repr`` (and so logs)."""

    email: str = ""
    user_id: str = ""
    session_token: str = field(default="", repr=False)
    refresh_token: str = field(default="", repr=False)
    expires_at: int = 0  # unix seconds; 0 = unknown

    @property
    def signed_in(self) -> bool:
        return bool(self.session_token or self.refresh_token)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Session:
        data: dict[str, Any] = json.loads(text)
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["expires_at"] = int(known.get("expires_at") or 0)
        return cls(**known)


class SessionStoreError(RuntimeError):
    """The keyring could not be read or written."""


def data_home() -> pathlib.Path:
    """``$XDG_DATA_HOME`` or ``~/.local/share``, as the XDG base directory spec says."""
    raw = os.environ.get("XDG_DATA_HOME", "").strip()
    return pathlib.Path(raw) if raw else pathlib.Path.home() / ".local" / "share"


def fallback_path() -> pathlib.Path:
    return data_home() / "cloudgrpc" / FALLBACK_FILENAME


def _backend_name(backend: Any) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_os_keyring(backend: Any) -> bool:
    """True for a backend that keeps secrets somewhere better than a plain file of ours."""
    from keyring.backends import chainer, fail

    if isinstance(backend, chainer.ChainerBackend):
        return any(_is_os_keyring(b) for b in backend.backends)
    if isinstance(backend, fail.Keyring):
        return False
    module = type(backend).__module__
    if module.startswith("keyrings.alt") or module == "keyring.backends.null":
        return False
    try:
        return float(backend.priority) >= 1
    except Exception:  # noqa: BLE001 - a backend whose priority cannot be computed is unusable
        return False


def _file_backend() -> Any:
    from keyrings.alt.file import PlaintextKeyring

    backend = PlaintextKeyring()
    backend.file_path = str(fallback_path())  # instance-level override, as keyrings.alt allows
    return backend


def _private_parent(backend: Any) -> None:
    """Before a file backend (keyrings.alt) writes: its folder 0700 and ours, its file created
    0600 (keyrings.alt would create it with the umask, then chmod), neither a symlink."""
    path = getattr(backend, "file_path", None)
    if not path:
        return
    private_dir(pathlib.Path(path).parent)
    private_file(path)


class SessionStore:
    """Load, save and clear the session of one gateway address."""

    _lock = threading.Lock()

    def __init__(self, target: str, backend: Any = None) -> None:
        self.target = target
        self._backend = backend
        self._fallback_reason = ""
        self._user_chose = backend is not None

    # -- backend ---------------------------------------------------------------------------

    @property
    def backend(self) -> Any:
        if self._backend is None:
            self._backend = self._choose()
        return self._backend

    def _choose(self) -> Any:
        import keyring
        import keyring.core

        if os.environ.get(ENV_BACKEND, "").strip():
            self._user_chose = True
            return keyring.core.load_env()  # read now, not keyring's process-wide cache
        configured = keyring.core.load_config()
        if configured is not None:
            self._user_chose = True
            return configured
        detected = keyring.get_keyring()
        if _is_os_keyring(detected):
            return detected
        self._fallback_reason = "no OS keyring available"
        return _file_backend()

    def _fall_back(self, exc: Exception) -> bool:
        """Switch to the file backend after the OS keyring failed, unless the user chose it."""
        if self._user_chose or self._fallback_reason:
            return False
        self._fallback_reason = f"OS keyring failed ({type(exc).__name__})"
        self._backend = _file_backend()
        return True

    def describe(self) -> str:
        """Which backend holds the session, for ``cloudgrpc whoami``."""
        backend = self.backend
        name = _backend_name(backend)
        path = getattr(backend, "file_path", None)
        if path and name.startswith("keyrings.alt.file"):
            text = f"{name} (plain text file {path}, mode 0600"
            if self._fallback_reason:
                text += f"; {self._fallback_reason}"
            return text + ")"
        return name

    @property
    def is_plaintext(self) -> bool:
        return _backend_name(self.backend).startswith("keyrings.alt.file.Plaintext")

    # -- operations ------------------------------------------------------------------------

    def _with_backend(self, action: str, fn: Any) -> Any:
        try:
            return fn(self.backend)
        except Exception as exc:  # noqa: BLE001 - keyring backends raise many kinds
            if self._fall_back(exc):
                try:
                    return fn(self.backend)
                except Exception as exc2:  # noqa: BLE001
                    exc = exc2
            raise SessionStoreError(
                f"cannot {action} the session in {_backend_name(self.backend)}: "
                f"{type(exc).__name__}: {exc}"
            ) from None

    def load(self) -> Session | None:
        """The stored session for this target, or None when not signed in."""
        text = self._with_backend("read", lambda b: b.get_password(SERVICE_NAME, self.target))
        if not text:
            return None
        try:
            return Session.from_json(text)
        except (ValueError, TypeError):
            return None  # a damaged entry reads as "not signed in"; login overwrites it

    def save(self, session: Session) -> None:
        with self._lock:
            def store(backend: Any) -> None:
                _private_parent(backend)
                backend.set_password(SERVICE_NAME, self.target, session.to_json())

            self._with_backend("store", store)
            path = getattr(self.backend, "file_path", None)
            if path:
                private_file(path, create=False)

    def clear(self) -> bool:
        """Forget the session; True when one was stored."""
        import keyring.errors

        def delete(backend: Any) -> bool:
            try:
                backend.delete_password(SERVICE_NAME, self.target)
            except keyring.errors.PasswordDeleteError:
                return False
            return True

        with self._lock:
            return bool(self._with_backend("delete", delete))
