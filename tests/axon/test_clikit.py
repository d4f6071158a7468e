"""axon/clikit.py's file helpers and axon/commands/loaders.py: every command's edge to files, keys and the
ledger. Failures are UsageErrors naming the file and the system's reason, with nothing left half-written."""

from __future__ import annotations

import errno
import io
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from axon import clikit
from axon.clikit import UsageError, io_error, read_bytes, read_lines, read_text, write_atomic
from axon.commands.loaders import LEDGER_ENV, ledger_path, load_key, open_ledger, open_ledger_to_check
from axon.keys import Identity, SigningKey
from axon.ledger import ChainBroken, Ledger

ROOT = Path(__file__).resolve().parents[2]


def _entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


class _Stdin:
    """Stands in for sys.stdin: the helpers read its binary `buffer`."""

    def __init__(self, data: bytes) -> None:
        self.buffer = io.BytesIO(data)


# --- write_atomic --------------------------------------------------------------------------------------


def test_write_atomic_replaces_the_file_and_leaves_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "out.wasm"
    target.write_bytes(b"old")
    write_atomic(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert _entries(tmp_path) == ["out.wasm"]
    write_atomic(str(tmp_path / "second.bin"), b"")  # a str path, empty data
    assert (tmp_path / "second.bin").read_bytes() == b""


def test_write_atomic_mode_is_exact_and_the_default_follows_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)  # a umask that would strip bits from a requested mode
    try:
        write_atomic(tmp_path / "secret", b"k", mode=0o640)
        write_atomic(tmp_path / "plain", b"p")
    finally:
        os.umask(old)
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "plain").stat().st_mode & 0o777 == 0o600  # 0o666 less umask 0o077


def test_a_directory_target_fails_cleanly(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep").write_bytes(b"x")
    with pytest.raises(UsageError) as exc:
        write_atomic(target, b"data")
    assert str(exc.value) == f"cannot write {target}: Is a directory"
    assert exc.value.__cause__ is None and exc.value.__suppress_context__
    assert _entries(tmp_path) == ["out"] and _entries(target) == ["keep"]


def test_a_missing_directory_fails_cleanly(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "x.sop"
    with pytest.raises(UsageError, match=r"^cannot write .*/missing/x\.sop: No such file or directory$"):
        write_atomic(target, b"data")
    assert _entries(tmp_path) == []


def test_a_write_that_fails_half_way_leaves_the_old_file(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk at the flush: the old file stays whole and the temporary file is removed."""
    target = tmp_path / "state.json"
    target.write_bytes(b'{"after_seq": 7}')

    def full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(UsageError) as exc:
        write_atomic(target, b'{"after_seq": 8}', what="inbox state")
    assert str(exc.value) == f"cannot write inbox state {target}: No space left on device"
    assert target.read_bytes() == b'{"after_seq": 7}'
    assert _entries(tmp_path) == ["state.json"]


def test_an_interrupted_write_removes_its_temporary_file(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.wasm"

    def interrupted(_src: object, _dst: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):  # not turned into a usage error: run_cli reports it (exit 130)
        write_atomic(target, b"data")
    assert _entries(tmp_path) == []


# --- read_bytes / read_text / read_lines ---------------------------------------------------------------


def test_dash_reads_standard_input_only_when_the_command_says_so(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", _Stdin(b"from stdin"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-").write_bytes(b"a file named -")
    assert read_bytes("-", stdin=True) == b"from stdin"
    assert read_bytes("-") == b"a file named -"


def test_read_text_and_read_lines_from_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", _Stdin("0xé\n".encode()))
    assert read_text("-", stdin=True) == "0xé\n"
    monkeypatch.setattr(sys, "stdin", _Stdin(b'{"a": 1}\n{"b": 2}'))
    assert list(read_lines("-", stdin=True)) == [b'{"a": 1}\n', b'{"b": 2}']


@pytest.mark.parametrize(("make", "reason"), [
    (lambda p: None, "No such file or directory"),
    (lambda p: p.mkdir(), "Is a directory"),
])
def test_read_failures_name_the_file_and_the_reason(tmp_path: Path, make, reason: str) -> None:
    path = tmp_path / "input.json"
    make(path)
    for read in (read_bytes, read_text, lambda p, **kw: list(read_lines(p, **kw))):
        with pytest.raises(UsageError) as exc:
            read(path, what="--installed")
        assert str(exc.value) == f"cannot read --installed {path}: {reason}"
        assert exc.value.__suppress_context__  # run_cli prints the message alone


def test_text_that_is_not_utf8_is_named_with_its_offset(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.json"
    path.write_bytes(b'{"\xff"}')
    with pytest.raises(UsageError, match=r"x\.json is not UTF-8 text: byte 2 is 0xff$"):
        read_text(path)
    monkeypatch.setattr(sys, "stdin", _Stdin(b"\xc3"))
    with pytest.raises(UsageError, match=r"^standard input is not UTF-8 text: byte 0 is 0xc3$"):
        read_text("-", stdin=True)


def test_read_lines_streams_and_leaves_the_consumers_errors_alone(tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl"
    path.write_bytes(b"1\n2\n3\n")
    lines = read_lines(path)
    assert next(lines) == b"1\n"
    with pytest.raises(BrokenPipeError):  # e.g. stdout closed while replaying: not "cannot read"
        for _line in lines:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")


def test_io_error_without_an_errno_text_shows_the_exception() -> None:
    assert str(io_error("read", "log", OSError("segment vanished"))) == "cannot read log: segment vanished"


# --- through the real CLIs: exit 2, one line, no traceback ---------------------------------------------


def _run(*args: str, stdin: bytes = b"", cwd: Path = ROOT) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, *args], input=stdin, capture_output=True, cwd=cwd, timeout=60,
                          check=False)


def test_cli_write_to_a_directory_is_exit_2_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "out.wasm").mkdir()
    done = _run("-m", "scc", "compile", str(ROOT / "policies" / "boiler-guard.json"), "-o",
                str(tmp_path / "out.wasm"))
    assert done.returncode == 2
    assert done.stderr.decode() == f"scc: error: cannot write {tmp_path / 'out.wasm'}: Is a directory\n"
    assert _entries(tmp_path) == ["out.wasm"]


def test_cli_stdin_that_is_not_text_is_exit_2_without_traceback() -> None:
    done = _run("-m", "axon", "tx", "decode", "-", stdin=b"\xf8\x01")
    assert (done.returncode, done.stderr) == (2, b"axon: error: standard input is not UTF-8 text: byte 0 "
                                                 b"is 0xf8\n")


def test_cli_group_without_subcommand_prints_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    from axon.cli import main

    for group, title in (("msg", "msg commands"), ("ledger", "ledger commands"), ("tx", "tx commands")):
        assert main([group]) == clikit.EXIT_USAGE
        assert title in capsys.readouterr().err


# --- loaders: key and ledger ---------------------------------------------------------------------------


def test_load_key_failure_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="nope.key"):
        load_key(tmp_path / "nope.key")


def test_ledger_path_comes_from_the_argument_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LEDGER_ENV, raising=False)
    with pytest.raises(UsageError, match=f"pass --ledger PATH or set {LEDGER_ENV}"):
        ledger_path(None)
    monkeypatch.setenv(LEDGER_ENV, "/plant/ledger.db")
    assert ledger_path(None) == Path("/plant/ledger.db") and ledger_path("x.db") == Path("x.db")


def test_open_ledger_missing_and_broken(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    with pytest.raises(UsageError, match=r"nope\.db does not exist"):
        open_ledger(missing)
    path = tmp_path / "ledger.db"
    key = SigningKey.generate()
    Ledger.init(path, Identity(key, "did:sopcos:root#key-1")).close()
    with open_ledger(path) as ledger:
        assert ledger.head_seq == 1
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM entries WHERE seq = 1")
    with pytest.raises(ChainBroken):  # `axon ledger` reports this itself, as a failed check
        open_ledger_to_check(path)
    with pytest.raises(UsageError, match=r"^cannot use ledger .*ledger\.db: ledger entry 1: .*"
                                         r"\[AXON-LEDGER-CHAIN-BROKEN\]$"):
        open_ledger(path)
