"""A checked policy as z3 terms, with the semantics of the compiled module.

Numbers are IEEE-754 doubles in z3's floating-point theory (Float64, round-nearest-even): the same
operations WebAssembly's f64 performs, so the encoding is exact, not an approximation. The same
walk builds the relaxed encoding over the reals (scc/analysis/relaxed.py: every run of the module is
one of its solutions, so its "none" is a proof too) and a coarse one for candidates: an InputSpace's
`arithmetic` says how numbers are encoded. Each operator is encoded from its row in
scc/operators.py: `evaluation` says which operands run and when, `faults` which faults it raises,
`smt` the function one application is.

Every expression gives a value and a `fault` condition (evaluating it faults). Every node is also
given the condition under which the evaluation *reaches* it, so each fault site gets the condition
"reached, operands fine, and this operator faults": the input that reaches it is a model of that.
A `let` definition is encoded once, where it is written; it is reached when any use of it is, and its
sites fault when it is reached and faults (it is evaluated at its first use and remembered, so its
value and its fault do not depend on which use comes first).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import z3

from axon.abi import Fault, Verdict
from scc.analysis import relaxed
from scc.ast import Boolean, Call, Expr, InputDecl, InputRef, LetRef, Number, Policy, Text
from scc.errors import unexpected
from scc.findings import Range, fold_range, number_ranges
from scc.operators import OPERATORS, Evaluation, Kind

DOUBLE = z3.Float64()
# Doubles' exponent range with a 12-bit significand: where a question's answer is an example, a model
# in this sort is found much faster and is then checked exactly, as doubles (scc/analysis/solve.py).
COARSE = z3.FPSort(11, 12)
RNE = z3.RNE()
TRUE, FALSE = z3.BoolVal(True), z3.BoolVal(False)
ENUM_BITS = 16  # an enum has at most 256 values (SIP-001 §3)
# SIP-001 §5: severity, highest first.
SEVERITY = (Verdict.HALT, Verdict.DENY, Verdict.WARN, Verdict.ALLOW)


def double(value: float) -> z3.FPRef:
    """The double `value` exactly (by its bits: -0.0 stays negative)."""
    bits = struct.unpack("<Q", struct.pack("<d", value))[0]
    return z3.simplify(z3.fpBVToFP(z3.BitVecVal(bits, 64), DOUBLE))


def model_double(model: Any, term: Any) -> float:
    """The double a model gives `term`: a float term's value, or a real's nearest double (relaxed)."""
    if z3.is_real(term):
        return relaxed.nearest_double(model.eval(term, model_completion=True))
    if term.sort() == DOUBLE:
        value = model.eval(term, model_completion=True)
        if z3.is_fp_value(value):  # read off its fields: no term to build and simplify
            bits = int(value.sign()) << 63 | value.exponent_as_long(True) << 52
            bits |= value.significand_as_long()
            return struct.unpack("<d", struct.pack("<Q", bits))[0]
    if term.sort() != DOUBLE:  # a coarse space's number: widening to a double is exact
        term = z3.fpToFP(RNE, term, DOUBLE)
    bits = model.eval(z3.fpToIEEEBV(term), model_completion=True).as_long()
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


def round_numbers(value: float) -> list[float]:
    """Rounder candidates for one number, roundest first, each different from the last."""
    if not math.isfinite(value):
        return []
    out: list[float] = []
    for candidate in (0.0 if abs(value) < 1e-6 else round(value), math.floor(value), math.ceil(value),
                      round(value, 1), round(value, 2), round(value, 3)):
        candidate = float(candidate)
        same = candidate == value and math.copysign(1, candidate) == math.copysign(1, value)
        if candidate not in out and not same:
            out.append(candidate)
    return out


def _wasm_min(a: z3.FPRef, b: z3.FPRef) -> z3.FPRef:
    # f64.min: -0 is below +0 (fp.min may answer either); NaN never gets here (it faults first).
    return z3.If(z3.fpLT(a, b), a, z3.If(z3.fpLT(b, a), b, z3.If(z3.fpIsNegative(a), a, b)))


def _wasm_max(a: z3.FPRef, b: z3.FPRef) -> z3.FPRef:
    return z3.If(z3.fpGT(a, b), a, z3.If(z3.fpGT(b, a), b, z3.If(z3.fpIsNegative(a), b, a)))


def _infinities(a: z3.FPRef, b: z3.FPRef, *, same_sign: bool) -> z3.BoolRef:
    signs = z3.fpIsNegative(a) == z3.fpIsNegative(b)
    return z3.And(z3.fpIsInf(a), z3.fpIsInf(b), signs if same_sign else z3.Not(signs))


def _zero_and_inf(a: z3.FPRef, b: z3.FPRef) -> z3.BoolRef:
    return z3.And(z3.fpIsZero(a), z3.fpIsInf(b))


# When an arithmetic step gives NaN (IEEE 754 §7.2, invalid operation), said without computing the
# result, so the solver need not build a multiplier or divider to see that a step cannot be NaN.
# Operands are never NaN here (a NaN faults where it is made); a zero divisor faults before the
# division (docs/abi.md), so 0/0 never gets here either.
INVALID: dict[str, Callable[[Any, Any], z3.BoolRef]] = {  # by the `smt` name
    "fp.add": lambda a, b: _infinities(a, b, same_sign=False),
    "fp.sub": lambda a, b: _infinities(a, b, same_sign=True),
    "fp.mul": lambda a, b: z3.Or(_zero_and_inf(a, b), _zero_and_inf(b, a)),
    "fp.div": lambda a, b: z3.And(z3.fpIsInf(a), z3.fpIsInf(b)),
}


def _finite(r: Range) -> bool:
    return math.isfinite(r.lo) and math.isfinite(r.hi)


# Whether a step can be an invalid operation at all, from its operands' ranges (scc/findings.py: sound
# for IEEE arithmetic): when it cannot, its NaN condition is left out, and with it the need to
# bit-blast the arithmetic that would show it false.
MAY_BE_INVALID: dict[str, Callable[[Range, Range], bool]] = {
    "fp.add": lambda a, b: not (_finite(a) or _finite(b)),
    "fp.sub": lambda a, b: not (_finite(a) or _finite(b)),
    "fp.mul": lambda a, b: not (_finite(a) and _finite(b)),
    "fp.div": lambda a, b: not (_finite(a) or _finite(b)),
}


def _equal(a: Any, b: Any) -> z3.BoolRef:
    return z3.fpEQ(a, b) if z3.is_fp(a) else a == b


# The z3 function for each name in the operator table's `smt` column (scc/operators.py).
SMT: dict[str, Callable[..., Any]] = {
    "eq": _equal,
    "ne": lambda a, b: z3.Not(_equal(a, b)),
    "fp.lt": z3.fpLT, "fp.leq": z3.fpLEQ, "fp.gt": z3.fpGT, "fp.geq": z3.fpGEQ,
    "between": lambda x, lo, hi: z3.And(z3.fpLEQ(lo, x), z3.fpLEQ(x, hi)),
    "and": z3.And, "or": z3.Or, "not": z3.Not, "ite": z3.If,
    "fp.add": lambda a, b: z3.fpAdd(RNE, a, b),
    "fp.sub": lambda a, b: z3.fpSub(RNE, a, b),
    "fp.mul": lambda a, b: z3.fpMul(RNE, a, b),
    "fp.div": lambda a, b: z3.fpDiv(RNE, a, b),
    "wasm.min": _wasm_min, "wasm.max": _wasm_max,
    "fp.abs": z3.fpAbs, "fp.neg": z3.fpNeg,
}


class FloatArithmetic:
    """Numbers as z3 floats of `sort` (DOUBLE: exact; COARSE: candidates), enum indices and input
    shapes as bit-vectors, so a problem is QF_FPBV (scc/analysis/solve.py)."""

    smt = SMT
    invalid = INVALID

    def __init__(self, sort: z3.FPSortRef) -> None:
        self.sort = sort

    def number(self, value: float) -> z3.FPRef:
        exact = double(value)
        return exact if self.sort == DOUBLE else z3.simplify(z3.fpToFP(RNE, exact, self.sort))

    def variable(self, label: str) -> tuple[z3.FPRef, list[z3.BoolRef]]:
        var = z3.FP(label, self.sort)
        return var, [z3.Not(z3.fpIsNaN(var)), z3.Not(z3.fpIsInf(var))]

    def choice(self, label: str, bits: int) -> z3.BitVecRef:
        return z3.BitVec(label, bits)

    def choice_value(self, index: int, bits: int) -> z3.BitVecRef:
        return z3.BitVecVal(index, bits)

    def below(self, var: z3.BitVecRef, count: int) -> z3.BoolRef:
        return z3.ULT(var, count)

    def is_zero(self, value: z3.FPRef) -> z3.BoolRef:
        return z3.fpIsZero(value)

    def step(self, smt: str, a: Any, b: Any, ranges: tuple[Range, Range], result: Range,
             owner: object = None) -> tuple[Any, list[z3.BoolRef]]:
        return SMT[smt](a, b), []

    def value_of(self, model: Any, term: Any) -> float:
        return model_double(model, term)

    def choice_of(self, model: Any, term: Any) -> int:
        return model.eval(term, model_completion=True).as_long()


def arithmetic(sort: Any) -> FloatArithmetic | relaxed.RelaxedArithmetic:
    """The encoding of numbers for `sort`: DOUBLE, COARSE, relaxed.REAL or relaxed.PLAIN."""
    if sort is relaxed.PLAIN:
        return relaxed.RelaxedArithmetic(rounded=False)
    return relaxed.RelaxedArithmetic() if sort == relaxed.REAL else FloatArithmetic(sort)


# ------------------------------------------------------------------------------------------ inputs

ABSENT, SHAPES = 0, {Kind.NUMBER: 1, Kind.BOOL: 2, Kind.ENUM: 3}
# A bit-vector, not an integer: a problem of floats, bit-vectors and Booleans only is bit-blasted
# straight to SAT (scc/analysis/solve.py).
SHAPE_BITS = 2


@dataclass
class Slot:
    """One input name (group, name) and the z3 variables a reading's value for it can be."""

    group: str
    name: str
    kinds: set[Kind] = field(default_factory=set)
    values: tuple[str, ...] = ()  # an enum's values: the union over the policies that declare it
    variables: dict[Kind, Any] = field(default_factory=dict)
    shape: z3.BitVecRef | None = None  # absent/number/bool/enum, when a reading may leave it out


class InputSpace:
    """The inputs a reading can carry. With `presence`, a value may be absent (or, where two
    policies declare one name with different types, of either type), for `scc diff`; without it
    every declared input is present with its declared type, for `scc analyze` (a default is one of
    the valid values, so leaving an input out decides nothing new)."""

    def __init__(self, policies: list[Policy], *, presence: bool, sort: Any = DOUBLE) -> None:
        self.presence = presence
        # DOUBLE; COARSE to look for candidates fast; relaxed.REAL for fast proofs (scc/analysis/solve.py)
        self.sort = sort
        self.arithmetic = arithmetic(sort)
        self.slots: dict[tuple[str, str], Slot] = {}
        for policy in policies:
            for decl in policy.inputs():
                slot = self.slots.setdefault((decl.group, decl.name), Slot(decl.group, decl.name))
                slot.kinds.add(decl.kind)
                if decl.kind is Kind.ENUM:
                    slot.values = tuple(sorted(set(slot.values) | set(decl.values)))
        self.base: list[z3.BoolRef] = []  # what every reading satisfies
        for (group, name), slot in sorted(self.slots.items()):
            label = f"{group}.{name}"
            for kind in sorted(slot.kinds, key=lambda k: k.value):
                suffix = "" if len(slot.kinds) == 1 else f"#{kind.value}"
                if kind is Kind.NUMBER:
                    var, finite = self.arithmetic.variable(label + suffix)
                    self.base += finite
                elif kind is Kind.BOOL:
                    var = z3.Bool(label + suffix)
                else:  # an enum value: its index in the slot's values
                    var = self.arithmetic.choice(label + suffix, ENUM_BITS)
                    self.base.append(self.arithmetic.below(var, len(slot.values)))
                slot.variables[kind] = var
            if presence:
                slot.shape = self.arithmetic.choice(label + "#shape", SHAPE_BITS)
                self.base.append(z3.Or([slot.shape == ABSENT]
                                       + [slot.shape == SHAPES[k] for k in slot.kinds]))

    def number(self, value: float) -> Any:
        return self.arithmetic.number(value)

    def enum_index(self, slot: Slot, text: str) -> Any:
        return self.arithmetic.choice_value(slot.values.index(text), ENUM_BITS)

    def term(self, decl: InputDecl) -> tuple[z3.BoolRef, Any]:
        """(the reading's value is valid for `decl`, the value the policy sees)."""
        slot = self.slots[(decl.group, decl.name)]
        var = slot.variables[decl.kind]
        if decl.kind is Kind.NUMBER:
            at_least, at_most = self.arithmetic.smt["fp.geq"], self.arithmetic.smt["fp.leq"]
            limits = ([at_least(var, self.number(float(decl.min)))] if decl.min is not None else []) + (
                [at_most(var, self.number(float(decl.max)))] if decl.max is not None else [])
            valid = z3.And(limits) if limits else TRUE
        elif decl.kind is Kind.ENUM:
            valid = z3.Or([var == slot.values.index(v) for v in decl.values])
        else:
            valid = TRUE
        if slot.shape is None:
            return valid, var
        sent = z3.And(slot.shape == SHAPES[decl.kind], valid)
        if decl.default is None:
            return sent, var
        default = (self.number(float(decl.default)) if decl.kind is Kind.NUMBER
                   else z3.BoolVal(decl.default) if decl.kind is Kind.BOOL
                   else self.enum_index(slot, decl.default))
        absent = slot.shape == ABSENT
        return z3.Or(absent, sent), z3.If(absent, default, var)

    def rounder(self, model: z3.ModelRef) -> list[list[z3.BoolRef]]:
        """For each number variable, rounder values near the model's (scc/analysis/solve.py)."""
        out = []
        for _, slot in sorted(self.slots.items()):
            var = slot.variables.get(Kind.NUMBER)
            if var is not None:
                out.append([z3.fpEQ(var, double(c)) for c in round_numbers(model_double(model, var))])
        return out

    def values_from(self, other: InputSpace, model: Any) -> list[tuple[Any, Any]]:
        """(variable, value) pairs of this space for what `model` says about `other`'s variables
        (`other`'s numbers rounded to the nearest double, this space's sort: DOUBLE)."""
        pairs: list[tuple[Any, Any]] = []
        for key, slot in self.slots.items():
            theirs = other.slots[key]
            if slot.shape is not None:
                shape = other.arithmetic.choice_of(model, theirs.shape)
                pairs.append((slot.shape, self.arithmetic.choice_value(shape, SHAPE_BITS)))
            for kind, var in slot.variables.items():
                if kind is Kind.NUMBER:
                    pairs.append((var, double(other.arithmetic.value_of(model, theirs.variables[kind]))))
                elif kind is Kind.ENUM:
                    index = other.arithmetic.choice_of(model, theirs.variables[kind])
                    pairs.append((var, self.arithmetic.choice_value(index, ENUM_BITS)))
                else:
                    pairs.append((var, model.eval(theirs.variables[kind], model_completion=True)))
        return pairs

    def reading(self, model: z3.ModelRef) -> dict[str, dict[str, Any]]:
        """The reading a model describes: {"telemetry": {...}, "context": {...}}."""
        out: dict[str, dict[str, Any]] = {"telemetry": {}, "context": {}}
        for (group, name), slot in sorted(self.slots.items()):
            kind = next(iter(sorted(slot.kinds, key=lambda k: k.value)))
            if slot.shape is not None:
                shape = model.eval(slot.shape, model_completion=True).as_long()
                if shape == ABSENT:
                    continue
                kind = next(k for k, code in SHAPES.items() if code == shape)
            var = slot.variables[kind]
            if kind is Kind.NUMBER:
                value: Any = model_double(model, var)
            elif kind is Kind.BOOL:
                value = z3.is_true(model.eval(var, model_completion=True))
            else:
                value = slot.values[model.eval(var, model_completion=True).as_long()]
            out[group][name] = value
        return out


# ------------------------------------------------------------------------------------------ policies


@dataclass(frozen=True)
class SiteFault:
    """An operator that can fault, and when it does: `condition` is reached-and-faults-here."""

    site: str
    kind: Fault
    condition: z3.BoolRef


@dataclass
class _Sink:
    faults: list[tuple[str, Fault, z3.BoolRef]] = field(default_factory=list)
    refs: list[tuple[str, z3.BoolRef]] = field(default_factory=list)  # (let name, reached)


class PolicyEncoding:
    """One policy over an input space: each rule's condition, what decides, and every fault site."""

    def __init__(self, policy: Policy, space: InputSpace) -> None:
        self.policy = policy
        self.space = space
        self.input_terms = {(d.group, d.name): space.term(d) for d in policy.inputs()}
        self.ranges = number_ranges(policy)
        self.inputs_valid = z3.And([valid for valid, _ in self.input_terms.values()] or [TRUE])
        self.lets: dict[str, tuple[Any, z3.BoolRef]] = {}
        let_sinks: dict[str, _Sink] = {}
        for definition in policy.lets:
            self.sink = let_sinks[definition.name] = _Sink()
            self.lets[definition.name] = self.expr(definition.expr, TRUE)
        self.sink = rules_sink = _Sink()
        combine_first = policy.combine == "first-match"
        # reached[k]: rule k is evaluated (no fault before it; under first-match, no rule before held)
        self.reached: list[z3.BoolRef] = []
        self.when: list[tuple[z3.BoolRef, z3.BoolRef]] = []  # (value, fault) of each condition
        reach = TRUE
        for rule in policy.rules:
            self.reached.append(reach)
            value, fault = self.expr(rule.when, reach)
            self.when.append((value, fault))
            reach = z3.And(reach, z3.Not(fault), *([z3.Not(value)] if combine_first else []))
        self.finished = reach  # every rule evaluated without a fault (first-match: and none held)
        self.fault = z3.Or([z3.And(r, f) for r, (_, f) in zip(self.reached, self.when, strict=True)])
        # A definition is reached when one of its uses is; uses only come from below (rules, later lets).
        let_reached: dict[str, list[z3.BoolRef]] = {d.name: [] for d in policy.lets}
        for name, reached in rules_sink.refs:
            let_reached[name].append(reached)
        self.site_faults: list[SiteFault] = [SiteFault(s, k, c) for s, k, c in rules_sink.faults]
        for definition in reversed(policy.lets):
            reached = z3.Or(let_reached[definition.name]) if let_reached[definition.name] else FALSE
            sink = let_sinks[definition.name]
            for name, local in sink.refs:
                let_reached[name].append(z3.And(reached, local))
            self.site_faults += [SiteFault(s, k, z3.And(reached, c)) for s, k, c in sink.faults]
        self.site_faults.sort(key=lambda f: (f.site, int(f.kind)))
        self._decides = self._deciding(combine_first)

    # -- what decides ----------------------------------------------------------------------------

    def holds(self, index: int) -> z3.BoolRef:
        """Rule `index`'s condition holds (evaluated on its own, without a fault)."""
        value, fault = self.when[index]
        return z3.And(z3.Not(fault), value)

    def _deciding(self, first_match: bool) -> list[z3.BoolRef]:
        if first_match:
            return [z3.And(r, self.holds(k)) for k, r in enumerate(self.reached)]
        # A rule is blocked when a more severe one holds, or an earlier one of its verdict: each of
        # those is built once (a term per verdict, a chain of earlier ones), so the encoding's size
        # grows with the number of rules, not its square.
        rules = self.policy.rules
        any_held = {v: z3.Or([self.when[j][0] for j, r in enumerate(rules) if r.then is v] or [FALSE])
                    for v in SEVERITY}
        earlier = dict.fromkeys(SEVERITY, FALSE)  # a rule of that verdict before this one holds
        out = []
        for k, rule in enumerate(rules):
            above = [any_held[v] for v in SEVERITY[:SEVERITY.index(rule.then)]]
            blocked = z3.Or(*above, earlier[rule.then])
            out.append(z3.And(self.finished, self.when[k][0], z3.Not(blocked)))
            earlier[rule.then] = z3.Or(earlier[rule.then], self.when[k][0])
        return out

    def decides(self, index: int) -> z3.BoolRef:
        """Rule `index` is the deciding rule (valid inputs assumed: see `outcome_valid`)."""
        return self._decides[index]

    @property
    def default_decides(self) -> z3.BoolRef:
        if self.policy.combine == "first-match":
            return self.finished
        return z3.And(self.finished, z3.Not(z3.Or([v for v, _ in self.when])))

    def verdict_is(self, verdict: Verdict) -> z3.BoolRef:
        """The decision's verdict is `verdict`, for any reading (an invalid one is a DENY)."""
        parts = [d for d, rule in zip(self._decides, self.policy.rules, strict=True) if rule.then is verdict]
        if self.policy.default is verdict:
            parts.append(self.default_decides)
        if verdict is Verdict.DENY:
            parts.append(self.fault)
        decided = z3.Or(parts) if parts else FALSE
        if verdict is Verdict.DENY:
            return z3.Or(z3.Not(self.inputs_valid), decided)
        return z3.And(self.inputs_valid, decided)

    def deciding_rule(self, model: z3.ModelRef, likely: int | None = None) -> int | None:
        """Which rule decides in `model` (None: the default or a fault did, or an input was invalid);
        rule `likely` is tried first (at most one rule decides)."""
        if not z3.is_true(model.eval(self.inputs_valid, model_completion=True)):
            return None
        if likely is not None and z3.is_true(model.eval(self._decides[likely], model_completion=True)):
            return likely
        for k, term in enumerate(self._decides):
            if z3.is_true(model.eval(term, model_completion=True)):
                return k
        return None

    def faults_in(self, model: z3.ModelRef) -> bool:
        return z3.is_true(model.eval(z3.Or(z3.Not(self.inputs_valid), self.fault), model_completion=True))

    # -- expressions -----------------------------------------------------------------------------

    def expr(self, e: Expr, reach: z3.BoolRef) -> tuple[Any, z3.BoolRef]:
        """(value, faults) of `e`, evaluated when `reach` holds."""
        if isinstance(e, Number):
            return self.space.number(e.value), FALSE
        if isinstance(e, Boolean):
            return z3.BoolVal(e.value), FALSE
        if isinstance(e, InputRef):
            return self.input_terms[(e.group, e.name)][1], FALSE
        if isinstance(e, LetRef):
            self.sink.refs.append((e.name, reach))
            return self.lets[e.name]
        if not isinstance(e, Call):
            raise unexpected(e, "analysis")
        operator = OPERATORS[e.op]
        smt = self.space.arithmetic.smt  # a fold's steps are encoded by `_step`
        evaluation = operator.evaluation
        if evaluation is Evaluation.BRANCH:
            (c, cf), then, otherwise = self.expr(e.args[0], reach), e.args[1], e.args[2]
            a, af = self.expr(then, z3.And(reach, z3.Not(cf), c))
            b, bf = self.expr(otherwise, z3.And(reach, z3.Not(cf), z3.Not(c)))
            return smt[operator.smt](c, a, b), z3.Or(cf, z3.And(c, af), z3.And(z3.Not(c), bf))
        if evaluation is Evaluation.SHORT_CIRCUIT:
            values, faults, going = [], [], TRUE  # going: the operands so far let this one run
            for arg in e.args:
                value, f = self.expr(arg, z3.And(reach, going))
                faults.append(z3.And(going, f))
                values.append(value)
                stop = value if operator.decisive else z3.Not(value)
                going = z3.And(going, z3.Not(f), z3.Not(stop))
            # Operands that did not run cannot change the result: a decisive one came before them.
            return smt[operator.smt](values), z3.Or(faults)
        if evaluation is Evaluation.MEMBER:
            x, literals = e.args[0], e.args[1:]
            value, fault = self.expr(x, reach)
            options = [self._literal(lit, x) for lit in literals]
            return z3.Or([smt[operator.smt](value, option) for option in options]), fault
        operands: list[Any] = []
        fault: z3.BoolRef = FALSE
        fine = reach  # reached, and nothing faulted so far
        accumulated, span = None, None  # a fold's partial result and its range
        for i, arg in enumerate(e.args):
            if isinstance(arg, Text):
                value, f = self._literal(arg, e.args[1 - i]), FALSE
            else:
                value, f = self.expr(arg, fine)
            fault = z3.Or(fault, f)
            fine = z3.And(fine, z3.Not(f))
            if evaluation is Evaluation.FOLD and i > 0:
                ranges = (span, self.ranges(arg))
                span = fold_range(e.op, *ranges)
                accumulated, step_fault = self._step(e.site, operator.smt, operator.faults, accumulated,
                                                     value, fine, ranges, span)
                fault = z3.Or(fault, step_fault)
                fine = z3.And(fine, z3.Not(step_fault))
            elif evaluation is Evaluation.FOLD:
                accumulated, span = value, self.ranges(arg)
            operands.append(value)
        if evaluation is Evaluation.FOLD:
            return accumulated, fault
        if evaluation is not Evaluation.APPLY:
            raise unexpected(evaluation, "analysis")
        return smt[operator.smt](*operands), fault

    def _step(self, site: str, smt: str, faults: tuple[Fault, ...], a: Any, b: Any,
              fine: z3.BoolRef, ranges: tuple[Range, Range], span: Range) -> tuple[Any, z3.BoolRef]:
        """One step of a left fold, `a op b` (operands within `ranges`, result within `span`), and
        when it faults; records its fault sites (those the ranges rule out are proved safe here
        already). What the step's value must satisfy goes into the input space's base."""
        numbers = self.space.arithmetic
        result, relation = numbers.step(smt, a, b, ranges, span, owner=self)
        self.space.base += relation
        conditions = []
        for kind in faults:  # in the table's order: a zero divisor is checked before dividing
            if kind is Fault.DIVISION_BY_ZERO:
                divisor = ranges[1]
                here = numbers.is_zero(b) if divisor.lo <= 0 <= divisor.hi else FALSE
            elif kind is Fault.NAN:
                here = numbers.invalid[smt](a, b) if MAY_BE_INVALID[smt](*ranges) else FALSE
            else:
                raise unexpected(kind, "analysis (a fault an operator raises)")
            here = z3.And([z3.Not(c) for c in conditions] + [here])
            conditions.append(here)
            self.sink.faults.append((site, kind, z3.And(fine, here)))
        return result, z3.Or(conditions) if conditions else FALSE

    def _literal(self, literal: Expr, other: Expr) -> Any:
        """A literal compared with `other`: a number, a bool, or an enum value's index."""
        if isinstance(literal, Text):
            if not isinstance(other, InputRef):
                raise unexpected(other, "analysis (text compared with something else than an enum input)")
            return self.space.enum_index(self.space.slots[(other.group, other.name)], literal.value)
        value, _ = self.expr(literal, TRUE)
        return value
