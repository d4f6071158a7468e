"""Who sent a message. SIP-017 authenticates nobody, so envelopes travel inside something signed:

- on the ledger, an OpCode 9 MESSAGE transaction {to, envelope}: the transaction's signature is the
  authentication, and its signer's ledger key record is the sender;
- off the ledger, a signed wrapper of the same fields (signed.schema.json):

      {"p": "sip-017-signed", "from": DID, "to": DID|ADDRESS, "envelope": {...}, "sig": HEX64}

  `sig` is the sender's secp256k1 signature (64-byte r ‖ s, low-S) over SHA-256 of the RFC 8785
  canonical JSON of the wrapper without `sig`, checked against the sender's key on the ledger or a
  pinned key.

Signing `to` binds the wrapper to one recipient; the envelope's nonce and timestamp (receiver.py)
stop it being replayed to that recipient.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import rfc8785

from axon import strictjson
from axon.keys import Identity, PublicKey, sha256
from axon.messaging import schemas
from axon.messaging.envelope import DEFAULT_MAX_BYTES, MessageEnvelope
from axon.messaging.errors import BadMessageSignature, MalformedEnvelope, TooLarge, UnknownMessageSender

SCHEMA = "signed.schema.json"
PROTOCOL = "sip-017-signed"
# The wrapper adds DIDs and a signature to an envelope: allow that much over the envelope's limit.
WRAPPER_OVERHEAD = 1024


@dataclass(frozen=True)
class Sender:
    """A sender the receiver knows: its DID, key, authority level (1..5) and where that came from."""

    did: str
    public_key: PublicKey
    level: int
    source: str  # "ledger" or "pinned"


class SenderKeyDirectory(Protocol):
    def sender(self, did: str) -> Sender:
        """The sender's record, or UnknownMessageSender (absent or revoked)."""
        ...


class LedgerKeyRecord(Protocol):
    did: str
    public_key: PublicKey
    level: int
    revoked: bool


class LedgerLike(Protocol):
    def key(self, did: str) -> LedgerKeyRecord | None: ...

    def key_by_address(self, address: str) -> LedgerKeyRecord | None: ...


def sender_from_record(record: LedgerKeyRecord | None, who: str) -> Sender:
    """A ledger key record → Sender; absent or revoked keys are UnknownMessageSender."""
    if record is None:
        raise UnknownMessageSender(f"sender {who} has no key on the ledger")
    if record.revoked:
        raise UnknownMessageSender(f"sender {record.did}'s key is revoked on the ledger")
    return Sender(record.did, record.public_key, int(record.level), "ledger")


class LedgerKeys:
    """Senders as the ledger knows them now (key record, level, revocation)."""

    def __init__(self, ledger: LedgerLike) -> None:
        self.ledger = ledger

    def sender(self, did: str) -> Sender:
        return sender_from_record(self.ledger.key(did), did)

    def sender_by_address(self, address: str) -> Sender:
        """The signer of an OpCode 9 transaction, by the address the ledger recovered from it."""
        return sender_from_record(self.ledger.key_by_address(address), address)


class PinnedKeys:
    """Senders configured by hand (e.g. an operator's key on an air-gapped node), consulted before
    `fallback` (usually LedgerKeys)."""

    def __init__(self, pinned: Mapping[str, tuple[PublicKey, int]],
                 fallback: SenderKeyDirectory | None = None) -> None:
        self._pinned = {did: Sender(did, key, level, "pinned") for did, (key, level) in pinned.items()}
        self.fallback = fallback

    def sender(self, did: str) -> Sender:
        if did in self._pinned:
            return self._pinned[did]
        if self.fallback is None:
            raise UnknownMessageSender(f"sender {did} is not a pinned key")
        return self.fallback.sender(did)


@dataclass(frozen=True)
class SignedEnvelope:
    sender: str  # the wrapper's "from"
    to: str
    envelope: MessageEnvelope
    sig: bytes

    def to_dict(self) -> dict[str, Any]:
        return {**_unsigned(self.sender, self.to, self.envelope), "sig": self.sig.hex()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def parse(cls, data: Mapping[str, Any] | str | bytes,
              max_bytes: int = DEFAULT_MAX_BYTES) -> SignedEnvelope:
        """Shape only (size, JSON, schema, envelope fields); `verify` checks the signature."""
        if isinstance(data, str | bytes | bytearray):
            if len(data) > max_bytes + WRAPPER_OVERHEAD:
                raise TooLarge(f"signed envelope: {len(data)} bytes, over the "
                               f"{max_bytes + WRAPPER_OVERHEAD}-byte limit")
            try:
                doc = strictjson.loads(data)
            except strictjson.JsonError as exc:
                raise MalformedEnvelope(f"signed envelope: not strict JSON: {exc}") from None
        else:
            doc = dict(data)
        reason = schemas.first_error(SCHEMA, doc, "signed envelope")
        if reason is not None:
            raise MalformedEnvelope(reason)
        return cls(doc["from"], doc["to"], MessageEnvelope.parse(doc["envelope"], max_bytes),
                   bytes.fromhex(doc["sig"]))

    def digest(self) -> bytes:
        return signing_digest(self.sender, self.to, self.envelope)

    def verify(self, directory: SenderKeyDirectory) -> Sender:
        """The sender, if `sig` is its signature; UnknownMessageSender or BadMessageSignature otherwise."""
        sender = directory.sender(self.sender)
        if sender.did != self.sender:
            raise UnknownMessageSender(f"directory answered {sender.did} for {self.sender}")
        if not sender.public_key.verify(self.sig, self.digest()):
            raise BadMessageSignature(
                f"signed envelope: signature does not verify against {self.sender}'s key")
        return sender


def _unsigned(sender: str, to: str, envelope: MessageEnvelope) -> dict[str, Any]:
    return {"p": PROTOCOL, "from": sender, "to": to, "envelope": envelope.to_dict()}


def signing_digest(sender: str, to: str, envelope: MessageEnvelope) -> bytes:
    return sha256(rfc8785.dumps(_unsigned(sender, to, envelope)))


def sign(identity: Identity, to: str, envelope: MessageEnvelope) -> SignedEnvelope:
    """Wrap `envelope` for `to`, signed by `identity`."""
    return SignedEnvelope(identity.did, to, envelope,
                          identity.key.sign(signing_digest(identity.did, to, envelope)))
