"""The relaxed encoding: doubles as real numbers within rounding-error bounds (docs/analysis.md).

Its only use is proof. Each arithmetic step of the module (an f64 add, sub, mul or div, round-nearest-
even) is a fresh real `v` with the exact real result `r` of its operands and

    |v - r| <= 2^-53 |r|
    or |r| < 2^-1022 and |v - r| <= 2^-1075       (underflow, mul and div: add and sub are exact there)
    or |r| >= MAX and |v| > MAX with r's sign     (overflow: a real beyond MAX stands for an infinity)

and when an operand may be infinite (it is beyond MAX), the step's value is free and its NaN fault
possible. Inputs are reals in their declared ranges; comparisons, min, max, abs, neg, if and
membership are exact on reals. For every run of the module there is an assignment of this encoding
with every finite step's `v` equal to the double the module computed and every infinity a real beyond
MAX of its sign, and then every condition, fault and verdict comes out the same. So a question with
no answer here has none for the module either ("none" is a proof); an answer here is only a
candidate, which the exact encoding must confirm (scc/analysis/solve.py). Between two policies'
steps that share an operand (scc diff), the monotonicity of rounding is stated as well
(`_monotone`). The problems are real arithmetic (linear when the policy multiplies and divides only
by literals), which z3 decides far faster than bit-blasted 64-bit floating point.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import z3

from scc.findings import Range

REAL = z3.RealSort()
PLAIN = "plain real arithmetic"  # an InputSpace sort: steps unrounded (candidates only, never proofs)
MAX = z3.RealVal(Fraction(2 ** 1024 - 2 ** 971))  # the largest double
UNIT = z3.RealVal(Fraction(1, 2 ** 53))  # unit roundoff of round-nearest, binary64
NORMAL = z3.RealVal(Fraction(1, 2 ** 1022))  # the smallest normal double
TINY = z3.RealVal(Fraction(1, 2 ** 1075))  # half the smallest subnormal: an underflow's error at most
# A sum or difference of doubles that is below NORMAL is exact (IEEE 754: no underflow error).
MAY_UNDERFLOW = ("fp.mul", "fp.div")


def _abs(x: z3.ArithRef) -> z3.ArithRef:
    return z3.If(x >= 0, x, -x)


def beyond(x: z3.ArithRef) -> z3.BoolRef:
    """`x` stands for an infinity."""
    return z3.Or(x > MAX, x < -MAX)


def nearest_double(value: Any) -> float:
    """A model's real value as the nearest double (algebraic numbers approximated first)."""
    if z3.is_algebraic_value(value):
        value = value.approx(40)
    return float(Fraction(value.numerator_as_long(), value.denominator_as_long()))


def _finite(r: Range) -> bool:
    return math.isfinite(r.lo) and math.isfinite(r.hi)


def _sign(r: Range) -> int:
    """+1: every value in `r` is >= 0; -1: every value <= 0; 0: either."""
    return 1 if r.lo >= 0 else -1 if r.hi <= 0 else 0


def _result_sign(smt: str, a: Range, b: Range) -> int:
    """The sign of the exact result of `a op b` (as `_sign`), from the operands' signs."""
    sa, sb = _sign(a), _sign(b)
    if smt == "fp.sub":
        sb = -sb
    if smt in ("fp.add", "fp.sub"):
        return sa if sa == sb else 0
    return sa * sb


def _magnitude(x: z3.ArithRef, sign: int) -> z3.ArithRef:
    """|x| for a value of sign `sign` (as `_sign`: a case split only when it is open)."""
    return x if sign > 0 else -x if sign < 0 else _abs(x)


def _opposite(a: z3.ArithRef, b: z3.ArithRef) -> z3.BoolRef:
    return (a > 0) != (b > 0)


# When a step gives NaN, in terms of its operands (an infinity is a real beyond MAX; the encoding's
# float counterpart is encode.INVALID): inf - inf, 0 x inf, inf / inf.
INVALID: dict[str, Callable[[Any, Any], z3.BoolRef]] = {
    "fp.add": lambda a, b: z3.And(beyond(a), beyond(b), _opposite(a, b)),
    "fp.sub": lambda a, b: z3.And(beyond(a), beyond(b), z3.Not(_opposite(a, b))),
    "fp.mul": lambda a, b: z3.Or(z3.And(a == 0, beyond(b)), z3.And(b == 0, beyond(a))),
    "fp.div": lambda a, b: z3.And(beyond(a), beyond(b)),
}

# The steps the module rounds, each with its exact real result.
ROUNDED: dict[str, Callable[[Any, Any], Any]] = {
    "fp.add": lambda a, b: a + b, "fp.sub": lambda a, b: a - b,
    "fp.mul": lambda a, b: a * b, "fp.div": lambda a, b: a / b,
}


def _equal(a: Any, b: Any) -> z3.BoolRef:
    return a == b


# The z3 function for each name in the operator table's `smt` column, on reals (encode.SMT on floats).
SMT: dict[str, Callable[..., Any]] = {
    "eq": _equal,
    "ne": lambda a, b: z3.Not(_equal(a, b)),
    "fp.lt": lambda a, b: a < b, "fp.leq": lambda a, b: a <= b,
    "fp.gt": lambda a, b: a > b, "fp.geq": lambda a, b: a >= b,
    "between": lambda x, lo, hi: z3.And(lo <= x, x <= hi),
    "and": z3.And, "or": z3.Or, "not": z3.Not, "ite": z3.If,
    "wasm.min": lambda a, b: z3.If(a <= b, a, b), "wasm.max": lambda a, b: z3.If(a >= b, a, b),
    "fp.abs": _abs, "fp.neg": lambda a: -a,
}


@dataclass(frozen=True)
class _Step:
    smt: str
    a: Any
    b: Any
    ranges: tuple[Range, Range]
    value: z3.ArithRef
    owner: object  # the policy encoding that made it


# How each operation's result moves with each operand (+1: up, -1: down), where it is monotonic.
_DIRECTION = {"fp.add": (1, 1), "fp.sub": (1, -1), "fp.mul": (1, 1), "fp.div": (1, -1)}


def _monotone(one: _Step, two: _Step) -> list[z3.BoolRef]:
    """Rounding is monotonic, and so is each operation in each operand (given signs): where two steps
    of one operation share an operand and the others are ordered, their doubles are ordered alike.
    Only for finite operands (an infinity's stand-in is any real beyond MAX), for a product of
    non-negative operands, and for a division of a non-negative number by a positive one (a zero
    divisor faults). Asked only between two policies' steps (scc diff: an old and a new computation
    of the same thing), where the error bounds alone lose that order."""
    if one.smt != two.smt or not (one.a.eq(two.a) or one.b.eq(two.b)):
        return []
    signs = [_sign(r) for step in (one, two) for r in step.ranges]
    finite = [z3.Not(beyond(x)) for step in (one, two)
              for x, r in zip((step.a, step.b), step.ranges, strict=True) if not _finite(r)]
    if one.smt == "fp.mul" and not all(sign > 0 for sign in signs):
        return []
    if one.smt == "fp.div":
        if not all(sign > 0 for sign in signs):
            return []
        finite += [one.b > 0, two.b > 0]
    direction_a, direction_b = _DIRECTION[one.smt]

    def ordered(x: Any, y: Any, direction: int) -> z3.BoolRef:
        return x <= y if direction > 0 else x >= y

    return [z3.Implies(z3.And(*finite, ordered(low.a, high.a, direction_a),
                              ordered(low.b, high.b, direction_b)), low.value <= high.value)
            for low, high in ((one, two), (two, one))]


class RelaxedArithmetic:
    """Numbers, enum indices and input shapes as reals (see the module's text)."""

    sort = REAL
    smt = SMT
    invalid = INVALID

    def __init__(self, rounded: bool = True) -> None:
        # rounded=False: each step is its exact real result. Not an over-approximation of the module
        # (0.1 + 0.2 > 0.3 is false there), so such a problem only proposes candidates, which the
        # exact encoding confirms or not: scc diff of nonlinear policies asks it first, as its models
        # come in milliseconds where the rounded problem's take up to seconds.
        self.rounded = rounded
        self.steps: dict[tuple[str, int, int], z3.ArithRef] = {}
        self.made: list[_Step] = []
        self.nonlinear = False  # a product or quotient of two unknowns was encoded

    def number(self, value: float) -> z3.ArithRef:
        return z3.RealVal(Fraction(value))

    def variable(self, label: str) -> tuple[z3.ArithRef, list[z3.BoolRef]]:
        var = z3.Real(label)
        return var, [var >= -MAX, var <= MAX]

    def choice(self, label: str, bits: int) -> z3.ArithRef:
        return z3.Real(label)

    def choice_value(self, index: int, bits: int) -> z3.ArithRef:
        return z3.RealVal(index)

    def below(self, var: z3.ArithRef, count: int) -> z3.BoolRef:
        return z3.Or([var == i for i in range(count)])

    def is_zero(self, value: z3.ArithRef) -> z3.BoolRef:
        return value == 0

    def step(self, smt: str, a: Any, b: Any, ranges: tuple[Range, Range], result: Range,
             owner: object = None) -> tuple[z3.ArithRef, list[z3.BoolRef]]:
        """One arithmetic step's value and what relates it to its operands (min and max are exact).
        The operands' ranges (scc/findings.py, sound for the module's doubles) give signs, so most
        magnitudes need no case split, and a division is related to its operands by multiplying out."""
        if smt not in ROUNDED:
            return SMT[smt](a, b), []
        if not self.rounded:
            return ROUNDED[smt](a, b), []
        # The module computes the same double from the same operands: one value per distinct step,
        # so two policies (scc diff) that share a computation cannot be given different roundings.
        key = (smt, a.get_id(), b.get_id())
        if key in self.steps:
            return self.steps[key], []
        value = self.steps[key] = z3.FreshReal("step")
        made = _Step(smt, a, b, ranges, value, owner)
        if smt in MAY_UNDERFLOW and not (z3.is_rational_value(a) or z3.is_rational_value(b)):
            self.nonlinear = True
        monotone = [axiom for other in self.made if other.owner is not owner
                    for axiom in _monotone(other, made)]
        self.made.append(made)
        if smt == "fp.div" and _sign(ranges[1]):
            # |v - a/b| <= u |a/b|  <=>  |v b - a| <= u |a|   (b != 0)
            size_a, size_b = _magnitude(a, _sign(ranges[0])), _magnitude(b, _sign(ranges[1]))
            error, slack, tiny_slack = value * b - a, UNIT * size_a, TINY * size_b
            exact_size, tiny = size_a >= MAX * size_b, size_a < NORMAL * size_b
            sign = (a > 0) == (b > 0)
        else:
            exact = ROUNDED[smt](a, b)
            size = _magnitude(exact, _result_sign(smt, *ranges))
            error, slack, tiny_slack = value - exact, UNIT * size, TINY
            exact_size, tiny = size >= MAX, size < NORMAL
            sign = exact > 0
        options = [z3.And(error <= slack, -error <= slack)]
        if smt in MAY_UNDERFLOW:  # below the normal range the error is absolute, half a subnormal's step
            options.append(z3.And(tiny, error <= tiny_slack, -error <= tiny_slack))
        if not _finite(result):
            options.append(z3.And(exact_size, beyond(value), (value > 0) == sign))
        options += [beyond(x) for x, r in zip((a, b), ranges, strict=True) if not _finite(r)]
        if smt == "fp.div" and ranges[1].lo <= 0 <= ranges[1].hi:
            options.append(b == 0)  # the division faults before it is made (docs/abi.md)
        within = [value >= self.number(result.lo), value <= self.number(result.hi)] if _finite(result) else []
        return value, [z3.Or(options), *within, *monotone]

    def value_of(self, model: Any, term: Any) -> float:
        return nearest_double(model.eval(term, model_completion=True))

    def choice_of(self, model: Any, term: Any) -> int:
        return int(nearest_double(model.eval(term, model_completion=True)))
