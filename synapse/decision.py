"""The outcome of one evaluation (SIP-001 §5-6)."""

from __future__ import annotations

from dataclasses import dataclass, field

from axon.abi import Verdict


@dataclass(slots=True)
class Decision:
    """A verdict, the rule that decided it, the logs of the rules that held, and why it failed.

    `rule` is None when the default decided or a failure did. `reason` is None unless a failure
    decided (then the verdict is always DENY and `logs` is empty). `gas_used` is what the module
    reported; 0 when the module was never called (an input fault), None when it trapped before it
    could report. Treat a Decision as a value: the runtime never changes one after returning it.
    """

    verdict: Verdict
    rule: str | None = None
    logs: list[dict[str, str]] = field(default_factory=list)
    reason: str | None = None
    gas_used: int | None = 0

    @classmethod
    def deny(cls, reason: str, *, gas_used: int | None = 0) -> Decision:
        """The fail-safe decision: DENY, no rule, no logs, and the reason it came to this."""
        return cls(Verdict.DENY, None, [], reason, gas_used)

    @property
    def code(self) -> int:
        return int(self.verdict)

    @property
    def name(self) -> str:
        return self.verdict.name

    def to_dict(self) -> dict:
        return {
            "verdict": self.verdict.name,
            "code": int(self.verdict),
            "rule": self.rule,
            "logs": [dict(entry) for entry in self.logs],
            "reason": self.reason,
            "gas_used": self.gas_used,
        }
