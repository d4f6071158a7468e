"""Ledger operations: builders, the JSON schema each must meet, and their canonical byte form.

An operation is a JSON object {"op": NAME, "opcode": N, ...fields}. On the ledger it travels as the
`data` of an Ethereum transaction, encoded as RFC 8785 canonical JSON; `decode` accepts only bytes that
are already canonical, so one operation has exactly one encoding.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import IntEnum
from typing import Any

import rfc8785
from jsonschema import Draft202012Validator, ValidationError

from axon import strictjson
from axon.keys import DID_RE, PublicKey
from axon.ledger.errors import MalformedOperation

MAX_OP_BYTES = 64 * 1024
MAX_GROUP_MEMBERS = 1024
MAX_JSON_DEPTH = 32


class Op(IntEnum):
    """Operation codes (the `opcode` field). 7 and 8 are unassigned."""

    KEY_REGISTER = 1
    KEY_REVOKE = 2
    GROUP_DEFINE = 3
    ARTIFACT_REGISTER = 4
    ARTIFACT_REVOKE = 5
    ARTIFACT_SUPERSEDE = 6
    MESSAGE = 9
    LOG_ANCHOR = 10


class AuthorityLevel(IntEnum):
    """`LVL_1`..`LVL_5`, 5 highest. Written as the string "LVL_n" in operations and envelopes."""

    LVL_1 = 1
    LVL_2 = 2
    LVL_3 = 3
    LVL_4 = 4
    LVL_5 = 5

    @classmethod
    def parse(cls, value: int | str) -> AuthorityLevel:
        """Accepts 3, "3", "LVL_3" or an AuthorityLevel."""
        if isinstance(value, bool):
            raise MalformedOperation(f"authority level must be LVL_1..LVL_5, not {value!r}")
        text = str(value).strip().upper().removeprefix("LVL_")
        if not re.fullmatch(r"[1-5]", text):
            raise MalformedOperation(f"authority level must be LVL_1..LVL_5, not {value!r}")
        return cls(int(text))

    def __str__(self) -> str:
        return self.name


# --- schema ---------------------------------------------------------------------------------------



_EXPECTED: dict[str, str] = {}  # pattern -> what it means, for error messages people can read


def _pattern(body: str, expected: str) -> dict[str, str]:
    # "(?!\n)" because Python's `$` (which jsonschema uses) also matches before a final newline.
    pattern = f"^{body}(?!\n)$"
    _EXPECTED[pattern] = expected
    return {"type": "string", "pattern": pattern}


_DID = _pattern(DID_RE.pattern.removeprefix("^").removesuffix("$"), "a DID like did:sopcos:NAME#key-1")
_ADDRESS = _pattern("0x[0-9a-f]{40}", "an address: 0x and 40 lowercase hex digits")
_LEVEL = {"enum": [lvl.name for lvl in AuthorityLevel]}
_URN = _pattern("urn:sopcos:[A-Za-z0-9._:/+=-]{1,240}", "a URN like urn:sopcos:artifact:sha256:HEX")
_FIELDS: dict[Op, dict[str, Any]] = {
    Op.KEY_REGISTER: {
        "did": _DID,
        "public_key": _pattern("04[0-9a-f]{128}", "an uncompressed key: 04 + 128 lowercase hex digits"),
        "level": _LEVEL,
    },
    Op.KEY_REVOKE: {"did": _DID},
    Op.GROUP_DEFINE: {
        "group": _DID,
        "members": {"type": "array", "items": _DID, "minItems": 1, "maxItems": MAX_GROUP_MEMBERS,
                    "uniqueItems": True},
    },
    Op.ARTIFACT_REGISTER: {
        "urn": _URN,
        "policy": _pattern("[a-z0-9][a-z0-9._-]{0,63}", "a SIP-001 policy name (a-z 0-9 . _ -, 64 at most)"),
        "version": _pattern(r"(0|[1-9][0-9]{0,8})(\.(0|[1-9][0-9]{0,8})){2}", "a version MAJOR.MINOR.PATCH"),
        "authority_level": _LEVEL,
    },
    Op.ARTIFACT_REVOKE: {"urn": _URN, "reason": {"type": "string", "minLength": 1, "maxLength": 512}},
    Op.ARTIFACT_SUPERSEDE: {"urn": _URN, "successor": _URN},
    Op.MESSAGE: {
        "to": {"anyOf": [_DID, _ADDRESS]},
        "envelope": {"type": "object"},  # SIP-017 outer object; its own format is checked by messaging
    },
    Op.LOG_ANCHOR: {  # a node's decision-log head (docs/service.md): truncation shows against the ledger
        "node": _DID,
        "stream_id": _pattern("[0-9a-f]{12}", "a decision-log stream id: 12 lowercase hex digits"),
        "seq": {"type": "integer", "minimum": 1, "maximum": 2**53 - 1},
        "head": _pattern("sha256:[0-9a-f]{64}", "a record hash: sha256: and 64 lowercase hex digits"),
    },
}
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Sopcos ledger operation",
    "oneOf": [
        {
            "type": "object",
            "properties": {"op": {"const": op.name}, "opcode": {"const": op.value}, **fields},
            "required": ["op", "opcode", *fields],
            "additionalProperties": False,
        }
        for op, fields in _FIELDS.items()
    ],
}
_BRANCH = {
    op.name: Draft202012Validator(branch) for op, branch in zip(_FIELDS, SCHEMA["oneOf"], strict=True)
}


def validate(op: Mapping[str, Any]) -> dict[str, Any]:
    """Check `op` against its operation's schema; MalformedOperation names the field and the problem."""
    if not isinstance(op, Mapping):
        raise MalformedOperation(f"an operation is a JSON object, not {type(op).__name__}")
    name = op.get("op")
    branch = _BRANCH.get(name) if isinstance(name, str) else None
    if branch is None:
        raise MalformedOperation(f"unknown operation {name!r}; expected one of {', '.join(_BRANCH)}")
    errors = sorted(branch.iter_errors(dict(op)), key=lambda e: (list(e.absolute_path), e.validator))
    if errors:
        err = errors[0]
        where = "/" + "/".join(str(p) for p in err.absolute_path)
        raise MalformedOperation(f"{name} operation, at {where}: {_explain(err)}")
    return dict(op)


def _explain(err: ValidationError) -> str:
    if err.validator == "pattern" and err.validator_value in _EXPECTED:
        message = f"{err.instance!r} is not {_EXPECTED[err.validator_value]}"
    elif err.validator == "anyOf" and err.absolute_path and err.absolute_path[-1] == "to":
        message = f"{err.instance!r} is neither a DID nor an address"
    else:
        message = err.message
    return message if len(message) <= 200 else message[:197] + "..."


def encode(op: Mapping[str, Any]) -> bytes:
    """Validated, RFC 8785 canonical bytes of `op` (what goes in the transaction's data)."""
    data = rfc8785.dumps(validate(op))
    if len(data) > MAX_OP_BYTES:
        raise MalformedOperation(f"operation is {len(data)} bytes; the limit is {MAX_OP_BYTES}")
    return data


def decode(data: bytes) -> dict[str, Any]:
    """The operation in a transaction's data; it must be valid and already canonical."""
    if len(data) > MAX_OP_BYTES:
        raise MalformedOperation(f"operation is {len(data)} bytes; the limit is {MAX_OP_BYTES}")
    try:
        op = strictjson.loads(data, max_depth=MAX_JSON_DEPTH)
    except strictjson.JsonError as exc:
        raise MalformedOperation(f"transaction data is not strict UTF-8 JSON: {exc}") from exc
    validate(op)
    try:
        canonical = rfc8785.dumps(op)
    except (rfc8785.CanonicalizationError, ValueError, TypeError) as exc:
        raise MalformedOperation(f"operation cannot be canonicalised: {exc}") from exc
    if canonical != data:
        raise MalformedOperation("transaction data is not RFC 8785 canonical JSON")
    return op


# --- builders -------------------------------------------------------------------------------------


def _op(kind: Op, **fields: Any) -> dict[str, Any]:
    return validate({"op": kind.name, "opcode": kind.value, **fields})


def _pub_hex(public_key: PublicKey | str | bytes) -> str:
    if isinstance(public_key, PublicKey):
        return public_key.hex()
    if isinstance(public_key, bytes):
        return PublicKey.from_bytes(public_key).hex()
    return PublicKey.from_hex(public_key).hex()


def register_key(did: str, public_key: PublicKey | str | bytes, level: int | str) -> dict[str, Any]:
    return _op(Op.KEY_REGISTER, did=did, public_key=_pub_hex(public_key),
               level=AuthorityLevel.parse(level).name)


def revoke_key(did: str) -> dict[str, Any]:
    return _op(Op.KEY_REVOKE, did=did)


def define_group(group: str, members: Iterable[str]) -> dict[str, Any]:
    return _op(Op.GROUP_DEFINE, group=group, members=list(members))


def register_artifact(urn: str, policy: str, version: str, authority_level: int | str) -> dict[str, Any]:
    return _op(Op.ARTIFACT_REGISTER, urn=urn, policy=policy, version=version,
               authority_level=AuthorityLevel.parse(authority_level).name)


def revoke_artifact(urn: str, reason: str) -> dict[str, Any]:
    return _op(Op.ARTIFACT_REVOKE, urn=urn, reason=reason)


def supersede_artifact(urn: str, successor: str) -> dict[str, Any]:
    return _op(Op.ARTIFACT_SUPERSEDE, urn=urn, successor=successor)


def message(to: str, envelope: Mapping[str, Any]) -> dict[str, Any]:
    """MESSAGE to a DID or an address (addresses are kept lowercase so lookups match)."""
    if re.fullmatch(r"0x[0-9a-fA-F]{40}", to):
        to = to.lower()
    return _op(Op.MESSAGE, to=to, envelope=dict(envelope))


def log_anchor(node: str, stream_id: str, seq: int, head: str) -> dict[str, Any]:
    """LOG_ANCHOR: record `seq` of the node's decision-log stream `stream_id` has hash `head`."""
    return _op(Op.LOG_ANCHOR, node=node, stream_id=stream_id, seq=seq, head=head)
