"""Random valid SIP-001 policies and inputs for them (hypothesis strategies), shared by the
differential test (tests/scc/test_differential.py) and the analysis checks against it
(tests/scc/test_analysis_generated.py).

Policies have inputs of all three types with ranges and defaults, `let` chains, expression trees using
every operator, both combine modes and logs; inputs are mostly valid, some missing, mistyped or out
of range. Numbers lean on IEEE corners: zeros for division by zero, ±1e308 and DBL_MAX whose products
overflow to ±inf, so that inf - inf and 0 * inf give NaN.
"""

from __future__ import annotations

import math

from hypothesis import strategies as st

# Values that exercise IEEE corners: zeros (division), huge magnitudes (overflow to inf, then
# inf - inf and 0 * inf give NaN), subnormals, and ordinary plant numbers.
SPECIAL_NUMBERS = (0, 1, -1, 2, 0.5, -2.5, 3.75, 10, 100, 1e308, -1e308, 1.7976931348623157e308, 5e-324,
                   1e-300)
# Ready-made ±inf (literals must be finite): with them inf - inf and 0 * inf, the NaN faults, are common.
OVERFLOWS = ({"mul": [1e308, 10]}, {"mul": [-1e308, 10]}, {"add": [1.7976931348623157e308, 1e292]})
# Two inputs declared with the same list can be compared with each other (SIP-001 §4 eq/ne).
ENUM_LISTS = (("A", "B"), ("AUTO", "MANUAL", "MAINTENANCE"), ("ON",))
VERDICTS = ("DENY", "ALLOW", "WARN", "HALT")
BOOL_OPS = ("eq", "ne", "lt", "le", "gt", "ge", "between", "in", "all", "any", "not", "if")
MAX_DEPTH = 4
INPUT_SETS_PER_POLICY = 6

finite = st.floats(allow_nan=False, allow_infinity=False)
number_literal = st.one_of(st.sampled_from(SPECIAL_NUMBERS), finite, st.integers(-1000, 1000))

# ---------------------------------------------------------------------------------------- declarations


@st.composite
def number_decl(draw):
    decl: dict = {"type": "number"}
    if draw(st.booleans()):
        decl["min"], decl["max"] = sorted((draw(number_literal), draw(number_literal)))
        if draw(st.booleans()):
            decl["default"] = draw(st.sampled_from((decl["min"], decl["max"])))
    elif draw(st.integers(0, 3)) == 0:
        decl["default"] = draw(number_literal)
    if draw(st.integers(0, 3)) == 0:
        decl["unit"] = "bar"
    return decl


@st.composite
def bool_decl(draw):
    decl: dict = {"type": "bool"}
    if draw(st.integers(0, 3)) == 0:
        decl["default"] = draw(st.booleans())
    return decl


@st.composite
def enum_decl(draw):
    decl: dict = {"type": "enum", "values": list(draw(st.sampled_from(ENUM_LISTS)))}
    if draw(st.integers(0, 3)) == 0:
        decl["default"] = draw(st.sampled_from(decl["values"]))
    return decl


# ---------------------------------------------------------------------------------------- expressions


class Scope:
    """What an expression may refer to: the declared inputs and the definitions written so far."""

    def __init__(self, inputs: dict[tuple[str, str], dict]) -> None:
        self.inputs = inputs
        self.lets: dict[str, str] = {}  # name -> "number" | "bool"

    def inputs_of(self, kind: str) -> list[tuple[str, str]]:
        return [key for key, decl in self.inputs.items() if decl["type"] == kind]

    def lets_of(self, kind: str) -> list[str]:
        return [name for name, k in self.lets.items() if k == kind]


def _input(key: tuple[str, str]) -> dict:
    return {key[0]: key[1]}


@st.composite
def leaf(draw, scope: Scope, kind: str):
    options = [number_literal, st.sampled_from(OVERFLOWS)] if kind == "number" else [st.booleans()]
    if scope.inputs_of(kind):
        options += [st.sampled_from(scope.inputs_of(kind)).map(_input)] * 3
    if scope.lets_of(kind):
        options += [st.sampled_from(scope.lets_of(kind)).map(lambda name: {"ref": name})] * 2
    return draw(st.one_of(options))


@st.composite
def number_expr(draw, scope: Scope, depth: int = 0):
    if depth >= MAX_DEPTH or draw(st.integers(0, 3)) == 0:
        return draw(leaf(scope, "number"))
    num = lambda: number_expr(scope, depth + 1)  # noqa: E731
    op = draw(st.sampled_from(("add", "mul", "min", "max", "sub", "div", "div", "abs", "neg", "if")))
    if op in ("add", "mul", "min", "max"):
        return {op: draw(st.lists(num(), min_size=2, max_size=4))}
    if op in ("sub", "div"):
        return {op: [draw(num()), draw(num())]}
    if op in ("abs", "neg"):
        return {op: draw(num())}
    return {"if": [draw(bool_expr(scope, depth + 1)), draw(num()), draw(num())]}


@st.composite
def bool_expr(draw, scope: Scope, depth: int = 0):
    if depth >= MAX_DEPTH or draw(st.integers(0, 3)) == 0:
        return draw(leaf(scope, "bool"))
    num = lambda: number_expr(scope, depth + 1)  # noqa: E731
    boolean = lambda: bool_expr(scope, depth + 1)  # noqa: E731
    enums = scope.inputs_of("enum")
    op = draw(st.sampled_from(BOOL_OPS))
    if op in ("eq", "ne"):
        shape = draw(st.sampled_from(["number", "bool"] + ["enum"] * 2 * bool(enums)))
        if shape == "enum":
            key = draw(st.sampled_from(enums))
            values = scope.inputs[key]["values"]
            if draw(st.booleans()):  # two enum inputs declared with the same values
                peers = [k for k in enums if scope.inputs[k]["values"] == values]
                return {op: [_input(key), _input(draw(st.sampled_from(peers)))]}
            operands = [_input(key), draw(st.sampled_from(values))]
            return {op: operands if draw(st.booleans()) else operands[::-1]}
        side = num if shape == "number" else boolean
        return {op: [draw(side()), draw(side())]}
    if op in ("lt", "le", "gt", "ge"):
        return {op: [draw(num()), draw(num())]}
    if op == "between":
        return {op: [draw(num()), draw(num()), draw(num())]}
    if op == "in":
        if enums and draw(st.booleans()):
            key = draw(st.sampled_from(enums))
            values = scope.inputs[key]["values"]
            return {op: [_input(key), draw(st.lists(st.sampled_from(values), min_size=1, max_size=3))]}
        return {op: [draw(num()), draw(st.lists(number_literal, min_size=1, max_size=4))]}
    if op in ("all", "any"):
        return {op: draw(st.lists(boolean(), min_size=1, max_size=4))}
    if op == "not":
        return {op: draw(boolean())}
    return {"if": [draw(boolean()), draw(boolean()), draw(boolean())]}


# ---------------------------------------------------------------------------------------- policies


@st.composite
def policies(draw):
    declared: dict[str, dict] = {"telemetry": {}, "context": {}}
    for source, prefix, most in (("telemetry", "t", 4), ("context", "c", 3)):
        for i in range(draw(st.integers(0, most))):
            declared[source][f"{prefix}{i}"] = draw(st.one_of(number_decl(), bool_decl(), enum_decl()))
    scope = Scope({(s, n): d for s, decls in declared.items() for n, d in decls.items()})
    policy: dict = {"sip": "001", "policy": "differential", "version": "1.0.0",
                    "inputs": {k: v for k, v in declared.items() if v or draw(st.booleans())}}
    lets = {}
    for i in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(("number", "bool")))
        lets[f"l{i}"] = draw(number_expr(scope) if kind == "number" else bool_expr(scope))
        scope.lets[f"l{i}"] = kind
    if lets:
        policy["let"] = lets
    combine = draw(st.sampled_from((None, "first-match", "most-severe")))
    if combine:
        policy["combine"] = combine
    policy["rules"] = []
    for i in range(draw(st.integers(1, 6))):
        rule = {"id": f"r{i}", "when": draw(bool_expr(scope)), "then": draw(st.sampled_from(VERDICTS))}
        if draw(st.booleans()):
            rule["log"] = {"level": draw(st.sampled_from(("info", "warn", "error"))), "message": f"r{i} held"}
        policy["rules"].append(rule)
    default = draw(st.sampled_from((None, *VERDICTS)))
    if default:
        policy["default"] = default
    return policy


# ---------------------------------------------------------------------------------------- inputs

_ABSENT = object()


@st.composite
def input_value(draw, decl: dict):
    """Mostly a valid value; 1 in 20 absent, mistyped or out of range. (Hypothesis favours small
    integers, so the rare cases sit at the top of the roll.)"""
    roll = draw(st.integers(0, 59))
    if roll == 59:
        return _ABSENT
    if roll == 58:
        return draw(st.sampled_from(["x", True, 1, None, "A", 2.5, -1e308]))
    if decl["type"] == "bool":
        return draw(st.booleans())
    if decl["type"] == "enum":
        return draw(st.sampled_from(decl["values"]))
    if "min" not in decl:
        return draw(st.one_of(st.sampled_from(SPECIAL_NUMBERS), finite))
    lo, hi = decl["min"], decl["max"]
    outside = [v for v in (lo - 1, hi + 1, lo * 2 - 1, hi * 2 + 1) if math.isfinite(v) and not lo <= v <= hi]
    if roll == 57 and outside:
        return draw(st.sampled_from(outside))
    inside = [v for v in SPECIAL_NUMBERS if lo <= v <= hi]
    between = st.floats(lo, hi) if lo < hi else st.just(hi)  # (0, -0.0) is a valid range of one value
    return draw(st.one_of(st.sampled_from([lo, hi, *inside]), between))


@st.composite
def inputs_for(draw, policy: dict):
    out = []
    for source in ("telemetry", "context"):
        values = {}
        for name, decl in policy["inputs"].get(source, {}).items():
            value = draw(input_value(decl))
            if value is not _ABSENT:
                values[name] = value
        out.append(values)
    return tuple(out)


@st.composite
def scenarios(draw):
    policy = draw(policies())
    return policy, draw(st.lists(inputs_for(policy), min_size=INPUT_SETS_PER_POLICY,
                                 max_size=INPUT_SETS_PER_POLICY))
