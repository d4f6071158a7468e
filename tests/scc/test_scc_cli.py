"""`scc check` and `scc compile`: output and exit codes (0 ok, 1 policy errors, 2 usage or I/O)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from axon import abi
from scc.cli import main
from tests.scc_policies import SPEC_EXAMPLE, P, dumps, policy, rule

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def valid(tmp_path):
    path = tmp_path / "boiler.json"
    path.write_bytes(dumps(SPEC_EXAMPLE))
    return path


@pytest.fixture
def invalid(tmp_path):
    path = tmp_path / "bad.json"
    path.write_bytes(dumps(policy(rule({"gt": [P, True]}), rule({"eq": [P, "x"]}))))
    return path


def test_check_valid_prints_warnings_and_exits_0(valid, capsys):
    assert main(["check", str(valid)]) == 0
    out, err = capsys.readouterr()
    lines = valid.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if '"temp_c"' in text)
    column = lines[line - 1].index("{") + 1  # the declaration's value starts there
    assert out.splitlines() == [
        f"{valid}:/inputs/telemetry/temp_c: SCC-W004 telemetry input `temp_c` is declared but no rule "
        f"uses it (line {line}, column {column})"]
    assert "valid, 1 warning" in err


def test_check_invalid_lists_every_error_and_exits_1(invalid, capsys):
    assert main(["check", str(invalid)]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{invalid}:/rules/0/when/gt/1: SCC-E020 expected a number here, "
                               "but true is a bool")
    assert lines[1].startswith(f"{invalid}:/rules/1/when/eq/1: SCC-E022 ")
    assert "2 errors" in err


def test_check_json(valid, invalid, capsys):
    assert main(["check", str(valid), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is True and report["errors"] == []
    assert [w["code"] for w in report["warnings"]] == ["SCC-W004"]
    assert main(["check", "--json", str(invalid)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False
    assert [(e["code"], e["pointer"], e["severity"]) for e in report["errors"]] == [
        ("SCC-E020", "/rules/0/when/gt/1", "error"), ("SCC-E022", "/rules/1/when/eq/1", "error")]
    assert all(e["line"] >= 1 and e["column"] >= 1 and e["message"] for e in report["errors"])


def test_check_unreadable_json_text(tmp_path, capsys):
    path = tmp_path / "broken.json"
    path.write_bytes(b'{"sip": "001",\n "sip": "001"')
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "SCC-E004" in out and "(line 2, column 2)" in out


@pytest.mark.parametrize("command", [["check"], ["compile", "-o", "x.wasm"]])
def test_missing_file_is_exit_2(command, tmp_path, capsys):
    assert main([*command, str(tmp_path / "nope.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_compile_writes_the_module(valid, tmp_path, capsys):
    out_path = tmp_path / "out" / "boiler.wasm"
    out_path.parent.mkdir()
    assert main(["compile", str(valid), "-o", str(out_path)]) == 0
    wasm = out_path.read_bytes()
    meta = abi.read_meta(wasm)
    err = capsys.readouterr().err
    assert f"gas_max {meta.gas_max}" in err and f"{len(wasm):,} bytes" in err
    assert "SCC-W004" in err
    assert [p.name for p in out_path.parent.iterdir()] == ["boiler.wasm"]  # no temporary file left


def test_compile_invalid_exits_1_and_writes_nothing(invalid, tmp_path, capsys):
    out_path = tmp_path / "bad.wasm"
    assert main(["compile", str(invalid), "-o", str(out_path)]) == 1
    assert not out_path.exists()
    err = capsys.readouterr().err
    assert "SCC-E020" in err and "not compiled: 2 error(s)" in err


def test_compile_emit_wat(valid, tmp_path, capsys):
    assert main(["compile", str(valid), "--emit", "wat"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(";; policy boiler-guard 1.2.0") and '(export "evaluate")' in out
    target = tmp_path / "boiler.wat"
    assert main(["compile", str(valid), "--emit", "wat", "-o", str(target)]) == 0
    assert target.read_text() == out


def test_compile_needs_an_output_for_wasm(valid, capsys):
    assert main(["compile", str(valid)]) == 2
    assert "-o OUT.wasm" in capsys.readouterr().err


def test_compile_unwritable_output_is_exit_2(valid, tmp_path, capsys):
    assert main(["compile", str(valid), "-o", str(tmp_path / "missing-dir" / "x.wasm")]) == 2
    assert "cannot write" in capsys.readouterr().err


@pytest.mark.slow
def test_real_process_exit_codes_and_stdin(valid, invalid):
    def scc(*args, stdin=None):
        return subprocess.run([sys.executable, "-m", "scc", *args], capture_output=True, input=stdin,
                              cwd=ROOT)

    assert scc("check", str(valid)).returncode == 0
    assert scc("check", "/nonexistent/policy.json").returncode == 2
    assert scc("check").returncode == 2  # argparse: missing argument
    piped = scc("check", "-", "--json", stdin=invalid.read_bytes())
    assert piped.returncode == 1 and json.loads(piped.stdout)["valid"] is False


def test_help_explains(capsys):
    with pytest.raises(SystemExit) as info:
        main(["compile", "--help"])
    assert info.value.code == 0
    help_text = capsys.readouterr().out
    assert "exit status" in help_text and "--emit" in help_text and "gas" in help_text
    with pytest.raises(SystemExit) as info:
        main(["compile", "x.json", "--emit", "nonsense"])
    assert info.value.code == 2
