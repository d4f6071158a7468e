"""KEY_EXCHANGE (SIP-017 §5.3): agree an SCP session key over authenticated SIP-017 messages.

    initiator                                         responder
    offer() ── KEY_EXCHANGE {"kx": "offer", session_id, x25519, expires_at, protocol} ──▶ accept()
    complete() ◀── KEY_EXCHANGE {"kx": "accept", session_id, x25519, offer_hash} ──────────┘

Both messages travel inside a signed wrapper or an OpCode 9 transaction (signed.py), so each side knows
the other's DID, and the responder checks the initiator's authority (LVL_2, authority.py) before it
accepts. The X25519 keys are ephemeral, one pair per session, so a session key outlives nothing.

    key = HKDF-SHA256(ikm = X25519(own, peer), salt = session_id,
                      info = "sopcos-scp-session/1" ‖ SHA-256(offer_c14n ‖ accept_c14n)
                             ‖ initiator DID ‖ 0x00 ‖ responder DID, length = 32)

where *_c14n are the RFC 8785 forms of the two bodies, so the key binds both parties and the whole
exchange. What SCP does with a `KeyExchangeSession` (axon/transports/scp_protocol.py, docs/transports.md): the
client names `session_id` in its HANDSHAKE_INIT (`connect(..., session=session)`), the server takes it
from its store (`serve(..., session_lookup=sessions.lookup())`), both check that the session's two DIDs
are the identities the handshake proved, and both mix `key` into the handshake's HKDF as a pre-shared
key beside the fresh X25519 secret (TLS 1.3 PSK-(EC)DHE), so only the two holders of the key complete it.
A session starts one connection, no later than `expires_at`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import rfc8785
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from axon.keys import sha256
from axon.messaging import schemas
from axon.messaging.errors import KeyExchangeError

SCHEMA = "key_exchange.schema.json"
PROTOCOL = "scp-1"
INFO = b"sopcos-scp-session/1"
DEFAULT_TTL_S = 120
MAX_TTL_S = 3600


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _checked(body: Mapping[str, Any], kind: str) -> dict[str, Any]:
    doc = dict(body)
    reason = schemas.first_error(SCHEMA, doc, f"KEY_EXCHANGE {kind}")
    if reason is None and doc["kx"] != kind:
        reason = f"KEY_EXCHANGE: expected an {kind}, got an {doc['kx']}"
    if reason is not None:
        raise KeyExchangeError(reason)
    return doc


@dataclass(frozen=True)
class SessionOffer:
    session_id: bytes
    x25519: bytes
    expires_at: int
    protocol: str = PROTOCOL

    def to_body(self) -> dict[str, Any]:
        return {"kx": "offer", "protocol": self.protocol, "session_id": self.session_id.hex(),
                "x25519": self.x25519.hex(), "expires_at": self.expires_at}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> SessionOffer:
        doc = _checked(body, "offer")
        return cls(bytes.fromhex(doc["session_id"]), bytes.fromhex(doc["x25519"]), doc["expires_at"],
                   doc["protocol"])


@dataclass(frozen=True)
class SessionAccept:
    session_id: bytes
    x25519: bytes
    offer_hash: bytes

    def to_body(self) -> dict[str, Any]:
        return {"kx": "accept", "session_id": self.session_id.hex(), "x25519": self.x25519.hex(),
                "offer_hash": self.offer_hash.hex()}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> SessionAccept:
        doc = _checked(body, "accept")
        return cls(bytes.fromhex(doc["session_id"]), bytes.fromhex(doc["x25519"]),
                   bytes.fromhex(doc["offer_hash"]))


@dataclass(frozen=True)
class KeyExchangeSession:
    """An agreed session: both sides derive the same `key`. Never printed with its key."""

    session_id: bytes
    initiator: str
    responder: str
    expires_at: int
    transcript: bytes  # SHA-256(offer_c14n ‖ accept_c14n)
    key: bytes = field(repr=False)


@dataclass(frozen=True)
class PendingOffer:
    """The initiator's side of an offer in flight: the offer and its X25519 secret."""

    offer: SessionOffer
    responder: str
    private: X25519PrivateKey = field(repr=False)


def offer_hash(offer: SessionOffer) -> bytes:
    return sha256(rfc8785.dumps(offer.to_body()))


def offer(responder: str, now: float, ttl_s: int = DEFAULT_TTL_S,
          randbytes: Callable[[int], bytes] = secrets.token_bytes) -> PendingOffer:
    """Start an exchange with `responder`; send `pending.offer.to_body()` as a KEY_EXCHANGE body."""
    if not 1 <= ttl_s <= MAX_TTL_S:
        raise KeyExchangeError(f"offer lifetime must be 1..{MAX_TTL_S} s, got {ttl_s}")
    private = X25519PrivateKey.from_private_bytes(randbytes(32))
    made = SessionOffer(randbytes(16), _raw(private.public_key()), int(now) + ttl_s)
    return PendingOffer(made, responder, private)


def accept(offer_body: Mapping[str, Any], initiator: str, responder: str, now: float,
           randbytes: Callable[[int], bytes] = secrets.token_bytes,
           ) -> tuple[SessionAccept, KeyExchangeSession]:
    """The responder's side: check the offer (from `initiator`, already authenticated and authorised),
    answer it, and derive the session. Send `accept.to_body()` back as a KEY_EXCHANGE body."""
    received = SessionOffer.from_body(offer_body)
    if now > received.expires_at:
        raise KeyExchangeError(f"KEY_EXCHANGE offer expired {now - received.expires_at:.0f} s ago")
    if received.expires_at - now > MAX_TTL_S:
        raise KeyExchangeError(f"KEY_EXCHANGE offer lives longer than {MAX_TTL_S} s")
    private = X25519PrivateKey.from_private_bytes(randbytes(32))
    answer = SessionAccept(received.session_id, _raw(private.public_key()), offer_hash(received))
    return answer, _derive(private, received.x25519, received, answer, initiator, responder)


def complete(pending: PendingOffer, accept_body: Mapping[str, Any], responder: str, initiator: str,
             now: float) -> KeyExchangeSession:
    """The initiator's side: check the accept answers *this* offer, from the responder it was sent to."""
    answer = SessionAccept.from_body(accept_body)
    if responder != pending.responder:
        raise KeyExchangeError(f"KEY_EXCHANGE accept came from {responder}, the offer went to "
                               f"{pending.responder}")
    if answer.session_id != pending.offer.session_id or answer.offer_hash != offer_hash(pending.offer):
        raise KeyExchangeError("KEY_EXCHANGE accept does not answer this offer (session_id or offer_hash)")
    if now > pending.offer.expires_at:
        raise KeyExchangeError("KEY_EXCHANGE offer expired before it was accepted")
    return _derive(pending.private, answer.x25519, pending.offer, answer, initiator, responder)


def _derive(private: X25519PrivateKey, peer: bytes, made: SessionOffer, answer: SessionAccept,
            initiator: str, responder: str) -> KeyExchangeSession:
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(peer))
    except ValueError:  # cryptography refuses an all-zero result: a low-order point
        raise KeyExchangeError("KEY_EXCHANGE x25519 key is a low-order point") from None
    transcript = sha256(rfc8785.dumps(made.to_body()) + rfc8785.dumps(answer.to_body()))
    info = INFO + transcript + initiator.encode() + b"\x00" + responder.encode()
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=made.session_id, info=info).derive(shared)
    return KeyExchangeSession(made.session_id, initiator, responder, made.expires_at, transcript, key)


class Sessions:
    """Agreed sessions waiting for their SCP handshake: each is taken once, and not after it expires."""

    def __init__(self, max_sessions: int = 256) -> None:
        self.max_sessions = max_sessions
        self._sessions: dict[bytes, KeyExchangeSession] = {}

    def add(self, session: KeyExchangeSession, now: float) -> None:
        self._sessions = {sid: s for sid, s in self._sessions.items() if s.expires_at >= now}
        if len(self._sessions) >= self.max_sessions:
            raise KeyExchangeError(f"{self.max_sessions} sessions pending: refusing another")
        self._sessions[session.session_id] = session

    def take(self, session_id: bytes, now: float) -> KeyExchangeSession | None:
        session = self._sessions.pop(session_id, None)
        return session if session is not None and now <= session.expires_at else None

    def lookup(self, clock: Callable[[], float] = time.time) -> Callable[[bytes], KeyExchangeSession | None]:
        """`take` at the clock's time (Unix seconds, as `expires_at`): an SCP server's `session_lookup`."""
        return lambda session_id: self.take(session_id, clock())
