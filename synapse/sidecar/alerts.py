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
telemetry unless `include_telemetry` is set. `observe` is `decide` (which message, if any) then `seal`
(one envelope per recipient).

Recipients are keys, key DIDs or group DIDs (`resolve_recipients`); `RecipientBook` resolves them
again whenever the ledger changes, so the sidecar seals each alert for the group members of the moment.

`AlertSender` is the I/O edge: each envelope becomes an OpCode 9 MESSAGE on the ledger, signed by the
node's key (which is how recipients know who raised it).
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from axon.abi import Verdict
from axon.keys import Identity, InvalidKey, PublicKey
from axon.ledger import LedgerError, ops
from axon.messaging.envelope import MessageEnvelope, seal
from axon.messaging.errors import MessagingError
from axon.messaging.inner import Message
from synapse.errors import SynapseError

log = logging.getLogger("synapse.sidecar.alerts")

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
    """Recipients from configuration, each one of

    - a key's DID, looked up on the ledger (must be unrevoked);
    - a group's DID (GROUP_DEFINE), expanded into its members' unrevoked keys (must have at least one);
    - a public key in hex (65-byte uncompressed or 33-byte compressed), sent to its address.

    A key named twice (directly and through a group, or in two groups) is one recipient. Raises
    AlertConfigError naming the first spec that cannot be resolved."""
    recipients, problems = _resolve(specs, ledger)
    if problems:
        raise AlertConfigError(problems[0])
    return recipients


def _resolve(specs: Iterable[str], ledger: Any | None) -> tuple[tuple[Recipient, ...], list[str]]:
    """The recipients that resolve, and what is wrong with the DIDs that do not (those can come right
    as the ledger changes). A spec that is neither a DID nor a key is never right: it raises."""
    found: dict[str, Recipient] = {}  # by key address: one envelope per key, the first naming wins
    problems: list[str] = []

    def add(recipient: Recipient) -> None:
        found.setdefault(recipient.public_key.address, recipient)

    for spec in specs:
        if not spec.startswith("did:"):
            add(Recipient(_public_key(spec)))
            continue
        record = ledger.key(spec) if ledger is not None else None
        if record is not None:
            if record.revoked:
                problems.append(f"alert recipient {spec} is revoked on the ledger")
            else:
                add(Recipient(record.public_key, record.did))
            continue
        if ledger is None or ledger.group(spec) is None:
            problems.append(f"alert recipient {spec} is neither a key nor a group on the ledger")
            continue
        members = ledger.group_members(spec)
        if not members:
            problems.append(f"alert recipient group {spec} has no unrevoked member on the ledger")
        for member in members:
            add(Recipient(member.public_key, member.did))
    return tuple(found.values()), problems


def _public_key(spec: str) -> PublicKey:
    try:
        return PublicKey.from_hex(spec)
    except InvalidKey as exc:
        raise AlertConfigError(f"alert recipient {spec[:20]!r}... is neither a DID nor a public key "
                               "in hex") from exc


class RecipientBook:
    """The configured recipients, resolved again whenever the ledger's head moves, so a key revoked or a
    member added to a group after start counts from the next alert on.

    Built strictly (`resolve_recipients`: a configuration error raises). Afterwards a DID that stops
    resolving (a group whose members were all revoked...) is left out and logged once, until it
    resolves again; the rest still get their alerts. If the ledger cannot be read, the last resolution
    stands. Thread-safe: the sidecar sends from worker threads."""

    def __init__(self, specs: Iterable[str], ledger: Any) -> None:
        self.specs = tuple(specs)
        self._head = _head(ledger)
        self.latest = resolve_recipients(self.specs, ledger)
        self._reported: set[str] = set()
        self._lock = threading.Lock()

    def current(self, ledger: Any) -> tuple[Recipient, ...]:
        with self._lock:
            try:
                head = _head(ledger)
                if head != self._head:
                    self.latest, problems = _resolve(self.specs, ledger)
                    self._head = head
                    for problem in problems:
                        if problem not in self._reported:
                            log.warning("%s: left out of alerts until it resolves again", problem)
                    self._reported = set(problems)  # a problem that clears and comes back is told again
            except LedgerError as exc:
                log.warning("alert recipients not re-resolved (the last ones stand): %s: %s", exc.code, exc)
            return self.latest


def _head(ledger: Any) -> tuple[int, bytes]:
    # The head is read before the state is resolved: a change in between only means one more refresh.
    return ledger.head_seq, ledger.head_hash


@dataclass(frozen=True)
class OutboundAlert:
    recipient: Recipient
    message: Message
    envelope: MessageEnvelope


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
                 randbytes: Callable[[int], bytes] = secrets.token_bytes,
                 on_count: Callable[[str], None] | None = None) -> None:
        """`on_count(outcome)` hears every count as it is made (the service's metrics)."""
        self.policy = policy
        self.node_did = node_did
        self.randbytes = randbytes
        self._state: dict[str, _PolicyState] = {}
        # sent, suppressed_duplicate, suppressed_rate
        self.counts: Counter[str] = Counter()
        self._on_count = on_count

    def observe(self, decision: Mapping[str, Any], policy: str, urn: str, decision_id: str, now: float,
                telemetry: Mapping[str, Any] | None = None) -> list[OutboundAlert]:
        """`decide`, then `seal` for the policy's recipients."""
        message = self.decide(decision, policy, urn, decision_id, now, telemetry)
        return [] if message is None else self.seal(message, self.policy.recipients)

    def decide(self, decision: Mapping[str, Any], policy: str, urn: str, decision_id: str, now: float,
               telemetry: Mapping[str, Any] | None = None) -> Message | None:
        """The ALERT this decision raises, or None (not alerting, a duplicate, or over the rate limit)."""
        verdict = _verdict_name(decision.get("verdict"))
        state = self._state.setdefault(policy, _PolicyState())
        previous, state.last_verdict = state.last_verdict, verdict
        if verdict not in self.policy.verdicts:
            return None
        changed = verdict != previous or verdict != state.last_alerted
        if not changed and now - (state.last_alert_at or 0.0) < self.policy.repeat_after_s:
            self._count("suppressed_duplicate")
            return None
        while state.sent and now - state.sent[0] >= self.policy.rate_window_s:
            state.sent.popleft()
        if len(state.sent) >= self.policy.max_per_window:
            state.suppressed += 1
            self._count("suppressed_rate")
            return None
        body = {"policy": policy, "urn": urn, "verdict": verdict, "previous_verdict": previous,
                "rule": decision.get("rule"), "reason": decision.get("reason"), "decision_id": decision_id,
                "time": int(now), "node": self.node_did, "suppressed": state.suppressed}
        if self.policy.include_telemetry and telemetry is not None:
            body["telemetry"] = dict(telemetry)
        state.suppressed, state.last_alerted, state.last_alert_at = 0, verdict, now
        state.sent.append(now)
        self._count("sent")
        return Message.new("ALERT", body, now, self.randbytes)

    def _count(self, outcome: str) -> None:
        self.counts[outcome] += 1
        if self._on_count is not None:
            self._on_count(outcome)

    def seal(self, message: Message, recipients: Iterable[Recipient]) -> list[OutboundAlert]:
        """One envelope per recipient, each with its own ephemeral key."""
        return [OutboundAlert(r, message, seal(r.public_key, message, self.randbytes)) for r in recipients]


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
