"""Differential test: random valid policies, compiled by scc and run by synapse, against the reference.

Hypothesis builds random well-typed SIP-001 policies (inputs of all three types with ranges and
defaults, `let` chains, expression trees using every operator, both combine modes, logs) and random
inputs for them (mostly valid, some missing, mistyped or out of range). Numbers lean on IEEE corners:
zeros for division by zero, ±1e308 and DBL_MAX whose products overflow to ±inf, so that inf - inf and
0 * inf give NaN. Each policy is compiled once and decided for several inputs by the wasm module and
by tests/reference.py, an interpreter written from the spec alone; verdict, deciding rule, logs and
whether the evaluation faulted must agree.
"""

from __future__ import annotations

import json
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings

from scc import emit
from scc.compiler import compile_policy
from synapse.evaluate import Evaluator
from tests.policy_generator_support import scenarios
from tests.reference import evaluate as reference

pytestmark = pytest.mark.slow

# ---------------------------------------------------------------------------------------- the property


def _observed(decision) -> tuple:
    return (decision.verdict.name, decision.rule, [(log["level"], log["message"]) for log in decision.logs],
            decision.reason is not None)


def _expected(decision) -> tuple:
    return (decision.verdict, decision.rule, list(decision.logs), decision.fault is not None)


def _assert_agrees(policy: dict, input_sets: list, wasm: bytes) -> None:
    evaluator = Evaluator.from_wasm(wasm)
    for telemetry, context in input_sets:
        want = reference(policy, telemetry, context)
        got = evaluator.evaluate(telemetry, context)
        assert _observed(got) == _expected(want), (
            f"policy={json.dumps(policy)}\ntelemetry={telemetry!r} context={context!r}\n"
            f"reference: {want}\nruntime reason: {got.reason}"
        )


@settings(max_examples=150, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios())
def test_compiled_module_agrees_with_the_reference(scenario):
    policy, input_sets = scenario
    _assert_agrees(policy, input_sets, compile_policy(json.dumps(policy).encode()).wasm)


@settings(max_examples=60, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios())
def test_a_module_split_at_every_rule_agrees_with_the_reference(scenario):
    """The same property with every rule in a `$rules_K` function of its own and every definition's
    cache cleared by a `$forget_K` of its own (scc/emit.py splits large policies so): decisions,
    first-match exits from any function and faults in any of them cross the calls unchanged."""
    policy, input_sets = scenario
    with mock.patch.object(emit, "FUNCTION_LINES", 1):
        result = compile_policy(json.dumps(policy).encode())
    assert result.wat.count("(func $rules_") == len(policy["rules"])
    _assert_agrees(policy, input_sets, result.wasm)


def test_bounds_and_default_that_canonical_json_writes_as_long_integers():
    """Found by the property above. RFC 8785 writes the double -2.048546837420761e16 in the module's
    meta as the integer -20485468374207610, which is not that double's exact value
    (-20485468374207608): read back as a double it is the same number, so the default equals `min`
    and the module must load and use it (SIP-001 §3: numbers are doubles)."""
    bound = -2.048546837420761e16
    policy = {"sip": "001", "policy": "long-integers", "version": "1.0.0",
              "inputs": {"telemetry": {"x": {"type": "number", "min": bound, "max": 0, "default": bound}}},
              "rules": [{"id": "low", "when": {"lt": [{"telemetry": "x"}, -1e16]}, "then": "WARN"}]}
    assert _expected(reference(policy, {}, {})) == ("WARN", "low", [], False)
    evaluator = Evaluator.from_wasm(compile_policy(json.dumps(policy).encode()).wasm)
    assert _observed(evaluator.evaluate({}, {})) == ("WARN", "low", [], False)


def test_context_now_comes_from_the_runtime_clock_unless_passed():
    """SIP-001 §3: the runtime supplies context `now` when a policy declares it and the caller did not."""
    policy = {"sip": "001", "policy": "shift-window", "version": "1.0.0",
              "inputs": {"context": {"now": {"type": "number", "min": 0}}},
              "rules": [{"id": "after-cutover", "when": {"ge": [{"context": "now"}, 1_800_000_000]},
                         "then": "ALLOW"}]}
    wasm = compile_policy(json.dumps(policy).encode()).wasm
    for clock, passed in ((1_800_000_000.5, {}), (1_700_000_000.0, {}), (1_800_000_000.5, {"now": 5}),
                          (1_700_000_000.0, {"now": -1})):
        got = Evaluator.from_wasm(wasm, clock=lambda clock=clock: clock).evaluate({}, passed)
        assert _observed(got) == _expected(reference(policy, {}, passed, now=clock)), (clock, passed)


def test_the_generator_reaches_every_corner():
    """The property above is only as strong as its inputs: check that the generated scenarios make
    the reference fault in each way, decide by rule and by default, and use every operator."""
    seen_faults, seen_ops, deciders = set(), set(), set()

    def walk(expr):
        if isinstance(expr, dict):
            ((op, arg),) = expr.items()
            seen_ops.add(op)
            for child in arg if isinstance(arg, list) else [arg]:
                walk(child)

    @settings(max_examples=150, derandomize=True, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(scenarios())
    def collect(scenario):
        policy, input_sets = scenario
        for expr in [*policy.get("let", {}).values(), *(r["when"] for r in policy["rules"])]:
            walk(expr)
        for telemetry, context in input_sets:
            d = reference(policy, telemetry, context)
            seen_faults.add(d.fault.kind if d.fault else None)
            deciders.add("rule" if d.rule else "default" if not d.fault else "fault")

    collect()
    assert seen_faults == {None, "input", "division-by-zero", "nan"}
    assert deciders == {"rule", "default", "fault"}
    assert seen_ops >= {"telemetry", "context", "ref", "eq", "ne", "lt", "le", "gt", "ge", "between", "in",
                        "all", "any", "not", "add", "mul", "min", "max", "sub", "div", "abs", "neg", "if"}
