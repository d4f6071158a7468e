"""SIP-001 §3 input checks and the ABI's f64 encoding (synapse/inputs.py), rule by rule."""

from __future__ import annotations

import math

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from axon.abi import ModuleMeta
from synapse.errors import InputFault, MetaRefused
from synapse.inputs import InputChecker, InputSpecs
from tests.synapse_wat import meta


def checker(
    telemetry: list[dict] = (), context: list[dict] = (), clock=lambda: 1_700_000_000.0
) -> InputChecker:
    doc = meta(telemetry=list(telemetry), context=list(context))
    return InputChecker(InputSpecs(ModuleMeta.from_json(rfc8785.dumps(doc))), clock)


def fault(check: InputChecker, telemetry: dict, context: dict | None = None) -> str:
    with pytest.raises(InputFault) as info:
        check.encode(telemetry, context or {})
    return str(info.value)


NUMBER = {"name": "p", "type": "number", "min": 0, "max": 250, "unit": "bar"}
FREE = {"name": "x", "type": "number"}
BOOL = {"name": "b", "type": "bool"}
ENUM = {"name": "mode", "type": "enum", "values": ["AUTO", "MANUAL", "MAINTENANCE"]}


# -- numbers ----------------------------------------------------------------------------------


def test_numbers_cross_as_themselves_ints_included():
    check = checker([NUMBER, FREE])
    assert check.encode({"p": 12, "x": -3.25}, {}) == ([12.0, -3.25], [])
    assert all(type(v) is float for v in check.encode({"p": 12, "x": 7}, {})[0])


def test_bounds_are_inclusive():
    check = checker([NUMBER])
    assert check.encode({"p": 0}, {})[0] == [0.0]
    assert check.encode({"p": 250.0}, {})[0] == [250.0]


@pytest.mark.parametrize(("value", "broken"), [
    (-0.001, "below its minimum 0"), (-1e308, "below its minimum 0"),
    (250.0001, "above its maximum 250"), (1e300, "above its maximum 250"),
])
def test_outside_min_max_is_a_fault_naming_the_input_and_bound_not_the_value(value, broken):
    assert fault(checker([NUMBER]), {"p": value}) == f'telemetry "p" is {broken}'


@pytest.mark.parametrize("value", [True, False])
def test_a_bool_is_not_a_number(value):
    # Python's bool is an int subclass: the check must compare types exactly.
    assert fault(checker([NUMBER]), {"p": value}) == 'telemetry "p" must be a number, got a bool'


@pytest.mark.parametrize(("value", "kind"), [("12", "a string"), (None, "null"), ([1], "an array"),
                                             ({"v": 1}, "an object")])
def test_other_json_types_are_not_numbers(value, kind):
    assert fault(checker([FREE]), {"x": value}) == f'telemetry "x" must be a number, got {kind}'


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_is_a_fault_even_without_bounds(value):
    assert fault(checker([FREE]), {"x": value}) == 'telemetry "x" is not finite (NaN or an infinity)'


def test_an_integer_beyond_double_range_is_not_finite():
    assert fault(checker([FREE]), {"x": 10**400}) == 'telemetry "x" is not finite (too large for a double)'


def test_unbounded_numbers_take_any_finite_double():
    big = 1.7976931348623157e308
    assert checker([FREE]).encode({"x": -big}, {})[0] == [-big]


def test_number_subclasses_are_accepted_by_value():
    class Reading(float):
        pass

    assert checker([NUMBER]).encode({"p": Reading(3.5)}, {})[0] == [3.5]


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.floats(0, 250), st.integers(0, 250)))
def test_every_value_in_range_crosses_unchanged(value):
    encoded = checker([NUMBER]).encode({"p": value}, {})[0]
    assert encoded == [float(value)]


# -- bools ------------------------------------------------------------------------------------


def test_bools_cross_as_one_and_zero():
    check = checker([BOOL])
    assert check.encode({"b": True}, {})[0] == [1.0]
    assert check.encode({"b": False}, {})[0] == [0.0]


@pytest.mark.parametrize(("value", "kind"), [(1, "a number"), (0, "a number"), ("true", "a string"),
                                             (None, "null")])
def test_a_number_is_not_a_bool(value, kind):
    assert fault(checker([BOOL]), {"b": value}) == f'telemetry "b" must be true or false, got {kind}'


# -- enums ------------------------------------------------------------------------------------


def test_enums_cross_as_the_index_of_their_value():
    check = checker(context=[ENUM])
    assert [check.encode({}, {"mode": m})[1] for m in ENUM["values"]] == [[0.0], [1.0], [2.0]]


def test_a_value_not_in_the_enum_is_a_fault():
    assert (fault(checker(context=[ENUM]), {}, {"mode": "auto"})
            == 'context "mode" is not one of its values ["AUTO", "MANUAL", "MAINTENANCE"]')


@pytest.mark.parametrize(("value", "kind"), [(0, "a number"), (True, "a bool"), (["AUTO"], "an array")])
def test_an_enum_value_must_be_a_string(value, kind):
    assert (fault(checker(context=[ENUM]), {}, {"mode": value})
            == f'context "mode" must be one of its values (a string), got {kind}')


@pytest.mark.parametrize(("telemetry", "context", "received"), [
    ({}, {"mode": "hunter2-operator-pin"}, "hunter2-operator-pin"),
    ({"p": 987654.125}, {}, "987654"),
    ({"p": -31337}, {}, "31337"),
])
def test_the_received_value_is_never_in_the_message(telemetry, context, received):
    # It may be a masked field or a secret: the reason reaches the decision log and the logs in clear.
    message = fault(checker([NUMBER], [ENUM]), {"p": 1} | telemetry, {"mode": "AUTO"} | context)
    assert message.startswith('context "mode"' if context else 'telemetry "p"')
    assert received not in message


def test_long_declared_values_are_shortened_in_messages():
    long_enum = {"name": "mode", "type": "enum", "values": ["A" * 5000, "B"]}
    message = fault(checker(context=[long_enum]), {}, {"mode": "C"})
    assert len(message) < 200 and "..." in message


# -- absence, defaults, undeclared inputs -------------------------------------------------------


def test_absent_without_default_is_a_fault():
    assert fault(checker([NUMBER]), {}) == 'telemetry "p" is absent and has no default'
    assert fault(checker(context=[ENUM]), {}, {}) == 'context "mode" is absent and has no default'


def test_absent_with_default_takes_the_default_encoded():
    check = checker(
        [{"name": "t", "type": "number", "default": 20}, {"name": "b", "type": "bool", "default": True}],
        [{"name": "m", "type": "enum", "values": ["A", "B"], "default": "B"}],
    )
    assert check.encode({}, {}) == ([20.0, 1.0], [1.0])
    assert check.encode({"t": 5, "b": False}, {"m": "A"}) == ([5.0, 0.0], [0.0])


def test_a_present_but_wrong_value_does_not_fall_back_to_the_default():
    check = checker([{"name": "t", "type": "number", "default": 20, "max": 100}])
    assert fault(check, {"t": 101}) == 'telemetry "t" is above its maximum 100'
    assert fault(check, {"t": None}) == 'telemetry "t" must be a number, got null'


def test_undeclared_inputs_are_ignored():
    check = checker([NUMBER], [ENUM])
    assert check.encode({"p": 1, "extra": "junk", "mode": 99}, {"mode": "AUTO", "p": None}) == ([1.0], [0.0])


def test_values_come_in_declaration_order():
    check = checker([{"name": "z", "type": "number"}, {"name": "a", "type": "number"}])
    assert check.encode({"a": 1, "z": 2}, {})[0] == [2.0, 1.0]


def test_telemetry_and_context_are_separate_namespaces():
    check = checker([{"name": "v", "type": "number"}], [{"name": "v", "type": "bool"}])
    assert check.encode({"v": 3}, {"v": True}) == ([3.0], [1.0])
    assert fault(check, {"v": True}, {"v": True}) == 'telemetry "v" must be a number, got a bool'


@pytest.mark.parametrize(("telemetry", "kind"), [(None, "null"), ([], "an array"), ("x", "a string")])
def test_telemetry_must_be_an_object(telemetry, kind):
    assert fault(checker([NUMBER]), telemetry) == f"telemetry must be a JSON object, got {kind}"


def test_context_must_be_an_object():
    with pytest.raises(InputFault, match="context must be a JSON object, got an array"):
        checker().encode({}, [])


# -- context `now` ------------------------------------------------------------------------------

NOW = {"name": "now", "type": "number"}


def test_now_comes_from_the_injected_clock_when_not_passed():
    assert checker(context=[NOW], clock=lambda: 1234.5).encode({}, {}) == ([], [1234.5])


def test_a_caller_passed_now_wins_over_the_clock():
    def clock() -> float:
        raise AssertionError("the clock must not be read")

    assert checker(context=[NOW], clock=clock).encode({}, {"now": 99}) == ([], [99.0])


def test_the_clock_is_read_only_when_now_is_declared():
    calls = []
    checker([FREE], clock=lambda: calls.append(1) or 0.0).encode({"x": 1}, {})
    assert calls == []


def test_the_clock_value_is_checked_like_any_input():
    check = checker(context=[{"name": "now", "type": "number", "max": 100}], clock=lambda: 1_700_000_000.0)
    assert fault(check, {}) == 'context "now" is above its maximum 100'


def test_telemetry_now_is_not_supplied():
    assert fault(checker([NOW]), {}) == 'telemetry "now" is absent and has no default'


# -- declarations the runtime refuses at load time --------------------------------------------------


@pytest.mark.parametrize(("declaration", "why"), [
    ({"name": "x", "type": "string"}, "has type 'string'"),
    ({"name": "x", "type": "number", "min": 5, "max": 1}, "min > max"),
    ({"name": "x", "type": "number", "default": 300, "max": 250}, "default that its own declaration"),
    ({"name": "x", "type": "number", "default": True}, "default that its own declaration"),
    ({"name": "x", "type": "bool", "default": 1}, "default that its own declaration"),
    ({"name": "x", "type": "enum", "values": []}, "1 to 256 distinct strings"),
    ({"name": "x", "type": "enum", "values": ["a", "a"]}, "1 to 256 distinct strings"),
    ({"name": "x", "type": "enum", "values": [str(i) for i in range(257)]}, "1 to 256 distinct strings"),
    ({"name": "x", "type": "enum", "values": ["a"], "default": "b"}, "default that its own declaration"),
    ({"name": "x", "type": "bool", "min": 0}, "unknown fields ['min']"),
    ({"type": "bool"}, "not an input declaration with a name"),
])
def test_bad_declarations_refuse_the_module(declaration, why):
    with pytest.raises(MetaRefused, match=why.replace("[", r"\[").replace("]", r"\]")) as info:
        checker([declaration])
    assert "inputs.telemetry[0]" in str(info.value)


def test_a_name_declared_twice_refuses_the_module():
    with pytest.raises(MetaRefused, match='declares "x" a second time'):
        checker([FREE, FREE])
