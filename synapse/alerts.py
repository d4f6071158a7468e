"""Alerts out: a SIP-017 ALERT to the configured recipients when a decision's verdict needs a person.

`Alerter.observe(decision, policy, urn, decision_id, now)` is pure (time and randomness injected) and
returns the envelopes to send. Per policy it alerts when the verdict is in `AlertPolicy.verdicts`
(default DENY and HALT) and

- the verdict *changed* (from the last one observed, or from the last one alerted: an escalation that
  was rate-limited is still sent once the limit allows), or
- the same verdict persists and `repeat_after_s` passed since the last alert (a reminder);

and at most `max_per_window` alerts per `rate_window_s` go out per policy, so a stuck or flapping
sensor cannot flood the channel. What was held back is counted and reported in the next alert's
`suppressed`. The body names the policy, URN, verdict, rule, reason, decision id and time, never
telemetry unless `include_telemetry` is set.

`AlertSender` is the I/O edge: each envelope becomes an OpCode 9 MESSAGE on the ledger, signed by the
node's key (which is how recipients know who raised it).
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from axon.abi import Verdict
from axon.keys import Identity, InvalidKey, PublicKey
from axon.ledger import LedgerError, ops
from axon.messaging.envelope import Envelope, seal
from axon.messaging.errors import MessagingError
from axon.messaging.inner import Message
from synapse.errors import SynapseError

log = logging.getLogger("synapse.alerts")

VERDICT_NAMES = frozenset(v.name for v in Verdict)


class AlertConfigError(SynapseError):
    """An alert setting is out of range, or a recipient cannot be resolved."""

    code = "SYNAPSE-ALERT-CONFIG"


@dataclass(frozen=True)
class Recipient:
    public_key: PublicKey
    did: str | None = None

    @property
    def to(self) -> str:
        """The OpCode 9 `to`: the DID, or the key's address for a recipient known only by its key."""
        return self.did or self.public_key.address


@dataclass(frozen=True)
class AlertPolicy:
    recipients: tuple[Recipient, ...]
    verdicts: frozenset[str] = frozenset({"DENY", "HALT"})
    repeat_after_s: float = 300.0
    max_per_window: int = 5
    rate_window_s: float = 60.0
    include_telemetry: bool = False

    def __post_init__(self) -> None:
        if not self.recipients:
            raise AlertConfigError("alerts need at least one recipient")
        unknown = set(self.verdicts) - VERDICT_NAMES
        if not self.verdicts or unknown:
            raise AlertConfigError(f"alert verdicts must be a non-empty subset of {sorted(VERDICT_NAMES)}, "
                                   f"got unknown {sorted(unknown)}")
        if not self.repeat_after_s > 0 or not self.rate_window_s > 0:
            raise AlertConfigError("repeat_after_s and rate_window_s must be > 0 seconds")
        if type(self.max_per_window) is not int or self.max_per_window < 1:
            raise AlertConfigError(f"max_per_window must be a whole number >= 1, got {self.max_per_window!r}")


def resolve_recipients(specs: Iterable[str], ledger: Any | None) -> tuple[Recipient, ...]:
    """Recipients from configuration: a DID (looked up on the ledger, must be unrevoked) or a public
    key in hex (65-byte uncompressed or 33-byte compressed)."""
    recipients = []
    for spec in specs:
        if spec.startswith("did:"):
            record = ledger.key(spec) if ledger is not None else None
            if record is None or record.revoked:
                raise AlertConfigError(f"alert recipient {spec} has no unrevoked key on the ledger")
            recipients.append(Recipient(record.public_key, record.did))
            continue
        try:
            recipients.append(Recipient(PublicKey.from_hex(spec)))
        except InvalidKey as exc:
            raise AlertConfigError(f"alert recipient {spec[:20]!r}... is neither a DID nor a public key "
                                   "in hex") from exc
    return tuple(recipients)


@dataclass(frozen=True)
class OutboundAlert:
    recipient: Recipient
    message: Message
    envelope: Envelope


@dataclass
class _PolicyState:
    last_verdict: str | None = None
    last_alerted: str | None = None
    last_alert_at: float | None = None
    sent: deque[float] = field(default_factory=deque)
    suppressed: int = 0


class Alerter:
    """Decides which decisions become alerts, and seals them. Not thread-safe: one per evaluation loop."""

    def __init__(self, policy: AlertPolicy, node_did: str,
                 randbytes: Callable[[int], bytes] = secrets.token_bytes) -> None:
        self.policy = policy
        self.node_did = node_did
        self.randbytes = randbytes
        self._state: dict[str, _PolicyState] = {}
        # sent, suppressed_duplicate, suppressed_rate
        self.counts: Counter[str] = Counter()

    def observe(self, decision: Mapping[str, Any], policy: str, urn: str, decision_id: str, now: float,
                telemetry: Mapping[str, Any] | None = None) -> list[OutboundAlert]:
        verdict = _verdict_name(decision.get("verdict"))
        state = self._state.setdefault(policy, _PolicyState())
        previous, state.last_verdict = state.last_verdict, verdict
        if verdict not in self.policy.verdicts:
            return []
        changed = verdict != previous or verdict != state.last_alerted
        if not changed and now - (state.last_alert_at or 0.0) < self.policy.repeat_after_s:
            self.counts["suppressed_duplicate"] += 1
            return []
        while state.sent and now - state.sent[0] >= self.policy.rate_window_s:
            state.sent.popleft()
        if len(state.sent) >= self.policy.max_per_window:
            state.suppressed += 1
            self.counts["suppressed_rate"] += 1
            return []
        body = {"policy": policy, "urn": urn, "verdict": verdict, "previous_verdict": previous,
                "rule": decision.get("rule"), "reason": decision.get("reason"), "decision_id": decision_id,
                "time": int(now), "node": self.node_did, "suppressed": state.suppressed}
        if self.policy.include_telemetry and telemetry is not None:
            body["telemetry"] = dict(telemetry)
        state.suppressed, state.last_alerted, state.last_alert_at = 0, verdict, now
        state.sent.append(now)
        self.counts["sent"] += 1
        message = Message.new("ALERT", body, now, self.randbytes)
        return [OutboundAlert(r, message, seal(r.public_key, message, self.randbytes))
                for r in self.policy.recipients]


def _verdict_name(value: object) -> str:
    """Decision.to_dict() gives the name; a bare code is accepted too. Anything else is DENY: an
    unreadable verdict is treated as the fail-safe one, so it is alerted rather than missed."""
    if isinstance(value, str) and value in VERDICT_NAMES:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value in {v.value for v in Verdict}:
        return Verdict(value).name
    return Verdict.DENY.name


class AlertSender:
    """Posts alerts as OpCode 9 MESSAGEs signed by the node's identity."""

    def __init__(self, ledger: Any, identity: Identity) -> None:
        self.ledger = ledger
        self.identity = identity

    def send(self, alerts: Iterable[OutboundAlert], now: float) -> list[dict[str, Any]]:
        """One result per alert: {"to", "seq"} when posted, {"to", "error"} when not (logged, never raised:
        a ledger hiccup must not stop the evaluation loop)."""
        results = []
        for alert in alerts:
            try:
                entry = self.ledger.sign_and_submit(
                    self.identity, ops.message(alert.recipient.to, alert.envelope.to_dict()), int(now))
            except (LedgerError, MessagingError) as exc:
                log.warning("alert to %s not sent: %s: %s", alert.recipient.to, exc.code, exc)
                results.append({"to": alert.recipient.to, "error": exc.to_dict()})
                continue
            results.append({"to": alert.recipient.to, "seq": entry.seq})
        return results
