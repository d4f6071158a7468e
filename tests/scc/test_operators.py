"""The operator table (scc/operators.py): each row goes through every stage and means what it says."""

from __future__ import annotations

import re

import pytest

from axon import abi
from scc.compiler import compile_policy
from scc.operators import BOOL, OPERATORS, Evaluation, Operands, Operator
from tests.reference import evaluate as reference
from tests.scc_policies import P, V, dumps, policy, rule
from tests.scc_wasm import Runner

_FAULT_CODES = {"division-by-zero": abi.Fault.DIVISION_BY_ZERO, "nan": abi.Fault.NAN}


Q, W = {"telemetry": "q"}, {"telemetry": "w"}  # a second number and a second bool input
POINTS = [{"p": p, "q": q, "v": v, "w": w} for p in (0, 1, 3) for q in (0, 1, 3) for v in (False, True)
          for w in (False, True)]


def _use(operator: Operator) -> dict:
    """A rule condition that applies `operator` to inputs, so that swapping it for another changes
    the decision somewhere on POINTS."""
    rule_, (low, high) = operator.operands, operator.arity
    count = max(low, min(2, high))
    if rule_ is Operands.MEMBER:
        operands = [P, [1, 3]]
    elif rule_ is Operands.BRANCHES:
        operands = [V, P, Q]
    elif rule_ is Operands.COMPARABLE:
        operands = [P, Q]
    elif rule_ is Operands.NUMBERS:
        operands = [P, Q, 3][:count]
    else:
        operands = [V, W][:count]
    expr = {operator.name: operands[0] if operator.bare else operands}
    return expr if operator.result == BOOL else {"gt": [expr, 1]}


def _instructions(wat: str) -> str:
    return "\n".join(line.split(";;")[0].strip() for line in wat.splitlines())


@pytest.mark.parametrize("operator", OPERATORS.values(), ids=list(OPERATORS))
def test_every_operator_compiles_to_its_instructions_and_agrees_with_the_reference(operator):
    doc = policy(rule(_use(operator), then="HALT"), default="ALLOW")
    doc["inputs"]["telemetry"].update(q={"type": "number"}, w={"type": "bool"})
    result = compile_policy(dumps(doc))
    operand_type = "i32" if operator.operands is Operands.BOOLS else "f64"
    code = "\n".join(t.format(type=operand_type, site=0) for t in operator.wasm)
    if operator.evaluation is not Evaluation.MEMBER:  # `in` interleaves its operand's constants
        assert code in _instructions(result.wat)
    at = "/rules/0/when" + ("" if operator.result == BOOL else "/gt/0")
    assert result.meta["sites"] == ([at] if operator.faults else [])
    runner = Runner(result.wasm)
    for point in POINTS:
        want = reference(doc, point, {"mode": "AUTO"})
        got = runner.run(point, {"mode": "AUTO"})
        assert got.verdict == abi.Verdict[want.verdict], point
        if want.fault is None:
            assert got.fault == 0
        else:  # a fault the row declares, at the operator
            assert got.fault == _FAULT_CODES[want.fault.kind] and got.fault in operator.faults


def test_faulting_operators_pass_their_site_and_no_other_does():
    for operator in OPERATORS.values():
        with_site = [t for t in operator.wasm if "{site}" in t]
        assert len(with_site) == (1 if operator.faults else 0), operator.name


def test_rows_are_consistent():
    for name, operator in OPERATORS.items():
        assert name == operator.name and re.fullmatch("[a-z]+", name)
        low, high = operator.arity
        assert 1 <= low <= high <= 256, name
        assert (operator.decisive is not None) == (operator.evaluation is Evaluation.SHORT_CIRCUIT), name
        assert (operator.result is None) == (operator.operands is Operands.BRANCHES), name
        assert not operator.names or len(operator.names) == low == high, name
        assert bool(operator.wasm) == (operator.evaluation in (Evaluation.APPLY, Evaluation.FOLD,
                                                               Evaluation.MEMBER)), name
