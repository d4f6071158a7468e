"""Evaluator.explain: the explanation comes from the module that decided, or says plainly why there is none.

The differential property (tests/scc/test_explain.py) checks what explanations say; these tests check
what the runtime does around them: a module without a trace, or with an unreadable one, decides the same
and says why it cannot explain; a module whose trace contradicts its result block is DENY; explaining
changes neither the decision, nor its gas, nor the next evaluation; both instance paths explain alike.
"""

from __future__ import annotations

import json
from unittest import mock

from axon import abi, accelerators
from scc import emit
from scc.compiler import compile_policy
from synapse.evaluate import Evaluator
from tests.service_support import AUTO, BOILER, HALT, NORMAL


def _boiler():
    return compile_policy(json.dumps(BOILER).encode())


def _without_section(wasm: bytes, name: str) -> bytes:
    """The module with every custom section called `name` left out."""
    out, pos = bytearray(wasm[:len(abi.WASM_MAGIC)]), len(abi.WASM_MAGIC)
    while pos < len(wasm):
        size, body = abi.read_u32_leb128(wasm, pos + 1)
        end = body + size
        name_len, name_at = abi.read_u32_leb128(wasm, body) if wasm[pos] == 0 else (0, body)
        if not (wasm[pos] == 0 and wasm[name_at:name_at + name_len] == name.encode()):
            out += wasm[pos:end]
        pos = end
    return bytes(out)


def _plain(decision) -> dict:
    return {k: v for k, v in decision.to_dict().items() if k != "explanation"}


def test_explaining_changes_neither_the_decision_nor_its_gas_nor_the_next_evaluation():
    evaluator = Evaluator.from_wasm(_boiler().wasm)
    for telemetry in (NORMAL, HALT, {**NORMAL, "pressure_bar": 82, "valve_open": True}):
        before = evaluator.evaluate(telemetry, AUTO)
        explained = evaluator.explain(telemetry, AUTO)
        after = evaluator.evaluate(telemetry, AUTO)
        assert _plain(explained) == before.to_dict() == after.to_dict()
        assert explained.explanation["traced"] is True
        assert "explanation" not in after.to_dict()


def test_both_instance_paths_explain_alike():
    wasm = _boiler().wasm
    fast = Evaluator.from_wasm(wasm).explain(HALT, AUTO)
    with mock.patch.object(accelerators, "ENABLED", False):
        public = Evaluator.from_wasm(wasm)
    assert type(public._instances).__name__ == "PublicInstances"
    assert public.explain(HALT, AUTO).to_dict() == fast.to_dict()


def test_a_module_without_a_trace_decides_the_same_and_says_why_it_cannot_explain():
    wasm = _without_section(_boiler().wasm, abi.TRACE_SECTION)
    assert abi.read_trace_layout(wasm, 6) is None
    evaluator = Evaluator.from_wasm(wasm)
    explained = evaluator.explain(HALT, AUTO)
    assert _plain(explained) == evaluator.evaluate(HALT, AUTO).to_dict()
    assert explained.verdict.name == "HALT"
    assert explained.explanation["traced"] is False and explained.explanation["rules"] == []
    assert "carries no trace" in explained.explanation["summary"]


def test_an_unreadable_trace_section_is_reported_not_trusted():
    result = _boiler()
    broken = _without_section(result.wasm, abi.TRACE_SECTION)
    meta = abi.custom_section(abi.META_SECTION, result.meta_json)
    assert broken.endswith(meta)
    lie = json.dumps({"version": 1, "at": 8, "rules": 6, "lets": []}).encode()  # inside the result block
    evaluator = Evaluator.from_wasm(broken[:-len(meta)] + abi.custom_section(abi.TRACE_SECTION, lie) + meta)
    explained = evaluator.explain(HALT, AUTO)
    assert explained.verdict.name == "HALT"
    assert explained.explanation["traced"] is False
    assert '"at" must be a multiple of 8 from 24' in explained.explanation["summary"]
    assert "[AXON-ABI-TRACE]" in explained.explanation["summary"]


def test_a_trace_that_contradicts_the_result_block_makes_the_decision_deny():
    """A hand-edited module records each rule's condition inverted: its trace says the rules before the
    deciding one held. Nothing it says is shown, and the decision fails safe."""
    result = _boiler()
    lying = result.wat.replace("local.get $held\n", "local.get $held\n i32.eqz\n")
    assert lying != result.wat
    trace = emit.trace_layout(result.program)
    evaluator = Evaluator.from_wasm(emit.assemble(lying, result.meta_json, trace))
    assert evaluator.evaluate(NORMAL, AUTO).verdict.name == "ALLOW"  # deciding reads the result block only
    explained = evaluator.explain(NORMAL, AUTO)
    assert explained.verdict.name == "DENY" and explained.rule is None
    assert "its trace contradicts its result block" in explained.reason
    assert explained.explanation == {"traced": False, "decided_by": "failure", "conditions": [], "rules": [],
                                     "summary": f"DENY: {explained.reason}"}


def test_a_policy_whose_trace_would_not_fit_gets_none_and_still_compiles():
    """The trace lies after the log messages in the module's one page: 64 KB of messages leave no room
    for 4,000 rules' bytes."""
    rules = [{"id": f"r{i}", "when": {"gt": [{"telemetry": "p"}, i]}, "then": "WARN"} for i in range(4000)]
    rules[0]["log"] = {"level": "info", "message": "x" * 1024}
    for i in range(1, 64):
        rules[i]["log"] = {"level": "info", "message": f"{i:04d}" + "y" * 1000}
    policy = {"sip": "001", "policy": "crowded", "version": "1.0.0",
              "inputs": {"telemetry": {"p": {"type": "number"}}}, "rules": rules}
    result = compile_policy(json.dumps(policy).encode())
    assert emit.trace_layout(result.program) is None
    assert abi.read_trace_layout(result.wasm, len(rules)) is None
    explained = Evaluator.from_wasm(result.wasm).explain({"p": 0.5})
    assert explained.rule == "r0" and explained.explanation["traced"] is False
