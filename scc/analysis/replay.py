"""Every witness and counterexample runs through the compiled module before anyone sees it.

An `Oracle` decides a policy document for a reading. `CompiledModule` compiles the document with
scc and evaluates it with synapse's `Evaluator`, in this process: the module that will run beside the
PLC. The tests add tests/reference.py, the interpreter written from the spec alone. A witness says
what the solver expects (`Expectation`); if any oracle decides otherwise, the analysis is wrong
somewhere, and that is an InternalError (a bug report), never output.

Whether a rule's condition *holds* at a reading is observed on a one-rule variant of the policy
(same inputs and definitions, that condition as its only rule): the full policy may not evaluate it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from scc.compiler import compile_policy
from scc.errors import InternalError
from synapse.evaluate import Evaluator

Reading = dict[str, dict[str, Any]]  # {"telemetry": {...}, "context": {...}}
HOLDS_ID = "holds"


@dataclass(frozen=True)
class Observed:
    verdict: str
    rule: str | None
    faulted: bool
    reason: str | None

    def describe(self) -> str:
        return f"{self.verdict} by {self.rule or 'no rule'}" + (f" ({self.reason})" if self.reason else "")


class Oracle(Protocol):
    name: str

    def decide(self, document: dict[str, Any], reading: Reading) -> Observed: ...


class CompiledModule:
    """Compile with scc, decide with synapse's Evaluator (one per distinct document, kept)."""

    name = "compiled module"

    def __init__(self) -> None:
        self._evaluators: dict[str, Evaluator] = {}
        # By the document object as well: serialising a 1,000-rule document for every replay was a
        # fifth of such an analysis. The document is kept with it, so its id stays its own; the
        # analysis never changes a document it has replayed.
        self._by_object: dict[int, tuple[dict[str, Any], Evaluator]] = {}

    def decide(self, document: dict[str, Any], reading: Reading) -> Observed:
        known = self._by_object.get(id(document))
        if known is None or known[0] is not document:
            key = json.dumps(document)  # not sorted: the order of `let` definitions matters
            if key not in self._evaluators:
                self._evaluators[key] = Evaluator.from_wasm(compile_policy(key.encode()).wasm)
            known = self._by_object[id(document)] = (document, self._evaluators[key])
        decision = known[1].evaluate(reading["telemetry"], reading["context"])
        return Observed(decision.verdict.name, decision.rule, decision.reason is not None, decision.reason)


@dataclass(frozen=True)
class Expectation:
    """What the solver says happens at a reading."""

    verdict: str
    rule: str | None
    faulted: bool = False
    reason_contains: str | None = None
    holds: tuple[tuple[str, Any], ...] = ()  # (label, condition JSON) that hold there as well

    def describe(self) -> str:
        text = f"{self.verdict} by {self.rule or 'no rule'}" + (" (a fault)" if self.faulted else "")
        if self.holds:
            text += ", with " + ", ".join(label for label, _ in self.holds) + " holding"
        return text


class ReplayDisagreement(InternalError):
    """An oracle decided a witness otherwise than the solver said: a bug in the analysis."""


def holds_variant(document: dict[str, Any], condition: Any) -> dict[str, Any]:
    """`document` with `condition` as its only rule (ALLOW, default DENY): it decides by HOLDS_ID
    exactly where the condition holds without a fault."""
    variant = {key: value for key, value in document.items() if key not in ("rules", "combine", "default")}
    variant["rules"] = [{"id": HOLDS_ID, "when": condition, "then": "ALLOW"}]
    return variant


class Replayer:
    """Checks witnesses of one policy document against every oracle."""

    def __init__(self, document: dict[str, Any], oracles: list[Oracle]) -> None:
        self.document = document
        self.oracles = oracles
        self.replays = 0

    def observe(self, reading: Reading) -> Observed:
        """What the first oracle decides (to pick examples by; `confirm` still asks every oracle)."""
        return self.oracles[0].decide(self.document, reading)

    def confirm(self, reading: Reading, expect: Expectation, what: str) -> None:
        for oracle in self.oracles:
            self.replays += 1
            got = oracle.decide(self.document, reading)
            needed = expect.reason_contains
            reason_wrong = needed is not None and needed not in (got.reason or "")
            wrong = (got.verdict != expect.verdict or got.rule != expect.rule
                     or got.faulted != expect.faulted or reason_wrong)
            if wrong:
                raise ReplayDisagreement(
                    f"{what}: the solver's example {json.dumps(reading)} should give {expect.describe()}, "
                    f"but the {oracle.name} decided {got.verdict} by {got.rule or 'no rule'}"
                    f"{f' ({got.reason})' if got.reason else ''} (a bug in scc's analysis; please report it)")
            for label, condition in expect.holds:
                got = oracle.decide(holds_variant(self.document, condition), reading)
                if got.rule != HOLDS_ID:
                    raise ReplayDisagreement(
                        f"{what}: at the solver's example {json.dumps(reading)} {label} should hold, but the "
                        f"{oracle.name} says it does not ({got.verdict}, {got.reason or 'no fault'}) "
                        "(a bug in scc's analysis; please report it)")
