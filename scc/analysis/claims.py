"""Claims in NAME.test.json (issue 13 item 2): "for every valid input where WHEN, the verdict is one of
[...] (and the deciding rule one of [...])", proved or refuted with z3.

WHEN is written in the policy's own expression language and checked like a rule's condition (the
policy's inputs and definitions are in scope). "Where WHEN" means where it holds without a fault.
Every valid input counts, including those where the policy itself faults: that is a DENY by no rule,
so a claim that excludes DENY is refuted by a reachable division by zero. A refutation comes with a
counterexample, replayed through the compiled module (and WHEN through a one-rule variant) before it
is shown; a time-out is "unknown", which is not "proven".
"""

from __future__ import annotations

import enum
import json
import random
from dataclasses import dataclass
from typing import Any

import z3

from axon.abi import Verdict
from scc.analysis.checks import encode_one
from scc.analysis.encode import TRUE, PolicyEncoding
from scc.analysis.replay import Expectation, Reading, Replayer, holds_variant
from scc.analysis.solve import DEFAULT_TIMEOUT, Status
from scc.ast import Expr, Policy
from scc.compiler import check_policy


class ClaimStatus(enum.Enum):
    PROVEN = "proven"
    REFUTED = "refuted"
    UNKNOWN = "unknown"
    INVALID = "invalid"  # WHEN is not a bool expression over this policy's inputs and definitions


@dataclass(frozen=True)
class ClaimResult:
    name: str
    claim: dict[str, Any]
    status: ClaimStatus
    detail: str = ""  # why it is refuted, unknown or invalid
    counterexample: Reading | None = None
    got: tuple[str, str | None] | None = None  # (verdict, rule) at the counterexample

    @property
    def proven(self) -> bool:
        return self.status is ClaimStatus.PROVEN

    def statement(self) -> str:
        rules = self.claim.get("rule")
        text = f"where {_compact(self.claim['when'])}: verdict in {self.claim['verdict']}"
        if rules is not None:
            text += f", rule in {[r if r is not None else None for r in rules]}"
        return text


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _checked_condition(policy: Policy, when: Any, index: int) -> tuple[Expr | None, str]:
    """WHEN as a checked expression in the policy's scope, or the checker's first complaint."""
    variant = holds_variant(policy.document, when)
    checked = check_policy(json.dumps(variant).encode())
    errors = [d for d in checked.diagnostics if d.is_error]
    if errors or checked.policy is None:
        first = errors[0] if errors else None
        where = (first.pointer.replace("/rules/0/when", f"/claims/{index}/when", 1) if first else
                 f"/claims/{index}/when")
        return None, f"{where}: {first.message if first else 'not a valid condition'}"
    return checked.policy.rules[0].when, ""


def _decided_by(encoding: PolicyEncoding, rules: list[str | None]) -> z3.BoolRef:
    ids = {rule.id: k for k, rule in enumerate(encoding.policy.rules)}
    parts = [encoding.decides(ids[r]) for r in rules if r is not None and r in ids]
    if None in rules:
        parts.append(z3.Not(z3.Or([encoding.decides(k) for k in range(len(encoding.policy.rules))])))
    return z3.Or(parts) if parts else z3.BoolVal(False)


def prove(policy: Policy, claims: list[dict[str, Any]], replayer: Replayer,
          timeout: float = DEFAULT_TIMEOUT, rng: random.Random | None = None) -> list[ClaimResult]:
    """Each claim proved, refuted (with a replayed counterexample), unknown or invalid, in order."""
    encoding, space, session = encode_one(policy, timeout, rng or random.Random(0))
    rule_ids = {rule.id for rule in policy.rules}
    results = []
    for index, claim in enumerate(claims):
        name = claim["name"]
        unknown_rules = [r for r in claim.get("rule") or [] if r is not None and r not in rule_ids]
        if unknown_rules:
            results.append(ClaimResult(name, claim, ClaimStatus.INVALID,
                                       f"/claims/{index}/rule: the policy has no rule {unknown_rules[0]!r}"))
            continue
        condition, complaint = _checked_condition(policy, claim["when"], index)
        if condition is None:
            results.append(ClaimResult(name, claim, ClaimStatus.INVALID, complaint))
            continue

        def question(e: PolicyEncoding, condition=condition, claim=claim) -> z3.BoolRef:
            value, fault = e.expr(condition, TRUE)
            allowed = z3.Or([e.verdict_is(Verdict[v]) for v in claim["verdict"]])
            if claim.get("rule") is not None:
                allowed = z3.And(allowed, _decided_by(e, claim["rule"]))
            return z3.And(z3.Not(fault), value, z3.Not(allowed))

        answer = session.find(question, rounder=space.rounder)
        if answer.status is Status.NONE:
            results.append(ClaimResult(name, claim, ClaimStatus.PROVEN))
            continue
        if answer.status is Status.UNKNOWN:
            results.append(ClaimResult(name, claim, ClaimStatus.UNKNOWN,
                                       f"the solver could not decide within {timeout:g} s "
                                       f"({answer.why or 'no reason given'}); not proven"))
            continue
        reading = space.reading(answer.model)
        k = encoding.deciding_rule(answer.model)
        if k is not None:
            expect = Expectation(policy.rules[k].then.name, policy.rules[k].id)
        elif encoding.faults_in(answer.model):
            expect = Expectation("DENY", None, faulted=True)
        else:
            expect = Expectation(policy.default.name, None)
        expect = Expectation(expect.verdict, expect.rule, expect.faulted,
                             holds=((f"the claim's condition ({name})", claim["when"]),))
        replayer.confirm(reading, expect, f"claim {name!r}")
        results.append(ClaimResult(name, claim, ClaimStatus.REFUTED,
                                   f"counterexample: the policy decides {expect.verdict} by "
                                   f"{expect.rule or 'no rule'}" + (" (a fault)" if expect.faulted else ""),
                                   reading, (expect.verdict, expect.rule)))
    return results
