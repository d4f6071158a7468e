"""`synapse eval` (synapse/commands/eval.py), run as a real process, plus its replay loop in-process."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from synapse.commands.eval import replay
from synapse.evaluate import Evaluator
from tests.synapse_wat import IMPORTS, boiler, meta, policy_module

pytestmark = pytest.mark.slow


def synapse(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synapse", *args], input=stdin, capture_output=True,
                          timeout=120)


def lines(out: bytes) -> list[dict]:
    return [json.loads(line) for line in out.decode().splitlines()]


@pytest.fixture(scope="module")
def module_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("modules") / "boiler.wasm"
    path.write_bytes(boiler())
    return path


def test_one_decision_as_json(module_file):
    result = synapse("eval", str(module_file), "--telemetry", '{"pressure_bar": 97.5, "valve_open": false}',
                     "--context", '{"mode": "AUTO"}')
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout) == [{
        "verdict": "HALT", "code": 3, "rule": "halt-overpressure",
        "logs": [{"level": "error", "message": "pressure above 95 bar"}], "reason": None, "gas_used": 10,
    }]


def test_a_failed_evaluation_is_still_a_printed_decision(module_file):
    result = synapse("eval", str(module_file), "--telemetry", '{"pressure_bar": 300, "valve_open": false}',
                     "--context", '{"mode": "AUTO"}')
    assert result.returncode == 0
    [decision] = lines(result.stdout)
    assert decision["verdict"] == "DENY" and decision["code"] == 0
    assert decision["reason"] == 'input fault: telemetry "pressure_bar" is above its maximum 250'


def test_replay_from_a_file_in_order(module_file, tmp_path):
    readings = [(99, "AUTO"), (85, "MAINTENANCE"), (50, "MANUAL"), (85, "AUTO")]
    source = tmp_path / "readings.jsonl"
    source.write_text("".join(json.dumps({"telemetry": {"pressure_bar": p, "valve_open": False},
                                          "context": {"mode": m}}) + "\n" for p, m in readings))
    result = synapse("eval", str(module_file), "--input", str(source))
    assert result.returncode == 0, result.stderr
    assert [(d["verdict"], d["rule"]) for d in lines(result.stdout)] == [
        ("HALT", "halt-overpressure"), ("DENY", "maintenance"), ("ALLOW", "normal"), ("DENY", None)]


def test_replay_from_stdin_survives_malformed_lines(module_file):
    stdin = b"\n".join([
        b'{"telemetry": {"pressure_bar": 50, "valve_open": true}, "context": {"mode": "AUTO"}}',
        b"{not json",
        b'[1, 2]',
        b'{"telemetry": {}, "extra": 1}',
        b"",
        b'{"telemetry": {"pressure_bar": 99, "valve_open": true}, "context": {"mode": "AUTO"}}',
        b'{"telemetry": {"pressure_bar": 99, "valve_open": true, "pressure_bar": 50}, '
        b'"context": {"mode": "AUTO"}}',
    ]) + b"\n"
    result = synapse("eval", str(module_file), "--input", "-", stdin=stdin)
    assert result.returncode == 0, result.stderr
    decisions = lines(result.stdout)
    assert [d["verdict"] for d in decisions] == ["ALLOW", "DENY", "DENY", "DENY", "DENY", "HALT", "DENY"]
    assert decisions[1]["reason"].startswith("line 2: not strict JSON")
    assert decisions[2]["reason"] == "line 3: must be a JSON object, got an array"
    assert decisions[3]["reason"].startswith("line 4: /extra: is not a member of a reading")
    assert decisions[4]["reason"].startswith("line 5: not strict JSON")
    assert decisions[5]["reason"] is None
    # a reading sent twice is ambiguous (was it 99 or 50 bar?): DENY, not "the last one wins"
    assert decisions[6]["reason"].startswith("line 7: not strict JSON: key 'pressure_bar' appears twice")


def test_a_missing_module_is_exit_2_without_a_traceback(tmp_path):
    result = synapse("eval", str(tmp_path / "nope.wasm"), "--telemetry", "{}")
    assert result.returncode == 2
    assert b"cannot read module" in result.stderr and b"SYNAPSE-MODULE-UNREADABLE" in result.stderr
    assert b"Traceback" not in result.stderr and result.stdout == b""


def test_a_refused_module_is_exit_2_naming_the_import(tmp_path):
    path = tmp_path / "wasi.wasm"
    wasi = '(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))'
    body = "(call $decide (i32.const 1) (i32.const 0))"
    path.write_bytes(policy_module(body, meta(), imports=IMPORTS + wasi))
    result = synapse("eval", str(path), "--telemetry", "{}")
    assert result.returncode == 2
    assert b'"wasi_snapshot_preview1"."fd_write"' in result.stderr
    assert b"SYNAPSE-MODULE-IMPORT" in result.stderr
    assert b"Traceback" not in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--telemetry", "{oops"], b"--telemetry is not strict JSON"),
    (["--telemetry", "[1]"], b"/telemetry: must be a JSON object, got an array [SYNAPSE-READING]"),
    (["--telemetry", "{}", "--context", "nope"], b"--context is not strict JSON"),
    # issue 10: the same reading twice on the command line is refused as on an --input line
    (["--telemetry", '{"pressure_bar": 99, "pressure_bar": 50}'], b"key 'pressure_bar' appears twice"),
    (["--telemetry", "{}", "--context", '{"mode": "AUTO", "mode": "MAINTENANCE"}'],
     b"key 'mode' appears twice"),
    (["--input", "-", "--context", "{}"], b"--context goes with --telemetry"),
    (["--input", "/nonexistent/readings.jsonl"], b"cannot read /nonexistent/readings.jsonl: No such file"),
    (["--telemetry", "{}", "--fuel", "-1"], b"fuel must be a whole number"),
    (["--telemetry", "{}", "--deadline-ms", "0"], b"limits.eval_timeout_ms must be > 0"),
])
def test_usage_errors_are_exit_2(module_file, args, message):
    result = synapse("eval", str(module_file), *args)
    assert result.returncode == 2
    assert message in result.stderr and b"Traceback" not in result.stderr


def test_limits_reach_the_evaluator(module_file):
    result = synapse("eval", str(module_file), "--gas", "15", "--telemetry",
                     '{"pressure_bar": 50, "valve_open": false}', "--context", '{"mode": "AUTO"}')
    assert lines(result.stdout)[0]["reason"] == "fault: gas budget exhausted (budget 15)"


def test_help_explains_both_modes():
    result = synapse("eval", "--help")
    assert result.returncode == 0
    assert b"--telemetry" in result.stdout and b"--input" in result.stdout and b"Exit status" in result.stdout


def test_replay_writes_one_line_per_input_line():
    evaluator = Evaluator.from_wasm(boiler())
    records = [orjson.dumps({"telemetry": {"pressure_bar": p, "valve_open": False},
                             "context": {"mode": "AUTO"}}) for p in range(0, 120, 3)]
    out = io.BytesIO()
    assert replay(evaluator, iter([*records, b"junk\n"]), out) == len(records) + 1
    decisions = lines(out.getvalue())
    assert len(decisions) == len(records) + 1
    assert decisions[-1]["reason"].startswith(f"line {len(records) + 1}: not strict JSON")
    assert [d["verdict"] for d in decisions[:-1]] == [
        evaluator.evaluate(orjson.loads(r)["telemetry"], {"mode": "AUTO"}).name for r in records]
