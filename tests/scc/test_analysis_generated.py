"""The analysis against the differential test's random policies (issue 13 item 5).

On random well-typed policies (tests/policy_generator_support.py): every example the analysis shows is
confirmed by the compiled module and by the reference interpreter (a disagreement raises); a rule it
proves never decides is never the deciding rule on random valid inputs, nor does the default decide
where it proves it never does, nor does a fault happen at a site it proves safe; `scc diff` finds a
policy equivalent to its rules reversed under most-severe, and finds the difference to a copy with
one constant changed wherever the reference sees one. Also: the CLI starts without z3.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scc.analysis.diff import diff
from scc.analysis.replay import Replayer
from scc.errors import PolicyError
from tests.analysis_support import analysis_of, loaded, oracles
from tests.policy_generator_support import inputs_for, policies
from tests.reference import evaluate as reference

pytestmark = pytest.mark.slow
POLICIES = Path(__file__).resolve().parents[2] / "policies"

TIMEOUT = 1.0  # seconds per question: "unknown" is allowed, a wrong answer is not
SETTINGS = settings(max_examples=8, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
counts = {"never-decides": 0, "equivalent": 0}


def _valid_decisions(policy: dict, readings: list) -> list:
    out = []
    for telemetry, context in readings:
        decision = reference(policy, telemetry, context)
        if decision.fault is None or decision.fault.kind != "input":
            out.append(decision)
    return out


@SETTINGS
@given(st.data())
def test_examples_confirm_and_proofs_hold_on_random_inputs(data):
    policy = data.draw(policies())
    readings = data.draw(st.lists(inputs_for(policy), min_size=40, max_size=40))
    analysis = analysis_of(policy, TIMEOUT)  # replays every example through module and reference
    never = {r.id for r in analysis.rules if r.decides is False}
    counts["never-decides"] += len(never)
    unknown_sites = {f.pointer for f in analysis.findings if f.code == "SCC-A006"}
    reachable = {f.pointer for f in analysis.findings if f.code == "SCC-A004"}
    for decision in _valid_decisions(policy, readings):
        assert decision.rule not in never, (json.dumps(policy), decision)
        if analysis.default_decides is False:
            assert not (decision.rule is None and decision.fault is None), json.dumps(policy)
        if decision.fault is not None and "SCC-A006" not in {f.code for f in analysis.findings}:
            assert decision.fault.where in reachable | unknown_sites, (json.dumps(policy), decision)


def _number_paths(value, path=()):
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _number_paths(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _number_paths(v, (*path, i))]
    return []


def _set(doc, path, value):
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


def _diff(old: dict, new: dict):
    a, b = loaded(old).policy, loaded(new).policy
    return diff(a, b, Replayer(a.document, oracles()), Replayer(b.document, oracles()), TIMEOUT)


@SETTINGS
@given(st.data())
def test_diff_reordered_most_severe_is_equivalent_and_a_changed_constant_is_found(data):
    policy = data.draw(policies())
    policy["combine"] = "most-severe"
    reordered = copy.deepcopy(policy)
    reordered["rules"].reverse()
    result = _diff(policy, reordered)
    assert result.equivalent is not False, (json.dumps(policy), result.differences)
    counts["equivalent"] += result.equivalent is True

    paths = [("rules", i, "when", *p) for i, r in enumerate(policy["rules"])
             for p in _number_paths(r["when"])]
    if not paths:
        return
    path = data.draw(st.sampled_from(paths))
    mutated = copy.deepcopy(policy)
    old_value = policy
    for key in path:
        old_value = old_value[key]
    _set(mutated, path, old_value + 1 if abs(old_value) < 1e15 else old_value / 2)
    try:
        result = _diff(policy, mutated)
    except PolicyError:  # the new constant made a literal list repeat itself, or similar: not a policy
        return
    readings = data.draw(st.lists(inputs_for(policy), min_size=40, max_size=40))
    if any(reference(policy, t, c).verdict != reference(mutated, t, c).verdict for t, c in readings):
        assert result.equivalent is not True, (json.dumps(policy), path)


@pytest.mark.parametrize("name, path, value", [
    ("boiler-guard", ("let", "overpressure", "gt", 1), 96),
    ("conveyor-estop-interlock", ("rules", 4, "when", "gt", 1), 300),
    ("robot-cell-maintenance-access", ("let", "reduced_speed", "le", 1), 260),
    ("tank-overfill", ("rules", 1, "when", "ge", 1), 94),
])
def test_diff_finds_a_changed_trip_point_in_each_bundled_policy(name, path, value):
    """The random constants above rarely matter (deep in random arithmetic); a bundled policy's trip
    points always do: each change is found, with examples both modules and the reference confirm."""
    policy = json.loads((POLICIES / f"{name}.json").read_text())
    mutated = copy.deepcopy(policy)
    _set(mutated, path, value)
    result = _diff(policy, mutated)
    assert result.equivalent is False and result.differences


def test_the_properties_above_were_not_vacuous():
    """Runs after the two properties (file order): they proved rules dead and reorderings
    equivalent, each at least once."""
    assert counts["never-decides"] > 0 and counts["equivalent"] > 0, counts


def test_the_cli_starts_without_z3():
    code = ("import sys\nfrom scc.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "import scc.commands.analyze, scc.commands.diff, scc.commands.package, scc.testing\n"
            "assert 'z3' not in sys.modules, 'z3 imported at start-up'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
