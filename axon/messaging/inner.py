"""The decrypted SIP-017 message (§3.4): {"type", "timestamp", "nonce", "body"}.

`parse` turns plaintext bytes into a checked `Message` (strict JSON: UTF-8, no duplicate keys, no
NaN/Infinity, bounded nesting) and `Message.to_bytes` is what `seal` encrypts. The schema is
`inner.schema.json`, checked with jsonschema; whether a type is *known* is the receiver's business.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from axon import strictjson
from axon.messaging import schemas
from axon.messaging.errors import SchemaError

SCHEMA = "inner.schema.json"
KNOWN_TYPES = frozenset({"CMD", "LOG", "ALERT", "KEY_EXCHANGE"})
NONCE_BYTES = 12  # 96 bits (§3.4)
# A body nested deeper than this is refused: nothing SIP-017 carries needs it, and deep nesting is
# how a small message becomes a recursion bomb for whatever handles the body next.
MAX_DEPTH = 32
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@dataclass(frozen=True, slots=True)
class Message:
    """A checked inner message: constructing one checks it against the schema, so every Message is
    one a receiver accepts (`seal` relies on this and does not check again)."""

    type: str
    timestamp: int
    nonce: str
    body: dict[str, Any]
    # from_dict sets it after checking the very same fields; nothing else should.
    _checked: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self._checked:
            checked = from_dict(self.to_dict())
            object.__setattr__(self, "timestamp", checked.timestamp)
            object.__setattr__(self, "_checked", True)

    @classmethod
    def new(cls, type: str, body: dict[str, Any], now: float,
            randbytes: Callable[[int], bytes] = secrets.token_bytes) -> Message:
        """A message stamped `now` with a fresh 96-bit nonce; checked against the schema."""
        return from_dict({"type": type, "timestamp": int(now), "nonce": randbytes(NONCE_BYTES).hex(),
                          "body": body})

    @property
    def known(self) -> bool:
        return self.type in KNOWN_TYPES

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "timestamp": self.timestamp, "nonce": self.nonce, "body": self.body}

    def to_bytes(self) -> bytes:
        """Compact UTF-8 JSON, what `seal` encrypts. NaN or a non-JSON value in the body is a SchemaError."""
        try:
            return _ENCODER.encode(self.to_dict()).encode()
        except (TypeError, ValueError) as exc:
            raise SchemaError(f"inner message /body: not JSON-serialisable ({type(exc).__name__})") from exc


def from_dict(doc: object) -> Message:
    """A `Message` from a decoded JSON object, or SchemaError naming the field and the rule."""
    reason = schemas.first_error(SCHEMA, doc, "inner message")
    if reason is not None:
        raise SchemaError(reason)
    if not isinstance(doc, dict):  # the schema says so; checked again for the type and for python -O
        raise SchemaError("inner message: not a JSON object")
    if _depth(doc["body"]) > MAX_DEPTH:
        raise SchemaError(f"inner message /body: nested deeper than {MAX_DEPTH} levels")
    # jsonschema's "integer" admits 1.0; the message carries the int.
    return Message(doc["type"], int(doc["timestamp"]), doc["nonce"], doc["body"], _checked=True)


def parse(plaintext: bytes) -> Message:
    """Decrypted bytes → `Message`. Strict JSON: a duplicate key or NaN is a schema error, not a choice."""
    try:
        doc = strictjson.loads(plaintext)
    except strictjson.JsonError as exc:
        raise SchemaError(f"inner message: not valid JSON ({exc})") from None
    return from_dict(doc)


def _depth(value: Any) -> int:
    """Nesting depth of a decoded JSON value, iteratively (no recursion to exhaust)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            items = item.values()
        elif isinstance(item, list):
            items = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in items)
    return deepest
