"""Lowering to the IR, static block costs, and worst-case gas (checked against real runs)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axon import abi
from scc.ast import build
from scc.checker import check
from scc.compiler import compile_policy
from scc.gas import block_cost, gas_max, worst
from scc.ir import InputSlot, ValType
from scc.lower import lower
from tests.scc_policies import MODE, SPEC_EXAMPLE, P, V, dumps, policy, rule
from tests.scc_wasm import Runner


def _program(doc):
    tree = build(doc)
    assert not [d for d in check(tree) if d.is_error]
    return lower(tree)


def test_lowering_the_spec_example():
    program = _program(SPEC_EXAMPLE)
    # temp_c is unused: not fetched; keys are the places in the declaration
    assert program.inputs == (InputSlot("telemetry", 0, "pressure_bar", ValType.F64),
                              InputSlot("telemetry", 2, "valve_open", ValType.I32),
                              InputSlot("context", 0, "mode", ValType.F64))
    assert [let.name for let in program.lets] == ["overpressure"]
    assert [(r.id, r.verdict) for r in program.rules] == [
        ("halt-overpressure", 3), ("maintenance", 0), ("high-open", 2), ("normal", 1)]
    assert program.data == b"pressure above 95 bar" and program.data_offset == abi.RESULT_SIZE
    log = program.rules[0].log
    assert (log.level, log.offset, log.length) == (2, 24, 21)
    maintenance = program.rules[1].when
    assert (maintenance.op, maintenance.args[1].op, maintenance.args[1].value) == ("eq", "const", 2.0)
    assert program.rules[2].when.args[1].type is ValType.I32  # the bool input
    assert program.sites == ()


def test_unused_definitions_get_no_code_and_sites_are_in_lowering_order():
    doc = policy(rule({"gt": [{"add": [{"ref": "b"}, {"div": [P, 2]}]}, 1]}),
                 let={"unused": {"mul": [P, 2]}, "a": {"sub": [P, 1]}, "b": {"mul": [{"ref": "a"}, 3]}})
    program = _program(doc)
    assert [let.name for let in program.lets] == ["a", "b"]
    # an operation gets its site after its operands (post-order)
    assert program.sites == ("/let/a", "/let/b", "/rules/0/when/gt/0/add/1", "/rules/0/when/gt/0")


def test_identical_log_messages_share_data():
    doc = policy(rule(V, log={"level": "info", "message": "same"}), rule(True, log={"level": "warn",
                                                                                   "message": "same"}))
    program = _program(doc)
    assert program.data == b"same"
    assert [(r.log.level, r.log.offset) for r in program.rules] == [(0, 24), (1, 24)]


def test_block_costs_split_at_short_circuits_and_branches():
    when = _program(policy(rule({"all": [{"gt": [P, 1]}, V, {"not": V}]}))).rules[0].when
    assert block_cost(when) == 4  # all, gt, p, 1: the later operands are blocks of their own
    assert [block_cost(a) for a in when.conditional] == [1, 2]
    assert worst(when, []) == 7
    branch = _program(policy(rule({"gt": [{"if": [V, {"add": [P, 1]}, 2]}, 0]}))).rules[0].when
    assert block_cost(branch) == 4  # gt, if, its condition v, and 0
    assert worst(branch, []) == 4 + 3  # + the dearer branch (add, p, 1)


def test_spec_example_gas_max_by_hand():
    # entry: 3 inputs * 5 = 15. Rules tried: halt 1 + ref 1 (+ body gt,p,95 = 3) = 5;
    # maintenance 1 + eq,mode,"MAINTENANCE" = 4; high-open 1 + all,gt,p,80 + valve_open = 6;
    # normal 1 + le,p,80 = 4. No rule holds: 15 + 19 = 34 (the halt rule holding costs 15 + 5 + 5).
    assert gas_max(_program(SPEC_EXAMPLE)) == 34


def test_most_severe_pays_every_rule_and_every_log():
    doc = policy(rule(V, log={"level": "info", "message": "a"}), rule({"gt": [P, 1]}), combine="most-severe")
    # 2 inputs * 5 + (1 + 1 + 5) + (1 + 3)
    assert gas_max(_program(doc)) == 10 + 7 + 4


def test_definition_bounds_take_the_smaller():
    # `a` is used three times: paying its body once (B) is less than at every use (A).
    used_often = policy(rule({"gt": [{"add": [{"ref": "a"}, {"ref": "a"}, {"ref": "a"}]}, 1]}),
                        let={"a": {"mul": [P, P, P]}})
    # entry 5 + rule 1 + gt, add, 3 refs, 1 (6) + body mul, p, p, p (4) once
    assert gas_max(_program(used_often)) == 5 + 1 + 6 + 4
    # two big bodies on different branches of an `if`: only one runs, so (A) is less than (B).
    big = {"add": [P] * 20}
    branches = policy(rule({"gt": [{"if": [V, {"ref": "x"}, {"ref": "y"}]}, 1]}), let={"x": big, "y": big})
    # entry 10 + rule 1 + gt, if, v, 1 (4) + the branch: ref (1) + body add + 20 p (21)
    assert gas_max(_program(branches)) == 10 + 1 + 4 + 22


def test_worst_path_reaches_gas_max_exactly():
    doc = policy(rule({"any": [{"lt": [P, 0]}, {"all": [V, {"gt": [P, 5]}]}]}, log={"level": "info",
                                                                                  "message": "m"}),
                 rule({"if": [V, {"ge": [{"mul": [P, 2]}, 3]}, {"eq": [MODE, "AUTO"]}]}, then="HALT"))
    result = compile_policy(dumps(doc))
    runner = Runner(result.wasm)
    observed = [runner.run({"p": p, "v": v}, {"mode": m}).gas
                for p in (-1, 0, 1, 6) for v in (True, False) for m in ("AUTO", "MANUAL")]
    assert max(observed) == result.gas_max


NUMBERS = st.sampled_from([P, {"telemetry": "q"}, 0, 1, -2.5, 1e308])


def _numbers(children):
    return st.one_of(
        st.builds(lambda op, a, b: {op: [a, b]}, st.sampled_from(["add", "sub", "mul", "div", "min", "max"]),
                  children, children),
        st.builds(lambda op, a: {op: a}, st.sampled_from(["abs", "neg"]), children),
    )


number_exprs = st.recursive(NUMBERS, _numbers, max_leaves=6)


def _bools(children):
    return st.one_of(
        st.builds(lambda op, items: {op: items}, st.sampled_from(["all", "any"]),
                  st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda c: {"not": c}, children),
        st.builds(lambda c, a, b: {"if": [c, a, b]}, children, children, children),
    )


comparisons = st.builds(lambda op, a, b: {op: [a, b]}, st.sampled_from(["lt", "le", "gt", "ge", "eq", "ne"]),
                        number_exprs, number_exprs)
bool_exprs = st.recursive(st.one_of(comparisons, st.just(V), st.booleans()), _bools, max_leaves=6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(bool_exprs, min_size=1, max_size=4), st.sampled_from(["first-match", "most-severe"]),
       st.lists(st.tuples(st.sampled_from([-3.0, 0.0, 2.0, 1e308]), st.sampled_from([0.0, 1.0, -1e308]),
                          st.booleans()), min_size=1, max_size=6))
def test_no_evaluation_uses_more_than_gas_max(conditions, combine, inputs):
    doc = policy(*[rule(c, then="HALT", log={"level": "info", "message": str(i)})
                   for i, c in enumerate(conditions)], combine=combine, let={"lp": {"abs": P}})
    doc["inputs"]["telemetry"]["p"] = {"type": "number"}
    doc["inputs"]["telemetry"]["q"] = {"type": "number"}
    doc["rules"].append({"id": "last", **rule({"gt": [{"ref": "lp"}, 1]})})
    result = compile_policy(dumps(doc))
    runner = Runner(result.wasm)
    for p, q, v in inputs:
        out = runner.run({"p": p, "q": q, "v": v})
        assert out.trap is None and out.fault in (0, 1, 2)
        assert 0 < out.gas <= result.gas_max
        assert runner.run({"p": p, "q": q, "v": v}, budget=out.gas).trap is None  # exactly enough
        if out.gas > 1:
            assert runner.run({"p": p, "q": q, "v": v}, budget=out.gas - 1).fault == abi.Fault.OUT_OF_GAS
