"""``cloudgrpc shell``: the seed's interactive mode, on top of the same subcommands.

The seed's command names work as they did (enroll, login, upload, download, list/ls,
delete, storage, help, exit), every other ``cloudgrpc`` file command too, plus cd/pwd. On a
terminal: readline history (without one-time codes) and tab completion of remote paths;
with stdin a pipe it reads commands line by line and prints no prompts, for scripts and tests.
"""

from __future__ import annotations

import glob
import os
import pathlib
import shlex
import sys
import time
from collections.abc import Callable
from typing import Any

from cloudgrpc_proto import errors
from cloudgrpc_proto.display import has_unprintable, printable

from .context import Context, UsageError
from .remote import normalize

ALIASES = {
    "list": "ls",
    "delete": "rm",
    "quit": "exit",
    "dir": "ls",
    "get": "download",
    "put": "upload",
    "del": "rm",
}
UNAVAILABLE_HERE = {"shell", "mount", "umount", "status", "sync"}
COMMANDS = (
    "enroll",
    "login",
    "logout",
    "whoami",
    "upload",
    "download",
    "list",
    "ls",
    "delete",
    "rm",
    "mkdir",
    "mv",
    "cd",
    "pwd",
    "share",
    "trash",
    "storage",
    "devices",
    "help",
    "exit",
    "quit",
)
LOCAL_FIRST = {"upload"}
HELP = """\
Commands (paths are remote paths from your root, or file ids):
  enroll EMAIL "NAME"       create an account (a code is mailed to EMAIL)
  login EMAIL               sign in
  logout | whoami           sign out | who is signed in
  upload SRC... [DIR]       upload local files (-r for folders) into DIR (default: here)
  download REMOTE [LOCAL]   download a file by path or id (-r for folders)
  list | ls [PATH]          list a folder (--json, -a with the trash)
  delete | rm PATH          move to the trash (--permanent to delete, -r for folders)
  mkdir [-p] PATH           create a folder
  mv SRC DST                move or rename
  cd [PATH] | pwd           change | show the current remote folder
  share PATH EMAIL          share a file (--permission write; --list; --revoke ID)
  trash [list|restore X|empty]
  storage                   show your quota
  devices [revoke ID]       your signed-in devices | end one now
  help [COMMAND]            this text, or a command's options
  exit                      leave the shell"""
CACHE_SECONDS = 5.0


def _state_home() -> pathlib.Path:
    raw = os.environ.get("XDG_STATE_HOME", "").strip()
    return pathlib.Path(raw) if raw else pathlib.Path.home() / ".local" / "state"


class Shell:
    def __init__(self, ctx: Context, parser_factory: Callable[[], Any]) -> None:
        self.ctx = ctx
        self.parser = parser_factory()
        self.tty = sys.stdin.isatty()
        self.last_status = 0
        self.finished: int | None = None
        self._listing_cache: dict[str, tuple[float, list[str]]] = {}
        self._matches: list[str] = []
        self._history: pathlib.Path | None = None
        ctx.interactive = True

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> int:
        if self.tty:
            self._setup_readline()
            print("CloudGrpc shell. Type 'help' for commands, 'exit' to leave.")
        try:
            while self.finished is None:
                line = self._read()
                if line is None:
                    break
                self.last_status = self.execute(line)
        finally:
            self._save_history()
        return self.finished if self.finished is not None else self.last_status

    def _prompt(self) -> str:
        # The current folder may be a shared one, named by another user: escaped.
        return f"cloudgrpc:{printable(self.ctx.cwd)}> "

    def _read(self) -> str | None:
        if self.tty:
            try:
                line = input(self._prompt())
            except EOFError:
                print()
                return None
            except KeyboardInterrupt:
                print("^C")
                return ""
            if "--otp" in line:
                self._forget_last_history()
            return line
        line = sys.stdin.readline()
        if not line:
            return None
        return line.rstrip("\n")

    def execute(self, line: str) -> int:
        """Run one command line; returns its exit status (the shell keeps going)."""
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            self.ctx.out.error(f"cannot parse the line: {exc}")
            return 2
        if not words:
            return self.last_status
        name, rest = ALIASES.get(words[0], words[0]), words[1:]
        if name == "exit":
            try:
                self.finished = int(rest[0]) if rest else self.last_status
            except ValueError:
                self.finished = 2
            return self.finished
        if name == "help":
            return self._help(rest)
        if name == "pwd":
            self.ctx.out.info(self.ctx.cwd)
            return 0
        if name == "cd":
            return self._cd(rest)
        if name in UNAVAILABLE_HERE:
            self.ctx.out.error(f"'{name}' is not available inside the shell")
            return 2
        from .cli import ParserExit, run_command

        try:
            args = self.parser.parse_args([name, *rest])
        except UsageError as exc:
            self.ctx.out.error(
                str(exc).replace("(see cloudgrpc ", "(see help ").replace(" --help)", ")")
            )
            return UsageError.exit_code
        except ParserExit as exc:
            return exc.status
        if self.ctx._resolver is not None:
            self.ctx._resolver.forget()  # another command may have moved folders meanwhile
        self._listing_cache.clear()
        self.ctx.out.data_on_stdout = False
        return run_command(self.ctx, args)

    def _help(self, rest: list[str]) -> int:
        if not rest:
            print(HELP)
            return 0
        from .cli import ParserExit

        name = ALIASES.get(rest[0], rest[0])
        if name in ("cd", "pwd", "exit", "help"):
            print(HELP)
            return 0
        try:
            self.parser.parse_args([name, "--help"])
        except (ParserExit, UsageError):
            pass
        return 0

    def _cd(self, rest: list[str]) -> int:
        from .cli import run_command

        target = rest[0] if rest else "/"

        class _Args:
            command = "cd"

            @staticmethod
            def func(ctx: Context, _args: Any) -> int:
                entry = ctx.resolver.folder(target)
                ctx.cwd = entry.path or normalize(target, ctx.cwd)
                return 0

        return run_command(self.ctx, _Args())  # type: ignore[arg-type]

    # -- readline: history and completion ---------------------------------------------------

    def _setup_readline(self) -> None:
        try:
            import readline
        except ImportError:  # pragma: no cover - not on every platform
            return
        self.ctx.readline = readline
        state = _state_home() / "cloudgrpc"
        try:
            state.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._history = state / "shell_history"
            if self._history.exists():
                readline.read_history_file(str(self._history))
        except OSError:
            self._history = None
        readline.set_history_length(1000)
        readline.set_completer_delims(" \t\n\"'")
        readline.set_completer(self.complete)
        if "libedit" in (readline.__doc__ or ""):
            readline.parse_and_bind("bind ^I rl_complete")
        else:
            readline.parse_and_bind("tab: complete")

    def _forget_last_history(self) -> None:
        readline = self.ctx.readline
        if readline is None:
            return
        n = readline.get_current_history_length()
        if n:
            readline.remove_history_item(n - 1)

    def _save_history(self) -> None:
        if self.ctx.readline is None or self._history is None:
            return
        try:
            self.ctx.readline.write_history_file(str(self._history))
            os.chmod(self._history, 0o600)
        except OSError:
            pass

    def complete(self, text: str, state: int) -> str | None:
        if state == 0:
            try:
                self._matches = self._candidates(text)
            except Exception:  # noqa: BLE001 - completion must never break the prompt
                self._matches = []
        return self._matches[state] if state < len(self._matches) else None

    def _candidates(self, text: str) -> list[str]:
        readline = self.ctx.readline
        line = readline.get_line_buffer() if readline else ""
        begin = readline.get_begidx() if readline else 0
        words = line[:begin].split()
        if not words:
            return [c + " " for c in COMMANDS if c.startswith(text)]
        name = ALIASES.get(words[0], words[0])
        positional = [w for w in words[1:] if not w.startswith("-")]
        local = (name in LOCAL_FIRST and not text.startswith("/")) or (
            name == "download" and len(positional) >= 1
        )
        return self._local_matches(text) if local else self._remote_matches(text)

    @staticmethod
    def _local_matches(text: str) -> list[str]:
        out = []
        for path in sorted(glob.glob(os.path.expanduser(text) + "*")):
            out.append(path + ("/" if os.path.isdir(path) else " "))
        return out

    def _remote_matches(self, text: str) -> list[str]:
        typed_dir, slash, prefix = text.rpartition("/")
        shown = typed_dir + slash
        remote_dir = normalize(typed_dir or ("/" if slash else "."), self.ctx.cwd)
        names = self._names(remote_dir)
        return [shown + n for n in names if n.startswith(prefix)]

    def _names(self, remote_dir: str) -> list[str]:
        cached = self._listing_cache.get(remote_dir)
        if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        try:
            listing = self.ctx.signed_in_client().list_files(path=remote_dir)
        except errors.CloudError:
            return []
        # readline lists candidates raw on the terminal: names with unprintable characters
        # (which nobody can type anyway) are not offered.
        names = [d.name + "/" for d in listing.folders if not has_unprintable(d.name)] + [
            f.filename + " " for f in listing.files if not has_unprintable(f.filename)
        ]
        self._listing_cache[remote_dir] = (time.monotonic(), sorted(names))
        return sorted(names)
