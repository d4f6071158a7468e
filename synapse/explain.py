"""Why a decision came out as it did, read from the trace the deciding module wrote (docs/abi.md, "Trace").

There is no second evaluator here: the values of the definitions and of each rule's `when` are the ones
the module computed in the call that decided, written into its memory because the host asked for them
in the trace's request word. This module only reads them back and puts them into words, and checks that
they agree with the result block: a trace that contradicts the decision it came with means a broken
module, and the decision is then DENY (nothing fails open, not even an explanation).

A rule's outcome is one of
  decided      its `when` held and it decided the verdict;
  held         its `when` held but another rule decided (most-severe: a more severe verdict, or the same
               verdict from an earlier rule);
  false        its `when` was false;
  faulted      the evaluation ended in a fault (or ran out of gas) while this rule was tried;
  not reached  its `when` was never computed (first-match: an earlier rule decided; a fault or failure
               ended the evaluation before it; the module was not run).
A definition (a named condition, `let`) is computed (with its value), not computed (no rule that was
tried needed it), or unfinished (a fault stopped it, in it or in a definition it uses). A number that
overflowed is written "Infinity" or "-Infinity" (JSON has no infinities).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from typing_extensions import TypedDict  # pydantic reads only this one on Python < 3.12

from axon import abi
from axon.abi import FAULT_TEXT, Fault, ModuleMeta, ModuleTraceError, TraceLayout, Verdict

_ASKED = struct.pack("<i", abi.TRACE_ASKED)
_SEVERITY = {verdict.name: verdict.severity for verdict in Verdict}

Outcome = Literal["decided", "held", "false", "faulted", "not reached"]
DecidedBy = Literal["rule", "default", "fault", "input", "failure"]


class ConditionJson(TypedDict):
    name: str
    type: Literal["number", "bool"]
    state: Literal["computed", "not computed", "unfinished"]
    value: float | bool | str | None  # None unless computed; "Infinity"/"-Infinity" for overflows


class RuleOutcomeJson(TypedDict):
    id: str
    then: Literal["DENY", "ALLOW", "WARN", "HALT"]
    when: bool | None  # None: never computed
    outcome: Outcome
    why: str


class ExplanationJson(TypedDict):
    """`traced` is false when the module wrote no trace to explain from (`summary` says why); the
    conditions and rules are then empty."""

    traced: bool
    decided_by: DecidedBy
    summary: str
    conditions: list[ConditionJson]
    rules: list[RuleOutcomeJson]


class TraceRequest:
    """Asks the instance about to be called for a trace, and remembers that it did (the call happened)."""

    __slots__ = ("layout", "asked")

    def __init__(self, layout: TraceLayout) -> None:
        self.layout = layout
        self.asked = False

    def ask(self, write: Callable[[int, bytes], None]) -> None:
        write(self.layout.at + abi.TRACE_REQUEST, _ASKED)
        self.asked = True


@dataclass(frozen=True)
class Trace:
    """The trace as the module left it."""

    written: bool  # the module said, on entry, that this call writes it
    lets: tuple[tuple[int, float], ...]  # (state, value) per definition
    rules: bytes  # one state per rule

    @classmethod
    def read(cls, layout: TraceLayout, read: Callable[[int, int], bytes]) -> Trace:
        raw = read(layout.at, layout.size)
        count = len(layout.lets)
        written = raw[abi.TRACE_WRITTEN:abi.TRACE_WRITTEN + 4] == _ASKED
        values = struct.unpack_from(f"<{count}d", raw, abi.TRACE_HEADER)
        states = raw[abi.TRACE_HEADER + 8 * count:abi.TRACE_HEADER + 9 * count]
        return cls(written, tuple(zip(states, values, strict=True)), raw[abi.TRACE_HEADER + 9 * count:])


@dataclass(frozen=True)
class Ending:
    """How the evaluation ended, from the result block and the runtime: `decided_by` with the deciding
    rule (rule, -1 for the default) or the rule being tried (fault), the fault code and site."""

    decided_by: DecidedBy
    rule: int = -1
    fault: int = 0
    site: int = -1
    reason: str | None = None  # the decision's reason, for a fault, an input fault or a failure


class TraceContradiction(Exception):
    """The trace disagrees with the result block: the module is broken."""


def untraced(layout: ModuleTraceError | None, ending: Ending) -> ExplanationJson:
    """The explanation of a decision by a module that cannot write a trace."""
    if layout is None:
        why = ("this module carries no trace (compiled by an scc without explain, or its trace would not "
               "fit in its memory beside its log messages): recompile it to explain its decisions")
    else:
        why = f"this module's trace cannot be read: {layout} [{layout.code}]"
    return _bare(ending.decided_by, why)


def failed(reason: str) -> ExplanationJson:
    """The explanation of a DENY the runtime gave without a trace to show (a broken module, a bug)."""
    return _bare("failure", f"DENY: {reason}")


def not_run(reason: str) -> ExplanationJson:
    """The explanation of a DENY given without running the module: the request was no reading for it."""
    return _bare("input", f"DENY: the module was not run: {reason}")


def _bare(decided_by: DecidedBy, summary: str) -> ExplanationJson:
    return {"traced": False, "decided_by": decided_by, "summary": summary, "conditions": [], "rules": []}


def explain(meta: ModuleMeta, layout: TraceLayout, trace: Trace | None, ending: Ending) -> ExplanationJson:
    """The explanation of one decision. `trace` is None when the module was not run (an input fault, an
    instance that could not be made). Raises TraceContradiction when the trace disagrees with `ending`."""
    if trace is not None and ending.decided_by in ("rule", "default", "fault"):
        _check(meta, layout, trace, ending)
    rule_states = trace.rules if trace is not None and trace.written else bytes(len(meta.rules))
    let_states = trace.lets if trace is not None and trace.written else ((0, 0.0),) * len(layout.lets)
    conditions = [_condition(name, kind, state, value)
                  for (name, kind), (state, value) in zip(layout.lets, let_states, strict=True)]
    rules = [_rule(meta, i, state, ending) for i, state in enumerate(rule_states)]
    return {"traced": trace is not None and trace.written, "decided_by": ending.decided_by,
            "summary": _summary(meta, ending), "conditions": conditions, "rules": rules}


# -- words ---------------------------------------------------------------------------------------------


def _condition(name: str, kind: str, state: int, value: float) -> ConditionJson:
    if state != abi.LET_COMPUTED:
        words = "unfinished" if state == abi.LET_UNFINISHED else "not computed"
        return {"name": name, "type": kind, "state": words, "value": None}  # type: ignore[typeddict-item]
    shown: float | bool | str = value == 1.0 if kind == "bool" else _number(value)
    return {"name": name, "type": kind, "state": "computed", "value": shown}  # type: ignore[typeddict-item]


def _number(value: float) -> float | str:
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _id(meta: ModuleMeta, index: int) -> str:
    return f'rule "{meta.rules[index]["id"]}"'


def _fault_words(meta: ModuleMeta, ending: Ending) -> str:
    text = FAULT_TEXT.get(ending.fault, f"fault {ending.fault}")  # type: ignore[call-overload]
    if 0 <= ending.site < len(meta.sites):
        text += f" at {meta.sites[ending.site]}"
    return text


def _summary(meta: ModuleMeta, ending: Ending) -> str:
    kind = ending.decided_by
    if kind == "rule":
        decided = f'{_id(meta, ending.rule)} decided {meta.rules[ending.rule]["then"]}'
        if meta.combine == "first-match":
            return f"{decided}: the first rule whose condition held (first-match)"
        return f"{decided}: the most severe verdict that held, and the first rule with it (most-severe)"
    if kind == "default":
        return f"no rule held: the policy's default, {meta.default}"
    if kind == "fault":
        where = (f" while {_id(meta, ending.rule)} was tried" if ending.rule >= 0
                 else " before any rule was tried")
        return f"DENY: {_fault_words(meta, ending)}{where} (a fault decides DENY, SIP-001 §6)"
    if kind == "input":
        return f"DENY: the module was not run: {ending.reason}"
    return f"DENY: {ending.reason}"


def _rule(meta: ModuleMeta, index: int, state: int, ending: Ending) -> RuleOutcomeJson:
    rule = meta.rules[index]
    when = None if state == abi.RULE_NOT_TRACED else state == abi.RULE_HELD
    outcome, why = _outcome(meta, index, when, ending)
    return {"id": rule["id"], "then": rule["then"], "when": when, "outcome": outcome, "why": why}


def _outcome(meta: ModuleMeta, index: int, when: bool | None, ending: Ending) -> tuple[Outcome, str]:
    kind = ending.decided_by
    if kind == "fault" and index == ending.rule:
        if when:
            return "faulted", f"its condition held, then: {_fault_words(meta, ending)}"
        return "faulted", f"{_fault_words(meta, ending)}, while its condition was computed"
    if when is False:
        return "false", "its condition was false"
    if when:
        if kind == "rule" and index == ending.rule:
            return "decided", ("the first rule whose condition held" if meta.combine == "first-match"
                               else "its condition held and its verdict is the most severe that held; "
                                    "no earlier rule with that verdict held")
        if kind == "rule":
            decided, by = meta.rules[ending.rule]["then"], _id(meta, ending.rule)
            if _SEVERITY[decided] > _SEVERITY[meta.rules[index]["then"]]:
                return "held", f"its condition held, but {decided} from {by} is more severe"
            return "held", f"its condition held, but {by} came first with {decided}"
        return "held", f"its condition held; then the evaluation stopped: {ending.reason}"
    if kind == "rule":
        return "not reached", f"{_id(meta, ending.rule)} decided before it was tried (first-match)"
    if kind == "fault":
        if ending.rule >= 0:
            return "not reached", f"a fault in {_id(meta, ending.rule)} ended the evaluation before it"
        return "not reached", "a fault ended the evaluation before any rule was tried"
    if kind == "input":
        return "not reached", "the module was not run (an input fault)"
    return "not reached", f"the evaluation stopped before it: {ending.reason}"


# -- the trace against the result block -------------------------------------------------------------------


def _check(meta: ModuleMeta, layout: TraceLayout, trace: Trace, ending: Ending) -> None:
    """Raise TraceContradiction unless the trace is the one this ending allows (module docstring)."""
    if not trace.written:
        raise TraceContradiction("the module wrote no trace although it was asked for one")
    faulted = ending.decided_by == "fault"
    for (name, kind), (state, value) in zip(layout.lets, trace.lets, strict=True):
        if state not in (abi.LET_NOT_COMPUTED, abi.LET_UNFINISHED, abi.LET_COMPUTED):
            raise TraceContradiction(f"definition {name!r} has state {state}")
        if state == abi.LET_UNFINISHED and not faulted:
            raise TraceContradiction(f"definition {name!r} is unfinished, but no fault ended the evaluation")
        if state == abi.LET_COMPUTED and (math.isnan(value) or (kind == "bool" and value not in (0.0, 1.0))):
            raise TraceContradiction(f"definition {name!r} has the value {value!r}, which no {kind} has")
    states = trace.rules
    if any(state not in (abi.RULE_NOT_TRACED, abi.RULE_FALSE, abi.RULE_HELD) for state in states):
        raise TraceContradiction(f"a rule has a state outside 0..2: {list(states)}")
    first_match = meta.combine == "first-match"
    # The rules tried to the end (all of them, but for a first-match decision or a fault), the rule a
    # fault came in, and the rules after it.
    if ending.decided_by == "fault":
        end = max(ending.rule, 0)
    elif ending.decided_by == "rule" and first_match:
        end = ending.rule + 1
    else:
        end = len(states)
    tried, after = states[:end], states[end:]
    if ending.decided_by == "fault" and ending.rule >= 0:
        at, after = after[0], after[1:]
        if at != abi.RULE_NOT_TRACED and not (at == abi.RULE_HELD and ending.fault == Fault.OUT_OF_GAS):
            raise TraceContradiction(f"the fault came while {_id(meta, ending.rule)} was tried, "
                                     f"but its condition is traced as {at}")
    if any(after):
        raise TraceContradiction("a rule after the end of the evaluation is traced as tried")
    if abi.RULE_NOT_TRACED in tried:
        raise TraceContradiction("a rule before the end of the evaluation is traced as not tried")
    held = [i for i, state in enumerate(tried) if state == abi.RULE_HELD]
    if first_match:
        expected = [ending.rule] if ending.decided_by == "rule" else []
        if held != expected:
            raise TraceContradiction(f"first-match: rules {held} held, but the result block names {expected}")
    elif ending.decided_by in ("rule", "default") and _most_severe(meta, held) != ending.rule:
        raise TraceContradiction(f"most-severe: rules {held} held, but the result block names {ending.rule}")


def _most_severe(meta: ModuleMeta, held: Sequence[int]) -> int:
    """The first rule with the most severe verdict among `held`; -1 when none held."""
    best = -1
    for i in held:
        if best < 0 or _SEVERITY[meta.rules[i]["then"]] > _SEVERITY[meta.rules[best]["then"]]:
            best = i
    return best
