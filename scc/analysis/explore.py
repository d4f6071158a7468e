"""Concrete readings tried before the solver: most questions ("can rule k decide?") have an answer
at a boundary of the policy (a literal, a declared min or max, a default), and evaluating the
encoding at a concrete reading costs milliseconds where solving with 64-bit floating point can cost
seconds. A reading found here is a witness like any other: it is replayed before it is shown. Only
"none" (a proof) always comes from the solver.
"""

from __future__ import annotations

import math
import random
from typing import Any

import z3

from scc.analysis.encode import ENUM_BITS, SHAPE_BITS, SHAPES, InputSpace, double
from scc.analysis.solve import Assignment
from scc.ast import Expr, Number, Policy, children
from scc.operators import Kind


def literals(policies: list[Policy]) -> list[float]:
    """Every number written in the policies' conditions and definitions."""
    found: set[float] = set()
    stack: list[Expr] = [d.expr for p in policies for d in p.lets]
    stack += [r.when for p in policies for r in p.rules]
    while stack:
        expr = stack.pop()
        if isinstance(expr, Number):
            found.add(expr.value)
        stack.extend(children(expr))
    return sorted(found)


def _number_candidates(space: InputSpace, key: tuple[str, str], policies: list[Policy],
                       constants: list[float]) -> list[float]:
    decls = [d for p in policies for d in p.inputs() if (d.group, d.name) == key and d.kind is Kind.NUMBER]
    low = max((d.min for d in decls if d.min is not None), default=-math.inf)
    high = min((d.max for d in decls if d.max is not None), default=math.inf)
    out = {0.0, 1.0, -1.0}
    for d in decls:
        out |= {v for v in (d.min, d.max, d.default) if v is not None}
    for c in constants:
        out |= {c, math.nextafter(c, math.inf), math.nextafter(c, -math.inf), c + 1, c - 1}
    return sorted(v for v in out if low <= v <= high and math.isfinite(v))


def samples(space: InputSpace, policies: list[Policy], count: int, rng: random.Random) -> list[Assignment]:
    """Up to `count` readings that satisfy the space's base constraints, boundary values first."""
    constants = literals(policies)
    choices: dict[tuple[str, str], list[float]] = {
        key: _number_candidates(space, key, policies, constants)
        for key, slot in space.slots.items() if Kind.NUMBER in slot.kinds
    }
    base = z3.And(space.base) if space.base else z3.BoolVal(True)
    out: list[Assignment] = []
    for _ in range(count * 2):
        pairs: list[tuple[Any, Any]] = []
        for key, slot in sorted(space.slots.items()):
            kind = rng.choice(sorted(slot.kinds, key=lambda k: k.value))
            if slot.shape is not None:
                shape = 0 if rng.random() < 0.1 else SHAPES[kind]
                pairs.append((slot.shape, z3.BitVecVal(shape, SHAPE_BITS)))
            for k, var in slot.variables.items():
                if k is Kind.NUMBER:
                    pairs.append((var, double(_number(rng, choices[key]))))
                elif k is Kind.BOOL:
                    pairs.append((var, z3.BoolVal(rng.random() < 0.5)))
                else:
                    pairs.append((var, z3.BitVecVal(rng.randrange(len(slot.values)), ENUM_BITS)))
        assignment = Assignment(pairs)
        if z3.is_true(assignment.eval(base)):
            out.append(assignment)
            if len(out) == count:
                break
    return out



def _number(rng: random.Random, candidates: list[float]) -> float:
    """A boundary value half of the time, else a value with two decimals between the candidates."""
    if not candidates:
        return 0.0
    if rng.random() < 0.5 or len(candidates) == 1:
        return rng.choice(candidates)
    return round(rng.uniform(candidates[0], candidates[-1]), 2)
