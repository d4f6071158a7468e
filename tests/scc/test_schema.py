"""The SIP-001 JSON Schema (Draft 2020-12) and how its findings are explained."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from scc import structure
from tests.scc_policies import MODE, SPEC_EXAMPLE, P, V, policy, rule

RAW_JSONSCHEMA_PHRASES = ("is not valid under", "Additional properties", "was unexpected",
                          "is a required property", "is not of type", "does not match", "is too short",
                          "is too long", "is not one of")
POLICIES = sorted(p for p in (Path(__file__).parents[2] / "policies").glob("*.json")
                  if not p.name.endswith(".test.json"))


def _found(doc) -> list[tuple[str, str]]:
    diagnostics = structure.validate(doc)
    for d in diagnostics:
        assert not any(phrase in d.message for phrase in RAW_JSONSCHEMA_PHRASES), d.message
    return [(d.code, d.pointer) for d in diagnostics]


def test_schema_is_draft_2020_12_and_shipped_with_the_package():
    document = structure.load_schema()
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(document)
    assert isinstance(structure._validator(), Draft202012Validator)


def test_spec_example_is_structurally_valid():
    assert _found(SPEC_EXAMPLE) == []


@pytest.mark.parametrize("path", POLICIES, ids=[p.name for p in POLICIES])
def test_example_policies_are_structurally_valid(path):
    assert _found(json.loads(path.read_bytes())) == []


def _edit(path: list, value, doc=None):
    doc = copy.deepcopy(doc or SPEC_EXAMPLE)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


@pytest.mark.parametrize(("path", "code"), [
    (["colour"], "SCC-E010"),
    (["inputs", "plant"], "SCC-E010"),
    (["inputs", "telemetry", "pressure_bar", "values"], "SCC-E010"),
    (["inputs", "telemetry", "valve_open", "min"], "SCC-E010"),
    (["inputs", "context", "mode", "unit"], "SCC-E010"),
    (["rules", 0, "priority"], "SCC-E010"),
    (["rules", 0, "log", "tag"], "SCC-E010"),
    (["let", "overpressure", "gtt"], "SCC-E016"),
])
def test_unknown_keys_anywhere(path, code):
    doc = _edit(path, 1)
    pointer = "/" + "/".join(str(p) for p in path)
    assert (code, pointer) in _found(doc)


def test_unknown_key_suggests_the_near_one():
    (d,) = structure.validate(_edit(["rules", 1, "wen"], True))
    assert d.code == "SCC-E010" and "did you mean `when`?" in d.message


@pytest.mark.parametrize(("doc", "expected"), [
    ({k: v for k, v in SPEC_EXAMPLE.items() if k != "rules"}, [("SCC-E011", "")]),
    (_edit(["sip"], "1"), [("SCC-E013", "/sip")]),
    (_edit(["sip"], 1), [("SCC-E013", "/sip")]),
    (_edit(["policy"], "Boiler Guard"), [("SCC-E014", "/policy")]),
    (_edit(["policy"], "x" * 65), [("SCC-E014", "/policy")]),
    (_edit(["version"], "1.2.0-rc1"), [("SCC-E014", "/version")]),
    (_edit(["version"], "01.2.0"), [("SCC-E014", "/version")]),
    (_edit(["authority_level"], "LVL_6"), [("SCC-E013", "/authority_level")]),
    (_edit(["combine"], "worst"), [("SCC-E013", "/combine")]),
    (_edit(["default"], "OK"), [("SCC-E013", "/default")]),
    (_edit(["rules"], []), [("SCC-E015", "/rules")]),
    (_edit(["rules"], {}), [("SCC-E012", "/rules")]),
    (_edit(["rules", 0, "id"], "Halt"), [("SCC-E014", "/rules/0/id")]),
    (_edit(["rules", 0, "log", "level"], "fatal"), [("SCC-E013", "/rules/0/log/level")]),
    (_edit(["rules", 0, "log"], {"level": "info"}), [("SCC-E011", "/rules/0/log")]),
    (_edit(["rules", 0, "log", "message"], 5), [("SCC-E012", "/rules/0/log/message")]),
    (_edit(["inputs", "telemetry", "Pressure"], {"type": "number"}),
     [("SCC-E014", "/inputs/telemetry/Pressure")]),
    (_edit(["inputs", "telemetry", "x"], {"type": "float"}), [("SCC-E013", "/inputs/telemetry/x/type")]),
    (_edit(["inputs", "telemetry", "x"], {}), [("SCC-E011", "/inputs/telemetry/x")]),
    (_edit(["inputs", "context", "m"], {"type": "enum"}), [("SCC-E011", "/inputs/context/m")]),
    (_edit(["inputs", "context", "m"], {"type": "enum", "values": []}),
     [("SCC-E015", "/inputs/context/m/values")]),
    (_edit(["inputs", "context", "m"], {"type": "enum", "values": ["a"] * 257}),
     [("SCC-E015", "/inputs/context/m/values")]),
    (_edit(["inputs", "telemetry", "x"], {"type": "number", "min": "0"}),
     [("SCC-E012", "/inputs/telemetry/x/min")]),
    (_edit(["inputs", "telemetry", "x"], {"type": "bool", "default": 1}),
     [("SCC-E012", "/inputs/telemetry/x/default")]),
    (_edit(["let", "Bad"], True), [("SCC-E014", "/let/Bad")]),
])
def test_structure_errors(doc, expected):
    assert _found(doc) == expected


@pytest.mark.parametrize(("when", "pointer"), [
    ({"eq": [P]}, "/rules/0/when/eq"),
    ({"lt": [P, 1, 2]}, "/rules/0/when/lt"),
    ({"between": [P, 1]}, "/rules/0/when/between"),
    ({"in": [P]}, "/rules/0/when/in"),
    ({"in": [P, []]}, "/rules/0/when/in/1"),
    ({"in": [P, list(range(257))]}, "/rules/0/when/in/1"),
    ({"all": []}, "/rules/0/when/all"),
    ({"any": [V] * 257}, "/rules/0/when/any"),
    ({"gt": [{"add": [P]}, 1]}, "/rules/0/when/gt/0/add"),
    ({"gt": [{"mul": [P] * 257}, 1]}, "/rules/0/when/gt/0/mul"),
    ({"gt": [{"sub": [P, 1, 2]}, 1]}, "/rules/0/when/gt/0/sub"),
    ({"gt": [{"div": [P]}, 1]}, "/rules/0/when/gt/0/div"),
    ({"if": [V, True]}, "/rules/0/when/if"),
])
def test_operator_arity(when, pointer):
    assert _found(policy(rule(when))) == [("SCC-E015", pointer)]


@pytest.mark.parametrize(("when", "expected"), [
    ({}, [("SCC-E016", "/rules/0/when")]),
    ({"gt": [P, 1], "lt": [P, 2]}, [("SCC-E016", "/rules/0/when")]),
    ({"gt": [P, 1], "foo": 1}, [("SCC-E016", "/rules/0/when/foo")]),  # said once, not also "two keys"
    ({"not": [V]}, [("SCC-E012", "/rules/0/when/not")]),
    ({"telemetry": 5}, [("SCC-E012", "/rules/0/when/telemetry")]),
    ({"telemetry": "Bad-Name"}, [("SCC-E014", "/rules/0/when/telemetry")]),
    ({"ref": ""}, [("SCC-E014", "/rules/0/when/ref")]),
    ({"in": [P, [True]]}, [("SCC-E012", "/rules/0/when/in/1/0")]),
    ([V], [("SCC-E012", "/rules/0/when")]),
    (None, [("SCC-E012", "/rules/0/when")]),
])
def test_expression_structure(when, expected):
    assert _found(policy(rule(when))) == expected


def test_not_with_a_list_gets_a_hint():
    (d,) = structure.validate(policy(rule({"not": [V]})))
    assert "`not` takes one expression, written without [ ]" in d.message


def test_verdict_case_hint():
    (d,) = structure.validate(policy(rule(V, then="halt")))
    assert "did you mean `HALT`?" in d.message


def test_text_is_structurally_allowed_in_expressions():
    # Whether a text value makes sense is a question of types (scc/checker.py, SCC-E022).
    assert _found(policy(rule({"eq": [MODE, "AUTO"]}))) == []


def test_shipped_schema_lists_the_operators_of_the_table():
    """The operator list is generated from scc/operators.py; the shipped file (which editors and
    other tools read too) must say the same, in the same order, so the two cannot drift apart."""
    properties = structure.load_schema()["$defs"]["expression"]["properties"]
    leaves = ["telemetry", "context", "ref"]
    assert list(properties)[:len(leaves)] == leaves
    shipped = {name: value for name, value in properties.items() if name not in leaves}
    generated = structure.operator_schemas()
    assert list(shipped) == list(generated)
    assert shipped == generated, "regenerate the operators in scc/schema/sip-001.schema.json from the table"


def test_the_fast_validator_says_valid_only_where_jsonschema_does():
    """structure.validate takes only "valid" from jsonschema-rs (docs/accelerators.md); on every document
    here the reference must agree with that answer. A version with a trailing newline is where the two
    differ (Python's `$` matches before it): jsonschema-rs refuses it and the reference decides."""
    compiled = structure._compiled_validator()
    assert compiled is not None, "jsonschema-rs is a dev dependency: pip install -e '.[dev]'"
    documents = [SPEC_EXAMPLE, *(json.loads(p.read_bytes()) for p in POLICIES),
                 _edit(["version"], "1.0.0\n"), _edit(["version"], "1.0"), _edit(["policy"], "Boiler"),
                 _edit(["colour"], 1), _edit(["rules", 0, "then"], "halt"), _edit(["rules"], []),
                 _edit(["inputs", "telemetry", "x"], {"type": "bool", "default": 1}),
                 _edit(["inputs", "telemetry", "x"], {"type": "number", "min": True}),
                 _edit(["rules", 0, "when"], {"gt": [P, 1.0, 2]}), _edit(["rules", 0, "when"], {"not": [V]}),
                 _edit(["let", "Bad"], True), policy(rule({"in": [MODE, []]}))]
    valid_by_reference = [not list(structure._validator().iter_errors(doc)) for doc in documents]
    fast = [compiled.is_valid(doc) for doc in documents]
    assert all(ref for ref, quick in zip(valid_by_reference, fast, strict=True) if quick)
    assert fast.count(True) > len(POLICIES) and valid_by_reference.count(False) >= 10
