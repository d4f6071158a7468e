"""The receiving side of SIP-017 (§3.4, §4.1): an I/O-free state object with an injected clock.

`Receiver.accept(envelope)` runs, in order: (1-6) `envelope.open` (size, JSON, outer schema, point,
AES-GCM, inner schema); (7) freshness: |now - timestamp| <= window, else MSG-STALE / MSG-FUTURE;
(8) the nonce cache: a nonce already accepted within the window is MSG-REPLAY; (9) the type: an
unknown type is ignored without error and counted (forward compatibility, §3.4). Every drop is counted
by its code and logged with that code and reason, never with content.

Nonce cache, bounded and fail-safe: an entry lives until its message would be stale anyway
(timestamp + window); expired entries are evicted first. When the cache holds `max_nonces` unexpired
entries, new messages are refused (MSG-REPLAY-CACHE-FULL) rather than a nonce forgotten, because a
forgotten nonce is a replay let through. If the clock steps backwards past evicted entries, messages
that old are refused as stale for the same reason (the cache can no longer vouch for them).
"""

from __future__ import annotations

import heapq
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from axon.keys import Signer
from axon.messaging import envelope as envelope_mod
from axon.messaging.envelope import MessageEnvelope
from axon.messaging.errors import (
    FutureMessage,
    MalformedEnvelope,
    MessagingConfigError,
    MessagingError,
    ReplayCacheFull,
    ReplayedMessage,
    StaleMessage,
    WrongRecipient,
)
from axon.messaging.inner import Message
from axon.messaging.signed import LedgerKeys, Sender, SenderKeyDirectory, SignedEnvelope

log = logging.getLogger("axon.messaging")

DEFAULT_WINDOW_S = 30  # SIP-017 §4.1
MAX_WINDOW_S = 300  # §4.1 note: "up to 5 minutes" for air-gapped plants without NTP
DEFAULT_MAX_NONCES = 10_000  # 333 messages/s sustained over a 30 s window; SIP-017 is for signalling


@dataclass(frozen=True)
class ReceiverConfig:
    """Every receiving limit in one place; out-of-range values are refused, not clamped."""

    window_s: int = DEFAULT_WINDOW_S
    max_nonces: int = DEFAULT_MAX_NONCES
    max_envelope_bytes: int = envelope_mod.DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        if type(self.window_s) is not int or not 1 <= self.window_s <= MAX_WINDOW_S:
            raise MessagingConfigError(f"window_s must be a whole number of seconds in 1..{MAX_WINDOW_S} "
                              f"(SIP-017 §4.1 allows up to 5 minutes), got {self.window_s!r}")
        if type(self.max_nonces) is not int or not 1 <= self.max_nonces <= 10_000_000:
            raise MessagingConfigError(f"max_nonces must be in 1..10000000, got {self.max_nonces!r}")
        if type(self.max_envelope_bytes) is not int or not 1024 <= self.max_envelope_bytes <= 1 << 20:
            raise MessagingConfigError(
                f"max_envelope_bytes must be in 1024..1048576, got {self.max_envelope_bytes!r}")


class LedgerEntry(Protocol):
    """What the receiver reads of an axon.ledger Entry."""

    seq: int
    timestamp: int
    sender: str
    op: dict[str, Any]


@dataclass(frozen=True)
class Received:
    """A message that passed every receiver rule, with the sender that signed it."""

    sender: Sender
    message: Message


class NonceStore(Protocol):
    """Where a receiver keeps the nonces it accepted: NonceCache in memory, or a store that outlives the
    process (the node's, synapse/sidecar/mqtt.py), so a replay is refused after a restart too."""

    forgotten_until: int

    def evict(self, now: float) -> None: ...

    def add(self, nonce: str, expires_at: int, now: float) -> None: ...


class NonceCache:
    """Nonces of accepted messages, each until its expiry; at most `max_entries` at once."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._expiry: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []
        # The latest expiry ever evicted: a message expiring no later than this may repeat a
        # nonce the cache has forgotten, so it is refused.
        self.forgotten_until = -1

    def __len__(self) -> int:
        return len(self._expiry)

    def __contains__(self, nonce: str) -> bool:
        return nonce in self._expiry

    def to_dict(self) -> dict[str, int]:
        """Nonce → expiry, to carry the cache across runs (`axon msg inbox` keeps it in its state file)."""
        return dict(self._expiry)

    def restore(self, entries: Mapping[str, int], forgotten_until: int) -> None:
        for nonce, expires_at in entries.items():
            if nonce not in self._expiry:
                self._expiry[nonce] = expires_at
                heapq.heappush(self._heap, (expires_at, nonce))
        self.forgotten_until = max(self.forgotten_until, forgotten_until)

    def evict(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] < now:
            expiry, nonce = heapq.heappop(heap)
            del self._expiry[nonce]
            self.forgotten_until = max(self.forgotten_until, expiry)

    def add(self, nonce: str, expires_at: int, now: float) -> None:
        """Record `nonce`, or raise: MSG-REPLAY if present, MSG-STALE if the cache may have forgotten
        it, MSG-REPLAY-CACHE-FULL if full of unexpired nonces."""
        self.evict(now)
        if nonce in self._expiry:
            raise ReplayedMessage("nonce already seen within the window: replay dropped")
        if expires_at <= self.forgotten_until:
            raise StaleMessage("timestamp predates what this receiver's nonce cache covers "
                               "(it restarted, or its clock stepped back): nonces that old are forgotten")
        if len(self._expiry) >= self.max_entries:
            raise ReplayCacheFull(f"{self.max_entries} unexpired nonces cached: refusing new messages "
                                  "until some expire (raise max_nonces if this is normal traffic)")
        self._expiry[nonce] = expires_at
        heapq.heappush(self._heap, (expires_at, nonce))


class Receiver:
    """Opens envelopes for one key and applies SIP-017's receiver rules. Not thread-safe: one per
    consumer, or guard it with a lock."""

    def __init__(self, key: Signer, config: ReceiverConfig | None = None,
                 clock: Callable[[], float] = time.time, did: str | None = None,
                 started_at: float | None = None, nonces: NonceStore | None = None) -> None:
        """`did`: what a signed or OpCode 9 `to` may name besides this key's address. `started_at`:
        refuse messages stamped before it, whose nonces a previous run may have accepted (a live
        consumer with an in-memory cache passes its start time). `nonces`: a store that remembers
        across runs instead of this run's NonceCache (then no `started_at` is needed)."""
        self.key = key
        self.names = frozenset(name for name in (did, key.address) if name)
        self.config = config or ReceiverConfig()
        self.clock = clock
        self.nonces: NonceStore = nonces if nonces is not None else NonceCache(self.config.max_nonces)
        if started_at is not None:
            # timestamp + window <= forgotten_until  <=>  timestamp < started_at
            self.nonces.forgotten_until = int(started_at) - 1 + self.config.window_s
        # "accepted", "ignored_unknown_type", and one "dropped:<code>" per drop reason.
        self.counts: Counter[str] = Counter()

    def accept(self, envelope: MessageEnvelope | Mapping[str, Any] | str | bytes,
               now: float | None = None) -> Message | None:
        """The checked message; None for a well-formed message of an unknown type (ignored, counted).

        `now` defaults to the injected clock. Raises a MessagingError (counted and logged) otherwise.
        """
        with self.counting():
            return self._check(self._open(envelope), now)

    def accept_signed(self, data: SignedEnvelope | Mapping[str, Any] | str | bytes,
                      directory: SenderKeyDirectory, now: float | None = None) -> Received | None:
        """An off-ledger signed wrapper: (a) shape, (b) `to` names this receiver, (c) the sender is
        known and unrevoked, (d) the signature verifies, then `accept`'s steps 1-9. None for an unknown
        type. The sender's authority is the consumer's check (authority.authorise), per message."""
        with self.counting():
            signed = data if isinstance(data, SignedEnvelope) else SignedEnvelope.parse(
                data, self.config.max_envelope_bytes)
            self._check_recipient(signed.to)
            sender = signed.verify(directory)
            message = self._check(self._open(signed.envelope), now)
        return None if message is None else Received(sender, message)

    def accept_entry(self, entry: LedgerEntry, keys: LedgerKeys, now: float | None = None) -> Received | None:
        """An OpCode 9 MESSAGE entry of the ledger: (a) `to` names this receiver, (b) the transaction's
        signer (recovered and checked by the ledger on submission) is a known, unrevoked key *now*,
        then `accept`'s steps 1-9. None for an unknown type."""
        with self.counting():
            op = entry.op
            if op.get("op") != "MESSAGE":
                raise MalformedEnvelope(f"ledger entry {entry.seq} is a {op.get('op')}, not a MESSAGE")
            self._check_recipient(str(op.get("to")))
            sender = keys.sender_by_address(entry.sender)
            message = self._check(self._open(op.get("envelope")), now)
        return None if message is None else Received(sender, message)

    def _check_recipient(self, to: str) -> None:
        if to not in self.names:
            raise WrongRecipient(f"addressed to {to}, not to this receiver")

    def _open(self, envelope: MessageEnvelope | Mapping[str, Any] | str | bytes) -> Message:
        return envelope_mod.open(self.key, envelope, self.config.max_envelope_bytes)

    def check(self, message: Message, now: float | None = None) -> Message | None:
        """Steps 7-9 alone, on a message decrypted elsewhere."""
        with self.counting():
            return self._check(message, now)

    @contextmanager
    def counting(self) -> Iterator[None]:
        """Count and log every MessagingError raised inside, by code, then let it propagate."""
        try:
            yield
        except MessagingError as exc:
            self.counts[f"dropped:{exc.code}"] += 1
            log.warning("SIP-017 message dropped: %s: %s", exc.code, exc)
            raise

    def _check(self, message: Message, now: float | None) -> Message | None:
        now = self.clock() if now is None else now
        self.nonces.evict(now)  # on every message, so memory is returned even when all are dropped
        window = self.config.window_s
        age = now - message.timestamp
        if age > window:
            raise StaleMessage(f"timestamp is {age:.0f} s old, beyond the {window} s window")
        if -age > window:
            raise FutureMessage(f"timestamp is {-age:.0f} s ahead of this receiver's clock, beyond the "
                                f"{window} s window")
        self.nonces.add(message.nonce, message.timestamp + window, now)
        if not message.known:
            self.counts["ignored_unknown_type"] += 1
            log.info("SIP-017 message of unknown type ignored (forward compatibility)")
            return None
        self.counts["accepted"] += 1
        return message
