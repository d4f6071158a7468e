"""The one command-line skeleton shared by `scc`, `axon` and `synapse`.

Each subcommand lives in its own module with `register(subparsers)`, which adds a parser and sets
`run=callable(args) -> int`. Exit codes scripts can trust: 0 success, 1 a policy/verification/test
failure, 2 a usage or I/O error (argparse also exits 2 on bad usage).

The file helpers below are every command's edge to the file system: each failure becomes a
`UsageError` naming the file and the system's reason ("cannot read boiler.json: No such file or
directory"), which `run_cli` prints without a traceback and turns into exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2

STDIN = "-"  # the file name that means standard input, for commands that say so in their --help
STDIN_NAME = "standard input"  # how messages name it

PathArg = str | os.PathLike[str]


class UsageError(Exception):
    """A problem with how the command was called or with the files it was given (exit 2)."""


def run_cli(prog: str, description: str, command_modules: Sequence[str], argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    own_process = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    # The cyclic collector finds next to no garbage among the objects imports create (classes, functions,
    # ctypes prototypes), yet its passes over them were ~13% of `synapse eval X.wasm`'s instructions
    # (issue 15), most of them at exit: off while the command's modules load, then as the caller had it.
    # When this is the process's own command line (argv None), what the imports made is frozen too, so
    # that neither the exit nor a long-running command's full collections walk it again.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for name in _modules_for(command_modules, argv):
            importlib.import_module(name).register(sub)
    finally:
        if own_process:
            gc.freeze()
        if collecting:
            gc.enable()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.run(args))
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK


def _modules_for(command_modules: Sequence[str], argv: Sequence[str]) -> Sequence[str]:
    """The module of the command being run (a module is named after its command: `scc.commands.check`
    is `scc check`), or all of them for the overall --help or a word that is no command. Importing
    only that one keeps every other command's libraries out of start-up (issue 15; docs/service.md)."""
    if argv and not argv[0].startswith("-"):
        chosen = [name for name in command_modules if name.rsplit(".", 1)[-1] == argv[0]]
        if chosen:
            return chosen
    return command_modules


def help_for(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """A `run` for a command group called without its subcommand: print the group's help, exit 2."""

    def show(_args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return EXIT_USAGE

    return show


# --- files -----------------------------------------------------------------------------------------


def io_error(verb: str, path: PathArg, exc: OSError, what: str = "") -> UsageError:
    """`cannot VERB [WHAT ]PATH: REASON`, the reason as the system says it (errno's text, no errno)."""
    return UsageError(f"cannot {verb} {_name(path, what)}: {exc.strerror or exc}")


def read_bytes(path: PathArg, *, what: str = "", stdin: bool = False) -> bytes:
    """The whole file; with `stdin=True`, "-" reads standard input to its end.

    `what` names the file's role in messages ("inbox state" gives "cannot read inbox state PATH: ...").
    """
    try:
        return sys.stdin.buffer.read() if _is_stdin(path, stdin) else Path(path).read_bytes()
    except OSError as exc:
        raise io_error("read", _shown(path, stdin), exc, what) from None


def read_text(path: PathArg, *, what: str = "", stdin: bool = False) -> str:
    """`read_bytes` decoded as UTF-8; bytes that are not UTF-8 are a usage error naming the offset."""
    data = read_bytes(path, what=what, stdin=stdin)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{_name(_shown(path, stdin), what)} is not UTF-8 text: byte {exc.start} is "
                         f"0x{data[exc.start]:02x}") from None


def read_lines(path: PathArg, *, what: str = "", stdin: bool = False) -> Iterator[bytes]:
    """The file's lines as they are read (for streams too large or too live to read whole).

    Only reading errors become `UsageError`: an error of whoever consumes the lines (a closed stdout,
    say) is theirs and passes through unchanged.
    """
    try:
        if _is_stdin(path, stdin):
            yield from sys.stdin.buffer
            return
        with open(path, "rb", buffering=1 << 20) as stream:
            yield from stream
    except OSError as exc:
        raise io_error("read", _shown(path, stdin), exc, what) from None


def write_atomic(path: PathArg, data: bytes, mode: int | None = None, *, what: str = "") -> None:
    """Replace `path` with `data` all at once: readers (and a crash) see the old file or the new one.

    Writes a temporary file in the same directory (a rename is atomic only within one file system),
    flushes it to disk, then renames it over `path`; on any failure the temporary file is removed and
    `path` is left as it was. The new file gets `mode` when given (0o600 for secrets), else the usual
    0o666 less the umask, like any newly created file.
    """
    target = Path(path)
    # os.urandom rather than secrets.token_hex: importing secrets (hashlib, hmac) costs every start-up
    tmp = target.with_name(f".{target.name}.{os.urandom(4).hex()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
    except OSError as exc:
        raise io_error("write", path, exc, what) from None
    try:
        with os.fdopen(fd, "wb") as stream:
            if mode is not None:
                os.fchmod(stream.fileno(), mode)  # exactly `mode`, whatever the umask
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, target)
    except BaseException as exc:  # interrupted too: never leave the temporary file behind
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise io_error("write", path, exc, what) from None
        raise
    _sync_directory(target.parent)


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable; best effort (not every platform opens directories)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _is_stdin(path: PathArg, stdin: bool) -> bool:
    return stdin and os.fspath(path) == STDIN


def _shown(path: PathArg, stdin: bool) -> PathArg:
    return STDIN_NAME if _is_stdin(path, stdin) else path


def _name(path: PathArg, what: str) -> str:
    return f"{what} {os.fspath(path)}" if what else os.fspath(path)
