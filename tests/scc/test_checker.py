"""The semantic checker, and one test for every diagnostic code scc defines (all stages)."""

from __future__ import annotations

import json

import pytest
from jsonschema import ValidationError

from scc import structure
from scc.compiler import check_policy, compile_policy
from scc.errors import CODES, CheckError, Diagnostic
from tests.scc_policies import MODE, SPEC_EXAMPLE, P, V, base, dumps, policy, rule


def _with_inputs(**inputs):
    doc = base()
    for group, decls in inputs.items():
        doc["inputs"][group].update(decls)
    return doc


def _rules(n: int) -> dict:
    return policy(*[rule({"gt": [P, i]}) for i in range(n)])


def _nested_not(levels: int) -> dict:
    expr: object = V
    for _ in range(levels - 1):
        expr = {"not": expr}
    return policy(rule(expr))


def _many_nodes() -> dict:
    # each rule: gt + add + p + 255 ones + the bound = 259 nodes
    return policy(*[rule({"gt": [{"add": [P, *([1] * 255)]}, i]}) for i in range(390)])


def _logs(n: int, size: int) -> dict:
    return policy(*[rule({"gt": [P, i]}, log={"level": "info", "message": f"{i:04d}" + "x" * (size - 4)})
                    for i in range(n)])


def _let_chain(n: int) -> dict:
    lets = {"l0": {"add": [P, 1]}}
    for i in range(1, n):
        lets[f"l{i}"] = {"add": [{"ref": f"l{i - 1}"}, 1]}
    return policy(rule({"gt": [{"ref": f"l{n - 1}"}, 0]}), let=lets)


GOOD = dumps(policy(rule({"gt": [P, 1]})))

# (code, source, JSON Pointer of the finding)
CASES: list[tuple[str, bytes, str]] = [
    ("SCC-E001", b" " * (1 << 20) + GOOD, ""),
    ("SCC-E002", GOOD.replace(b'"t"', b'"t\xb0"'), ""),
    ("SCC-E003", b'{"sip": "001",}', ""),
    ("SCC-E004", GOOD.replace(b'"policy": "t"', b'"policy": "t", "policy": "u"'), "/policy"),
    ("SCC-E005", GOOD.replace(b"1\n", b"NaN\n", 1), "/rules/0/when/gt/1"),
    ("SCC-E006", GOOD.replace(b"250", b"1e400"), "/inputs/telemetry/p/max"),
    ("SCC-E007", GOOD + b" {}", ""),
    ("SCC-E008", b"[" * 200 + b"]" * 200, "/0" * 136),
    ("SCC-E009", GOOD.replace(b'"t"', b'"\\ud800"'), "/policy"),
    ("SCC-E010", dumps(policy(rule({"gt": [P, 1]}, lg=1))), "/rules/0/lg"),
    ("SCC-E011", dumps(policy({"when": True})), "/rules/0"),
    ("SCC-E012", dumps(policy(rule(None))), "/rules/0/when"),
    ("SCC-E013", dumps(policy(rule(True, then="deny"))), "/rules/0/then"),
    ("SCC-E014", dumps(policy(policy="Boiler")), "/policy"),
    ("SCC-E015", dumps(policy(rule({"gt": [P, 1, 2]}))), "/rules/0/when/gt"),
    ("SCC-E016", dumps(policy(rule({"gtt": [P, 1]}))), "/rules/0/when/gtt"),
    # E017 is the fallback for schema keywords without a dedicated message: see test_structure_fallback
    ("SCC-E020", dumps(policy(rule({"gt": [P, V]}))), "/rules/0/when/gt/1"),
    ("SCC-E021", dumps(policy(rule({"gt": [MODE, 1]}))), "/rules/0/when/gt/0"),
    ("SCC-E022", dumps(policy(rule({"eq": [MODE, "AUTOMATIC"]}))), "/rules/0/when/eq/1"),
    ("SCC-E023", dumps(policy(rule({"eq": [P, True]}))), "/rules/0/when"),
    ("SCC-E024", dumps(policy(rule({"gt": [{"if": [V, 1, False]}, 0]}))), "/rules/0/when/gt/0/if/2"),
    ("SCC-E030", dumps(policy(rule({"gt": [{"telemetry": "presure"}, 1]}))), "/rules/0/when/gt/0/telemetry"),
    ("SCC-E031", dumps(policy(rule({"ref": "hot"}))), "/rules/0/when/ref"),
    ("SCC-E032", dumps(policy(rule({"ref": "a"}), let={"a": {"ref": "b"}, "b": True})), "/let/a/ref"),
    ("SCC-E033", dumps(policy({"id": "x", **rule(True)}, {"id": "x", **rule(False)})), "/rules/1/id"),
    ("SCC-E034", dumps(_with_inputs(telemetry={"q": {"type": "number", "min": 10, "max": 5}})),
     "/inputs/telemetry/q/min"),
    ("SCC-E035", dumps(_with_inputs(telemetry={"q": {"type": "number", "max": 250, "default": 300}})),
     "/inputs/telemetry/q/default"),
    ("SCC-E036", dumps(_with_inputs(context={"m": {"type": "enum", "values": ["A"], "default": "B"}})),
     "/inputs/context/m/default"),
    ("SCC-E037", dumps(_with_inputs(context={"m": {"type": "enum", "values": ["A", "B", "A"]}})),
     "/inputs/context/m/values/2"),
    ("SCC-E038", dumps(policy(rule(True, log={"level": "info", "message": "é" * 513}))),
     "/rules/0/log/message"),
    ("SCC-E040", dumps(_rules(4097)), "/rules"),
    ("SCC-E041", dumps(_nested_not(65)), "/rules/0/when" + "/not" * 64),
    # node 100,001 is the 24th `1` of rule 386: 386 * 259 + 3 + 24
    ("SCC-E042", json.dumps(_many_nodes()).encode(), "/rules/386/when/gt/0/add/24"),
    ("SCC-E043", dumps(_logs(70, 1000)), "/rules/65/log/message"),
    ("SCC-E044", dumps(_let_chain(70)), "/let/l64/add/0/ref"),
    ("SCC-W001", dumps(policy(rule({"gt": [P, 300]}), rule(True))), "/rules/0/when"),
    ("SCC-W002", dumps(policy(rule({"gt": [P, 5]}), rule({"gt": [P, 5]}, then="HALT"))), "/rules/1"),
    ("SCC-W003", dumps(policy(rule(V), let={"spare": True})), "/let/spare"),
    ("SCC-W004", dumps(policy(rule(V))), "/inputs/telemetry/p"),
    ("SCC-W005", dumps(policy(rule({"gt": [{"div": [P, 0]}, 1]}))), "/rules/0/when/gt/0"),
]


def test_every_code_has_a_case():
    covered = {code for code, _, _ in CASES} | {"SCC-E017"}
    assert covered == set(CODES)


@pytest.mark.parametrize(("code", "source", "pointer"), [
    # SCC-E042 builds and checks over 100,000 nodes: seconds, so it runs in the full suite only.
    pytest.param(*case, id=case[0], marks=pytest.mark.slow if case[0] == "SCC-E042" else ())
    for case in CASES])
def test_code(code, source, pointer):
    result = check_policy(source)
    found = [(d.code, d.pointer) for d in result.diagnostics]
    assert (code, pointer) in found, found
    diagnostic = next(d for d in result.diagnostics if (d.code, d.pointer) == (code, pointer))
    if code != "SCC-E001":  # the size is a property of the whole file, which is not parsed
        assert diagnostic.line is not None and diagnostic.line >= 1 and diagnostic.column >= 1
    assert diagnostic.message and "\n" not in diagnostic.message
    if code.startswith("SCC-W"):
        assert result.valid  # warnings never stop compilation
        compile_policy(source)
    else:
        assert not result.valid


def test_structure_fallback():
    """A schema keyword without a dedicated explanation still gives a located E017."""
    error = ValidationError("[1, 1] has non-unique elements", validator="uniqueItems", path=["rules", 0],
                            schema={}, instance=[1, 1], validator_value=True)
    (diagnostic,) = structure._explain(error)
    assert (diagnostic.code, diagnostic.pointer) == ("SCC-E017", "/rules/0")
    assert "non-unique" in diagnostic.message


def test_spec_example_is_valid():
    result = check_policy(dumps(SPEC_EXAMPLE))
    assert result.valid
    # temp_c is declared and never used; it has a default, so the message does not threaten a DENY
    assert [(d.code, d.pointer) for d in result.diagnostics] == [("SCC-W004", "/inputs/telemetry/temp_c")]
    assert "denied" not in result.diagnostics[0].message


def test_message_names_the_input_and_its_type():
    (d,) = check_policy(dumps(policy(rule({"gt": [P, V]})))).errors
    assert d.message == "expected a number here, but `v` is a bool telemetry input"
    assert d.format("p.json").startswith("p.json:/rules/0/when/gt/1: SCC-E020 expected a number here")


def test_all_errors_at_once_in_document_order():
    doc = policy(rule({"gt": [MODE, 1]}), rule({"eq": [P, True]}), rule({"ref": "nope"}))
    doc["inputs"]["telemetry"]["q"] = {"type": "number", "min": 3, "max": 1}
    result = check_policy(dumps(doc))
    assert [(d.code, d.pointer) for d in result.errors] == [
        ("SCC-E034", "/inputs/telemetry/q/min"),
        ("SCC-E021", "/rules/0/when/gt/0"),
        ("SCC-E023", "/rules/1/when"),
        ("SCC-E031", "/rules/2/when/ref"),
    ]
    assert [d.line for d in result.errors] == sorted(d.line for d in result.errors)
    assert not result.warnings  # only an error-free policy is examined for warnings


def test_structure_errors_are_sorted_and_all_reported():
    doc = policy(rule({"gtt": [P, 1]}, then="deny"), {"when": True})
    doc["extra"] = 1
    doc["version"] = "1"
    result = check_policy(dumps(doc))
    pointers = [d.pointer for d in result.errors]
    assert pointers == ["/version", "/rules/0/when/gtt", "/rules/0/then", "/rules/1", "/extra"]


def test_error_cap_counts_the_rest():
    doc = policy(*[rule({"gt": [MODE, i]}) for i in range(130)])
    result = check_policy(dumps(doc))
    assert len(result.errors) == 100 and result.hidden_errors == 30
    assert not result.valid
    with pytest.raises(CheckError) as info:
        compile_policy(dumps(doc))
    assert info.value.hidden == 30 and "(and 129 more)" in str(info.value)


@pytest.mark.parametrize("when", [
    {"eq": [P, 1]}, {"ne": [V, True]}, {"eq": [MODE, "AUTO"]}, {"eq": ["MANUAL", MODE]},
    {"in": [MODE, ["AUTO", "MANUAL"]]}, {"in": [P, [1, 2.5]]}, {"between": [P, 0, {"add": [1, 2]}]},
    {"if": [V, {"gt": [P, 1]}, False]}, {"gt": [{"if": [V, 1, {"abs": {"neg": P}}]}, 0]},
    {"all": [V, {"not": V}, {"any": [True]}]}, {"lt": [{"min": [P, 1]}, {"max": [P, 2, 3]}]},
    {"ge": [{"sub": [P, 1]}, {"div": [{"mul": [P, 2]}, 3]}]},
])
def test_well_typed_conditions(when):
    assert check_policy(dumps(policy(rule(when)))).valid


def test_two_enums_with_the_same_values_compare():
    doc = policy(rule({"eq": [MODE, {"context": "other"}]}))
    doc["inputs"]["context"]["other"] = {"type": "enum", "values": ["AUTO", "MANUAL"]}
    assert check_policy(dumps(doc)).valid
    doc["inputs"]["context"]["other"]["values"] = ["MANUAL", "AUTO"]  # same set, other list: not comparable
    (d,) = check_policy(dumps(doc)).errors
    assert d.code == "SCC-E023" and "different lists of values" in d.message


@pytest.mark.parametrize(("when", "code", "pointer"), [
    ({"in": [V, [1]]}, "SCC-E020", "/rules/0/when/in/0"),
    ({"in": [MODE, ["AUTO", "OFF"]]}, "SCC-E022", "/rules/0/when/in/1/1"),
    ({"in": [MODE, [1]]}, "SCC-E022", "/rules/0/when/in/1/0"),
    ({"in": [P, ["AUTO"]]}, "SCC-E022", "/rules/0/when/in/1/0"),
    ({"eq": ["AUTO", "AUTO"]}, "SCC-E022", "/rules/0/when"),
    ({"eq": [P, "AUTO"]}, "SCC-E022", "/rules/0/when/eq/1"),
    ({"not": "AUTO"}, "SCC-E022", "/rules/0/when/not"),
    ({"add": [P, 1]}, "SCC-E020", "/rules/0/when"),
    ({"all": [V, P]}, "SCC-E020", "/rules/0/when/all/1"),
    ({"if": [P, True, False]}, "SCC-E020", "/rules/0/when/if/0"),
    ({"if": [V, MODE, MODE]}, "SCC-E021", "/rules/0/when/if/1"),
    ({"context": "p"}, "SCC-E030", "/rules/0/when/context"),
])
def test_type_and_name_errors(when, code, pointer):
    errors = check_policy(dumps(policy(rule(when)))).errors
    assert (code, pointer) in [(d.code, d.pointer) for d in errors], errors


def test_undeclared_input_hints_at_the_other_group():
    (d,) = check_policy(dumps(policy(rule({"eq": [{"telemetry": "mode"}, "AUTO"]})))).errors
    assert d.code == "SCC-E030" and '{"context": "mode"}' in d.message


def test_let_may_use_only_definitions_above():
    ok = policy(rule({"ref": "b"}), let={"a": {"gt": [P, 1]}, "b": {"not": {"ref": "a"}}})
    assert check_policy(dumps(ok)).valid
    itself = policy(rule({"ref": "a"}), let={"a": {"not": {"ref": "a"}}})
    (d,) = check_policy(dumps(itself)).errors
    assert d.code == "SCC-E032" and "uses itself" in d.message
    # rules may use any definition, including the last
    assert check_policy(dumps(policy(rule({"ref": "z"}), let={"a": True, "z": {"ref": "a"}}))).valid


def test_let_must_be_number_or_bool():
    (d,) = check_policy(dumps(policy(rule(V), let={"m": MODE}))).errors
    assert (d.code, d.pointer) == ("SCC-E021", "/let/m")


@pytest.mark.slow
def test_limits_are_inclusive():
    assert check_policy(dumps(_nested_not(64))).valid
    assert check_policy(dumps(_let_chain(64))).valid
    assert [d.code for d in check_policy(dumps(_let_chain(65))).errors] == ["SCC-E044"]  # said once
    assert check_policy(dumps(_rules(4096))).valid
    assert check_policy(dumps(policy(rule(True, log={"level": "info", "message": "é" * 512})))).valid


@pytest.mark.parametrize(("rules", "expected"), [
    ([rule(False)], [("SCC-W001", "/rules/0/when")]),
    ([rule({"all": [V, {"lt": [P, -1]}]})], [("SCC-W001", "/rules/0/when")]),
    ([rule({"between": [P, 300, 400]})], [("SCC-W001", "/rules/0/when")]),
    ([rule({"in": [P, [-5, 251]]})], [("SCC-W001", "/rules/0/when")]),
    ([rule({"gt": [{"add": [P, 10]}, 260]})], [("SCC-W001", "/rules/0/when")]),
    ([rule({"gt": [{"add": [P, 10]}, 259]})], []),  # p = 250 makes it hold
    ([rule({"ge": [{"abs": {"sub": [P, 300]}}, 50]}), rule(V)], [("SCC-W002", "/rules/1")]),  # always holds
    ([rule(True), rule(V)], [("SCC-W002", "/rules/1")]),
    ([rule({"in": [MODE, ["AUTO", "MANUAL"]]}), rule(V)], [("SCC-W002", "/rules/1")]),
    ([rule(V), rule(V, then="HALT")], [("SCC-W002", "/rules/1")]),
    ([rule({"gt": [P, {"div": [1, {"sub": [P, P]}]}]}), rule(V)], []),  # unknown: nothing said
])
def test_rule_warnings(rules, expected):
    doc = policy(*rules)
    doc["inputs"]["context"]["mode"]["default"] = "AUTO"
    doc["inputs"]["telemetry"]["p"]["default"] = 1
    doc["inputs"]["telemetry"]["v"]["default"] = True
    result = check_policy(dumps(doc))
    assert result.valid
    found = [(d.code, d.pointer) for d in result.warnings if d.code in ("SCC-W001", "SCC-W002")]
    assert found == expected


def test_shadowing_is_a_first_match_notion():
    doc = policy(rule(V), rule(V, then="HALT"), combine="most-severe")
    assert not [d for d in check_policy(dumps(doc)).warnings if d.code == "SCC-W002"]


def test_unused_definitions_and_inputs():
    doc = policy(rule({"ref": "used"}), let={"helper": {"gt": [P, 1]}, "used": {"not": V},
                                             "spare": {"ref": "helper"}})
    result = check_policy(dumps(doc))
    found = sorted((d.code, d.pointer) for d in result.warnings)
    # p is only used by unused definitions: to the runtime it is unused
    assert found == [("SCC-W003", "/let/helper"), ("SCC-W003", "/let/spare"),
                     ("SCC-W004", "/inputs/context/mode"), ("SCC-W004", "/inputs/telemetry/p")]
    p_warning = next(d for d in result.warnings if d.pointer == "/inputs/telemetry/p")
    assert "denied" in p_warning.message  # no default: the runtime still requires it


def test_diagnostic_rejects_unknown_codes():
    with pytest.raises(ValueError):
        Diagnostic("SCC-E999", "", "x")
