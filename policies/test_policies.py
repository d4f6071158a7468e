"""Every bundled policy passes its NAME.test.json, run through the real compiler and runtime
(`scc test policies/`), and every one of its rules decides at least one case."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scc.testing import discover, render_console, run_tests
from tests.reference import evaluate as reference

HERE = Path(__file__).resolve().parent
TEST_FILES = discover([HERE])


@pytest.fixture(scope="module")
def suites():
    return {suite.test_file.path: suite for suite in run_tests([HERE])}


def test_every_policy_has_a_test_file():
    sources = {p.name.removesuffix(".json") for p in HERE.glob("*.json") if not p.name.endswith(".test.json")}
    tested = {p.name.removesuffix(".test.json") for p in TEST_FILES}
    assert len(sources) >= 6
    assert sources == tested


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_every_case_passes_against_the_compiled_module(suites, path):
    suite = suites[path]
    assert suite.compile_error is None, suite.compile_error
    assert len(suite.cases) == len(json.loads(path.read_text())["cases"])
    assert suite.failed == 0, render_console([suite])


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_every_rule_decides_some_case_and_so_does_the_default(suites, path):
    suite = suites[path]
    assert suite.unexercised == ()
    cases = json.loads(path.read_text())["cases"]
    defaults = [c for c in cases if c.get("rule", "-") is None and not c["name"].startswith("fault")]
    assert defaults, "no case reaches the default"
    assert any(c["name"].startswith("fault") for c in cases), "no fault case"


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_expectations_agree_with_the_reference_interpreter(path):
    """A second, independent reading of the spec agrees with every expectation in the file."""
    document = json.loads(path.read_text())
    policy = json.loads((path.parent / document["policy"]).read_text())
    for case in document["cases"]:
        decision = reference(policy, case.get("telemetry", {}), case.get("context", {}))
        assert decision.verdict == case["expect"], case["name"]
        assert decision.rule == case.get("rule", decision.rule), case["name"]
        assert (decision.fault is not None) == case["name"].startswith("fault"), case["name"]


def test_the_readme_example_halts(suites):
    boiler = suites[HERE / "boiler-guard.test.json"]
    readme = next(r for r in boiler.cases if r.name.startswith("README example"))
    assert readme.case["telemetry"] == {"pressure_bar": 97.5, "valve_open": True}
    assert readme.case["context"] == {"mode": "AUTO"}
    assert readme.decision["verdict"] == "HALT" and readme.passed
