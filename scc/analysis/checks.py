"""`scc analyze`: what a policy does for every valid input (issue 13 item 1; docs/analysis.md).

Codes (docs/errors.md, "Analysis"):
  SCC-A001  warning  a rule can never hold within the declared input ranges
  SCC-A002  warning  a rule can hold but never decides (an earlier or a more severe rule, or a fault, does)
  SCC-A003  note     the default decides somewhere (an example of such an input)
  SCC-A004  warning  a fault (division by zero, NaN) is reachable (the input that reaches it)
  SCC-A005  note     first-match: two rules with different verdicts both hold; the order decides
  SCC-A006  warning  the solver could not answer one of these questions in time (unknown, not proven)

Every example is replayed (scc/analysis/replay.py) before it becomes a finding.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import z3

from axon.abi import FAULT_TEXT, Fault
from scc.analysis.encode import COARSE, DOUBLE, InputSpace, PolicyEncoding
from scc.analysis.explore import samples
from scc.analysis.relaxed import REAL
from scc.analysis.replay import Expectation, Observed, Reading, Replayer
from scc.analysis.solve import DEFAULT_TIMEOUT, SOLVER, Answer, Problem, Question, Session, Status
from scc.ast import Policy

MAX_OVERLAPS_PER_RULE = 3
SAMPLES = 64  # concrete readings tried before the solver (scc/analysis/explore.py)
_FAULT_NAMES = {Fault.DIVISION_BY_ZERO: "division by zero", Fault.NAN: "a NaN result"}


@dataclass(frozen=True)
class Finding:
    code: str
    level: str  # "warning" or "note" (SARIF's levels)
    pointer: str  # JSON Pointer into the policy source
    message: str
    reading: Reading | None = None  # the replayed example, where there is one
    rule: str | None = None


@dataclass
class RuleSummary:
    id: str
    pointer: str
    then: str
    decides: bool | None  # None: unknown
    reading: Reading | None = None  # an input where it decides (replayed)


@dataclass
class Analysis:
    policy: str
    version: str
    combine: str
    solver: str
    timeout: float
    findings: list[Finding] = field(default_factory=list)
    rules: list[RuleSummary] = field(default_factory=list)
    default_decides: bool | None = None
    questions: int = 0
    replays: int = 0
    seconds: float = 0.0

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]


def encode_one(policy: Policy, timeout: float, rng: random.Random, sample_count: int = SAMPLES,
               budget: float | None = None) -> tuple[PolicyEncoding, InputSpace, Session]:
    """A policy over its own valid inputs, and a solver session that assumes them."""
    problems = []
    for sort in (DOUBLE, COARSE, REAL):
        space = InputSpace([policy], presence=False, sort=sort)
        encoding = PolicyEncoding(policy, space)
        problems.append(Problem(encoding, space, [*space.base, encoding.inputs_valid]))
    exact, coarse, relaxed = problems
    found = [s for s in samples(exact.space, [policy], sample_count, rng)
             if z3.is_true(s.eval(exact.context.inputs_valid))]
    return exact.context, exact.space, Session(exact, coarse, timeout, found, budget, relaxed)


def analyze(policy: Policy, replayer: Replayer, timeout: float = DEFAULT_TIMEOUT,
            rng: random.Random | None = None, budget: float | None = None) -> Analysis:
    """`timeout` bounds each question, `budget` all of them (the rest are then unknown); `rng` picks
    the concrete readings tried before the solver (default: seeded, so reproducible)."""
    started = time.perf_counter()
    encoding, space, session = encode_one(policy, timeout, rng or random.Random(0), budget=budget)
    out = Analysis(policy.name, policy.version, policy.combine, SOLVER, timeout)
    checker = _Checker(policy, encoding, space, session, replayer, out)
    checker.rules()
    checker.default()
    checker.faults()
    if policy.combine == "first-match":
        checker.overlaps()
    out.questions, out.replays = session.questions, replayer.replays
    out.seconds = time.perf_counter() - started
    return out


class _Checker:
    def __init__(self, policy: Policy, encoding: PolicyEncoding, space: InputSpace, session: Session,
                 replayer: Replayer, out: Analysis) -> None:
        self.policy, self.encoding, self.space, self.session = policy, encoding, space, session
        self.replayer, self.out = replayer, out
        self.observed: list[tuple[Any, Observed]] | None = None  # each sample and the module's decision
        self.when = {rule.id: policy.document["rules"][rule.index]["when"] for rule in policy.rules}

    def find(self, question: Question, known: Callable[[Observed], bool] | None = None) -> Answer:
        """`known`: the question is about what the module decides, and `known` says whether an
        observed decision answers it. The samples are then looked up in what the module decided for
        each (one evaluation per sample for the whole analysis, where evaluating the question's terms
        at every sample costs time in the square of the policy's size); the encoding must agree with
        the sample picked, and only if none fits is the solver asked."""
        if known is None:
            return self.session.find(question, rounder=self.space.rounder)
        if self.observed is None:
            self.observed = [(s, self.replayer.observe(self.space.reading(s))) for s in self.session.samples]
        found = ((sample, seen.describe()) for sample, seen in self.observed if known(seen))
        return (self.session.known_among(question, found)
                or self.session.find(question, rounder=self.space.rounder, samples=False))

    def unknown(self, pointer: str, question: str, answer: Answer, rule: str | None = None) -> None:
        self.out.findings.append(Finding(
            "SCC-A006", "warning", pointer,
            f"unknown: the solver could not decide within {self.session.timeout:g} s whether {question} "
            f"({answer.why or 'no reason given'}); this is not a proof either way", rule=rule))

    def outcome(self, model: z3.ModelRef, likely: int | None = None) -> Expectation:
        """What the encoding says the policy decides for the model's reading (`likely`: the rule
        thought to decide, tried first)."""
        index = self.encoding.deciding_rule(model, likely)
        if index is not None:
            rule = self.policy.rules[index]
            return Expectation(rule.then.name, rule.id)
        if self.encoding.faults_in(model):
            return Expectation("DENY", None, faulted=True)
        return Expectation(self.policy.default.name, None)

    def example(self, model: z3.ModelRef, what: str, likely: int | None = None,
                **changes: Any) -> tuple[Reading, Expectation]:
        reading = self.space.reading(model)
        if likely is None:  # the module says which rule decides: the encoding checks that one first
            decided = self.replayer.observe(reading).rule
            likely = next((r.index for r in self.policy.rules if r.id == decided), None)
        expect = self.outcome(model, likely)
        if changes:
            expect = Expectation(**{**expect.__dict__, **changes})
        self.replayer.confirm(reading, expect, what)
        return reading, expect

    # -- rules that never decide -----------------------------------------------------------------

    def rules(self) -> None:
        for k, rule in enumerate(self.policy.rules):
            summary = RuleSummary(rule.id, rule.site, rule.then.name, None)
            self.out.rules.append(summary)
            answer = self.find(lambda e, k=k: e.decides(k), lambda seen, rule=rule: seen.rule == rule.id)
            if answer.status is Status.FOUND:
                summary.decides = True
                summary.reading, _ = self.example(answer.model, f"rule `{rule.id}` decides", k)
                continue
            if answer.status is Status.UNKNOWN:
                self.unknown(rule.site, f"rule `{rule.id}` can ever decide", answer, rule.id)
                continue
            summary.decides = False
            self.never_decides(k)

    def never_decides(self, k: int) -> None:
        rule = self.policy.rules[k]
        answer = self.find(lambda e: e.holds(k))
        if answer.status is Status.NONE:
            self.out.findings.append(Finding(
                "SCC-A001", "warning", rule.site + "/when",
                f"rule `{rule.id}` can never decide: its condition is false (or faults) for every input the "
                "declarations allow", rule=rule.id))
            return
        if answer.status is Status.UNKNOWN:
            self.unknown(rule.site, f"rule `{rule.id}`'s condition can hold", answer, rule.id)
            return
        reading, expect = self.example(answer.model, f"rule `{rule.id}` is taken by another",
                                       holds=((f"rule `{rule.id}`", self.when[rule.id]),))
        if expect.rule is None:
            taker = "a fault ends the evaluation before it decides" if expect.faulted else "?"
        elif self.policy.combine == "first-match":
            taker = f"rule `{expect.rule}` ({expect.verdict}) comes first and decides"
        else:
            taker = f"rule `{expect.rule}` ({expect.verdict}) holds too and decides (most-severe)"
        self.out.findings.append(Finding(
            "SCC-A002", "warning", rule.site,
            f"rule `{rule.id}` never decides: wherever its condition holds, another outcome takes the input; "
            f"for example here {taker}", reading, rule.id))

    # -- the default ----------------------------------------------------------------------------------

    def default(self) -> None:
        answer = self.find(lambda e: e.default_decides, lambda seen: seen.rule is None and not seen.faulted)
        if answer.status is Status.UNKNOWN:
            self.unknown("/rules", "the default ever decides", answer)
            return
        self.out.default_decides = answer.status is Status.FOUND
        if answer.status is Status.FOUND:
            reading, _ = self.example(answer.model, "the default decides")
            where = "/default" if "default" in self.policy.document else "/rules"
            self.out.findings.append(Finding(
                "SCC-A003", "note", where,
                f"no rule holds for some valid inputs, and the default ({self.policy.default.name}) decides "
                "there", reading))

    # -- faults ---------------------------------------------------------------------------------------

    def faults(self) -> None:
        for index, site_fault in enumerate(self.encoding.site_faults):
            what = _FAULT_NAMES[site_fault.kind]
            reason = f"{FAULT_TEXT[site_fault.kind]} at {site_fault.site}"
            answer = self.find(lambda e, index=index: e.site_faults[index].condition,
                               lambda seen, reason=reason: (seen.reason or "").endswith(reason))
            if answer.status is Status.UNKNOWN:
                self.unknown(site_fault.site, f"{what} is reachable here", answer)
            elif answer.status is Status.FOUND:
                reading, _ = self.example(answer.model, f"{what} at {site_fault.site}",
                                          verdict="DENY", rule=None, faulted=True, reason_contains=reason)
                self.out.findings.append(Finding(
                    "SCC-A004", "warning", site_fault.site,
                    f"{what} is reachable here: the evaluation stops and the decision is DENY", reading))

    # -- overlaps (first-match) -----------------------------------------------------------------------

    def overlaps(self) -> None:
        quiet = {f.rule for f in self.out.findings if f.code in ("SCC-A001", "SCC-A002")}
        rules = self.policy.rules
        for j, later in enumerate(rules):
            if later.id in quiet:
                continue
            candidates = [i for i in range(j) if rules[i].then is not later.then and rules[i].id not in quiet]
            while candidates:
                answer = self.find(lambda e, j=j, candidates=tuple(candidates):
                                   z3.And(e.holds(j), z3.Or([e.decides(i) for i in candidates])))
                if answer.status is Status.UNKNOWN:
                    self.unknown(later.site, f"an earlier rule with another verdict overlaps `{later.id}`",
                                 answer, later.id)
                    break
                if answer.status is Status.NONE:
                    break
                reading, expect = self.example(answer.model, f"rule `{later.id}` overlaps an earlier rule",
                                               holds=((f"rule `{later.id}`", self.when[later.id]),))
                earlier = next(r for r in rules if r.id == expect.rule)
                self.out.findings.append(Finding(
                    "SCC-A005", "note", later.site,
                    f"rules `{earlier.id}` ({earlier.then.name}) and `{later.id}` ({later.then.name}) "
                    f"both hold for some inputs; `{earlier.id}` decides because it comes first",
                    reading, later.id))
                candidates.remove(earlier.index)
                if sum(f.rule == later.id and f.code == "SCC-A005" for f in self.out.findings) >= \
                        MAX_OVERLAPS_PER_RULE:
                    break
