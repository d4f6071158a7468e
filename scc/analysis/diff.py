"""`scc diff OLD NEW`: do two policies decide alike for every reading? (issue 13 item 3; docs/analysis.md)

Both policies are encoded over one input space: the union of their declared inputs, where a reading
may leave an input out (its default, or a fault) and may carry an enum value only one of them lists
(a fault in the other). "Equivalent" means the same verdict for every reading; deciding rules may
differ (a re-ordered most-severe policy decides by other rules of the same verdict). For each of the
twelve pairs of different verdicts the solver finds an example or proves there is none; per pair,
up to MAX_EXAMPLES examples with different deciding rules say where the policies part (the first
from the solver if need be, the others from the sample readings).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from itertools import permutations

import z3

from axon.abi import Verdict
from scc.analysis.encode import COARSE, DOUBLE, InputSpace, PolicyEncoding
from scc.analysis.explore import samples
from scc.analysis.relaxed import PLAIN, REAL
from scc.analysis.replay import Expectation, Reading, Replayer
from scc.analysis.solve import DEFAULT_TIMEOUT, RELAXED_TRIES, SOLVER, Answer, Problem, Session, Status
from scc.ast import Policy

MAX_EXAMPLES = 3
SAMPLES = 128  # concrete readings tried first: cheap next to a solver question on arithmetic
VERDICTS = (Verdict.HALT, Verdict.DENY, Verdict.WARN, Verdict.ALLOW)


@dataclass(frozen=True)
class Example:
    reading: Reading
    old_rule: str | None  # None: the default, a fault or an invalid input decided
    new_rule: str | None


@dataclass
class Difference:
    old: str  # verdict
    new: str
    examples: list[Example] = field(default_factory=list)


@dataclass
class DiffResult:
    solver: str
    timeout: float
    differences: list[Difference] = field(default_factory=list)
    unknown: list[tuple[str, str]] = field(default_factory=list)  # verdict pairs the solver could not settle
    questions: int = 0
    seconds: float = 0.0

    @property
    def equivalent(self) -> bool | None:
        """True: proved equivalent; False: an example of a difference; None: unknown."""
        if self.differences:
            return False
        return None if self.unknown else True


def _decided_by(encoding: PolicyEncoding, index: int | None) -> z3.BoolRef:
    if index is None:
        return z3.Not(z3.And(encoding.inputs_valid,
                             z3.Or([encoding.decides(k) for k in range(len(encoding.policy.rules))])))
    return z3.And(encoding.inputs_valid, encoding.decides(index))


def _outcome(encoding: PolicyEncoding, model) -> tuple[int | None, Expectation]:
    index = encoding.deciding_rule(model)
    if index is not None:
        rule = encoding.policy.rules[index]
        return index, Expectation(rule.then.name, rule.id)
    if encoding.faults_in(model):
        return None, Expectation("DENY", None, faulted=True)
    return None, Expectation(encoding.policy.default.name, None)


def diff(old: Policy, new: Policy, old_replayer: Replayer, new_replayer: Replayer,
         timeout: float = DEFAULT_TIMEOUT, rng: random.Random | None = None,
         budget: float | None = None) -> DiffResult:
    started = time.perf_counter()
    def problem(sort) -> Problem:
        space = InputSpace([old, new], presence=True, sort=sort)
        return Problem((PolicyEncoding(old, space), PolicyEncoding(new, space)), space, space.base)

    exact, relaxed = problem(DOUBLE), problem(REAL)
    found = samples(exact.space, [old, new], SAMPLES, rng or random.Random(0))
    # Where the relaxed problems are nonlinear, and slow to solve, candidates come from plain real
    # arithmetic first (scc/analysis/solve.py), in place of the coarse floats.
    if relaxed.space.arithmetic.nonlinear:
        session = Session(exact, None, timeout, found, budget, relaxed, RELAXED_TRIES[::-1], problem(PLAIN))
    else:
        session = Session(exact, problem(COARSE), timeout, found, budget, relaxed)
    result = DiffResult(SOLVER, timeout)
    old_encoding, new_encoding = exact.context
    differences: dict[tuple[Verdict, Verdict], Difference] = {}

    def record(model, a: Verdict, b: Verdict) -> tuple[int | None, int | None]:
        """Replay the model's reading through both policies and keep it as an example of a -> b."""
        reading = exact.space.reading(model)
        i, expect_old = _outcome(old_encoding, model)
        j, expect_new = _outcome(new_encoding, model)
        old_replayer.confirm(reading, expect_old, f"{a.name} -> {b.name} (old policy)")
        new_replayer.confirm(reading, expect_new, f"{a.name} -> {b.name} (new policy)")
        difference = differences.setdefault((a, b), Difference(a.name, b.name))
        difference.examples.append(Example(reading, expect_old.rule, expect_new.rule))
        return i, j

    # Each sample through both modules once: which verdict pairs and deciding rules the samples show
    # is looked up there, not by evaluating both encodings at every sample for every question.
    observed = [(sample, old_replayer.observe(reading), new_replayer.observe(reading))
                for sample in found for reading in [exact.space.reading(sample)]]

    def ask(question, fits, solve: bool = True) -> Answer:
        """The first sample whose observed decisions `fits` (the encodings must agree), else (`solve`)
        the solver; with neither, UNKNOWN."""
        answer = session.known_among(question, (
            (sample, f"{before.describe()} (old) and {after.describe()} (new)")
            for sample, before, after in observed if fits(before, after)))
        if answer is not None:
            return answer
        if not solve:
            return Answer(Status.UNKNOWN, why="no sample reading shows another")
        return session.find(question, rounder=exact.space.rounder, samples=False)

    def rule_id(policy: Policy, index: int | None) -> str | None:
        return None if index is None else policy.rules[index].id

    def examples(a: Verdict, b: Verdict, seen: list[tuple[int | None, int | None]]) -> Status:
        """More examples of a -> b with other pairs of deciding rules, up to MAX_EXAMPLES: the first
        one from the solver if the samples have none, the others from the samples only (each solver
        question on arithmetic policies costs up to seconds; one example per pair is the answer)."""
        status = Status.NONE
        while len(seen) < MAX_EXAMPLES:
            def question(pair, a=a, b=b, seen=tuple(seen)):
                before, after = pair
                others = [z3.Not(z3.And(_decided_by(before, i), _decided_by(after, j))) for i, j in seen]
                return z3.And(before.verdict_is(a), after.verdict_is(b), *others)
            shown = {(rule_id(old, i), rule_id(new, j)) for i, j in seen}
            answer = ask(question, lambda before, after, a=a, b=b, shown=shown: (
                (before.verdict, after.verdict) == (a.name, b.name)
                and (before.rule, after.rule) not in shown), solve=not seen)
            status = answer.status
            if status is not Status.FOUND:
                break
            seen.append(record(answer.model, a, b))
        return status

    # Ask whether they differ in any pair not seen yet: a "none" settles every remaining pair with one
    # proof, an example names a pair (then its other examples are collected). Only when that question
    # is unknown is each remaining pair asked on its own.
    remaining = list(permutations(VERDICTS, 2))
    while remaining:
        names = {(a.name, b.name) for a, b in remaining}
        answer = ask(lambda pair, rest=tuple(remaining): z3.Or(
            [z3.And(pair[0].verdict_is(a), pair[1].verdict_is(b)) for a, b in rest]),
            lambda before, after, names=names: (before.verdict, after.verdict) in names)
        if answer.status is Status.NONE:
            remaining = []
        if answer.status is not Status.FOUND:
            break
        _, expect_old = _outcome(old_encoding, answer.model)
        _, expect_new = _outcome(new_encoding, answer.model)
        a, b = Verdict[expect_old.verdict], Verdict[expect_new.verdict]
        examples(a, b, [record(answer.model, a, b)])
        remaining.remove((a, b))
    for a, b in remaining:
        if examples(a, b, []) is Status.UNKNOWN and (a, b) not in differences:
            result.unknown.append((a.name, b.name))
    result.differences = [differences[p] for p in permutations(VERDICTS, 2) if p in differences]
    result.questions = session.questions
    result.seconds = time.perf_counter() - started
    return result
