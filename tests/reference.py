"""A reference interpreter of SIP-001, written from the spec (`shared/spec/sip-001.md`) alone.

It shares no code with `scc` or `synapse` on purpose: the differential test compares the compiled
module against it, so a misreading of the spec has to be made twice, independently, to go unseen.
It evaluates the parsed source directly, in Python floats (IEEE-754 doubles, round-to-nearest; Python
never fuses multiply-add).

What it assumes where the spec leaves a choice, so an auditor can check it:
- n-ary arithmetic folds left to right, `((a op b) op c)`, and each partial result is checked for NaN
  as it is formed (SIP-001 §4 "any arithmetic result that is NaN");
- a division checks its divisor (±0 alike) before it divides, so `0 / 0` is a division by zero;
- `min`/`max` are the IEEE/WebAssembly ones (`-0 < +0`); NaN never reaches them because every NaN
  result has already faulted;
- a `let` definition is evaluated at its first use and remembered for the rest of the evaluation
  (§4 "with the same result each time"); a definition that is never reached is never evaluated;
- a fault's site is the JSON Pointer of the operator that faulted (a definition's faults point into
  `/let/NAME`, where it is written, not where it is used);
- context `now`, when declared and not passed, is the `now` argument (the caller's clock, §3); with
  no `now` argument it is simply absent.

`explain` also says what the evaluation computed: each rule's `when` (None where it was never
computed), the definitions computed and their values, and those a fault stopped while they were
computed, so that the module's trace (synapse/explain.py) can be checked against it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

VERDICTS = ("DENY", "ALLOW", "WARN", "HALT")
# SIP-001 §5: severity, highest first: HALT, DENY, WARN, ALLOW.
SEVERITY = {"ALLOW": 0, "WARN": 1, "DENY": 2, "HALT": 3}

Value = float | bool | str


@dataclass(frozen=True)
class Fault:
    """Why an evaluation ended in a fault (§6). `kind` is one of the KINDS; `where` names the input
    (`telemetry.NAME`) or the JSON Pointer of the expression that faulted."""

    kind: str
    where: str
    detail: str

    KINDS = ("input", "division-by-zero", "nan")

    def __str__(self) -> str:
        return f"{self.kind} at {self.where}: {self.detail}"


class Decision(NamedTuple):
    verdict: str
    rule: str | None
    logs: tuple[tuple[str, str], ...]  # (level, message), in rule order
    fault: Fault | None


class Explanation(NamedTuple):
    decision: Decision
    when: tuple[bool | None, ...]  # per rule; None: never computed (not reached, or a fault stopped it)
    lets: dict[str, Value]  # the definitions computed, with their values
    unfinished: frozenset[str]  # definitions a fault stopped while they were computed
    faulted_rule: int | None  # the rule being tried when an arithmetic fault happened


class _Faulted(Exception):
    def __init__(self, fault: Fault) -> None:
        super().__init__(str(fault))
        self.fault = fault


class PolicyShapeError(ValueError):
    """The policy is not one the reference can evaluate (it would not compile either)."""


# ---------------------------------------------------------------------------------------------- §3


def _pointer(*tokens: str | int) -> str:
    return "".join("/" + str(t).replace("~", "~0").replace("/", "~1") for t in tokens)


def _check_input(source: str, name: str, decl: Mapping[str, Any], supplied: Mapping[str, Any],
                 now: float | None) -> Value:
    where = f"{source}.{name}"

    def fault(detail: str) -> _Faulted:
        return _Faulted(Fault("input", where, detail))

    if name in supplied:
        value = supplied[name]
    elif "default" in decl:
        value = decl["default"]
    elif source == "context" and name == "now" and now is not None:
        value = now
    else:
        raise fault("required input is missing and has no default")

    kind = decl["type"]
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fault(f"expected a number, got {type(value).__name__}")
        try:
            number = float(value)
        except OverflowError:
            raise fault("number is not finite") from None
        if not math.isfinite(number):
            raise fault("number is not finite")
        # The bounds are doubles too: 9007199254740993 in the source is 2**53 as a bound.
        if "min" in decl and number < float(decl["min"]):
            raise fault(f"{number!r} is below the minimum {decl['min']!r}")
        if "max" in decl and number > float(decl["max"]):
            raise fault(f"{number!r} is above the maximum {decl['max']!r}")
        return number
    if kind == "bool":
        if not isinstance(value, bool):
            raise fault(f"expected true or false, got {type(value).__name__}")
        return value
    if kind == "enum":
        if not isinstance(value, str) or value not in decl["values"]:
            raise fault(f"{value!r} is not one of {decl['values']!r}")
        return value
    raise PolicyShapeError(f"{where}: unknown input type {kind!r}")


def check_inputs(policy: Mapping[str, Any], telemetry: Any, context: Any,
                 now: float | None = None) -> dict[tuple[str, str], Value]:
    """All declared inputs, checked, in declaration order; raises _Faulted on the first bad one."""
    env: dict[tuple[str, str], Value] = {}
    declared = policy.get("inputs") or {}
    for source, supplied in (("telemetry", telemetry), ("context", context)):
        supplied = {} if supplied is None else supplied
        if not isinstance(supplied, Mapping):
            raise _Faulted(Fault("input", source, f"{source} must be a JSON object"))
        for name, decl in (declared.get(source) or {}).items():
            env[(source, name)] = _check_input(source, name, decl, supplied, now)
    return env


# ---------------------------------------------------------------------------------------------- §4


def _ieee_min(a: float, b: float) -> float:
    if a == b == 0.0:
        return a if math.copysign(1.0, a) < 0 else b
    return a if a < b else b


def _ieee_max(a: float, b: float) -> float:
    if a == b == 0.0:
        return a if math.copysign(1.0, a) > 0 else b
    return a if a > b else b


_FOLDS = {
    "add": lambda a, b: a + b,
    "mul": lambda a, b: a * b,
    "min": _ieee_min,
    "max": _ieee_max,
}
_ORDER = {
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
}


class _ArithmeticFault(Exception):
    """Raised at the faulting node; its JSON Pointer is looked up only then (see `_locate`)."""

    def __init__(self, kind: str, node: Any, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.node, self.detail = kind, node, detail


def _check_arith(value: float, node: Any) -> float:
    if value != value:  # NaN
        raise _ArithmeticFault("nan", node, "arithmetic result is NaN")
    return value


class _Evaluator:
    """Walks the source tree. It keeps no JSON Pointers while it runs (that would dominate its cost);
    a fault names its node, and `_locate` finds where that node is written."""

    def __init__(self, policy: Mapping[str, Any], env: Mapping[tuple[str, str], Value]) -> None:
        self.lets: Mapping[str, Any] = policy.get("let") or {}
        self.env = env
        self.memo: dict[str, Value] = {}
        self.pending: list[str] = []  # definitions being computed; a fault leaves them here

    def ref(self, name: str) -> Value:
        if name not in self.memo:
            if name not in self.lets:
                raise PolicyShapeError(f"undefined let {name!r}")
            self.pending.append(name)
            self.memo[name] = self.eval(self.lets[name])
            self.pending.pop()
        return self.memo[name]

    def eval(self, expr: Any) -> Value:
        if isinstance(expr, bool):
            return expr
        if isinstance(expr, (int, float)):
            return float(expr)
        if isinstance(expr, str):  # only as an enum literal inside eq/ne
            return expr
        if not isinstance(expr, Mapping) or len(expr) != 1:
            raise PolicyShapeError(f"not an expression: {expr!r}")
        ((op, arg),) = expr.items()
        ev = self.eval

        if op in ("telemetry", "context"):
            if (op, arg) not in self.env:
                raise PolicyShapeError(f"undeclared input {op}.{arg}")
            return self.env[(op, arg)]
        if op == "ref":
            return self.ref(arg)
        if op == "eq":
            return ev(arg[0]) == ev(arg[1])
        if op == "ne":
            return ev(arg[0]) != ev(arg[1])
        if op in _ORDER:
            a = ev(arg[0])
            return _ORDER[op](a, ev(arg[1]))
        if op == "between":
            x, lo, hi = ev(arg[0]), ev(arg[1]), ev(arg[2])
            return lo <= x <= hi
        if op == "in":
            x = ev(arg[0])
            return any(x == (float(v) if isinstance(v, (int, float)) else v) for v in arg[1])
        if op == "all":
            return all(ev(e) for e in arg)
        if op == "any":
            return any(ev(e) for e in arg)
        if op == "not":
            return not ev(arg)
        if op in _FOLDS:
            fold, acc = _FOLDS[op], ev(arg[0])
            for e in arg[1:]:
                acc = _check_arith(fold(acc, ev(e)), expr)
            return acc
        if op == "sub":
            a = ev(arg[0])
            return _check_arith(a - ev(arg[1]), expr)
        if op == "div":
            a, b = ev(arg[0]), ev(arg[1])
            if b == 0.0:
                raise _ArithmeticFault("division-by-zero", expr, "divisor is zero")
            return _check_arith(a / b, expr)
        if op == "abs":
            return abs(ev(arg))
        if op == "neg":
            return -ev(arg)
        if op == "if":
            return ev(arg[1]) if ev(arg[0]) else ev(arg[2])
        raise PolicyShapeError(f"unknown operator {op!r}")


def _locate(policy: Mapping[str, Any], node: Any) -> str:
    """The JSON Pointer of `node` (by identity) in the policy's `let` and rules, in document order."""
    def walk(expr: Any, where: str) -> str | None:
        if expr is node:
            return where
        if isinstance(expr, Mapping) and len(expr) == 1:
            ((op, arg),) = expr.items()
            children = enumerate(arg) if isinstance(arg, list) else [(None, arg)]
            for i, child in children:
                found = walk(child, where + _pointer(op) + ("" if i is None else f"/{i}"))
                if found is not None:
                    return found
        return None

    roots = [(expr, _pointer("let", name)) for name, expr in (policy.get("let") or {}).items()]
    roots += [(rule["when"], _pointer("rules", i, "when")) for i, rule in enumerate(policy["rules"])]
    return next((found for expr, where in roots if (found := walk(expr, where)) is not None), "?")


# ---------------------------------------------------------------------------------------------- §5-6


def evaluate(policy: Mapping[str, Any], telemetry: Any = None, context: Any = None,
             now: float | None = None) -> Decision:
    """Decide `policy` (the parsed SIP-001 source) for one set of inputs."""
    return explain(policy, telemetry, context, now).decision


def explain(policy: Mapping[str, Any], telemetry: Any = None, context: Any = None,
            now: float | None = None) -> Explanation:
    """Decide `policy` for one set of inputs, and say what the evaluation computed."""
    when: list[bool | None] = [None] * len(policy["rules"])
    try:
        env = check_inputs(policy, telemetry, context, now)
    except _Faulted as exc:
        return Explanation(Decision("DENY", None, (), exc.fault), tuple(when), {}, frozenset(), None)
    ev = _Evaluator(policy, env)
    combine = policy.get("combine", "first-match")
    held: list[Mapping[str, Any]] = []
    try:
        for i, rule in enumerate(policy["rules"]):
            tried = i
            when[i] = ev.eval(rule["when"]) is True
            if when[i]:
                held.append(rule)
                if combine == "first-match":
                    break
    except _ArithmeticFault as exc:
        decision = Decision("DENY", None, (), Fault(exc.kind, _locate(policy, exc.node), exc.detail))
        return Explanation(decision, tuple(when), dict(ev.memo), frozenset(ev.pending), tried)

    explained = partial(Explanation, when=tuple(when), lets=dict(ev.memo), unfinished=frozenset(),
                        faulted_rule=None)
    if not held:
        return explained(Decision(policy.get("default", "DENY"), None, (), None))
    verdict = max((rule["then"] for rule in held), key=SEVERITY.__getitem__)
    deciding = next(rule for rule in held if rule["then"] == verdict)
    logs = tuple((r["log"]["level"], r["log"]["message"]) for r in held if "log" in r)
    return explained(Decision(verdict, deciding["id"], logs, None))
