"""The outcome of one evaluation (SIP-001 §5-6)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NotRequired

from typing_extensions import TypedDict  # pydantic reads only this one on Python < 3.12

from axon.abi import Verdict
from synapse.explain import ExplanationJson

_WIRE = {verdict: (verdict.name, int(verdict)) for verdict in Verdict}  # Enum.name is slow per call


class LogLine(TypedDict):
    level: Literal["info", "warn", "error"]
    message: str


class DecisionJson(TypedDict):
    """A Decision as JSON (`Decision.to_dict`): what the HTTP API answers, the decision log records and
    `synapse eval` prints. decision_id, policy, urn and version are there when the service made the
    decision: decision_id names its decision-log record (<stream id>-<seq>), the others the artifact
    that decided. rule is null when the default or a failure decided; reason says why a failure decided
    (the verdict is then DENY), else null."""

    decision_id: NotRequired[str]
    policy: NotRequired[str]
    urn: NotRequired[str]
    version: NotRequired[str]
    verdict: Literal["DENY", "ALLOW", "WARN", "HALT"]
    code: Literal[0, 1, 2, 3]
    rule: str | None
    logs: list[LogLine]
    reason: str | None
    gas_used: int | None
    explanation: NotRequired[ExplanationJson]  # only when asked for (synapse/explain.py)


@dataclass(slots=True)
class Decision:
    """A verdict, the rule that decided it, the logs of the rules that held, and why it failed.

    `rule` is None when the default decided or a failure did. `reason` is None unless a failure
    decided (then the verdict is always DENY and `logs` is empty). `gas_used` is what the module
    reported; 0 when the module was never called (an input fault), None when it trapped before it
    could report. The service records a decision, then answers with it `recorded`: decision_id names
    the decision-log record, policy, urn and version the artifact that decided (None until then).
    Treat a Decision as a value: the runtime never changes one after returning it.
    """

    verdict: Verdict
    rule: str | None = None
    logs: list[dict[str, str]] = field(default_factory=list)
    reason: str | None = None
    gas_used: int | None = 0
    decision_id: str | None = None
    policy: str | None = None
    urn: str | None = None
    version: str | None = None
    explanation: ExplanationJson | None = None  # only when asked for: why, from the module's trace

    @classmethod
    def deny(cls, reason: str, *, gas_used: int | None = 0) -> Decision:
        """The fail-safe decision: DENY, no rule, no logs, and the reason it came to this."""
        return cls(Verdict.DENY, None, [], reason, gas_used)

    def recorded(self, decision_id: str, policy: str, urn: str, version: str) -> Decision:
        """This decision, as recorded in the decision log under `decision_id`, made by that artifact."""
        return Decision(self.verdict, self.rule, self.logs, self.reason, self.gas_used,
                        decision_id, policy, urn, version, self.explanation)

    def explained(self, explanation: ExplanationJson) -> Decision:
        """This decision with its explanation (synapse/explain.py)."""
        return Decision(self.verdict, self.rule, self.logs, self.reason, self.gas_used,
                        self.decision_id, self.policy, self.urn, self.version, explanation)

    @property
    def code(self) -> int:
        return int(self.verdict)

    @property
    def name(self) -> str:
        return self.verdict.name

    def to_dict(self) -> DecisionJson:
        name, code = _WIRE[self.verdict]
        decision: DecisionJson = {
            "verdict": name,
            "code": code,
            "rule": self.rule,
            "logs": [dict(entry) for entry in self.logs],
            "reason": self.reason,
            "gas_used": self.gas_used,
        }
        if self.explanation is not None:
            decision["explanation"] = self.explanation
        if self.decision_id is None:
            return decision
        return {"decision_id": self.decision_id, "policy": self.policy, "urn": self.urn,
                "version": self.version, **decision}
