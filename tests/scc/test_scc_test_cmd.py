"""`scc test`: failures printed with the decision they got, exit codes, JUnit XML, unexercised rules."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from scc.cli import main
from scc.compiler import compile_policy
from scc.testing import ModuleRefused, run_cases
from synapse import cli as synapse_cli

POLICY = {
    "sip": "001", "policy": "pump-guard", "version": "1.0.0",
    "inputs": {"telemetry": {"pressure_bar": {"type": "number", "min": 0, "max": 16, "unit": "bar"},
                             "flow_m3h": {"type": "number", "min": 0, "max": 100}}},
    "let": {"head_per_flow": {"div": [{"telemetry": "pressure_bar"}, {"telemetry": "flow_m3h"}]}},
    "rules": [
        {"id": "halt-high", "when": {"gt": [{"telemetry": "pressure_bar"}, 12]}, "then": "HALT",
         "log": {"level": "error", "message": "pump discharge above 12 bar"}},
        {"id": "warn-deadhead", "when": {"gt": [{"ref": "head_per_flow"}, 1]}, "then": "WARN"},
        {"id": "allow-normal", "when": {"le": [{"telemetry": "pressure_bar"}, 8]}, "then": "ALLOW"},
    ],
}


def case(name, pressure, flow, expect, **more):
    """A case; pressure None leaves the gauge out."""
    telemetry = {"flow_m3h": flow} if pressure is None else {"pressure_bar": pressure, "flow_m3h": flow}
    return {"name": name, "telemetry": telemetry, "expect": expect, **more}


PASSING = [
    case("trip", 13, 50, "HALT", rule="halt-high"),
    case("deadhead", 10, 5, "WARN", rule="warn-deadhead"),
    case("normal", 5, 50, "ALLOW", rule="allow-normal"),
    case("between 8 and 12 with flow", 9, 50, "DENY", rule=None),
    case("no flow", 9, 0, "DENY", rule=None, reason_contains="division by zero"),
    case("gauge missing", None, 50, "DENY", rule=None, reason_contains="pressure_bar"),
]


def write(tmp_path: Path, cases, policy=POLICY, name="pump-guard") -> Path:
    (tmp_path / f"{name}.json").write_text(json.dumps(policy))
    test_file = tmp_path / f"{name}.test.json"
    test_file.write_text(json.dumps({"policy": f"{name}.json", "cases": cases}))
    return test_file


def scc_test(capsys, *args) -> tuple[int, str, str]:
    code = main(["test", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_all_cases_pass(tmp_path, capsys):
    code, out, _ = scc_test(capsys, write(tmp_path, PASSING))
    assert code == 0
    assert out.splitlines()[-1] == "6 passed, 0 failed"
    assert "FAIL" not in out and "no case exercised" not in out


def test_a_failing_case_exits_1_and_shows_what_it_got(tmp_path, capsys):
    cases = PASSING + [case("operator thinks 13 bar only warns", 13, 50, "WARN",
                                               rule="warn-deadhead")]
    code, out, _ = scc_test(capsys, write(tmp_path, cases))
    assert code == 1
    assert "FAIL pump-guard (pump-guard.test.json): operator thinks 13 bar only warns" in out
    assert "got:      HALT by halt-high" in out
    assert "log:      [error] pump discharge above 12 bar" in out
    assert "verdict: expected WARN, got HALT" in out and "rule: expected warn-deadhead, got halt-high" in out
    assert out.splitlines()[-1] == "6 passed, 1 failed"


def test_rule_null_and_reason_are_checked(tmp_path, capsys):
    cases = [case("default expected but a rule decides", 5, 50, "ALLOW", rule=None),
             case("wrong reason", 9, 0, "DENY", rule=None, reason_contains="flow meter broken")]
    code, out, _ = scc_test(capsys, write(tmp_path, cases))
    assert code == 1
    assert "rule: expected none (default or fault), got allow-normal" in out
    assert "reason: expected it to contain 'flow meter broken'" in out and "division by zero" in out
    assert out.splitlines()[-1] == "0 passed, 2 failed"


def test_unexercised_rules_are_listed_per_policy(tmp_path, capsys):
    code, out, _ = scc_test(capsys, write(tmp_path, [PASSING[0], PASSING[3]]))
    assert code == 0
    lines = out.splitlines()
    assert lines[-3:] == ["rules no case exercised:", "  pump-guard: warn-deadhead, allow-normal",
                          "2 passed, 0 failed"]


def test_junit_xml_parses_and_counts_match(tmp_path, capsys):
    cases = PASSING + [case("wrong", 13, 50, "ALLOW"), case("also wrong", 5, 50, "HALT")]
    report = tmp_path / "out" / "junit.xml"
    report.parent.mkdir()
    code, _, _ = scc_test(capsys, write(tmp_path, cases), "--junit", report)
    assert code == 1
    root = ET.parse(report).getroot()
    assert root.tag == "testsuites" and (root.get("tests"), root.get("failures")) == ("8", "2")
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "pump-guard"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("8", "2", "0")
    testcases = suite.findall("testcase")
    assert [t.get("name") for t in testcases] == [c["name"] for c in cases]
    failed = {t.get("name"): t.find("failure") for t in testcases if t.find("failure") is not None}
    assert set(failed) == {"wrong", "also wrong"}
    assert "verdict: expected ALLOW, got HALT" in failed["wrong"].get("message")
    assert "got:      HALT by halt-high" in failed["wrong"].text


def test_directories_are_searched_and_each_policy_reported(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write(tmp_path / "a", [PASSING[0]])
    write(tmp_path / "b", [PASSING[2]], policy=dict(POLICY, policy="pump-guard-b"), name="b")
    code, out, _ = scc_test(capsys, tmp_path)
    assert code == 0
    assert "  pump-guard: warn-deadhead, allow-normal" in out
    assert "  pump-guard-b: halt-high, warn-deadhead" in out
    assert out.splitlines()[-1] == "2 passed, 0 failed"


def test_a_policy_that_does_not_compile_fails_with_its_diagnostics(tmp_path, capsys):
    broken = json.loads(json.dumps(POLICY))
    broken["rules"][0]["when"] = {"gt": [{"telemetry": "presure_bar"}, 12]}
    report = tmp_path / "junit.xml"
    code, out, _ = scc_test(capsys, write(tmp_path, [PASSING[0]], policy=broken), "--junit", report)
    assert code == 1
    assert "does not compile" in out and "/rules/0/when/gt/0" in out
    assert out.splitlines()[-1] == "0 passed, 1 failed"
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite.get("errors") == "1" and suite.find("testcase/error") is not None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"policy": "pump-guard.json", "cases": [{"name": "x"}]}),
         "/cases/0: 'expect' is a required"),
        (json.dumps({"policy": "pump-guard.json", "cases": [{"name": "x", "expect": "STOP"}]}),
         "/cases/0/expect: 'STOP' is not one of"),
        (json.dumps({"policy": "pump-guard.json", "cases": [{"name": "x", "expect": "DENY", "rules": "r"}]}),
         "Additional properties are not allowed ('rules' was unexpected)"),
        (json.dumps({"policy": "missing.json", "cases": [{"name": "x", "expect": "DENY"}]}),
         "/policy: policy file 'missing.json' not found"),
        (json.dumps({"policy": "pump-guard.json", "cases": [{"name": "x", "expect": "DENY"}] * 2}),
         "/cases/1/name: case name 'x' is used twice"),
    ],
)
def test_a_malformed_test_file_is_a_usage_error(tmp_path, capsys, content, message):
    (tmp_path / "pump-guard.json").write_text(json.dumps(POLICY))
    bad = tmp_path / "pump-guard.test.json"
    bad.write_text(content)
    code, out, err = scc_test(capsys, bad)
    assert code == 2 and out == ""
    assert str(bad) in err and message in err


def test_no_test_files_is_a_usage_error(tmp_path, capsys):
    code, _, err = scc_test(capsys, tmp_path)
    assert code == 2 and "no *.test.json files found" in err
    code, _, err = scc_test(capsys, tmp_path / "nowhere")
    assert code == 2 and "no such file or directory" in err


def test_a_case_that_is_not_a_reading_is_a_deny_naming_the_case_and_the_value(tmp_path, capsys):
    cases = [case("trip", 13, 50, "HALT"),
             {"name": "gauge null", "telemetry": {"pressure_bar": None, "flow_m3h": 50}, "expect": "ALLOW"}]
    code, out, _ = scc_test(capsys, write(tmp_path, cases))
    assert code == 1
    assert "reason:   case 2: /telemetry/pressure_bar: must be true, false, a finite number" in out
    assert "verdict: expected ALLOW, got DENY" in out and out.splitlines()[-1] == "1 passed, 1 failed"


def test_the_decisions_are_the_ones_synapse_eval_gives(tmp_path, capsys):
    """In-process evaluation answers every case exactly as `synapse eval --input` does."""
    wasm = compile_policy(json.dumps(POLICY).encode()).wasm
    module, readings = tmp_path / "pump-guard.wasm", tmp_path / "readings.jsonl"
    module.write_bytes(wasm)
    readings.write_text("".join(json.dumps({"telemetry": c["telemetry"]}) + "\n" for c in PASSING))
    assert synapse_cli.main(["eval", str(module), "--input", str(readings)]) == 0
    replayed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    decided = run_cases(wasm, PASSING)
    assert len(replayed) == len(PASSING) and decided == replayed
    assert {d["verdict"] for d in decided} == {"HALT", "WARN", "ALLOW", "DENY"}


def test_a_module_the_runtime_refuses_is_reported_not_run():
    with pytest.raises(ModuleRefused, match="the runtime refused the compiled module"):
        run_cases(b"\0asm\x01\0\0\0", PASSING)


@pytest.mark.slow
def test_the_installed_command_runs_the_bundled_policies():
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "scc", "test", "policies"], cwd=root,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].endswith(" passed, 0 failed")
