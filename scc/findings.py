"""Warnings: findings that do not make a policy wrong (SIP-001 §7). They never stop compilation.

A small abstract interpretation gives each expression the set of values it can take on paths that
do not fault: an interval for numbers (from literals and the inputs' declared [min, max]) and a
subset of {true, false} for conditions. Rounded IEEE arithmetic is monotonic, so interval bounds
computed with the same operations are sound. "Can never hold" means the condition is false for
every input the declarations allow; an unknown is always "maybe", so a warning is never a guess.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass

from axon.abi import Fault
from scc.ast import Boolean, Call, Expr, InputRef, LetDef, LetRef, Number, Policy, Text, children
from scc.errors import Diagnostic, unexpected
from scc.operators import OPERATORS, Evaluation, Kind

YES = frozenset({True})
NO = frozenset({False})
MAYBE = frozenset({True, False})


@dataclass(frozen=True)
class Range:
    lo: float
    hi: float

    @property
    def exact(self) -> bool:
        return self.lo == self.hi


ANY_NUMBER = Range(-math.inf, math.inf)


def _range(lo: float, hi: float) -> Range:
    # inf - inf and 0 * inf give NaN bounds: nothing is known then.
    return ANY_NUMBER if math.isnan(lo) or math.isnan(hi) else Range(lo, hi)


def warnings(policy: Policy) -> list[Diagnostic]:
    """Every warning for a policy that passed the checker without errors."""
    analysis = _Analysis(policy)
    for definition in policy.lets:
        # In order: a definition only uses those above it, so each is ready when it is needed and
        # a long chain of definitions never recurses deeply. (Also covers unused ones for W005.)
        analysis.value(definition)
    out: list[Diagnostic] = []
    always_holds = None  # first rule whose condition always holds (first-match)
    first_with: dict[str, int] = {}
    for rule in policy.rules:
        result = analysis.bool(rule.when)
        if result == NO:
            out.append(Diagnostic("SCC-W001", rule.site + "/when",
                                  f"rule `{rule.id}` can never hold: its condition is false for every input "
                                  "value the declarations allow"))
        if policy.combine == "first-match":
            if always_holds is not None:
                out.append(Diagnostic("SCC-W002", rule.site,
                                      f"rule `{rule.id}` is never reached: rule `{always_holds.id}` "
                                      f"({always_holds.site}) comes first and its condition always holds"))
            else:
                # Same JSON text, same condition (different text may still mean the same: no warning).
                key = json.dumps(policy.document["rules"][rule.index]["when"], sort_keys=True)
                if key in first_with:
                    earlier = policy.rules[first_with[key]]
                    out.append(Diagnostic("SCC-W002", rule.site,
                                          f"rule `{rule.id}` never decides: rule `{earlier.id}` "
                                          f"({earlier.site}) has the same condition and comes first"))
                else:
                    first_with[key] = rule.index
            if result == YES and always_holds is None:
                always_holds = rule
    out.extend(analysis.constant_divisions)
    out.extend(_unused(policy))
    return out


class _Analysis:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.lets: dict[str, Range | frozenset[bool]] = {}
        self.constant_divisions: list[Diagnostic] = []

    def value(self, definition: LetDef) -> Range | frozenset[bool]:
        if definition.name not in self.lets:
            expr = definition.expr
            self.lets[definition.name] = self.bool(expr) if expr.type.kind is Kind.BOOL else self.number(expr)
        return self.lets[definition.name]

    def number(self, expr: Expr) -> Range:
        if isinstance(expr, Number):
            return Range(expr.value, expr.value)
        if isinstance(expr, InputRef):
            decl = expr.decl
            low = -math.inf if decl.min is None else decl.min
            return Range(low, math.inf if decl.max is None else decl.max)
        if isinstance(expr, LetRef):
            return self.value(expr.definition)
        if not isinstance(expr, Call):
            raise unexpected(expr, "findings")
        operator = OPERATORS[expr.op]
        if operator.evaluation is Evaluation.BRANCH:
            condition, then, otherwise = expr.args
            known, a, b = self.bool(condition), self.number(then), self.number(otherwise)
            return a if known == YES else b if known == NO else Range(min(a.lo, b.lo), max(a.hi, b.hi))
        ranges = [self.number(arg) for arg in expr.args]
        if operator.evaluation is not Evaluation.FOLD:
            (a,) = ranges
            return _UNARY[expr.op](a)
        acc = ranges[0]
        for r in ranges[1:]:
            if Fault.DIVISION_BY_ZERO in operator.faults and r.lo == r.hi == 0:
                self.constant_divisions.append(Diagnostic(
                    "SCC-W005", expr.site,
                    "this division is by the constant 0, so it faults (and the decision is DENY) "
                    "whenever it is evaluated"))
            acc = _FOLD[expr.op](acc, r)
        return acc

    def bool(self, expr: Expr) -> frozenset[bool]:
        if isinstance(expr, Boolean):
            return YES if expr.value else NO
        if isinstance(expr, InputRef):
            return MAYBE
        if isinstance(expr, LetRef):
            return self.value(expr.definition)
        if not isinstance(expr, Call):
            raise unexpected(expr, "findings")
        op, args, operator = expr.op, expr.args, OPERATORS[expr.op]
        if op == "not":
            return frozenset(not v for v in self.bool(args[0]))
        if operator.evaluation is Evaluation.SHORT_CIRCUIT:
            results = [self.bool(arg) for arg in args]
            decisive, neutral = frozenset({operator.decisive}), frozenset({not operator.decisive})
            if decisive in results:
                return decisive
            return neutral if all(r == neutral for r in results) else MAYBE
        if operator.evaluation is Evaluation.BRANCH:
            condition, then, otherwise = args
            known, a, b = self.bool(condition), self.bool(then), self.bool(otherwise)
            return a if known == YES else b if known == NO else a | b
        if op in ("eq", "ne"):
            same = self.equal(*args)
            return same if op == "eq" else frozenset(not v for v in same)
        if op == "in":
            x, *literals = args
            if x.type.kind is Kind.ENUM:
                return YES if set(x.type.values) <= {lit.value for lit in literals} else MAYBE
            r = self.number(x)
            if any(r.exact and r.lo == lit.value for lit in literals):
                return YES
            return MAYBE if any(r.lo <= lit.value <= r.hi for lit in literals) else NO
        if op == "between":
            x, low, high = (self.number(a) for a in args)
            return _and(_less(low, x, strict=False), _less(x, high, strict=False))
        a, b = (self.number(arg) for arg in args)
        if op == "lt":
            return _less(a, b, strict=True)
        if op == "le":
            return _less(a, b, strict=False)
        if op == "gt":
            return _less(b, a, strict=True)
        if op != "ge":
            raise unexpected(op, "findings (a comparison)")
        return _less(b, a, strict=False)

    def equal(self, left: Expr, right: Expr) -> frozenset[bool]:
        kind = left.type.kind
        if Kind.ENUM in (left.type.kind, right.type.kind) or isinstance(left, Text):
            enum_type = left.type if left.type.kind is Kind.ENUM else right.type
            return YES if len(enum_type.values) == 1 else MAYBE
        if kind is Kind.BOOL:
            a, b = self.bool(left), self.bool(right)
            if len(a) == 1 and len(b) == 1:
                return YES if a == b else NO
            return MAYBE
        a, b = self.number(left), self.number(right)
        if a.exact and b.exact and a.lo == b.lo:
            return YES
        return NO if a.hi < b.lo or b.hi < a.lo else MAYBE


def _corners(a: Range, b: Range, op) -> Range:
    corners = [op(x, y) for x in (a.lo, a.hi) for y in (b.lo, b.hi)]
    return ANY_NUMBER if any(math.isnan(c) for c in corners) else Range(min(corners), max(corners))


def _abs(a: Range) -> Range:
    if a.lo >= 0:
        return a
    return Range(-a.hi, -a.lo) if a.hi <= 0 else Range(0.0, max(-a.lo, a.hi))


# The range of each number operator's result, from its operands' ranges.
_UNARY = {"abs": _abs, "neg": lambda a: Range(-a.hi, -a.lo)}
_FOLD = {  # one step of the left fold
    "add": lambda a, b: _range(a.lo + b.lo, a.hi + b.hi),
    "sub": lambda a, b: _range(a.lo - b.hi, a.hi - b.lo),
    "mul": lambda a, b: _corners(a, b, lambda x, y: x * y),
    "div": lambda a, b: ANY_NUMBER if b.lo <= 0 <= b.hi else _corners(a, b, lambda x, y: x / y),
    "min": lambda a, b: Range(min(a.lo, b.lo), min(a.hi, b.hi)),
    "max": lambda a, b: Range(max(a.lo, b.lo), max(a.hi, b.hi)),
}


def number_ranges(policy: Policy) -> Callable[[Expr], Range]:
    """The range of each number expression of a checked policy, on paths that do not fault. The
    analysis (scc/analysis/encode.py) drops fault conditions these ranges rule out."""
    return _Analysis(policy).number


def fold_range(op: str, a: Range, b: Range) -> Range:
    """The range of one step `a op b` of a number operator's left fold."""
    return _FOLD[op](a, b)


def _less(a: Range, b: Range, *, strict: bool) -> frozenset[bool]:
    """Whether a < b (strict) or a <= b holds for every, no, or some values in the ranges."""
    if (a.hi < b.lo) if strict else (a.hi <= b.lo):
        return YES
    if (a.lo >= b.hi) if strict else (a.lo > b.hi):
        return NO
    return MAYBE


def _and(a: frozenset[bool], b: frozenset[bool]) -> frozenset[bool]:
    return frozenset(x and y for x in a for y in b)


def used_names(policy: Policy) -> tuple[set[str], set[tuple[str, str]]]:
    """The definitions and (group, name) inputs that some rule reaches, directly or via definitions."""
    lets: set[str] = set()
    inputs: set[tuple[str, str]] = set()
    by_name = {d.name: d for d in policy.lets}
    stack: list[Expr] = [rule.when for rule in policy.rules]
    while stack:
        expr = stack.pop()
        if isinstance(expr, InputRef):
            inputs.add((expr.group, expr.name))
        elif isinstance(expr, LetRef):
            if expr.name not in lets:
                lets.add(expr.name)
                stack.append(by_name[expr.name].expr)
        else:
            stack.extend(children(expr))
    return lets, inputs


def _unused(policy: Policy) -> list[Diagnostic]:
    lets, inputs = used_names(policy)
    out = [Diagnostic("SCC-W003", d.site, f"definition `{d.name}` is not used by any rule")
           for d in policy.lets if d.name not in lets]
    for decl in policy.inputs():
        if (decl.group, decl.name) in inputs:
            continue
        consequence = (
            "" if decl.default is not None else
            "; the runtime still requires it, so an evaluation without it is denied"
        )
        out.append(Diagnostic("SCC-W004", decl.site,
                              f"{decl.group} input `{decl.name}` is declared but no rule uses "
                              f"it{consequence}"))
    return out
