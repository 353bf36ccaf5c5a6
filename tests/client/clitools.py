"""Running ``cloudgrpc`` as a user would: a subprocess with this test's keyring and XDG dirs."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from dataclasses import dataclass


def cli_argv() -> list[str]:
    script = pathlib.Path(sys.executable).parent / "cloudgrpc"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "cloudgrpc_fusefs.cli"]


@dataclass
class Result:
    code: int
    out: str
    err: str
    raw: bytes = b""

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


class Cli:
    """``cloudgrpc --server TARGET ...`` in a working directory, with optional stdin."""

    def __init__(self, target: str, cwd: pathlib.Path, env: dict[str, str] | None = None):
        self.target = target
        self.cwd = cwd
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.env.pop("CLOUDGRPC_SERVER", None)

    def __call__(
        self,
        *args: str,
        stdin: str | bytes | None = None,
        timeout: float = 120,
        server: bool = True,
        binary: bool = False,
    ) -> Result:
        argv = cli_argv() + (["--server", self.target] if server else []) + list(args)
        data = stdin.encode() if isinstance(stdin, str) else stdin
        proc = subprocess.run(
            argv,
            input=data if data is not None else b"",
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            timeout=timeout,
        )
        out = proc.stdout.decode("utf-8", "replace") if not binary else ""
        return Result(
            proc.returncode, out, proc.stderr.decode("utf-8", "replace"), proc.stdout
        )

    def ok(self, *args: str, **kwargs: object) -> Result:
        result = self(*args, **kwargs)  # type: ignore[arg-type]
        assert result.code == 0, str(result)
        return result

    def fails(self, code: int, *args: str, **kwargs: object) -> Result:
        result = self(*args, **kwargs)  # type: ignore[arg-type]
        assert result.code == code, str(result)
        lines = [line for line in result.err.splitlines() if line.strip()]
        assert lines, f"no message on stderr: {result}"
        assert lines[-1].startswith("cloudgrpc: "), str(result)
        return result
