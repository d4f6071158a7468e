"""The relaxed encoding (scc/analysis/relaxed.py) proves only what holds for the module's doubles.

Each policy here does something that real arithmetic says it cannot: rounding, overflow to an
infinity, inf - inf, underflow to zero. If the relaxation left any of these out, its "none" would
be a false proof; the analysis must instead find the input (replayed through the compiled module and
the reference interpreter by `analysis_of`). The last tests show that the relaxation is what answers:
its proofs are counted.
"""

from __future__ import annotations

import random

import pytest

from axon.abi import Fault
from scc.analysis.checks import encode_one
from scc.analysis.solve import Status
from tests.analysis_support import X, Y, analysis_of, loaded, oracles, policy

LARGE = {"telemetry": {"x": {"type": "number", "min": 1, "max": 1e10},
                       "y": {"type": "number", "min": 1, "max": 1e10}}}
SMALL = {"telemetry": {"x": {"type": "number", "min": 1e-30, "max": 1}}}


def _decides(document: dict) -> None:
    """Rule 0 decides for some input. Asked without samples, the relaxed encoding is tried first and
    must not answer "none" (where the exact solver then finds an input, module and reference agree
    with it); the whole analysis finds such an input, replayed through both."""
    analysed, rule = loaded(document), document["rules"][0]["id"]
    encoding, space, session = encode_one(analysed.policy, 2.0, random.Random(0), sample_count=0)
    answer = session.find(lambda e: e.decides(0))
    assert answer.status is not Status.NONE
    if answer.status is Status.FOUND:
        reading = space.reading(answer.model)
        assert [o.decide(analysed.policy.document, reading).rule for o in oracles()] == [rule, rule]
    assert [r.decides for r in analysis_of(document).rules] == [True]


def test_rounding_x_times_3_over_3_differs_from_x_for_some_double():
    # Never in real numbers; 0.1 * 3 / 3 is 0.10000000000000002 in doubles.
    rules = [{"id": "rounds", "when": {"ne": [{"div": [{"mul": [X, 3]}, 3]}, X]}, "then": "HALT"}]
    _decides(policy(rules, default="ALLOW"))


def test_two_different_numbers_that_overflow_are_equal_infinities():
    rules = [{"id": "both-infinite", "when": {"all": [
        {"gt": [X, Y]}, {"eq": [{"mul": [X, 1e300]}, {"mul": [Y, 1e300]}]}]}, "then": "HALT"}]
    _decides(policy(rules, inputs=LARGE, default="ALLOW"))


def test_infinity_minus_infinity_is_a_reachable_nan_fault():
    rules = [{"id": "difference", "when": {"gt": [{"sub": [{"mul": [X, 1e300]}, {"mul": [Y, 1e300]}]}, 0]},
              "then": "HALT"}]
    encoding, space, session = encode_one(loaded(policy(rules, inputs=LARGE)).policy, 10.0, random.Random(0),
                                          sample_count=0)
    (nan,) = [f for f in encoding.site_faults if f.kind is Fault.NAN and f.site == "/rules/0/when/gt/0"]
    answer = session.find(lambda e: nan.condition)
    assert answer.status is Status.FOUND
    assert space.reading(answer.model)["telemetry"]["x"] * 1e300 == float("inf")
    analysis = analysis_of(policy(rules, inputs=LARGE, default="ALLOW"))  # replayed: the module agrees
    assert [f.pointer for f in analysis.findings if f.code == "SCC-A004"] == ["/rules/0/when/gt/0"]


def test_a_product_that_underflows_is_zero():
    rules = [{"id": "underflow", "when": {"eq": [{"mul": [X, 1e-300]}, 0]}, "then": "HALT"}]
    _decides(policy(rules, inputs=SMALL, default="ALLOW"))


@pytest.mark.parametrize("when", [
    {"gt": [{"mul": [X, 2]}, 25]},  # x <= 10
    {"lt": [{"div": [{"add": [X, 1]}, {"add": [Y, 6]}]}, 0]},  # a positive over a positive
    {"gt": [{"sub": [{"mul": [X, 1.5]}, {"mul": [X, 0.5]}]}, 10.5]},  # x, rounded, at most 10
])
def test_the_relaxation_proves_what_no_double_reaches(when):
    rules = [{"id": "impossible", "when": when, "then": "HALT"},
             {"id": "rest", "when": True, "then": "ALLOW"}]
    encoding, _, session = encode_one(loaded(policy(rules)).policy, 10.0, random.Random(0), sample_count=0)
    answer = session.find(lambda e: e.holds(0))
    assert answer.status is Status.NONE
    assert session.relaxed_proofs == 1 and session.solved == 0  # no 64-bit float problem was solved
