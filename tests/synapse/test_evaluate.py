"""The evaluator (synapse/evaluate.py) on hand-written ABI modules: verdicts, logs, faults, gas, fuel,
deadline, host errors, ABI violations, refused modules, and no state leaking between evaluations."""

from __future__ import annotations

import threading

import pytest
import wasmtime

from axon import strictjson
from axon.abi import Verdict
from synapse import cli as synapse_cli
from synapse.decision import Decision
from synapse.errors import (
    ExportRefused,
    ImportRefused,
    InstantiationFailed,
    MetaRefused,
    ModuleError,
    ModuleInvalid,
)
from synapse.evaluate import Evaluator
from synapse.sandbox import Limits, load_module
from tests.synapse_wat import BOILER_META, IMPORTS, boiler, boiler_inputs, meta, policy_module, with_meta

# -- modules ------------------------------------------------------------------------------------

RATIO_META = meta(
    default="ALLOW", gas_max=10,
    telemetry=[{"name": "a", "type": "number"}, {"name": "b", "type": "number"}],
    rules=[{"id": "ratio-high", "then": "WARN"}, {"id": "nan-rule", "then": "HALT"}],
    sites=["/let/ratio", "/rules/1/when/gt/0"],
)
# let ratio = a / b (site 0); rule 0: ratio > 2; rule 1: a*1e308 - a*1e308 > 0 (site 1: NaN once it overflows)
RATIO_BODY = """
    (call $charge (i64.const 5))
    (if (f64.eq (call $tel (i32.const 1)) (f64.const 0))
      (then (return (call $fault (i32.const 1) (i32.const 0) (i32.const 0)))))
    (local.set $r (f64.div (call $tel (i32.const 0)) (call $tel (i32.const 1))))
    (if (f64.gt (local.get $r) (f64.const 2)) (then (return (call $decide (i32.const 2) (i32.const 0)))))
    (call $charge (i64.const 5))
    (local.set $s (f64.sub (f64.mul (call $tel (i32.const 0)) (f64.const 1e308))
                           (f64.mul (call $tel (i32.const 0)) (f64.const 1e308))))
    (if (f64.ne (local.get $s) (local.get $s))
      (then (return (call $fault (i32.const 2) (i32.const 1) (i32.const 1)))))
    (if (f64.gt (local.get $s) (f64.const 0)) (then (return (call $decide (i32.const 3) (i32.const 1)))))
    (call $decide (i32.const 1) (i32.const -1))
"""

ONE_INPUT = meta(telemetry=[{"name": "x", "type": "number"}],
                 rules=[{"id": "ok", "then": "ALLOW"}, {"id": "poisoned", "then": "HALT"}])
# x > 1000: poison memory, then spin; x > 100: poison, then a bad host call; x > 50: poison, then run out
# of gas. Otherwise: HALT if poisoned, else log "hello" and ALLOW. Poison must never survive a trap.
POISON_BODY = """
    (if (i32.load8_u (i32.const 200)) (then (return (call $decide (i32.const 3) (i32.const 1)))))
    (if (f64.gt (call $tel (i32.const 0)) (f64.const 1000))
      (then (i32.store8 (i32.const 200) (i32.const 1)) (loop $spin (br $spin))))
    (if (f64.gt (call $tel (i32.const 0)) (f64.const 100))
      (then (i32.store8 (i32.const 200) (i32.const 1)) (drop (call $tel (i32.const 9)))))
    (if (f64.gt (call $tel (i32.const 0)) (f64.const 50))
      (then (i32.store8 (i32.const 200) (i32.const 1)) (call $charge (i64.const 1000000))))
    (call $log (i32.const 0) (i32.const 1024) (i32.const 5))
    (call $decide (i32.const 1) (i32.const 0))
"""


def ratio(limits: Limits | None = None) -> Evaluator:
    return Evaluator.from_wasm(policy_module(RATIO_BODY, RATIO_META, locals_="(local $r f64) (local $s f64)"),
                               limits=limits)


def poison(limits: Limits | None = None) -> Evaluator:
    return Evaluator.from_wasm(policy_module(POISON_BODY, ONE_INPUT, data='(data (i32.const 1024) "hello")'),
                               limits=limits)


def raw_block(verdict: int, rule: int, fault: int, site: int, gas: int, returned: int) -> str:
    return f"""(call $block (i32.const {verdict}) (i32.const {rule}) (i32.const {fault}) (i32.const {site})
                            (i64.const {gas}))
               (i32.const {returned})"""


def deny(decision: Decision) -> str:
    """Assert the fail-safe shape and return the reason."""
    assert decision.verdict is Verdict.DENY and decision.rule is None and decision.logs == []
    assert isinstance(decision.reason, str) and decision.reason
    return decision.reason


@pytest.fixture(scope="module")
def boiler_eval() -> Evaluator:
    return Evaluator.from_wasm(boiler())


# -- verdicts, rules, logs, gas ---------------------------------------------------------------------


@pytest.mark.parametrize(("pressure", "mode", "valve", "verdict", "rule", "logs", "gas"), [
    (99, "AUTO", False, Verdict.HALT, "halt-overpressure",
     [{"level": "error", "message": "pressure above 95 bar"}], 10),
    (85, "MAINTENANCE", True, Verdict.DENY, "maintenance", [], 20),
    (85, "AUTO", True, Verdict.WARN, "high-open", [{"level": "warn", "message": "high and venting"}], 30),
    (50, "MANUAL", True, Verdict.ALLOW, "normal", [], 40),
    (85, "AUTO", False, Verdict.DENY, None, [], 40),
])
def test_verdict_rule_logs_and_gas(boiler_eval, pressure, mode, valve, verdict, rule, logs, gas):
    decision = boiler_eval.evaluate(*boiler_inputs(pressure, mode, valve))
    assert (decision.verdict, decision.rule, decision.logs, decision.reason, decision.gas_used) == (
        verdict, rule, logs, None, gas)
    assert decision.code == int(verdict) and decision.name == verdict.name


def test_to_dict_is_the_documented_json_shape(boiler_eval):
    assert boiler_eval.evaluate(*boiler_inputs(99)).to_dict() == {
        "verdict": "HALT", "code": 3, "rule": "halt-overpressure",
        "logs": [{"level": "error", "message": "pressure above 95 bar"}], "reason": None, "gas_used": 10,
    }


def test_a_default_allow_has_no_rule_and_no_reason():
    decision = ratio().evaluate({"a": 1, "b": 1})
    assert (decision.verdict, decision.rule, decision.reason) == (Verdict.ALLOW, None, None)
    assert decision.gas_used == 10


def test_logs_come_in_the_order_the_module_emits_them():
    body = """(call $log (i32.const 0) (i32.const 1024) (i32.const 5))
              (call $log (i32.const 2) (i32.const 1030) (i32.const 3))
              (call $decide (i32.const 3) (i32.const 1))"""
    doc = meta(combine="most-severe", rules=[{"id": "a", "then": "WARN"}, {"id": "b", "then": "HALT"}])
    data = '(data (i32.const 1024) "first" "\\00xyz")'
    evaluator = Evaluator.from_wasm(policy_module(body, doc, data=data))
    assert evaluator.evaluate({}).logs == [
        {"level": "info", "message": "first"}, {"level": "error", "message": "xyz"}]


def test_log_messages_are_utf8():
    body = "(call $log (i32.const 1) (i32.const 1024) (i32.const 7)) " + OK
    data = '(data (i32.const 1024) "\\c2\\b0C \\e2\\9c\\93")'
    evaluator = Evaluator.from_wasm(policy_module(body, meta(), data=data))
    assert evaluator.evaluate({}).logs == [{"level": "warn", "message": "°C ✓"}]


# -- faults the module reports -------------------------------------------------------------------


def test_division_by_zero_names_the_expression():
    decision = ratio().evaluate({"a": 10, "b": 0})
    # a definition's fault also names the rule that was using it (SIP-001 §6: which rule)
    assert deny(decision) == 'fault: division by zero at /let/ratio (while evaluating rule "ratio-high")'
    assert decision.gas_used == 5


def test_nan_names_the_expression_and_its_rule():
    reason = deny(ratio().evaluate({"a": 2, "b": 2}))
    assert reason == 'fault: arithmetic result is not a number (NaN) at /rules/1/when/gt/0 ' \
                     '(while evaluating rule "nan-rule")'


def test_out_of_gas_is_deny_with_the_budget():
    decision = Evaluator.from_wasm(boiler(), limits=Limits(gas=25)).evaluate(*boiler_inputs(50))
    assert deny(decision) == "fault: gas budget exhausted (budget 25)"
    assert decision.gas_used == 25


def test_a_budget_of_gas_max_never_runs_out(boiler_eval):
    assert boiler_eval.evaluate(*boiler_inputs(50)).gas_used == BOILER_META["gas_max"]


def test_input_faults_never_call_the_module():
    evaluator = Evaluator.from_wasm(boiler())
    decision = evaluator.evaluate({"pressure_bar": "high", "valve_open": False}, {"mode": "AUTO"})
    assert deny(decision) == 'input fault: telemetry "pressure_bar" must be a number, got a string'
    assert decision.gas_used == 0


# -- the sandbox's own meters ---------------------------------------------------------------------

SPIN = "(loop $spin (br $spin)) (i32.const 1)"


def test_fuel_exhaustion_is_deny():
    evaluator = Evaluator.from_wasm(policy_module(SPIN, meta()), limits=Limits(fuel=5_000))
    decision = evaluator.evaluate({})
    assert deny(decision) == "sandbox: fuel exhausted (5000 units per evaluation)"
    assert decision.gas_used is None


def test_the_wall_clock_deadline_interrupts_a_long_run():
    evaluator = Evaluator.from_wasm(policy_module(SPIN, meta()), limits=Limits(fuel=10**15, deadline_ms=5))
    decision = evaluator.evaluate({})  # (without the deadline, 10**15 units of fuel would last for hours)
    assert deny(decision) == "sandbox: deadline exceeded (5 ms per evaluation)"


def test_a_module_that_grows_memory_gets_nothing():
    body = "(if (i32.ne (memory.grow (i32.const 1)) (i32.const -1)) (then (unreachable))) " \
           "(call $decide (i32.const 1) (i32.const 0))"
    assert Evaluator.from_wasm(policy_module(body, meta())).evaluate({}).verdict is Verdict.ALLOW


# -- traps and host errors --------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "reason"), [
    ("(drop (call $tel (i32.const 7)))", "host function error: get_telemetry(7): the module declares 1 "
                                         "telemetry inputs"),
    ("(drop (call $tel (i32.const -1)))", "host function error: get_telemetry(-1): the module declares 1 "
                                          "telemetry inputs"),
    ("(drop (call $ctx (i32.const 0)))", "host function error: get_context_var(0): the module declares 0 "
                                         "context inputs"),
    ("(call $log (i32.const 3) (i32.const 1024) (i32.const 1))",
     "host function error: emit_log: level 3 is not 0 (info), 1 (warn) or 2 (error)"),
    ("(call $log (i32.const 0) (i32.const 1030) (i32.const 2))",
     "host function error: emit_log: message is not valid UTF-8"),
    ("(call $log (i32.const 0) (i32.const 65530) (i32.const 10))",
     "host function error: emit_log: message at bytes 65530..65540 lies outside memory"),
    ("(call $log (i32.const 0) (i32.const -16) (i32.const 4))",
     "host function error: emit_log: message at bytes 4294967280..4294967284 lies outside memory"),
    ("(call $log (i32.const 0) (i32.const 0) (i32.const 1025))",
     "host function error: emit_log: message of 1025 bytes exceeds 1024"),
    ("(call $log (i32.const 0) (i32.const 1024) (i32.const 1))"
     "(call $log (i32.const 0) (i32.const 1024) (i32.const 1))",
     "host function error: emit_log: more than 1 logs in one evaluation"),
    ("(unreachable)", "trap: wasm trap: wasm `unreachable` instruction executed"),
    ("(drop (i32.div_u (i32.const 1) (i32.const 0)))", "trap: wasm trap: integer divide by zero"),
    ("(drop (i32.load (i32.const 65534)))", "trap: wasm trap: out of bounds memory access"),
])
def test_traps_and_host_errors_are_deny_with_the_reason(body, reason):
    doc = meta(telemetry=[{"name": "x", "type": "number"}])
    module = policy_module(f"{body} (call $decide (i32.const 1) (i32.const 0))", doc,
                           data='(data (i32.const 1024) "ok") (data (i32.const 1030) "\\ff\\fe")')
    decision = Evaluator.from_wasm(module).evaluate({"x": 1})
    assert deny(decision) == reason
    assert decision.gas_used is None


# -- modules that break the ABI ---------------------------------------------------------------------


@pytest.mark.parametrize("block", [
    raw_block(7, 0, 0, -1, 1, 7),      # no such verdict
    raw_block(1, 0, 0, -1, 1, 3),      # return value and block disagree
    raw_block(1, 5, 0, -1, 1, 1),      # no such rule
    raw_block(3, 0, 0, -1, 1, 3),      # rule "only" says ALLOW, not HALT
    raw_block(1, -1, 0, -1, 1, 1),     # the default is DENY, not ALLOW
    raw_block(1, 0, 0, -1, 101, 1),    # more gas than the budget
    raw_block(1, 0, 0, -1, -1, 1),     # negative gas
    raw_block(0, -1, 9, -1, 1, 0),     # no such fault
    raw_block(1, -1, 1, -1, 1, 1),     # a fault must come with DENY
    raw_block(0, 99, 1, -1, 1, 0),     # a fault names a rule that does not exist
    raw_block(0, -1, 1, 3, 1, 0),      # no such site
])
def test_a_result_block_that_breaks_the_abi_is_deny(block):
    evaluator = Evaluator.from_wasm(policy_module(block, meta()))
    for _ in range(3):
        assert deny(evaluator.evaluate({})).startswith("module broke the ABI: ")
    assert evaluator.instances_created == 4  # one when loaded, then one per evaluation


# -- no failure escapes -------------------------------------------------------------------------------


@pytest.mark.parametrize("telemetry", [None, 42, "x", [1, 2], object()])
def test_evaluate_never_raises(boiler_eval, telemetry):
    reason = deny(boiler_eval.evaluate(telemetry, {"mode": "AUTO"}))
    assert reason.startswith("input fault: telemetry must be a JSON object")


def test_a_failing_clock_is_deny_not_an_exception():
    def clock() -> float:
        raise OSError("clock gone")

    doc = meta(context=[{"name": "now", "type": "number"}])
    evaluator = Evaluator(load_module(policy_module("(call $decide (i32.const 1) (i32.const 0))", doc)),
                          clock=clock)
    assert deny(evaluator.evaluate({})) == "internal error in the runtime: OSError('clock gone')"
    assert evaluator.evaluate({}, {"now": 5}).verdict is Verdict.ALLOW


def test_now_comes_from_the_injected_clock():
    doc = meta(context=[{"name": "now", "type": "number"}], rules=[{"id": "late", "then": "ALLOW"}])
    body = """(if (f64.gt (call $ctx (i32.const 0)) (f64.const 1000))
                (then (return (call $decide (i32.const 1) (i32.const 0)))))
              (call $decide (i32.const 0) (i32.const -1))"""
    module = load_module(policy_module(body, doc))
    assert Evaluator(module, clock=lambda: 5000.0).evaluate({}).rule == "late"
    assert Evaluator(module, clock=lambda: 10.0).evaluate({}).rule is None
    assert Evaluator(module, clock=lambda: 10.0).evaluate({}, {"now": 2000}).rule == "late"


# -- no state leaks between evaluations ---------------------------------------------------------------


@pytest.mark.parametrize(("trigger", "limits", "reason"), [
    (60, Limits(), "fault: gas budget exhausted (budget 100)"),
    (200, Limits(), "host function error: get_telemetry(9): the module declares 1 telemetry inputs"),
    (2000, Limits(fuel=50_000), "sandbox: fuel exhausted (50000 units per evaluation)"),
    (2000, Limits(fuel=10**15, deadline_ms=3), "sandbox: deadline exceeded (3 ms per evaluation)"),
])
def test_after_a_failure_the_next_decision_is_a_fresh_runtimes(trigger, limits, reason):
    evaluator = poison(limits)
    assert deny(evaluator.evaluate({"x": trigger})) == reason
    after = evaluator.evaluate({"x": 10})
    fresh = poison(limits).evaluate({"x": 10})
    assert after == fresh
    assert (after.verdict, after.rule) == (Verdict.ALLOW, "ok")
    assert after.logs == [{"level": "info", "message": "hello"}]


def test_every_evaluation_gets_a_new_instance(boiler_eval):
    before = boiler_eval.instances_created
    for pressure in (10, 99, 85, 50):
        boiler_eval.evaluate(*boiler_inputs(pressure))
    assert boiler_eval.instances_created == before + 4


# A hand-made module that keeps each reading and hands it to the next evaluation: it reads back what
# the last call left in one place (LOAD), stores this reading there (SAVE), and reports a non-zero
# leftover as HALT "leaked" with the leftover as its gas; nothing left over is ALLOW "clean" with this
# reading as its gas. Each place a module could keep state is one case.
LEAK_META = meta(gas_max=1000, telemetry=[{"name": "x", "type": "number", "min": 0, "max": 1000}],
                 rules=[{"id": "clean", "then": "ALLOW"}, {"id": "leaked", "then": "HALT"}])
LEAK_BODY = """
    (local.set $x (i64.trunc_f64_s (call $tel (i32.const 0))))
    (local.set $prev {load})
    {save}
    (if (i64.ne (local.get $prev) (i64.const 0))
      (then (call $block (i32.const 3) (i32.const 1) (i32.const 0) (i32.const -1) (local.get $prev))
            (return (i32.const 3))))
    (call $block (i32.const 1) (i32.const 0) (i32.const 0) (i32.const -1) (local.get $x))
    (i32.const 1)
"""
LEAK_TABLE = """(table 1 funcref) (elem (i32.const 0) $nothing) (elem declare func $something)
    (func $nothing (result i64) (i64.const 0)) (func $something (result i64) (i64.const 1))"""
LEAKS = {
    "memory": ("(i64.load (i32.const 512))", "(i64.store (i32.const 512) (local.get $x))", ""),
    "mutable global": ("(global.get $stash)", "(global.set $stash (local.get $x))",
                       "(global $stash (mut i64) (i64.const 0))"),
    # the result block the host read last time: its gas field holds the last reading
    "result block": ("(i64.load (i32.const 16))", "", ""),
    "table": ("(call_indirect (result i64) (i32.const 0))", "(table.set (i32.const 0) (ref.func $something))",
              LEAK_TABLE),
}


@pytest.mark.parametrize("place", sorted(LEAKS))
def test_no_reading_survives_into_the_next_evaluation(place):
    load, save, extra = LEAKS[place]
    module = load_module(policy_module(LEAK_BODY.format(load=load, save=save), LEAK_META, extra=extra,
                                       locals_="(local $x i64) (local $prev i64)"))
    evaluator = Evaluator(module)
    first = evaluator.evaluate({"x": 42})
    assert (first.verdict, first.rule, first.gas_used) == (Verdict.ALLOW, "clean", 42)
    second = evaluator.evaluate({"x": 7})
    assert (second.verdict, second.rule, second.gas_used) == (Verdict.ALLOW, "clean", 7)
    assert second == Evaluator(module).evaluate({"x": 7})


def test_synapse_eval_replays_each_reading_in_a_fresh_instance(tmp_path, capfdbinary):
    # The CLI opens modules through synapse.loader, as the service and the sidecar do: the same Evaluator.
    load, save, extra = LEAKS["memory"]
    module = tmp_path / "leaky.wasm"
    module.write_bytes(policy_module(LEAK_BODY.format(load=load, save=save), LEAK_META, extra=extra,
                                     locals_="(local $x i64) (local $prev i64)"))
    feed = tmp_path / "feed.jsonl"
    feed.write_text('{"telemetry": {"x": 42}}\n{"telemetry": {"x": 7}}\n')
    assert synapse_cli.main(["eval", str(module), "--input", str(feed)]) == 0
    lines = [strictjson.loads(line) for line in capfdbinary.readouterr().out.splitlines()]
    assert [(line["verdict"], line["rule"], line["gas_used"]) for line in lines] == [
        ("ALLOW", "clean", 42), ("ALLOW", "clean", 7)]


def test_the_start_function_runs_for_every_evaluation():
    # The start function sets the stash; an evaluation that found it unset would be one that skipped it.
    extra = """(global $stash (mut i64) (i64.const 0))
               (func $start (global.set $stash (i64.const 5))) (start $start)"""
    body = """(if (i64.ne (global.get $stash) (i64.const 5)) (then (unreachable)))
              (global.set $stash (i64.const 0))
              (call $decide (i32.const 1) (i32.const 0))"""
    evaluator = Evaluator.from_wasm(policy_module(body, meta(), extra=extra))
    assert [evaluator.evaluate({}).verdict for _ in range(3)] == [Verdict.ALLOW] * 3


def test_logs_of_one_call_never_appear_in_the_next():
    evaluator = Evaluator.from_wasm(boiler())
    first = evaluator.evaluate(*boiler_inputs(99))
    second = evaluator.evaluate(*boiler_inputs(50))
    assert first.logs == [{"level": "error", "message": "pressure above 95 bar"}]
    assert second.logs == []
    assert first.logs == [{"level": "error", "message": "pressure above 95 bar"}]  # not shared or cleared


def test_the_inputs_of_one_call_are_not_served_to_the_next():
    # Call 1 passes two telemetry values; the module of call 2 asks for key 1 after an input fault.
    evaluator = Evaluator.from_wasm(boiler())
    evaluator.evaluate(*boiler_inputs(85, valve=True))
    assert deny(evaluator.evaluate({"valve_open": True}, {"mode": "AUTO"})).startswith("input fault")
    assert evaluator.evaluate(*boiler_inputs(85, valve=False)).verdict is Verdict.DENY


def test_host_functions_trap_outside_an_evaluation():
    extra = "(func $start (drop (call $tel (i32.const 0)))) (start $start)"
    module = policy_module("(call $decide (i32.const 1) (i32.const 0))", meta(telemetry=[{"name": "x",
                           "type": "number"}]), extra=extra)
    with pytest.raises(InstantiationFailed, match="get_telemetry was called outside an evaluation"):
        Evaluator.from_wasm(module)


def test_threads_share_an_evaluator_safely():
    evaluator = Evaluator.from_wasm(boiler())
    cases = [(99, Verdict.HALT), (85, Verdict.DENY), (50, Verdict.ALLOW)]
    wrong: list[tuple] = []

    def worker(pressure: float, expected: Verdict) -> None:
        for _ in range(300):
            decision = evaluator.evaluate(*boiler_inputs(pressure))
            if decision.verdict is not expected or decision.reason is not None:
                wrong.append((pressure, decision))

    threads = [threading.Thread(target=worker, args=case) for case in cases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_one_compiled_module_serves_many_evaluators():
    module = load_module(boiler())
    first, second = Evaluator(module), Evaluator(module, limits=Limits(gas=15))
    assert first.evaluate(*boiler_inputs(50)).verdict is Verdict.ALLOW
    assert deny(second.evaluate(*boiler_inputs(50))) == "fault: gas budget exhausted (budget 15)"
    assert first.evaluate(*boiler_inputs(50)).verdict is Verdict.ALLOW


# -- refused modules ------------------------------------------------------------------------------------

OK = "(call $decide (i32.const 1) (i32.const 0))"


@pytest.mark.parametrize(("module", "error", "message"), [
    (lambda: policy_module(OK, meta(), imports=IMPORTS + '(import "sopcos" "get_time" (func (result f64)))'),
     ImportRefused, 'imports "sopcos"."get_time" (function)'),
    (lambda: policy_module(OK, meta(), imports=IMPORTS + '(import "wasi_snapshot_preview1" "fd_write" '
                                                         '(func (param i32 i32 i32 i32) (result i32)))'),
     ImportRefused, 'imports "wasi_snapshot_preview1"."fd_write"'),
    (lambda: policy_module(OK, meta(),
                           imports='(import "sopcos" "get_telemetry" (func (param i32) (result i32)))'),
     ImportRefused, 'imports "sopcos"."get_telemetry" with signature (i32) -> (i32); the host function is '
                    '(i32) -> (f64)'),
    (lambda: policy_module(OK, meta(), imports='(import "sopcos" "emit_log" (global i32))'),
     ImportRefused, 'imports "sopcos"."emit_log" as a global'),
    (lambda: policy_module(OK, meta(), extra='(func (export "helper"))'),
     ExportRefused, 'exports "helper" (function)'),
    (lambda: policy_module(OK, meta(), extra='(global (export "counter") i32 (i32.const 0))'),
     ExportRefused, 'exports "counter" (global)'),
    (lambda: policy_module(OK, meta(), memory="(memory 1 1)"),
     ExportRefused, 'does not export "memory"'),
    (lambda: policy_module(OK, meta(), memory='(memory (export "memory") 2 2)'),
     ExportRefused, "exactly 1 page"),
    (lambda: policy_module(OK, meta(), memory='(memory (export "memory") 1)'),
     ExportRefused, "it has min 1, max None"),
    (lambda: with_meta(wasmtime.wat2wasm('(module (memory (export "memory") 1 1) (func (export "evaluate") '
                                         '(param i32) (result i32) (i32.const 0)))'), meta()),
     ExportRefused, '"evaluate" has signature (i32) -> (i32)'),
    (lambda: with_meta(wasmtime.wat2wasm('(module (memory (export "memory") 1 1))'), meta()),
     ExportRefused, 'does not export "evaluate"'),
    (lambda: policy_module(OK, None), MetaRefused, "has no 'sopcos.meta' custom section"),
    (lambda: policy_module(OK, meta(abi=2)), MetaRefused, "built for ABI version 2"),
    (lambda: with_meta(policy_module(OK, meta()), meta()), MetaRefused, "2 'sopcos.meta' custom sections"),
    (lambda: policy_module(OK, meta(default="MAYBE")), MetaRefused,
     "malformed at $.default: 'MAYBE' is not one of ['DENY', 'ALLOW', 'WARN', 'HALT']"),
    (lambda: policy_module(OK, meta(rules=[{"then": "ALLOW"}])), MetaRefused,
     "malformed at $.rules[0]: 'id' is a required property"),
    (lambda: policy_module(OK, meta(gas_max=-1)), MetaRefused,
     "at $.gas_max: -1 is less than the minimum of 0"),
    (lambda: policy_module(OK, meta(rules=[{"id": "r", "then": ["ALLOW"]}])), MetaRefused,
     "at $.rules[0].then: ['ALLOW'] is not one of"),
    (lambda: policy_module(OK, meta(telemetry=[{"name": "x", "type": {"number": True}}])), MetaRefused,
     "at $.inputs.telemetry[0].type: {'number': True} is not one of"),
    (lambda: b"\x00asm\x01\x00\x00\x00\x01\xff", ModuleInvalid, "not a valid WebAssembly module"),
    (lambda: b"PK\x03\x04 a zip file", ModuleInvalid, "not a valid WebAssembly module"),
])
def test_refused_modules_name_what_is_wrong(module, error, message):
    with pytest.raises(error) as info:
        Evaluator.from_wasm(module())
    assert message in str(info.value)
    assert str(info.value).startswith("module refused: ")
    assert isinstance(info.value, ModuleError) and info.value.code.startswith("SYNAPSE-MODULE-")


def test_a_module_importing_only_some_host_functions_is_accepted():
    imports = '(import "sopcos" "emit_log" (func $log (param i32 i32 i32)))'
    evaluator = Evaluator.from_wasm(policy_module(OK, meta(), imports=imports))
    assert evaluator.evaluate({}).verdict is Verdict.ALLOW
