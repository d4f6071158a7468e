"""axon.abi.read_meta: the `sopcos.meta` custom section of a policy module, and its one rule set (the meta
schema): what Axon's module check accepts, Synapse's loader loads or refuses with a code."""

from __future__ import annotations

import json

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axon import abi, module_check
from scc.compiler import compile_policy
from synapse import cli as synapse_cli
from synapse.errors import ModuleError
from synapse.evaluate import Evaluator
from synapse.sandbox import load_module
from tests.scc_policies import SPEC_EXAMPLE, dumps
from tests.synapse_wat import meta, policy_module


@pytest.fixture(scope="module")
def compiled():
    return compile_policy(dumps(SPEC_EXAMPLE))


def _without_meta(wasm: bytes, meta_json: bytes) -> bytes:
    tail = abi.custom_section(abi.META_SECTION, meta_json)
    assert wasm.endswith(tail)
    return wasm[: -len(tail)]


def test_reads_the_compilers_section(compiled):
    meta = abi.read_meta(compiled.wasm)
    assert meta.policy == "boiler-guard" and meta.gas_max == compiled.gas_max
    assert meta.rules[0] == {"id": "halt-overpressure", "then": "HALT"}


def test_a_large_section_uses_a_multi_byte_length(compiled):
    bare = _without_meta(compiled.wasm, compiled.meta_json)
    big = dict(compiled.meta, sites=[f"/rules/{i}/when" for i in range(3000)])
    meta = abi.read_meta(bare + abi.custom_section(abi.META_SECTION, rfc8785.dumps(big)))
    assert meta.sites[-1] == "/rules/2999/when"


@pytest.mark.parametrize(("mutate", "words"), [
    (lambda bare, meta: bare, "no 'sopcos.meta'"),
    (lambda bare, meta: bare + abi.custom_section(abi.META_SECTION, meta) * 2, "2 'sopcos.meta'"),
    (lambda bare, meta: bare + abi.custom_section(abi.META_SECTION, b"{not json"), "not strict JSON"),
    (lambda bare, meta: bare + abi.custom_section(abi.META_SECTION, b'{"abi": 1}'), "malformed"),
    (lambda bare, meta: bare + abi.custom_section(abi.META_SECTION, b"[]"), "malformed"),
    (lambda bare, meta: bare + abi.custom_section(abi.META_SECTION, b'{"abi":1,"abi":1}'), "appears twice"),
    (lambda bare, meta: bare + abi.custom_section(abi.META_SECTION, meta.replace(b'"abi":1', b'"abi":2')),
     "ABI version 2"),
    (lambda bare, meta: (bare + abi.custom_section(abi.META_SECTION, meta))[:-5], "truncated"),
    (lambda bare, meta: b"\x00asm\x02\x00\x00\x00" + bare[8:], "not a WebAssembly module"),
    (lambda bare, meta: bare + b"\x00\xff\xff\xff\xff\xff", "longer than 5 bytes"),
])
def test_refuses_what_it_cannot_trust(compiled, mutate, words):
    bare = _without_meta(compiled.wasm, compiled.meta_json)
    with pytest.raises(abi.ModuleMetaError) as info:
        abi.read_meta(mutate(bare, compiled.meta_json))
    assert words in str(info.value) and info.value.code == "AXON-ABI-META"


def test_other_custom_sections_are_ignored(compiled):
    bare = _without_meta(compiled.wasm, compiled.meta_json)
    wasm = bare + abi.custom_section("other", b"x") + abi.custom_section(abi.META_SECTION, compiled.meta_json)
    assert abi.read_meta(wasm) == abi.read_meta(compiled.wasm)
    assert abi.read_custom_sections(wasm, "other") == [b"x"]
    assert json.loads(abi.read_custom_sections(wasm, abi.META_SECTION)[0]) == compiled.meta


# -- one rule set: what Axon's module check accepts, Synapse loads or refuses with a code ------------

_BARE = policy_module("(call $decide (i32.const 1) (i32.const 0))", None)
_JUNK = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=6)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
_NUMBER = st.integers(-(2**64), 2**64) | st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def _or_junk(draw: st.DrawFn, plausible: st.SearchStrategy) -> object:
    """Mostly a plausible value, sometimes any JSON value at all (a wrong type, nesting)."""
    return draw(_JUNK) if draw(st.integers(0, 15)) == 7 else draw(plausible)  # 0 and 15: drawn often


_VERDICT = _or_junk(st.sampled_from(["DENY", "ALLOW", "WARN", "HALT"]))
_NAME = _or_junk(st.sampled_from(["a", "b", "now"]))  # few names: some declared twice


def _declaration(kind: str, optional: dict[str, st.SearchStrategy]) -> st.SearchStrategy:
    return st.fixed_dictionaries({"name": _NAME, "type": _or_junk(st.just(kind))},
                                 optional={key: _or_junk(value) for key, value in optional.items()})


_INPUT = _or_junk(st.one_of(
    _declaration("number", {"min": _NUMBER, "max": _NUMBER, "unit": st.text(max_size=3), "default": _NUMBER}),
    _declaration("bool", {"default": st.booleans()}),
    _declaration("enum", {"values": st.lists(st.sampled_from(["x", "y", "z"]), min_size=1, max_size=4),
                          "default": st.sampled_from(["x", "y", "w"])}),
))
_INPUTS = st.fixed_dictionaries({"telemetry": _or_junk(st.lists(_INPUT, max_size=3)),
                                  "context": _or_junk(st.lists(_INPUT, max_size=2))})
_RULE = st.fixed_dictionaries({"id": _or_junk(st.text(max_size=4)), "then": _VERDICT})
_FIELDS = st.fixed_dictionaries({
    "abi": _or_junk(st.just(abi.ABI_VERSION)),
    "policy": _or_junk(st.text(max_size=8)), "version": _or_junk(st.just("1.0.0")),
    "source_hash": _or_junk(st.just("sha256:" + "0" * 64)), "compiler": _or_junk(st.just("hand")),
    "gas_max": _or_junk(st.integers(-5, 2**64) | st.just(100)),
    "combine": _or_junk(st.sampled_from(["first-match", "most-severe"])),
    "default": _VERDICT,
    "inputs": _or_junk(_INPUTS),
    "rules": _or_junk(st.lists(_or_junk(_RULE), min_size=1, max_size=3)),
    "sites": _or_junk(st.lists(_or_junk(st.text(max_size=4)), max_size=2)),
})


@st.composite
def _meta_documents(draw: st.DrawFn) -> dict:
    """Every field, each sometimes of a wrong type; sometimes one field missing or one unknown added."""
    doc = draw(_FIELDS)
    if draw(st.integers(0, 15)) == 7:
        del doc[draw(st.sampled_from(sorted(doc)))]
    if draw(st.integers(0, 15)) == 7:
        doc[draw(st.text(max_size=5))] = draw(_JUNK)
    return doc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=_meta_documents())
def test_what_the_module_check_accepts_the_runtime_loads_or_refuses_with_a_code(doc):
    wasm = _BARE + abi.custom_section(abi.META_SECTION, json.dumps(doc).encode())
    try:
        module_check.check_module(wasm)  # what `axon verify` runs on the module (axon/verify.py, check 17)
    except module_check.ModuleInterfaceError as exc:
        assert exc.code == "AXON-MODULE-META"
        return
    try:
        evaluator = Evaluator(load_module(wasm))
    except ModuleError as exc:
        assert exc.code.startswith("SYNAPSE-MODULE-") and str(exc).startswith("module refused: ")
        return
    decision = evaluator.evaluate({}, {})
    assert not (decision.reason or "").startswith("internal error"), decision.reason


@pytest.mark.parametrize(("field", "value"), [
    ("default", ["DENY"]), ("default", 0), ("rules", [{"id": "r", "then": {"v": "ALLOW"}}]),
    ("telemetry", [{"name": "x", "type": ["number"]}]), ("telemetry", [{"name": "x", "type": 1}]),
])
def test_a_meta_of_the_wrong_types_is_refused_by_verify_and_eval_alike(tmp_path, capsys, field, value):
    path = tmp_path / "policy.wasm"
    path.write_bytes(policy_module("(call $decide (i32.const 1) (i32.const 0))", meta(**{field: value})))
    with pytest.raises(module_check.MetaUnreadable, match="section is malformed at"):
        module_check.check_module(path.read_bytes())
    assert synapse_cli.main(["eval", str(path), "--telemetry", "{}"]) == 2
    err = capsys.readouterr().err
    assert "section is malformed at" in err and "[SYNAPSE-MODULE-META]" in err and "Traceback" not in err
