"""`scc diff OLD NEW` (issue 13 item 3): proved equivalent, or each verdict pair that differs with examples
that both compiled modules and the reference interpreter confirm; `.sop` files with their sources."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from axon.envelope import PackageSpec, build
from scc.analysis.diff import diff
from scc.analysis.replay import Replayer
from scc.cli import main as scc
from scc.compiler import compile_policy
from tests.analysis_support import MODE, X, loaded, oracles, policy
from tests.artifact_fixtures import NOW, identity

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def compare(old: dict, new: dict):
    a, b = loaded(old).policy, loaded(new).policy
    return diff(a, b, Replayer(a.document, oracles()), Replayer(b.document, oracles()))


def boiler() -> dict:
    return json.loads((POLICIES / "boiler-guard.json").read_text())


def test_a_policy_is_equivalent_to_itself():
    result = compare(boiler(), boiler())
    assert result.equivalent is True and result.differences == [] and result.unknown == []


def test_a_changed_trip_point_is_found_as_halt_becoming_something_else_at_that_pressure():
    new = boiler()
    new["let"]["overpressure"] = {"gt": [{"telemetry": "pressure_bar"}, 96]}
    result = compare(boiler(), new)
    assert result.equivalent is False
    pairs = {(d.old, d.new) for d in result.differences}
    assert pairs and all(old == "HALT" for old, _ in pairs)
    for difference in result.differences:
        for example in difference.examples:
            assert 95 < example.reading["telemetry"]["pressure_bar"] <= 96
            assert example.old_rule == "halt-overpressure" and example.new_rule != "halt-overpressure"


def test_most_severe_rules_in_another_order_are_equivalent():
    old = json.loads((POLICIES / "robot-cell-maintenance-access.json").read_text())
    new = copy.deepcopy(old)
    new["rules"].reverse()
    assert compare(old, new).equivalent is True


def test_a_default_added_to_an_input_differs_where_the_reading_leaves_it_out():
    rules = [{"id": "auto", "when": {"eq": [MODE, "AUTO"]}, "then": "ALLOW"}]
    old = policy(rules)
    new = copy.deepcopy(old)
    new["inputs"]["context"]["mode"]["default"] = "AUTO"
    result = compare(old, new)
    assert [(d.old, d.new) for d in result.differences] == [("DENY", "ALLOW")]
    example = result.differences[0].examples[0]
    assert "mode" not in example.reading["context"] and example.old_rule is None


def test_an_enum_value_only_the_new_policy_knows_is_a_fault_in_the_old():
    rules = [{"id": "low", "when": {"lt": [X, 5]}, "then": "ALLOW"}]
    old = policy(rules)
    new = copy.deepcopy(old)
    new["inputs"]["context"]["mode"]["values"].append("SERVICE")
    result = compare(old, new)
    assert {(d.old, d.new) for d in result.differences} == {("DENY", "ALLOW")}
    assert any(e.reading["context"].get("mode") == "SERVICE" for e in result.differences[0].examples)


def test_scc_diff_command_on_sources_and_on_an_artifact_with_its_source(capsys, tmp_path):
    old = tmp_path / "old.json"
    new = tmp_path / "new.json"
    old.write_text(json.dumps(boiler(), indent=1))
    changed = boiler()
    changed["rules"][-1]["then"] = "WARN"  # normal operation now warns
    new.write_text(json.dumps(changed, indent=1))
    assert scc(["diff", str(old), str(old)]) == 0
    assert "EQUIVALENT" in capsys.readouterr().out
    assert scc(["diff", str(old), str(new), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["equivalent"] is False
    assert [(d["old"], d["new"]) for d in report["differences"]] == [("ALLOW", "WARN")]
    assert scc(["diff", str(old), str(new), "--sarif"]) == 1
    result = json.loads(capsys.readouterr().out)["runs"][0]["results"][0]
    assert result["ruleId"] == "SCC-D001" and result["properties"]["pointer"] == "/rules/5"

    sop = tmp_path / "old.sop"
    sop.write_bytes(build(compile_policy(old.read_bytes()).wasm, identity("alice"),
                          PackageSpec("LVL_3", NOW)).to_bytes())
    assert scc(["diff", str(sop), str(new), "--old-source", str(old)]) == 1
    assert "ALLOW -> WARN" in capsys.readouterr().out
    assert scc(["diff", str(sop), str(new)]) == 2
    assert "--old-source" in capsys.readouterr().err
    assert scc(["diff", str(sop), str(new), "--old-source", str(new)]) == 2
    assert "does not rebuild" in capsys.readouterr().err
