"""Differential test of explanations: random policies compiled by scc, explained by synapse from the
trace the deciding module wrote, against tests/reference.py's account of the same evaluation.

For each generated policy and input (tests/scc/test_differential.py's generator), the explanation must
say what the reference computed: each rule's `when` (or that it was never computed), each rule's outcome
(decided, held, false, faulted, not reached), which definitions were computed and their values (bit for
bit: -0 is not 0), which a fault left unfinished, and how the evaluation ended. The decision that comes
with the explanation must be the one `evaluate` gives for the same input.
"""

from __future__ import annotations

import json
import math
import struct
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings

from scc import emit
from scc.compiler import compile_policy
from synapse.evaluate import Evaluator
from synapse.sandbox import Limits
from tests.policy_generator_support import scenarios
from tests.reference import explain as reference

pytestmark = pytest.mark.slow

_SETTINGS = dict(derandomize=True, database=None, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _bits(value: object) -> object:
    """A definition's value as compared: numbers by their bits (so -0.0 differs from 0.0)."""
    if isinstance(value, bool):
        return value
    if value in ("Infinity", "-Infinity"):
        value = float(value)
    return struct.pack("<d", value)


def _expected_outcomes(policy: dict, want) -> list[str]:
    decision = want.decision
    outcomes = []
    for i, (rule, when) in enumerate(zip(policy["rules"], want.when, strict=True)):
        if want.faulted_rule == i:
            outcomes.append("faulted")
        elif when is None:
            outcomes.append("not reached")
        elif not when:
            outcomes.append("false")
        else:
            outcomes.append("decided" if rule["id"] == decision.rule else "held")
    return outcomes


def _decided_by(want) -> str:
    fault = want.decision.fault
    if fault is not None:
        return "input" if fault.kind == "input" else "fault"
    return "rule" if want.decision.rule is not None else "default"


def _assert_explained(policy: dict, input_sets: list, wasm: bytes, seen: set | None = None) -> None:
    evaluator = Evaluator.from_wasm(wasm)
    for telemetry, context in input_sets:
        want = reference(policy, telemetry, context)
        got = evaluator.explain(telemetry, context)
        plain = evaluator.evaluate(telemetry, context).to_dict()
        explanation = got.to_dict().pop("explanation")
        where = f"policy={json.dumps(policy)}\ntelemetry={telemetry!r} context={context!r}\n{explanation}"
        assert {k: v for k, v in got.to_dict().items() if k != "explanation"} == plain, where
        assert explanation["traced"] is (want.decision.fault is None or want.decision.fault.kind != "input")
        assert explanation["decided_by"] == _decided_by(want), where
        rules = explanation["rules"]
        assert [r["id"] for r in rules] == [r["id"] for r in policy["rules"]], where
        assert [r["when"] for r in rules] == list(want.when), where
        assert [r["outcome"] for r in rules] == _expected_outcomes(policy, want), where
        conditions = explanation["conditions"]
        computed = {c["name"]: _bits(c["value"]) for c in conditions if c["state"] == "computed"}
        assert computed == {name: _bits(value) for name, value in want.lets.items()}, where
        unfinished = {c["name"] for c in conditions if c["state"] == "unfinished"}
        assert unfinished == want.unfinished, where
        if seen is not None:
            seen.update(r["outcome"] for r in rules)
            seen.update(c["state"] for c in explanation["conditions"])
            seen.add(explanation["decided_by"])


def test_explanations_agree_with_the_reference():
    seen: set[str] = set()

    @settings(max_examples=100, **_SETTINGS)
    @given(scenarios())
    def explained(scenario):
        policy, input_sets = scenario
        _assert_explained(policy, input_sets, compile_policy(json.dumps(policy).encode()).wasm, seen)

    explained()
    # The generator rarely makes a most-severe policy where a rule holds but a more severe one decides
    # (CI's runs met none): one such policy is compared with the reference here too, so "held" is checked.
    held = {"sip": "001", "policy": "explained", "version": "1.0.0", "combine": "most-severe",
            "inputs": {"telemetry": {"p": {"type": "number", "min": 0, "max": 200}}},
            "rules": [{"id": "warm", "when": {"gt": [P, 50]}, "then": "WARN"},
                      {"id": "hot", "when": {"gt": [P, 90]}, "then": "HALT"}]}
    held_wasm = compile_policy(json.dumps(held).encode()).wasm
    _assert_explained(held, [({"p": 99}, {}), ({"p": 60}, {})], held_wasm, seen)
    # The property is only as strong as what it met: every outcome, every state, every ending.
    assert seen >= {"decided", "held", "false", "faulted", "not reached", "computed", "not computed",
                    "unfinished", "rule", "default", "fault", "input"}


@settings(max_examples=30, **_SETTINGS)
@given(scenarios())
def test_explanations_cross_the_split_rule_functions(scenario):
    """Every rule in a `$rules_K` function of its own (each keeps the trace flag in a local of its own)."""
    policy, input_sets = scenario
    with mock.patch.object(emit, "FUNCTION_LINES", 1):
        result = compile_policy(json.dumps(policy).encode())
    assert result.wat.count("(func $rules_") == len(policy["rules"])
    _assert_explained(policy, input_sets, result.wasm)


def _compiled(rules: list[dict], *, let: dict | None = None, combine: str = "first-match") -> bytes:
    policy = {"sip": "001", "policy": "explained", "version": "1.0.0", "combine": combine,
              "inputs": {"telemetry": {"p": {"type": "number", "min": 0, "max": 200}}}, "rules": rules}
    if let:
        policy["let"] = let
    return compile_policy(json.dumps(policy).encode()).wasm


P = {"telemetry": "p"}


def test_most_severe_says_why_rules_that_held_did_not_decide():
    wasm = _compiled([{"id": "warm", "when": {"gt": [P, 50]}, "then": "WARN"},
                      {"id": "hot", "when": {"gt": [P, 90]}, "then": "HALT"},
                      {"id": "hot-again", "when": {"gt": [P, 95]}, "then": "HALT"},
                      {"id": "cold", "when": {"lt": [P, 10]}, "then": "ALLOW"}], combine="most-severe")
    explanation = Evaluator.from_wasm(wasm).explain({"p": 99}).explanation
    by_id = {r["id"]: r for r in explanation["rules"]}
    assert [by_id[i]["outcome"] for i in ("warm", "hot", "hot-again", "cold")] == ["held", "decided", "held",
                                                                                  "false"]
    assert "HALT from rule \"hot\" is more severe" in by_id["warm"]["why"]
    assert "rule \"hot\" came first with HALT" in by_id["hot-again"]["why"]


def test_a_fault_in_a_definition_names_it_and_leaves_its_users_unfinished():
    wasm = _compiled([{"id": "fine", "when": {"gt": [P, 150]}, "then": "ALLOW"},
                      {"id": "ratio-high", "when": {"gt": [{"ref": "scaled"}, 1]}, "then": "HALT"},
                      {"id": "never", "when": True, "then": "ALLOW"}],
                     let={"ratio": {"div": [100, P]}, "scaled": {"mul": [{"ref": "ratio"}, 2]}})
    decision = Evaluator.from_wasm(wasm).explain({"p": 0})
    explanation = decision.explanation
    assert decision.verdict.name == "DENY" and explanation["decided_by"] == "fault"
    assert "division by zero at /let/ratio while rule \"ratio-high\" was tried" in explanation["summary"]
    assert [(r["outcome"], r["when"]) for r in explanation["rules"]] == [
        ("false", False), ("faulted", None), ("not reached", None)]
    assert {c["name"]: c["state"] for c in explanation["conditions"]} == {"ratio": "unfinished",
                                                                          "scaled": "unfinished"}


def test_running_out_of_gas_is_explained_with_the_rule_it_happened_in():
    wasm = _compiled([{"id": "a", "when": {"gt": [P, 150]}, "then": "ALLOW"},
                      {"id": "b", "when": {"gt": [{"add": [P, 1, 2, 3]}, 150]}, "then": "HALT"}])
    evaluator = Evaluator.from_wasm(wasm, limits=Limits(gas=12))
    decision = evaluator.explain({"p": 5})
    assert decision.to_dict()["reason"] == evaluator.evaluate({"p": 5}).reason
    explanation = decision.explanation
    assert explanation["decided_by"] == "fault" and "gas budget exhausted" in explanation["summary"]
    assert [r["outcome"] for r in explanation["rules"]] == ["false", "faulted"]


def test_values_the_json_cannot_hold_are_named():
    wasm = _compiled([{"id": "huge", "when": {"gt": [{"ref": "big"}, 0]}, "then": "WARN"}],
                     let={"big": {"mul": [1e308, 10, P]}})
    (condition,) = [c for c in Evaluator.from_wasm(wasm).explain({"p": 1}).explanation["conditions"]
                    if c["name"] == "big"]
    assert condition == {"name": "big", "type": "number", "state": "computed", "value": "Infinity"}
    assert math.isinf(float(condition["value"]))
