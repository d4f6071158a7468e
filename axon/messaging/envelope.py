"""The SIP-017 envelope (§3.3) and the two operations on it: `seal` and `open`.

    {"p": "sip-017", "enc": "AES-256-GCM", "iv": HEX12, "ephem_pub": HEX65, "blob": HEX(ct ‖ tag)}

The cryptography is axon.ecies (spec/crypto.md): a fresh ephemeral key per message (§3.2), whole-point
ECDH, HKDF-SHA256, AES-256-GCM; `MessageEnvelope.to_sealed()` bytes are what eciespy (12-byte nonce) reads.

`open` checks, in order: (1) size, before anything is parsed; (2) strict JSON; (3) the outer schema
(`envelope.schema.json`: exact fields, lowercase hex of exact lengths); (4) ephem_pub is a point on
secp256k1; (5) AES-GCM authentication; (6) the inner schema (inner.py). Replay and freshness are the
receiver's checks (receiver.py); who sent it is signed.py's.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from axon import accelerators, ecies, strictjson
from axon.keys import InvalidKey, PublicKey, Signer
from axon.messaging import inner, schemas
from axon.messaging.errors import DecryptFailed, MalformedEnvelope, TooLarge
from axon.messaging.inner import Message

SCHEMA = "envelope.schema.json"
PROTOCOL = "sip-017"
CIPHER = "AES-256-GCM"
# SIP-017 is for signalling, not streaming (§5.3): 64 KiB of envelope JSON is ~32 KiB of message.
DEFAULT_MAX_BYTES = 64 * 1024

def _fast_checks() -> dict[str, Callable[[str], bool]]:
    """One check per field, derived from the shipped schema itself (const or pattern), so the fast
    path cannot drift from the schema; jsonschema runs only to word the error of a failing envelope."""
    checks: dict[str, Callable[[str], bool]] = {}
    for name, rule in schemas.load(SCHEMA)["properties"].items():
        if "const" in rule:
            checks[name] = rule["const"].__eq__
        else:
            checks[name] = re.compile(rule["pattern"]).match  # type: ignore[assignment]
    return checks


_FAST = _fast_checks()
_ENCODER = json.JSONEncoder(separators=(",", ":"))
# Compact JSON of an envelope, less its three hex values: {"p":"sip-017","enc":"AES-256-GCM",...}.
_OVERHEAD = len(json.dumps({"p": PROTOCOL, "enc": CIPHER, "iv": "", "ephem_pub": "", "blob": ""},
                           separators=(",", ":")))


def fast_path_accepts(doc: object) -> bool:
    """True only for what the schema accepts (tests/axon/test_messaging_fuzz.py checks they agree)."""
    return (type(doc) is dict and len(doc) == len(_FAST)
            and all(type(doc.get(k)) is str and ok(doc[k]) for k, ok in _FAST.items()))


@dataclass(frozen=True, slots=True)
class MessageEnvelope:
    iv: bytes
    ephem_pub: bytes
    blob: bytes  # ciphertext ‖ 16-byte GCM tag

    @classmethod
    def from_sealed(cls, sealed: ecies.Sealed) -> MessageEnvelope:
        return cls(sealed.iv, sealed.ephem_pub, sealed.ciphertext)

    def to_sealed(self) -> ecies.Sealed:
        return ecies.Sealed(self.ephem_pub, self.iv, self.blob)

    def to_dict(self) -> dict[str, str]:
        return {"p": PROTOCOL, "enc": CIPHER, "iv": self.iv.hex(), "ephem_pub": self.ephem_pub.hex(),
                "blob": self.blob.hex()}

    def to_json(self) -> str:
        return _ENCODER.encode(self.to_dict())

    @classmethod
    def parse(cls, data: MessageEnvelope | Mapping[str, Any] | str | bytes,
              max_bytes: int = DEFAULT_MAX_BYTES) -> MessageEnvelope:
        """Steps 1-4 of `open`: a `MessageEnvelope` whose fields are well-formed, or a precise error."""
        if isinstance(data, MessageEnvelope):
            _check_size(2 * (len(data.iv) + len(data.ephem_pub) + len(data.blob)), max_bytes)
            return data
        doc = _decode(data, max_bytes)
        if not (accelerators.ENABLED and fast_path_accepts(doc)):  # off: the schema decides every one
            reason = schemas.first_error(SCHEMA, doc, "envelope")
            if reason is not None:
                raise MalformedEnvelope(reason)
        if len(doc["blob"]) % 2:  # the one rule the schema leaves to decoding (see its $comment)
            raise MalformedEnvelope("envelope /blob: an odd number of hex digits is not whole bytes")
        ephem_pub = bytes.fromhex(doc["ephem_pub"])
        try:
            PublicKey.from_bytes(ephem_pub)
        except InvalidKey:
            raise MalformedEnvelope("envelope /ephem_pub: not a point on secp256k1") from None
        return cls(bytes.fromhex(doc["iv"]), ephem_pub, bytes.fromhex(doc["blob"]))


def _check_size(hex_chars: int, max_bytes: int) -> None:
    """An envelope already decoded: every accepted field is ASCII, so its JSON size is the length of
    its values plus the fixed keys and quotes, checked without serialising anything."""
    size = hex_chars + _OVERHEAD
    if size > max_bytes:
        raise TooLarge(f"envelope: {size} bytes of JSON, over the {max_bytes}-byte limit")


def _decode(data: Mapping[str, Any] | str | bytes, max_bytes: int) -> object:
    if isinstance(data, Mapping):
        _check_size(sum(len(v) for v in data.values() if isinstance(v, str)), max_bytes)
        return dict(data)
    if not isinstance(data, str | bytes | bytearray):
        raise MalformedEnvelope(f"envelope: expected JSON text or an object, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise TooLarge(f"envelope: {len(data)} bytes, over the {max_bytes}-byte limit")
    try:  # strict: two `iv` (or any two equal members) would leave the reader to pick one
        return strictjson.loads(data)
    except strictjson.JsonError as exc:
        raise MalformedEnvelope(f"envelope: not strict JSON: {exc}") from None


def seal(recipient: PublicKey, message: Message,
         randbytes: Callable[[int], bytes] = secrets.token_bytes) -> MessageEnvelope:
    """Encrypt `message` to `recipient` with a fresh ephemeral key (SIP-017 §3.2).

    A `Message` was checked against the inner schema when it was made, so nothing is sent that a
    receiver must drop.
    """
    return MessageEnvelope.from_sealed(ecies.seal(recipient, message.to_bytes(), randbytes=randbytes))


def open(recipient: Signer, envelope: MessageEnvelope | Mapping[str, Any] | str | bytes,
         max_bytes: int = DEFAULT_MAX_BYTES) -> Message:
    """Decrypt and check an envelope addressed to `recipient`; raises a MessagingError subclass."""
    parsed = MessageEnvelope.parse(envelope, max_bytes)
    try:
        plaintext = ecies.open_sealed(recipient, parsed.to_sealed())
    except ecies.DecryptionFailed as exc:
        raise DecryptFailed(f"envelope: {exc}") from None
    return inner.parse(plaintext)
