"""`scc analyze` (issue 13 item 1): each check finds what it names, with an example input that the compiled
module and the reference interpreter both confirm, and proves absence where there is none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import z3

from scc.analysis import encode, relaxed
from scc.analysis.checks import analyze
from scc.analysis.replay import Observed, ReplayDisagreement, Replayer
from scc.analysis.solve import Status
from scc.cli import main as scc
from scc.operators import OPERATORS
from tests.analysis_support import FLAG, MODE, X, Y, analysis_of, loaded, oracles, policy

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def codes(analysis) -> list[tuple[str, str]]:
    return [(f.code, f.pointer) for f in analysis.findings]


def test_every_operator_has_an_smt_encoding_and_every_nan_step_an_invalid_operation_rule():
    for operator in OPERATORS.values():
        assert operator.smt in encode.SMT, operator.name
        # The relaxed encoding: an exact function on reals, or a rounded step (scc/analysis/relaxed.py).
        assert (operator.smt in relaxed.SMT) != (operator.smt in relaxed.ROUNDED), operator.name
        if any(f.name == "NAN" for f in operator.faults):
            assert operator.smt in encode.INVALID and operator.smt in relaxed.INVALID, operator.name


def test_boiler_guard_every_rule_decides_and_the_default_region_has_an_example():
    analysis = analysis_of(json.loads((POLICIES / "boiler-guard.json").read_text()))
    assert [r.decides for r in analysis.rules] == [True] * 6
    assert analysis.warnings == []
    default = [f for f in analysis.findings if f.code == "SCC-A003"]
    assert len(default) == 1 and default[0].reading is not None
    # The example is a reading no rule takes: the module says so, independently of the solver.
    assert oracles()[0].decide(loaded(json.loads((POLICIES / "boiler-guard.json").read_text()))
                               .policy.document, default[0].reading).rule is None


def test_a_rule_outside_the_declared_range_can_never_hold():
    analysis = analysis_of(policy([{"id": "impossible", "when": {"gt": [X, 10]}, "then": "HALT"},
                                   {"id": "fine", "when": {"le": [X, 10]}, "then": "ALLOW"}]))
    assert codes(analysis) == [("SCC-A001", "/rules/0/when")]
    assert [r.decides for r in analysis.rules] == [False, True]
    assert analysis.default_decides is False


def test_a_rule_taken_by_an_earlier_one_never_decides_and_the_example_shows_who_takes_it():
    analysis = analysis_of(policy([{"id": "wide", "when": {"gt": [X, 1]}, "then": "WARN"},
                                   {"id": "narrow", "when": {"gt": [X, 2]}, "then": "HALT"}]))
    shadowed = [f for f in analysis.findings if f.code == "SCC-A002"]
    assert len(shadowed) == 1 and shadowed[0].rule == "narrow"
    assert "`wide`" in shadowed[0].message and shadowed[0].reading["telemetry"]["x"] > 2


def test_most_severe_a_rule_always_outranked_never_decides_but_order_alone_does_not_matter():
    rules = [{"id": "warn-high", "when": {"gt": [X, 5]}, "then": "WARN"},
             {"id": "halt-higher", "when": {"gt": [X, 4]}, "then": "HALT"}]
    analysis = analysis_of(policy(rules, combine="most-severe"))
    warnings = [(f.code, f.rule) for f in analysis.findings if f.level == "warning"]
    assert warnings == [("SCC-A002", "warn-high")]
    assert not any(f.code == "SCC-A005" for f in analysis.findings)  # overlaps are first-match only


def test_first_match_overlap_with_different_verdicts_is_a_note_with_an_example_where_both_hold():
    analysis = analysis_of(policy([{"id": "manual", "when": {"eq": [MODE, "MANUAL"]}, "then": "DENY"},
                                   {"id": "open", "when": FLAG, "then": "ALLOW"}]))
    overlap = [f for f in analysis.findings if f.code == "SCC-A005"]
    assert len(overlap) == 1 and overlap[0].level == "note"
    reading = overlap[0].reading
    assert reading["context"]["mode"] == "MANUAL" and reading["telemetry"]["flag"] is True


def test_reachable_division_by_zero_and_nan_are_found_at_their_sites():
    lets = {"rate": {"div": [100, X]},  # x may be 0
            "wild": {"sub": [{"mul": [Y, 1e308]}, {"mul": [Y, 1e308]}]}}  # inf - inf once |y| > 1.8
    analysis = analysis_of(policy([{"id": "fast", "when": {"gt": [{"ref": "rate"}, 50]}, "then": "WARN"},
                                   {"id": "wild", "when": {"gt": [{"ref": "wild"}, 0]}, "then": "HALT"}],
                                  lets=lets))
    faults = {(f.pointer, f.message.split(" is ")[0]): f.reading
              for f in analysis.findings if f.code == "SCC-A004"}
    assert set(faults) == {("/let/rate", "division by zero"), ("/let/wild", "a NaN result")}
    assert faults[("/let/rate", "division by zero")]["telemetry"]["x"] == 0
    assert abs(faults[("/let/wild", "a NaN result")]["telemetry"]["y"]) > 1.7


def test_a_guarded_division_is_proved_safe():
    guarded = {"if": [{"gt": [X, 0]}, {"div": [1, X]}, 0]}
    analysis = analysis_of(policy([{"id": "r", "when": {"gt": [guarded, 0.5]}, "then": "WARN"}]))
    assert not any(f.code in ("SCC-A004", "SCC-A006") for f in analysis.findings)


def test_a_question_that_runs_out_of_time_is_unknown_never_proven():
    # x*y == 7 within the ranges and 1/3 of it exact: the unsat proof needs the multiplier, and
    # a millisecond is not enough for it; samples cannot prove anything.
    rule = {"id": "r", "when": {"all": [{"eq": [{"mul": [X, Y, Y]}, 7.123456789]},
                                        {"eq": [{"mul": [Y, X, Y]}, 7.123456788]}]}, "then": "HALT"}
    analysis = analysis_of(policy([rule]), timeout=0.001)
    assert [r.decides for r in analysis.rules] == [None]
    assert any(f.code == "SCC-A006" and "not a proof" in f.message for f in analysis.findings)
    assert not any(f.code in ("SCC-A001", "SCC-A002") for f in analysis.findings)


class _Lying:
    """An oracle that decides everything ALLOW by rule `nonsense`."""

    name = "lying oracle"

    def decide(self, document, reading):
        return Observed("ALLOW", "nonsense", False, None)


def test_a_witness_an_oracle_decides_otherwise_is_an_internal_error_not_output():
    document = loaded(policy([{"id": "r", "when": {"gt": [X, 5]}, "then": "HALT"}])).policy
    with pytest.raises(ReplayDisagreement, match="lying oracle decided ALLOW"):
        analyze(document, Replayer(document.document, [*oracles(), _Lying()]))


def test_the_default_and_faults_under_most_severe_a_fault_anywhere_denies():
    rules = [{"id": "ok", "when": {"ge": [X, 0]}, "then": "ALLOW"},
             {"id": "ratio", "when": {"gt": [{"div": [Y, X]}, 1]}, "then": "WARN"}]
    analysis = analysis_of(policy(rules, combine="most-severe"))
    assert analysis.default_decides is False  # `ok` holds everywhere
    fault = next(f for f in analysis.findings if f.code == "SCC-A004")
    assert fault.pointer == "/rules/1/when/gt/0" and fault.reading["telemetry"]["x"] == 0
    assert Status.NONE.value == "none"


# -- the command --------------------------------------------------------------------------------------


def test_scc_analyze_text_json_and_sarif(capsys, tmp_path):
    source = tmp_path / "shadow.json"
    rules = [{"id": "wide", "when": {"gt": [X, 1]}, "then": "WARN"},
             {"id": "narrow", "when": {"gt": [X, 2]}, "then": "HALT"}]
    source.write_text(json.dumps(policy(rules), indent=1))
    assert scc(["analyze", str(source)]) == 1
    out = capsys.readouterr().out
    assert "warning SCC-A002 /rules/1" in out and "for example: telemetry" in out
    assert scc(["analyze", str(source), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [r["decides"] for r in report["rules"]] == [True, False]
    assert report["findings"][0]["code"] == "SCC-A002" and report["findings"][0]["line"] > 1
    assert scc(["analyze", str(source), "--sarif"]) == 1
    log = json.loads(capsys.readouterr().out)
    result = next(r for r in log["runs"][0]["results"] if r["ruleId"] == "SCC-A002")
    region = result["locations"][0]["physicalLocation"]["region"]
    lines = source.read_text().splitlines()  # indent=1: the rule's "{" on a line, its "id" on the next
    assert log["version"] == "2.1.0" and lines[region["startLine"] - 1][region["startColumn"] - 1] == "{"
    assert '"id": "narrow"' in lines[region["startLine"]]
    assert result["properties"]["pointer"] == "/rules/1"


def test_scc_analyze_exit_0_without_warnings_and_1_for_a_policy_with_errors(capsys, tmp_path):
    assert scc(["analyze", str(POLICIES / "robot-cell-maintenance-access.json")]) == 0
    broken = tmp_path / "broken.json"
    broken.write_text('{"sip": "001"}')
    assert scc(["analyze", str(broken)]) == 1
    assert "not analysed" in capsys.readouterr().err


def test_once_the_budget_is_spent_the_remaining_questions_are_unknown():
    document = loaded(policy([{"id": "impossible", "when": {"gt": [X, 10]}, "then": "HALT"}])).policy
    analysis = analyze(document, Replayer(document.document, oracles()), budget=1e-9)
    assert [r.decides for r in analysis.rules] == [None]
    assert any("budget" in f.message for f in analysis.findings if f.code == "SCC-A006")
    assert not any(f.code == "SCC-A001" for f in analysis.findings)


def test_ranges_leave_out_faults_that_cannot_happen():
    """x in [0, 10], y in [-5, 5]: x * y is finite, so 0 * inf cannot happen and its NaN check never
    reaches the solver; y / (x + 1) never divides by zero. Only y / x, with 0 in x's range, is a site."""
    lets = {"product": {"mul": [X, Y]}, "safe": {"div": [Y, {"add": [X, 1]}]}, "risky": {"div": [Y, X]}}
    rules = [{"id": f"r-{name}", "when": {"gt": [{"ref": name}, 1]}, "then": "WARN"} for name in lets]
    checked = loaded(policy(rules, lets=lets)).policy
    encoding = encode.PolicyEncoding(checked, encode.InputSpace([checked], presence=False))
    sites = {(f.site, f.kind.name) for f in encoding.site_faults
             if not z3.simplify(f.condition).eq(encode.FALSE)}
    assert sites == {("/let/risky", "DIVISION_BY_ZERO")}
