"""The reference interpreter against examples worked by hand from SIP-001 (chiefly the §1 example).

Every expected value below was derived from the spec text, not by running the interpreter.
"""

from __future__ import annotations

import copy
import math

import pytest

from tests.reference import SEVERITY, Decision, evaluate
from tests.scc_policies import SPEC_EXAMPLE

BOILER = SPEC_EXAMPLE  # SIP-001 §1, verbatim (shared with scc's tests)


def boiler(pressure, valve_open=True, mode="AUTO"):
    return evaluate(BOILER, {"pressure_bar": pressure, "valve_open": valve_open}, {"mode": mode})


# ------------------------------------------------------------------ §1 worked through rule by rule


def test_overpressure_halts_with_its_log():
    assert boiler(97.5) == Decision("HALT", "halt-overpressure", (("error", "pressure above 95 bar"),), None)


def test_overpressure_wins_over_maintenance_in_first_match():
    # Rule 0 holds first, so rule 1 (maintenance) is never tried.
    assert boiler(96, mode="MAINTENANCE").rule == "halt-overpressure"


def test_exactly_95_is_not_overpressure():
    # gt is strict: 95 > 95 is false; AUTO; 95 > 80 and valve open -> high-open.
    assert boiler(95) == Decision("WARN", "high-open", (), None)


def test_maintenance_denies_and_rule_without_log_logs_nothing():
    assert boiler(50, mode="MAINTENANCE") == Decision("DENY", "maintenance", (), None)


def test_high_pressure_with_valve_closed_falls_to_default():
    # 85 bar, AUTO, valve closed: rules 0-3 all false -> default DENY, no deciding rule.
    assert boiler(85, valve_open=False) == Decision("DENY", None, (), None)


def test_80_bar_is_normal():
    assert boiler(80, valve_open=False) == Decision("ALLOW", "normal", (), None)


def test_integer_and_float_json_numbers_are_the_same_number():
    assert boiler(97) == boiler(97.0)


def test_temp_default_lets_the_readme_example_through():
    # temp_c is absent but has default 20, so this is the README example: HALT.
    assert boiler(97.5).verdict == "HALT"


# ------------------------------------------------------------------ §3 input faults


@pytest.mark.parametrize(
    ("telemetry", "context", "where"),
    [
        ({"valve_open": True}, {"mode": "AUTO"}, "telemetry.pressure_bar"),  # missing, no default
        ({"pressure_bar": 250.5, "valve_open": True}, {"mode": "AUTO"}, "telemetry.pressure_bar"),  # > max
        ({"pressure_bar": -0.1, "valve_open": True}, {"mode": "AUTO"}, "telemetry.pressure_bar"),  # < min
        ({"pressure_bar": True, "valve_open": True}, {"mode": "AUTO"}, "telemetry.pressure_bar"),  # bool
        ({"pressure_bar": "90", "valve_open": True}, {"mode": "AUTO"}, "telemetry.pressure_bar"),  # string
        ({"pressure_bar": 90, "valve_open": 1}, {"mode": "AUTO"}, "telemetry.valve_open"),  # number as bool
        ({"pressure_bar": 90, "valve_open": True}, {"mode": "OFF"}, "context.mode"),  # not a value
        ({"pressure_bar": 90, "valve_open": True}, {"mode": "auto"}, "context.mode"),  # case matters
        ({"pressure_bar": 90, "valve_open": True}, {}, "context.mode"),
        ({"pressure_bar": 90, "valve_open": True, "temp_c": math.inf}, {"mode": "AUTO"}, "telemetry.temp_c"),
        ({"pressure_bar": 90, "valve_open": True, "temp_c": math.nan}, {"mode": "AUTO"}, "telemetry.temp_c"),
        ({"pressure_bar": 90, "valve_open": True, "temp_c": 10**400}, {"mode": "AUTO"}, "telemetry.temp_c"),
        ({"pressure_bar": 90, "valve_open": True, "temp_c": None}, {"mode": "AUTO"}, "telemetry.temp_c"),
    ],
)
def test_bad_input_is_a_fault_deciding_deny_without_rule(telemetry, context, where):
    decision = evaluate(BOILER, telemetry, context)
    assert (decision.verdict, decision.rule, decision.logs) == ("DENY", None, ())
    assert decision.fault is not None and decision.fault.kind == "input" and decision.fault.where == where


def test_undeclared_inputs_are_ignored():
    assert boiler(50).verdict == "ALLOW"
    d = evaluate(BOILER, {"pressure_bar": 50, "valve_open": True, "flow": "x"}, {"mode": "AUTO", "who": 1})
    assert d == Decision("ALLOW", "normal", (), None)


def test_inputs_are_checked_before_any_rule_runs():
    # Pressure 97.5 would halt on rule 0, but the bad mode is a fault first.
    assert boiler(97.5, mode="STANDBY").fault.where == "context.mode"


def test_bounds_are_inclusive():
    assert boiler(0).verdict == "ALLOW" and boiler(250).rule == "halt-overpressure"


# ------------------------------------------------------------------ §4 arithmetic and evaluation order


def one_rule(when, *, telemetry=None, lets=None, combine="first-match"):
    """A policy with number inputs x, y, z (no range) and the given rule(s)."""
    rules = when if isinstance(when, list) else [{"id": "r", "when": when, "then": "HALT"}]
    return {
        "sip": "001", "policy": "t", "version": "1.0.0",
        "inputs": {"telemetry": {n: {"type": "number"} for n in ("x", "y", "z")}},
        "let": lets or {},
        "combine": combine,
        "rules": rules,
        "default": "ALLOW",
    }


X, Y, Z = ({"telemetry": n} for n in ("x", "y", "z"))


def run(policy, x=1.0, y=2.0, z=3.0):
    return evaluate(policy, {"x": x, "y": y, "z": z}, {})


def test_division_by_zero_faults_with_its_site():
    d = run(one_rule({"gt": [{"div": [X, Y]}, 0]}), y=0)
    assert d.verdict == "DENY" and d.rule is None
    assert d.fault.kind == "division-by-zero" and d.fault.where == "/rules/0/when/gt/0"


def test_division_by_negative_zero_faults_too():
    # y - y is +0, neg(+0) is -0: the divisor is still zero.
    d = run(one_rule({"gt": [{"div": [X, {"neg": {"sub": [Y, Y]}}]}, 0]}))
    assert d.fault.kind == "division-by-zero"


def test_zero_over_zero_is_a_division_by_zero():
    assert run(one_rule({"gt": [{"div": [X, Y]}, 0]}), x=0, y=0).fault.kind == "division-by-zero"


def test_overflow_to_infinity_is_an_ordinary_value():
    # 1e308 * 10 = inf > 1e308: the rule holds.
    assert run(one_rule({"gt": [{"mul": [X, 10]}, 1e308]}), x=1e308) == Decision("HALT", "r", (), None)


def test_inf_minus_inf_is_a_nan_fault():
    inf = {"mul": [X, 10]}
    d = run(one_rule({"lt": [{"sub": [inf, inf]}, 0]}), x=1e308)
    assert d.fault.kind == "nan"


def test_zero_times_inf_is_a_nan_fault():
    d = run(one_rule({"gt": [{"mul": [Y, {"mul": [X, 10]}]}, 0]}), x=1e308, y=0)
    assert d.fault.kind == "nan"


def test_nan_in_the_middle_of_an_add_chain_faults():
    # (inf + -inf) is NaN before the third operand is added.
    inf = {"mul": [X, 10]}
    d = run(one_rule({"gt": [{"add": [inf, {"neg": inf}, 1]}, 0]}), x=1e308)
    assert d.fault.kind == "nan"


def test_inf_divided_by_number_is_inf_and_number_by_inf_is_zero():
    inf = {"mul": [X, 10]}
    assert run(one_rule({"eq": [{"div": [Y, inf]}, 0]}), x=1e308).verdict == "HALT"
    assert run(one_rule({"gt": [{"div": [inf, Y]}, 1e308]}), x=1e308).verdict == "HALT"


def test_any_stops_at_the_first_true_operand():
    # The division by zero in the second operand is never evaluated.
    when = {"any": [{"gt": [X, 0]}, {"gt": [{"div": [X, Z]}, 0]}]}
    assert run(one_rule(when), x=1, z=0) == Decision("HALT", "r", (), None)
    assert run(one_rule(when), x=-1, z=0).fault.kind == "division-by-zero"


def test_all_stops_at_the_first_false_operand():
    when = {"all": [{"gt": [X, 0]}, {"gt": [{"div": [X, Z]}, 0]}]}
    assert run(one_rule(when), x=-1, z=0) == Decision("ALLOW", None, (), None)


def test_if_evaluates_only_the_chosen_branch():
    safe_ratio = {"if": [{"ne": [Z, 0]}, {"div": [X, Z]}, 0]}
    assert run(one_rule({"eq": [safe_ratio, 0]}), z=0).verdict == "HALT"
    assert run(one_rule({"eq": [safe_ratio, 0.5]}), x=1, z=2).verdict == "HALT"


def test_let_is_evaluated_only_where_used():
    lets = {"ratio": {"div": [X, Z]}}
    rules = [
        {"id": "guard", "when": {"eq": [Z, 0]}, "then": "DENY"},
        {"id": "use", "when": {"gt": [{"ref": "ratio"}, 1]}, "then": "WARN"},
    ]
    # First-match: z == 0 decides at rule 0; the ratio is never computed.
    assert run(one_rule(rules, lets=lets), z=0) == Decision("DENY", "guard", (), None)
    # The fault site of a definition is where the definition is written.
    d = run(one_rule(rules[1:], lets=lets), z=0)
    assert d.fault.kind == "division-by-zero" and d.fault.where == "/let/ratio"


def test_min_max_and_between():
    when = {"all": [{"eq": [{"min": [X, Y, Z]}, -2]}, {"eq": [{"max": [X, Y, Z]}, 7]},
                    {"between": [X, {"min": [Y, Z]}, {"max": [Y, Z]}]}]}
    assert run(one_rule(when), x=1, y=-2, z=7).verdict == "HALT"
    assert run(one_rule(when), x=8, y=-2, z=7).verdict == "ALLOW"


def test_in_compares_numerically():
    assert run(one_rule({"in": [{"add": [X, Y]}, [1, 3, 5]]}), x=1, y=2).verdict == "HALT"
    assert run(one_rule({"in": [{"add": [X, Y]}, [1, 5]]}), x=1, y=2).verdict == "ALLOW"


def test_negative_zero_equals_zero():
    assert run(one_rule({"eq": [{"neg": X}, 0]}), x=0).verdict == "HALT"


def test_rounding_is_ieee_double():
    # 0.1 + 0.2 is 0.30000000000000004 in binary64: not equal to the literal 0.3.
    assert run(one_rule({"eq": [{"add": [X, Y]}, 0.3]}), x=0.1, y=0.2).verdict == "ALLOW"
    assert run(one_rule({"gt": [{"add": [X, Y]}, 0.3]}), x=0.1, y=0.2).verdict == "HALT"


# ------------------------------------------------------------------ §5 combine modes and logs


def test_first_match_does_not_evaluate_later_rules():
    rules = [
        {"id": "a", "when": {"gt": [X, 0]}, "then": "ALLOW", "log": {"level": "info", "message": "a"}},
        {"id": "b", "when": {"gt": [{"div": [X, Z]}, 0]}, "then": "HALT",
         "log": {"level": "error", "message": "b"}},
    ]
    assert run(one_rule(rules), x=1, z=0) == Decision("ALLOW", "a", (("info", "a"),), None)


def test_most_severe_evaluates_every_rule_so_a_later_fault_faults():
    rules = [
        {"id": "a", "when": {"gt": [X, 0]}, "then": "ALLOW"},
        {"id": "b", "when": {"gt": [{"div": [X, Z]}, 0]}, "then": "HALT"},
    ]
    d = run(one_rule(rules, combine="most-severe"), x=1, z=0)
    assert (d.verdict, d.rule, d.logs, d.fault.kind) == ("DENY", None, (), "division-by-zero")


def test_most_severe_picks_highest_severity_and_first_rule_of_it_and_logs_all_held():
    rules = [
        {"id": "w1", "when": {"gt": [X, 0]}, "then": "WARN", "log": {"level": "warn", "message": "w1"}},
        {"id": "d1", "when": {"gt": [X, 1]}, "then": "DENY", "log": {"level": "error", "message": "d1"}},
        {"id": "no", "when": {"gt": [X, 100]}, "then": "HALT", "log": {"level": "error", "message": "no"}},
        {"id": "d2", "when": {"gt": [X, 2]}, "then": "DENY", "log": {"level": "error", "message": "d2"}},
        {"id": "a1", "when": {"gt": [X, 3]}, "then": "ALLOW"},
    ]
    d = run(one_rule(rules, combine="most-severe"), x=5)
    assert d == Decision("DENY", "d1", (("warn", "w1"), ("error", "d1"), ("error", "d2")), None)
    # Only w1 holds: WARN by w1.
    only_w1 = run(one_rule(rules, combine="most-severe"), x=0.5)
    assert only_w1 == Decision("WARN", "w1", (("warn", "w1"),), None)
    # Nothing holds: default, no logs.
    assert run(one_rule(rules, combine="most-severe"), x=-1) == Decision("ALLOW", None, (), None)


def test_severity_order_is_halt_deny_warn_allow():
    assert sorted(SEVERITY, key=SEVERITY.get, reverse=True) == ["HALT", "DENY", "WARN", "ALLOW"]


def test_default_is_deny_where_absent():
    policy = copy.deepcopy(BOILER)
    del policy["default"]
    policy["rules"] = policy["rules"][:1]
    assert evaluate(policy, {"pressure_bar": 10, "valve_open": False}, {"mode": "AUTO"}).verdict == "DENY"


def test_enum_inputs_compare_with_each_other():
    policy = {
        "sip": "001", "policy": "t", "version": "1.0.0",
        "inputs": {"context": {"a": {"type": "enum", "values": ["X", "Y"]},
                               "b": {"type": "enum", "values": ["X", "Y"], "default": "Y"}}},
        "rules": [{"id": "same", "when": {"eq": [{"context": "a"}, {"context": "b"}]}, "then": "ALLOW"}],
    }
    assert evaluate(policy, {}, {"a": "Y"}).rule == "same"
    assert evaluate(policy, {}, {"a": "X"}) == Decision("DENY", None, (), None)


def test_now_comes_from_the_callers_clock_when_not_passed():
    policy = {
        "sip": "001", "policy": "t", "version": "1.0.0",
        "inputs": {"context": {"now": {"type": "number"}}},
        "rules": [{"id": "late", "when": {"gt": [{"context": "now"}, 1_700_000_000]}, "then": "ALLOW"}],
    }
    assert evaluate(policy, {}, {}, now=1_800_000_000).rule == "late"
    assert evaluate(policy, {}, {"now": 1}, now=1_800_000_000).rule is None  # the caller's value wins
    assert evaluate(policy, {}, {}).fault.where == "context.now"


def test_bounds_and_literals_are_doubles():
    # 2**53 + 1 is not a double: as a bound or literal it is 2**53, so 2**53 is inside and equal.
    policy = {
        "sip": "001", "policy": "t", "version": "1.0.0",
        "inputs": {"telemetry": {"x": {"type": "number", "min": 2**53 + 1, "max": 2**53 + 1}}},
        "rules": [{"id": "same", "when": {"eq": [{"telemetry": "x"}, 2**53 + 1]}, "then": "ALLOW"}],
    }
    assert evaluate(policy, {"x": 2.0**53}, {}) == Decision("ALLOW", "same", (), None)
