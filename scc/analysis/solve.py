"""One question at a time, with a time limit: found (with a model), none, or unknown.

"none" is a proof (z3 answered unsat for the exact encoding); "unknown" is what a time-out or an
incomplete answer gives, and it is never reported as a proof.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import z3

from scc.analysis.encode import double, model_double, round_numbers
from scc.analysis.replay import ReplayDisagreement

SOLVER = f"z3 {z3.get_version_string()}"
DEFAULT_TIMEOUT = 10.0  # seconds per question
COARSE_TIMEOUT = 2.0  # seconds for the coarse candidate search of one question
NUDGES = (1e-12, 1e-9, 1e-6, 1e-4)  # relative moves tried around a candidate that just misses
NUDGE_TRIES = 4  # random moves of each size
PLAIN_TIMEOUT = 0.5  # seconds for a candidate in plain real arithmetic (scc diff of nonlinear policies)


class Status(enum.Enum):
    FOUND = "found"  # satisfiable: the model is an example
    NONE = "none"  # unsatisfiable: proved that no input does it
    UNKNOWN = "unknown"  # time-out or incomplete: neither


@dataclass(frozen=True)
class Answer:
    status: Status
    model: Any = None  # a z3 model, or a concrete reading (explore.Assignment) with the same eval
    why: str = ""  # z3's reason for unknown


class Assignment:
    """A concrete reading, usable where a z3 model is (`eval`)."""

    def __init__(self, pairs: list[tuple[Any, Any]]) -> None:
        self.pairs = pairs
        # z3.substitute checks every pair's sorts in Python on each call: most of the time of trying a
        # question on a few hundred samples. The pairs are checked once here and the arrays kept.
        for var, value in pairs:
            if not var.sort().eq(value.sort()):
                raise ValueError(f"{var} is a {var.sort()}, its value {value} a {value.sort()}")
        self._from = (z3.Ast * len(pairs))(*[var.as_ast() for var, _ in pairs])
        self._to = (z3.Ast * len(pairs))(*[value.as_ast() for _, value in pairs])
        self._values = {var.get_id(): value for var, value in pairs}  # a variable's own value, at once

    def eval(self, term: Any, model_completion: bool = True) -> Any:
        if term.get_id() in self._values:
            return self._values[term.get_id()]
        if not self.pairs:
            return z3.simplify(term)
        ctx = term.ctx
        done = z3.Z3_substitute(ctx.ref(), term.as_ast(), len(self.pairs), self._from, self._to)
        return z3.simplify(z3.z3._to_expr_ref(done, ctx))


@dataclass(frozen=True)
class Problem:
    """What questions are asked of (`context`: an encoding, or scc diff's pair) over `space`, and
    what every reading satisfies there (`base`)."""

    context: Any
    space: Any  # encode.InputSpace
    base: list[z3.BoolRef]


Question = Callable[[Any], z3.BoolRef]  # a Problem's context -> the condition an example must meet


# The relaxed encoding is tried with z3's default strategy, fast on linear problems (most policies)
# and on scc analyze's, then with its SMT core after simplification, which answered more of scc
# diff's nonlinear questions, and sooner, than the default or nlsat (docs/analysis.md): scc diff of
# policies that multiply or divide unknowns tries them the other way round. (solver, seconds) each.
RelaxedTry = tuple[Callable[[], z3.Solver], float]
RELAXED_TRIES: tuple[RelaxedTry, ...] = (
    (z3.Solver, 1.0),
    (lambda: z3.Then("simplify", "propagate-values", "ctx-simplify", "simplify", "propagate-ineqs",
                     "smt").solver(), 3.0),
)


class Session:
    """Questions about one input space, each answered in up to four tries:

    1. the concrete `samples` (scc/analysis/explore.py), evaluated exactly; then, where given, `plain`:
       the question in unrounded real arithmetic, for a candidate only;
    2. `relaxed`, the question over reals within rounding-error bounds (scc/analysis/relaxed.py; a
       short time limit): "none" there is a proof for the module; a model is only a candidate, kept
       if the question holds for it exactly, as doubles;
    3. `coarse`, the same question with 12-bit significands (a short time limit): a candidate too;
    4. a fresh QF_FPBV solver on the exact problem: a proof where the relaxation was too loose.
    """

    def __init__(self, exact: Problem, coarse: Problem | None = None, timeout: float = DEFAULT_TIMEOUT,
                 samples: Sequence[Any] = (), budget: float | None = None,
                 relaxed: Problem | None = None, relaxed_tries: Sequence[RelaxedTry] | None = None,
                 plain: Problem | None = None) -> None:
        self.exact, self.coarse, self.relaxed, self.plain = exact, coarse, relaxed, plain
        self.relaxed_tries = RELAXED_TRIES if relaxed_tries is None else relaxed_tries
        self.timeout = timeout
        # Seconds for every question together: once spent, the rest are unknown without solving.
        self.deadline = None if budget is None else time.perf_counter() + budget
        self.samples = list(samples)
        self.questions = 0
        # id(problem) -> (size of its base, the base as one term, the problem: kept, so the id stays its own)
        self._bases: dict[int, tuple[int, z3.BoolRef, Problem]] = {}
        self.relaxed_proofs = 0  # questions the relaxed encoding settled with "none"
        self.solved = 0  # questions the exact solver had to answer
        self.seconds = 0.0

    def find(self, question: Question, *, rounder: Rounder | None = None,
             samples: bool = True) -> Answer:
        """An input for which `question` holds; with `rounder`, its numbers as round as allowed.
        `samples=False`: the caller knows no sample answers it (they are not tried)."""
        started = time.perf_counter()
        self.questions += 1
        try:
            if self.deadline is not None and time.perf_counter() >= self.deadline:
                return Answer(Status.UNKNOWN, why="the time budget of the whole analysis is spent")
            goal = question(self.exact.context)
            for sample in self.samples if samples else ():
                if z3.is_true(sample.eval(goal)):
                    return Answer(Status.FOUND, sample)
            if self.deadline is not None and time.perf_counter() >= self.deadline:
                return Answer(Status.UNKNOWN, why="the time budget of the whole analysis is spent")
            if self.plain is not None:  # candidates only: its "none" is no proof
                _, candidate = self._try(self.plain, question, goal, PLAIN_TIMEOUT, z3.Solver())
                if candidate is not None:
                    return Answer(Status.FOUND, candidate)
            for make, limit in self.relaxed_tries if self.relaxed is not None else ():
                status, candidate = self._try(self.relaxed, question, goal, limit, make())
                if status is Status.NONE:
                    self.relaxed_proofs += 1
                    return Answer(Status.NONE)
                if candidate is not None:
                    return Answer(Status.FOUND, candidate)
                if status is Status.FOUND:
                    break  # a model that is no example: the other strategy would not do better
            if self.coarse is not None:
                _, candidate = self._try(self.coarse, question, goal, COARSE_TIMEOUT, None)
                if candidate is not None:
                    return Answer(Status.FOUND, candidate)
            self.solved += 1
            solver = self._solver(self.timeout)
            solver.add(self._base(self.exact), goal)
            result = solver.check()
            if result == z3.sat:
                model = solver.model()
                return Answer(Status.FOUND, self._rounded(solver, model, rounder) if rounder else model)
            if result == z3.unsat:
                return Answer(Status.NONE)
            return Answer(Status.UNKNOWN, why=solver.reason_unknown())
        finally:
            self.seconds += time.perf_counter() - started

    def _solver(self, timeout: float) -> z3.Solver:
        # Contextual simplification first: a question whose condition contradicts itself once the
        # rules' conditions are known (a claim about a mode a rule excludes) is settled there,
        # without bit-blasting the policy's arithmetic. Then the floating-point terms are turned into
        # bit-vectors once, simplified as such, and bit-blasted straight to the SAT solver: z3's
        # QF_FPBV tactic spends several times longer on the same proofs (docs/analysis.md). The SAT
        # solver takes no integers (scc diff's input shapes are): those problems keep QF_FPBV.
        bit_blasted = z3.Then("fpa2bv", "propagate-values", "simplify", "bit-blast", "sat")
        solver = z3.Then("simplify", "propagate-values", "ctx-simplify",
                         z3.Cond(z3.Probe("is-qffpbv"), bit_blasted, z3.Tactic("qffpbv"))).solver()
        solver.set("timeout", max(1, int(timeout * 1000)))
        return solver

    def _base(self, problem: Problem) -> z3.BoolRef:
        """What every reading satisfies, as one term (made again only when encoding a question, such
        as a claim's condition, added to it: call this after building the question)."""
        size, term, _ = self._bases.get(id(problem), (None, None, None))
        if size != len(problem.base):
            size, term = len(problem.base), z3.And(problem.base)
            self._bases[id(problem)] = (size, term, problem)
        return term

    def known_among(self, question: Question, found: Iterable[tuple[Any, str]]) -> Answer | None:
        """The first of `found` as the answer: samples the caller chose by what the compiled module
        decided for them (each with that decision in words), so the encoding need not be evaluated at
        every sample. The exact encoding must agree with the one chosen, or the analysis has a bug.
        None: no sample fits."""
        for sample, decided in found:
            if not z3.is_true(sample.eval(question(self.exact.context))):
                raise ReplayDisagreement(
                    f"the compiled module decided {decided} at {self.exact.space.reading(sample)}, which "
                    "the analysis's encoding does not say (a bug in scc's analysis; please report it)")
            self.questions += 1
            return Answer(Status.FOUND, sample)
        return None

    def _try(self, problem: Problem, question: Question, goal: z3.BoolRef, limit: float,
             solver: z3.Solver | None) -> tuple[Status, Any]:
        """`question` on an approximate `problem`: its status there, and a candidate that the exact
        encoding confirms (None if there is no such candidate)."""
        if solver is None:
            solver = self._solver(limit)
        solver.set("timeout", max(1, int(min(limit, self.timeout / 2) * 1000)))
        asked = question(problem.context)
        solver.add(self._base(problem), asked)
        result = solver.check()
        if result != z3.sat:
            return (Status.NONE if result == z3.unsat else Status.UNKNOWN), None
        candidate = Assignment(self.exact.space.values_from(problem.space, solver.model()))
        wanted = z3.And(self._base(self.exact), goal)
        if not z3.is_true(candidate.eval(wanted)):
            candidate = self._nudged(candidate, wanted)
            if candidate is None:
                return Status.FOUND, None
        # Rounder numbers where the goal still holds, checked by evaluation alone (no solver).
        pairs = list(candidate.pairs)
        for index, (var, _) in enumerate(candidate.pairs):
            if not z3.is_fp(var):
                continue
            for rounder in round_numbers(model_double(candidate, var)):
                trial = Assignment([*pairs[:index], (var, double(rounder)), *pairs[index + 1:]])
                if z3.is_true(trial.eval(wanted)):
                    pairs = trial.pairs
                    break
        return Status.FOUND, Assignment(pairs)

    def _nudged(self, candidate: Assignment, wanted: z3.BoolRef) -> Assignment | None:
        """A candidate that just misses usually sits on a boundary of what the question asks (an
        approximate model is happy exactly on a threshold the doubles fall on the wrong side of, or
        at the edge of a thin region where two policies differ): its numbers moved a little, by
        relative steps of NUDGES, each checked exactly. Seeded, so an analysis is reproducible."""
        numbers = [i for i, (var, _) in enumerate(candidate.pairs) if z3.is_fp(var)]
        if not numbers:
            return None
        rng = random.Random(len(candidate.pairs))
        values = {i: model_double(candidate, candidate.pairs[i][0]) for i in numbers}
        for step in NUDGES:
            for _ in range(NUDGE_TRIES):
                pairs = list(candidate.pairs)
                for i in numbers:
                    x = values[i]
                    moved = x + rng.choice((-1, 0, 1)) * step * max(abs(x), 1.0)
                    pairs[i] = (pairs[i][0], double(moved))
                trial = Assignment(pairs)
                if z3.is_true(trial.eval(wanted)):
                    return trial
        return None

    def _rounded(self, solver: z3.Solver, model: z3.ModelRef, rounder: Rounder) -> z3.ModelRef:
        """Try rounder's candidates one variable at a time (a short time limit each); keep those that
        still satisfy the goal. A plant engineer reads 93 more easily than 93.00000000000001."""
        solver.set("timeout", max(1, int(min(1.0, self.timeout / 10) * 1000)))
        for alternatives in rounder(model):
            for candidate in alternatives:
                solver.push()
                solver.add(candidate)
                if solver.check() == z3.sat:
                    model = solver.model()
                    solver.pop()
                    solver.add(candidate)  # kept for the next variable
                    break
                solver.pop()
        return model


Rounder = Callable[[z3.ModelRef], list[list[z3.BoolRef]]]
