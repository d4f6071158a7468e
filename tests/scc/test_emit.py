"""Compiled modules: their interface, their metadata, reproducibility, and what they decide."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import rfc8785
import wasmtime

from axon import abi
from scc import COMPILER_ID, emit
from scc.compiler import compile_policy
from scc.emit import f64
from tests.reference import evaluate as reference
from tests.scc_policies import MODE, SPEC_EXAMPLE, P, V, dumps, policy, rule
from tests.scc_wasm import Runner

ROOT = Path(__file__).resolve().parents[2]


def _compile(doc) -> bytes:
    return compile_policy(dumps(doc)).wasm


def _sections(wasm: bytes) -> list[tuple[int, bytes]]:
    """(id, payload) of every section, in order."""
    out, pos = [], 8
    while pos < len(wasm):
        section_id, size, shift = wasm[pos], 0, 0
        pos += 1
        while True:
            byte = wasm[pos]
            pos += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        out.append((section_id, wasm[pos:pos + size]))
        pos += size
    return out


INTERFACE_POLICIES = [
    SPEC_EXAMPLE,
    policy(rule(True)),  # no inputs used, no logs
    policy(rule({"gt": [{"div": [P, 2]}, 1]}), combine="most-severe"),
]


@pytest.mark.parametrize("doc", INTERFACE_POLICIES)
def test_imports_and_exports_are_exactly_the_abi(doc):
    module = wasmtime.Module(wasmtime.Engine(), _compile(doc))
    imports = {(i.module, i.name): i.type for i in module.imports}
    assert set(imports) == {(abi.IMPORT_MODULE, name) for name in abi.HOST_FUNCTIONS}
    for (_, name), func_type in imports.items():
        params, results = abi.HOST_FUNCTIONS[name]
        assert [str(p) for p in func_type.params] == list(params)
        assert [str(r) for r in func_type.results] == list(results)
    exports = {e.name: e.type for e in module.exports}
    assert set(exports) == {abi.EXPORT_MEMORY, abi.EXPORT_EVALUATE}
    memory = exports[abi.EXPORT_MEMORY]
    assert isinstance(memory, wasmtime.MemoryType)
    assert (memory.limits.min, memory.limits.max) == (abi.MEMORY_PAGES, abi.MEMORY_PAGES)
    evaluate = exports[abi.EXPORT_EVALUATE]
    assert ([str(p) for p in evaluate.params], [str(r) for r in evaluate.results]) == (["i64"], ["i32"])


def test_meta_section_is_last_canonical_and_decodes():
    source = dumps(SPEC_EXAMPLE)
    result = compile_policy(source)
    section_id, payload = _sections(result.wasm)[-1]
    name = abi.META_SECTION.encode()
    assert section_id == 0 and payload[0] == len(name) and payload[1:1 + len(name)] == name
    body = payload[1 + len(name):]
    assert body == result.meta_json == rfc8785.dumps(json.loads(body))
    meta = abi.read_meta(result.wasm)
    assert meta == abi.ModuleMeta.from_json(body)
    assert (meta.abi, meta.policy, meta.version, meta.compiler) == (1, "boiler-guard", "1.2.0", COMPILER_ID)
    assert meta.source_hash == "sha256:" + hashlib.sha256(rfc8785.dumps(json.loads(source))).hexdigest()
    assert (meta.combine, meta.default, meta.gas_max) == ("first-match", "DENY", result.gas_max)
    assert [t["name"] for t in meta.telemetry] == ["pressure_bar", "temp_c", "valve_open"]
    assert meta.telemetry[0] == {"name": "pressure_bar", "type": "number", "min": 0, "max": 250,
                                 "unit": "bar"}
    assert meta.context == ({"name": "mode", "type": "enum", "values": ["AUTO", "MANUAL", "MAINTENANCE"]},)
    assert [r["id"] for r in meta.rules] == ["halt-overpressure", "maintenance", "high-open", "normal"]
    assert meta.sites == ()


def test_source_hash_ignores_formatting_only():
    compact = json.dumps(SPEC_EXAMPLE, separators=(",", ":")).encode()
    spaced = json.dumps(SPEC_EXAMPLE, indent=4).encode()
    assert compile_policy(compact).wasm == compile_policy(spaced).wasm
    changed = json.loads(compact)
    changed["rules"][3]["when"]["le"][1] = 81
    assert compile_policy(dumps(changed)).meta["source_hash"] != compile_policy(compact).meta["source_hash"]


_REBUILD = """
import hashlib, sys
from scc.compiler import compile_policy
result = compile_policy(open(sys.argv[1], "rb").read())
print(hashlib.sha256(result.wasm).hexdigest(), hashlib.sha256(result.wat.encode()).hexdigest())
"""


def test_reproducible_in_process_and_in_fresh_processes(tmp_path):
    doc = policy(rule({"gt": [{"div": [P, {"add": [P, 1]}]}, 0.5]},
                      log={"level": "warn", "message": "ratio"}),
                 rule({"in": [MODE, ["AUTO"]]}, then="HALT"), rule({"ref": "b"}, then="WARN"),
                 let={"a": {"mul": [P, 3]}, "b": {"gt": [{"ref": "a"}, 1]}}, combine="most-severe")
    source = dumps(doc)
    first, second = compile_policy(source), compile_policy(source)
    assert first.wasm == second.wasm and first.wat == second.wat
    path = tmp_path / "p.json"
    path.write_bytes(source)
    expected = f"{hashlib.sha256(first.wasm).hexdigest()} {hashlib.sha256(first.wat.encode()).hexdigest()}"
    for seed in ("0", "12345"):  # set and dict iteration must not leak into the output
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", _REBUILD, str(path)], capture_output=True, text=True,
                             env=env, cwd=ROOT, check=True).stdout.strip()
        assert out == expected


def test_key_order_of_the_source_does_not_change_the_module():
    """Two sources with one RFC 8785 canonical form (one source_hash) compile to the same bytes."""
    doc = policy(rule({"all": [{"gt": [{"ref": "c"}, 1]}, {"telemetry": "b_flow"}]}),
                 rule({"lt": [{"telemetry": "a_level"}, {"ref": "d"}]}, then="WARN"),
                 let={"d": {"mul": [{"telemetry": "a_level"}, 2]}, "c": {"add": [{"ref": "d"}, 1]}})
    doc["inputs"]["telemetry"] = {"b_flow": {"type": "bool"}, "a_level": {"type": "number"}}
    shuffled = dict(reversed(list(doc.items())))
    shuffled["inputs"] = {"context": doc["inputs"]["context"],
                          "telemetry": dict(reversed(list(doc["inputs"]["telemetry"].items())))}
    first, second = compile_policy(dumps(doc)), compile_policy(dumps(shuffled))
    assert first.meta["source_hash"] == second.meta["source_hash"]
    assert first.wasm == second.wasm
    assert [i["name"] for i in first.meta["inputs"]["telemetry"]] == ["a_level", "b_flow"]


def test_wat_is_readable():
    wat = compile_policy(dumps(SPEC_EXAMPLE)).wat
    assert ";; rule 0 `halt-overpressure` (/rules/0) -> HALT" in wat
    assert '"MAINTENANCE"' in wat and "/rules/2/when/all/0" in wat and "let `overpressure`" in wat


def test_f64_literals_are_exact():
    for value in (0.1, -0.0, 5e-324, 1.7976931348623157e308, 95.0, -3.0, 2.0**53, 1e300):
        literal = f64(value)
        assert float.fromhex(literal) == value if "p" in literal else float(literal) == value
    assert f64(-0.0).startswith("-")


# ----------------------------------------------------------------------------------- decisions

@pytest.fixture(scope="module")
def boiler():
    return Runner(_compile(SPEC_EXAMPLE))


@pytest.mark.parametrize(("telemetry", "context", "verdict", "rule_index", "logs"), [
    ({"pressure_bar": 97.5, "valve_open": True}, {"mode": "AUTO"}, 3, 0, [(2, "pressure above 95 bar")]),
    ({"pressure_bar": 95, "valve_open": True}, {"mode": "MAINTENANCE"}, 0, 1, []),
    ({"pressure_bar": 85, "valve_open": True}, {"mode": "AUTO"}, 2, 2, []),
    ({"pressure_bar": 85, "valve_open": False}, {"mode": "MANUAL"}, 0, -1, []),
    ({"pressure_bar": 80, "valve_open": False}, {"mode": "AUTO"}, 1, 3, []),
])
def test_spec_example_decisions(boiler, telemetry, context, verdict, rule_index, logs):
    out = boiler.run(telemetry, context)
    assert (out.verdict, out.block_verdict, out.rule) == (verdict, verdict, rule_index)
    assert (out.fault, out.site) == (0, -1)
    assert out.logs == logs
    assert out.host_calls == 3 + len(logs)  # each used input once (temp_c is unused), one per log
    assert 0 < out.gas <= boiler.meta.gas_max


def test_most_severe_picks_the_first_rule_of_the_highest_severity_and_logs_all_that_held():
    doc = policy(
        rule({"gt": [P, 1]}, then="WARN", log={"level": "info", "message": "a"}),
        rule({"gt": [P, 2]}, then="HALT", log={"level": "warn", "message": "b"}),
        rule({"gt": [P, 3]}, then="DENY", log={"level": "error", "message": "c"}),
        rule({"gt": [P, 4]}, then="HALT", log={"level": "error", "message": "d"}),
        rule({"gt": [P, 100]}, then="ALLOW", log={"level": "info", "message": "e"}),
        combine="most-severe", default="ALLOW",
    )
    runner = Runner(_compile(doc))
    out = runner.run({"p": 10})
    assert (out.verdict, out.rule) == (3, 1)
    assert out.logs == [(0, "a"), (1, "b"), (2, "c"), (2, "d")]
    out = runner.run({"p": 1.5})
    assert (out.verdict, out.rule, out.logs) == (2, 0, [(0, "a")])
    out = runner.run({"p": 0})
    assert (out.verdict, out.rule, out.logs) == (1, -1, [])  # the default
    assert runner.run({"p": 200}).gas == runner.meta.gas_max  # every rule held: the worst case


@pytest.mark.parametrize(("when", "telemetry", "fault", "site"), [
    ({"gt": [{"div": [1, P]}, 0]}, {"p": 0}, 1, "/rules/0/when/gt/0"),
    ({"gt": [{"div": [1, {"sub": [P, 3]}]}, 0]}, {"p": 3}, 1, "/rules/0/when/gt/0"),
    ({"gt": [{"sub": [{"mul": [P, 10]}, {"mul": [P, 10]}]}, 0]}, {"p": 1e308}, 2, "/rules/0/when/gt/0"),
    ({"gt": [{"add": [{"mul": [P, 10]}, 5, {"neg": {"mul": [P, 10]}}]}, 0]}, {"p": 1e308}, 2,
     "/rules/0/when/gt/0"),
    ({"gt": [{"mul": [0, {"mul": [P, 10]}]}, 0]}, {"p": 1e308}, 2, "/rules/0/when/gt/0"),
    ({"gt": [{"div": [{"mul": [P, 10]}, {"mul": [P, 10]}]}, 0]}, {"p": 1e308}, 2, "/rules/0/when/gt/0"),
])
def test_faults_deny_with_code_and_site(when, telemetry, fault, site):
    doc = policy(rule(when, then="ALLOW"), default="ALLOW")
    doc["inputs"]["telemetry"]["p"] = {"type": "number"}
    runner = Runner(_compile(doc))
    out = runner.run(telemetry)
    # rule: the rule being tried when the fault happened (the only one here), not a deciding rule
    assert (out.verdict, out.block_verdict, out.rule, out.fault, out.trap) == (0, 0, 0, fault, None)
    assert runner.meta.sites[out.site] == site
    healthy = runner.run({"p": 2})  # the next call rewrites the whole block
    assert (healthy.verdict, healthy.fault, healthy.site) == (1, 0, -1)


def test_overflow_to_infinity_is_an_ordinary_value():
    doc = policy(rule({"gt": [{"mul": [P, 10]}, 1e308]}, then="HALT"))
    doc["inputs"]["telemetry"]["p"] = {"type": "number"}
    out = Runner(_compile(doc)).run({"p": 1e308})
    assert (out.verdict, out.rule, out.fault) == (3, 0, 0)


BOOM = {"gt": [{"div": [1, 0]}, 0]}  # faults whenever it is evaluated


@pytest.mark.parametrize(("when", "verdict"), [
    ({"all": [{"lt": [P, 0]}, BOOM]}, 0),  # the first operand decides: BOOM is not evaluated
    ({"any": [{"ge": [P, 0]}, BOOM]}, 3),
    ({"if": [{"ge": [P, 0]}, True, BOOM]}, 3),  # only the chosen branch runs
    ({"if": [{"lt": [P, 0]}, BOOM, False]}, 0),
])
def test_short_circuit_and_lazy_if(when, verdict):
    out = Runner(_compile(policy(rule(when, then="HALT")))).run({"p": 1})
    assert (out.verdict, out.fault) == (verdict, 0)


@pytest.mark.parametrize("when", [{"all": [{"ge": [P, 0]}, BOOM]}, {"any": [{"lt": [P, 0]}, BOOM]}])
def test_evaluated_operand_faults(when):
    assert Runner(_compile(policy(rule(when, then="HALT")))).run({"p": 1}).fault == 1


def test_definitions_are_evaluated_where_used_and_once():
    doc = policy(
        rule({"gt": [P, 10]}, then="WARN"),
        rule({"gt": [{"add": [{"ref": "ratio"}, {"ref": "ratio"}, {"ref": "ratio"}]}, 0]}, then="HALT"),
        let={"ratio": {"div": [1, {"sub": [P, 5]}]}},
    )
    runner = Runner(_compile(doc))
    assert (runner.run({"p": 20}).verdict, runner.run({"p": 20}).fault) == (2, 0)  # never reached `ratio`
    out = runner.run({"p": 5})
    assert (out.verdict, out.fault) == (0, 1) and runner.meta.sites[out.site] == "/let/ratio"
    out = runner.run({"p": 6})
    assert (out.verdict, out.rule) == (3, 1)
    # 5 (fetch p) + rule 0: 1 + gt,p,10 + rule 1: 1 + gt,add,3 refs,0 + the body (div,1,sub,p,5)
    # once = 5 + 4 + 7 + 5; paying the body at every use would be 10 more
    assert out.gas == runner.meta.gas_max == 21


def test_gas_exhaustion_traps_after_writing_fault_3(boiler):
    worst = ({"pressure_bar": 85, "valve_open": False}, {"mode": "MANUAL"})
    out = boiler.run(*worst, budget=boiler.meta.gas_max)
    assert (out.verdict, out.gas, out.trap) == (0, boiler.meta.gas_max, None)  # exactly enough
    out = boiler.run(*worst, budget=boiler.meta.gas_max - 1)
    assert out.verdict is None and "unreachable" in out.trap
    # the worst path tries every rule, so the gas runs out in the last one
    assert (out.block_verdict, out.rule, out.fault, out.site) == (0, len(boiler.meta.rules) - 1, 3, -1)
    assert out.gas < boiler.meta.gas_max
    for budget in (0, -1, -(2**63)):
        out = boiler.run(*worst, budget=budget)
        assert (out.verdict, out.rule, out.fault, out.gas) == (None, -1, 3, 0)  # before any rule
    assert boiler.run(*worst).fault == 0  # and the next call is clean


def test_a_host_trap_leaves_nothing_of_an_earlier_call():
    runner = Runner(_compile(SPEC_EXAMPLE))
    assert runner.run({"pressure_bar": 80, "valve_open": False}, {"mode": "AUTO"}).verdict == 1
    runner.meta = abi.ModuleMeta(**{**runner.meta.__dict__, "context": ()})  # the host now lacks `mode`
    out = runner.run({"pressure_bar": 80, "valve_open": False})
    assert out.verdict is None and "out of range" in out.trap
    assert (out.block_verdict, out.rule, out.fault, out.site, out.gas) == (0, -1, 0, -1, 0)


def test_only_used_inputs_are_fetched():
    doc = policy(rule({"gt": [P, 1]}))
    doc["inputs"]["telemetry"] = {"p": {"type": "number"}, "a_unused": {"type": "number"}}
    runner = Runner(_compile(doc))
    out = runner.run({"a_unused": 1, "p": 2})
    assert (out.verdict, out.host_calls) == (0, 1)
    runner.meta = abi.ModuleMeta(**{**runner.meta.__dict__, "telemetry": (runner.meta.telemetry[1],)})
    assert runner.run({"p": 2}).trap is not None  # key 1 (p's place in name order) is what it asks


@pytest.mark.parametrize(("when", "inputs", "holds"), [
    ({"eq": [MODE, "MANUAL"]}, {"mode": "MANUAL"}, True),
    ({"eq": ["MANUAL", MODE]}, {"mode": "AUTO"}, False),
    ({"ne": [MODE, "AUTO"]}, {"mode": "MANUAL"}, True),
    ({"in": [MODE, ["AUTO"]]}, {"mode": "AUTO"}, True),
    ({"in": [MODE, ["MANUAL"]]}, {"mode": "AUTO"}, False),
    ({"eq": [V, True]}, {"v": True}, True),
    ({"ne": [V, {"not": V}]}, {"v": False}, True),
    ({"in": [P, [1, 2.5, 7]]}, {"p": 2.5}, True),
    ({"in": [P, [1, 2.5, 7]]}, {"p": 3}, False),
    ({"between": [P, 2, 3]}, {"p": 2}, True),
    ({"between": [P, 2, 3]}, {"p": 3}, True),
    ({"between": [P, 2, 3]}, {"p": 3.0000000000000004}, False),
    ({"eq": [{"add": [0.1, 0.2]}, 0.30000000000000004]}, {}, True),
    ({"eq": [{"add": [0.1, 0.2]}, 0.3]}, {}, False),
    ({"eq": [{"neg": 0}, 0]}, {}, True),
    ({"eq": [{"abs": {"neg": P}}, P]}, {"p": 4}, True),
    ({"eq": [{"min": [P, 3, 9]}, 3]}, {"p": 4}, True),
    ({"eq": [{"max": [P, 3, 9]}, 9]}, {"p": 4}, True),
    ({"eq": [{"sub": [P, 1]}, 3]}, {"p": 4}, True),
    ({"eq": [{"div": [P, 8]}, 0.5]}, {"p": 4}, True),
    ({"eq": [{"mul": [P, 2, 0.5, 3]}, 12]}, {"p": 4}, True),
    ({"eq": [{"if": [V, P, 1]}, 1]}, {"v": False, "p": 4}, True),
    ({"if": [V, {"gt": [P, 3]}, False]}, {"v": True, "p": 4}, True),
    ({"eq": [5e-324, {"div": [5e-324, 1]}]}, {}, True),
    ({"gt": [1.7976931348623157e308, 1.7976931348623155e308]}, {}, True),
    ({"not": {"any": [V, {"all": [{"not": V}, False]}]}}, {"v": False}, True),
])
def test_operators(when, inputs, holds):
    telemetry = {k: v for k, v in inputs.items() if k in ("p", "v")}
    context = {k: v for k, v in inputs.items() if k == "mode"}
    doc = policy(rule(when, then="HALT"), default="ALLOW")
    doc["inputs"]["telemetry"]["p"] = {"type": "number"}
    out = Runner(_compile(doc)).run(telemetry, context)
    assert (out.verdict, out.fault) == ((3, 0) if holds else (1, 0))


def test_log_messages_survive_the_data_segment_byte_for_byte():
    message = 'Druck > 95 "bar" \\ über\ttab ✓'
    doc = policy(rule(True, log={"level": "warn", "message": message}),
                 rule(True, log={"level": "info", "message": message}), combine="most-severe")
    result = compile_policy(dumps(doc))
    assert result.wasm.count(message.encode()) == 1  # one copy of each distinct message
    out = Runner(result.wasm).run({})
    assert out.logs == [(1, message), (0, message)]


def test_names_cannot_collide_in_the_module():
    checks = [{"ref": "x"}, {"ref": "x_ok"}, {"ref": "ok_x"}, {"gt": [{"telemetry": "c_x"}, 1]},
              {"gt": [{"context": "x"}, 1]}]
    doc = policy(rule({"all": checks}, then="HALT"), default="ALLOW",
                 let={"x": {"gt": [{"telemetry": "x"}, 1]}, "x_ok": {"not": {"ref": "x"}},
                      "ok_x": {"ref": "x_ok"}})
    doc["inputs"] = {"telemetry": {"x": {"type": "number"}, "c_x": {"type": "number"}},
                     "context": {"x": {"type": "number"}}}
    out = Runner(_compile(doc)).run({"x": 2, "c_x": 2}, {"x": 2})
    assert (out.verdict, out.rule) == (1, -1)  # x holds, so x_ok and ok_x do not
    conjuncts = doc["rules"][0]["when"]["all"]
    conjuncts[1], conjuncts[2] = {"not": {"ref": "x_ok"}}, {"not": {"ref": "ok_x"}}
    runner = Runner(_compile(doc))
    assert (runner.run({"x": 2, "c_x": 2}, {"x": 2}).verdict, runner.run({"x": 2, "c_x": 2}, {"x": 2}).rule) \
        == (3, 0)
    assert runner.run({"x": 2, "c_x": 2}, {"x": 0}).rule == -1
    assert runner.run({"x": 0, "c_x": 2}, {"x": 2}).rule == -1


def test_the_longest_chain_of_definitions_runs():
    # l0 = p + 1, l1 = l0 + 1, ... l63: 64 levels, the most SCC-E044 allows; each is a nested call
    lets = {"l0": {"add": [P, 1]}}
    for i in range(1, 64):
        lets[f"l{i}"] = {"add": [{"ref": f"l{i - 1}"}, {"ref": f"l{i - 1}"}]}
    doc = policy(rule({"gt": [{"ref": "l63"}, 2.0**63]}, then="HALT"), let=lets)
    doc["inputs"]["telemetry"]["p"] = {"type": "number"}
    result = compile_policy(dumps(doc))
    runner = Runner(result.wasm)
    assert (runner.run({"p": 0.5}).verdict, runner.run({"p": 0}).verdict) == (3, 0)  # (p + 1) * 2**63
    # each body is computed once although it is used twice: 2**64 uses would never finish
    assert runner.run({"p": 0}).gas == result.gas_max < 1000


def _function_lengths(wat: str, prefix: str) -> list[int]:
    """WAT lines of each function whose name starts with `prefix` (functions end at a line `  )`)."""
    lengths, current = [], None
    for line in wat.splitlines():
        if line.startswith(f"  (func ${prefix}"):
            current = 0
        elif current is not None and line == "  )":
            lengths.append(current)
            current = None
        elif current is not None:
            current += 1
    return lengths


@pytest.mark.parametrize("combine", ["first-match", "most-severe"])
def test_large_policies_run_in_functions_of_bounded_size(combine):
    """The code generator costs more than linearly in one function's size: evaluate stays small and
    the rules and cache resets go into functions of about emit.FUNCTION_LINES lines, whatever the
    number of rules and definitions; decisions cross the calls unchanged."""
    count = 2_000  # rule i holds when i/10 < p < i/10 + 1
    rules = [rule({"all": [{"gt": [P, i / 10]}, {"ref": f"d{i}"}]}, then="HALT" if i % 7 else "WARN")
             for i in range(count)]
    doc = policy(*rules, let={f"d{i}": {"lt": [P, i / 10 + 1]} for i in range(count)}, combine=combine)
    result = compile_policy(dumps(doc))
    wat = result.wat
    rule_functions, forget_functions = _function_lengths(wat, "rules_"), _function_lengths(wat, "forget_")
    # a rule's code runs from its header comment line to the next one (`if ;; rule ... holds` is inside)
    longest_rule = max(len(block.splitlines()) for block in re.split(r"\n *;; rule ", wat)[1:-1])
    assert len(rule_functions) > 1 and len(forget_functions) > 1
    assert max(rule_functions) <= emit.FUNCTION_LINES + longest_rule + 8
    assert max(forget_functions) <= emit.FUNCTION_LINES
    (evaluate,) = _function_lengths(wat, "evaluate")
    assert evaluate < 10 * (len(rule_functions) + len(forget_functions)) + 60
    runner = Runner(result.wasm)
    for p in (150.05, 0.5, 199.95, 250):
        want = reference(doc, {"p": p, "v": False}, {"mode": "AUTO"})
        out = runner.run({"p": p, "v": False}, {"mode": "AUTO"})
        rule_index = -1 if want.rule is None else int(want.rule[1:])
        assert (abi.Verdict(out.verdict).name, out.rule) == (want.verdict, rule_index), p
