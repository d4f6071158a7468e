"""The constraint-node transaction protocol (draft-urien-core-blockchain-transaction-protocol-08).

A controller sends a node a Provisioning-Message with the blockchain context (nonce, gas price, gas
limit, recipient, value); the node answers with a Transaction-Message holding an Ethereum transaction
it signed over its own data (a sensor reading, or a decision attestation as canonical JSON). The
transports (CoAP: axon/transports/coap_node.py, HTTP: synapse/api/constraint.py) only move bytes;
everything here is pure. Interpretation choices are in docs/constraint-node.md.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import rfc8785
from jsonschema import Draft202012Validator, ValidationError, validators

from axon import ethtx, strictjson
from axon.errors import AxonError
from axon.keys import PublicKey, Signer

TYPE_ERROR = 0
TYPE_ETHEREUM = 1
GWEI = 10**9
MAX_UINT256 = 2**256 - 1
MAX_NONCE = 2**64 - 2           # EIP-2681: a nonce stays below 2**64 - 1
MAX_GAS_LIMIT = 2**63 - 1       # EIP-1985
MAX_GAS_PRICE_GWEI = MAX_UINT256 // GWEI
MAX_PROVISIONING_BYTES = 1024   # a real one is ~110 bytes; even 78-digit numbers fit
MAX_DATA_BYTES = 32 * 1024      # what a node may put in one transaction
MAX_TRANSACTION_MESSAGE_BYTES = 2 * ethtx.MAX_TX_SIZE + 1024
MAX_JSON_DEPTH = 4              # the messages are flat; {"error": {...}} is the deepest


class ConstraintNodeError(AxonError):
    code = "AXON-CN"


class MalformedMessage(ConstraintNodeError):
    """A provisioning or transaction message that is not what the protocol allows; `field` says where."""

    code = "AXON-CN-MALFORMED"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field


class NodeReportedError(ConstraintNodeError):
    """The node answered with a type-0 (error) Transaction-Message."""

    code = "AXON-CN-NODE-ERROR"


class TransactionMismatch(ConstraintNodeError):
    """The node's transaction does not carry the parameters the controller provisioned."""

    code = "AXON-CN-MISMATCH"


class NodeDataError(ConstraintNodeError):
    """The node's own data could not be read or is too large to carry."""

    code = "AXON-CN-DATA"


class MediaTypeRefused(ConstraintNodeError):
    """The request does not declare its body JSON (CoAP Content-Format 50): the node does not guess."""

    code = "AXON-CN-MEDIA-TYPE"


# --- strict JSON ------------------------------------------------------------------------------------------


def _is_int(_checker: object, instance: object) -> bool:
    # JSON Schema calls 12.0 an integer and Python calls True one; the protocol means neither.
    return isinstance(instance, int) and not isinstance(instance, bool)


_Validator = validators.extend(
    Draft202012Validator, type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_int)
)


def _uint(maximum: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": 0, "maximum": maximum}


PROVISIONING_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Provisioning-Message (draft-urien-08 §3.1), Ethereum",
    "type": "object",
    "properties": {
        "type": {"type": "integer", "enum": [TYPE_ETHEREUM]},
        "nonce": _uint(MAX_NONCE),
        "gasPrice": _uint(MAX_GAS_PRICE_GWEI),  # in GWei: the draft's 30 is the 30 GWei of its §2.2
        "gasLimit": _uint(MAX_GAS_LIMIT),
        "address": {"type": "string", "pattern": "^(0x)?[0-9a-fA-F]{40}(?!\\n)$"},
        "value": _uint(MAX_UINT256),            # in wei
    },
    "required": ["type", "nonce", "gasPrice", "gasLimit", "address", "value"],
    "additionalProperties": False,
}
TRANSACTION_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Transaction-Message (draft-urien-08 §3.2)",
    "type": "object",
    "properties": {
        "type": {"type": "integer", "enum": [TYPE_ERROR, TYPE_ETHEREUM]},
        "transaction": {"type": "string", "pattern": "^(0x)?([0-9a-fA-F]{2})*(?!\\n)$",
                        "maxLength": 2 * ethtx.MAX_TX_SIZE + 2},
        "error": {
            "type": "object",
            "properties": {"code": {"type": "string", "maxLength": 64},
                           "message": {"type": "string", "maxLength": 1024}},
            "required": ["code", "message"],
            "additionalProperties": False,
        },
    },
    "required": ["type"],
    "additionalProperties": False,
    "if": {"properties": {"type": {"const": TYPE_ETHEREUM}}},
    "then": {"required": ["transaction"]},
}
_PROVISIONING = _Validator(PROVISIONING_SCHEMA)
_CLIENT_ERRORS = {MalformedMessage.code, "AXON-CN-OVERSIZE"}
_TRANSACTION = _Validator(TRANSACTION_SCHEMA)
_TYPE_NAMES = {"integer": "an integer", "string": "a string", "object": "an object"}
_JSON_TYPES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
               dict: "an object", type(None): "null"}


def _load(body: bytes | str | Mapping[str, Any], limit: int, what: str) -> dict[str, Any]:
    if isinstance(body, Mapping):
        return dict(body)
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    if len(raw) > limit:
        raise MalformedMessage(f"{what} is {len(raw)} bytes; the limit is {limit}", code="AXON-CN-OVERSIZE")
    try:
        doc = strictjson.loads(raw, max_depth=MAX_JSON_DEPTH)
    except strictjson.JsonError as exc:
        raise MalformedMessage(f"{what} is not strict JSON: {exc}") from exc
    return doc


def _check(validator: Draft202012Validator, doc: object, what: str) -> None:
    if not isinstance(doc, dict):
        raise MalformedMessage(f"{what} must be a JSON object, not {_JSON_TYPES.get(type(doc), 'that')}")
    errors = sorted(validator.iter_errors(doc), key=lambda e: (list(e.path), str(e.validator)))
    if errors:
        err = errors[0]
        field = str(err.path[0]) if err.path else _missing_or_extra(err)
        raise MalformedMessage(f"{what}: {_explain(err, field)}", field=field)


def _missing_or_extra(err: ValidationError) -> str | None:
    match = re.search(r"'([^']*)'", err.message)
    return match.group(1) if match and err.validator in ("required", "additionalProperties") else None


def _explain(err: ValidationError, field: str | None) -> str:
    value = err.instance
    if err.validator == "required":
        return f"missing field {field!r}"
    if err.validator == "additionalProperties":
        return f"unknown field {field!r}"
    if err.validator == "type":
        actual = _JSON_TYPES.get(type(value), "that")
        return f"{field} must be {_TYPE_NAMES[err.validator_value]}, not {actual}"
    if err.validator == "minimum":
        return f"{field} must not be negative ({value})"
    if err.validator == "maximum":
        return f"{field} is too large ({len(str(value))} digits; the maximum is {err.validator_value})"
    if err.validator == "enum" and field == "type":
        return f"unsupported message type {value!r} (expected one of {err.validator_value})"
    if err.validator == "pattern" and field == "address":
        return f"address {value!r} is not 40 hex digits (with or without 0x)"
    if err.validator == "pattern" and field == "transaction":
        return "transaction is not an even number of hex digits"
    return err.message if len(err.message) < 200 else err.message[:197] + "..."



# --- messages ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProvisioningMessage:
    """The controller's blockchain context. `gas_price_gwei` as in the draft's JSON; `value` in wei."""

    nonce: int
    gas_price_gwei: int
    gas_limit: int
    address: bytes
    value: int = 0
    type: int = TYPE_ETHEREUM

    def __post_init__(self) -> None:
        if not isinstance(self.address, bytes):
            raise MalformedMessage("address must be 20 bytes", field="address")
        _check(_PROVISIONING, self.to_dict(), "provisioning message")

    @classmethod
    def parse(cls, body: bytes | str | Mapping[str, Any]) -> ProvisioningMessage:
        doc = _load(body, MAX_PROVISIONING_BYTES, "provisioning message")
        _check(_PROVISIONING, doc, "provisioning message")
        return cls(nonce=doc["nonce"], gas_price_gwei=doc["gasPrice"], gas_limit=doc["gasLimit"],
                   address=bytes.fromhex(doc["address"].removeprefix("0x")), value=doc["value"],
                   type=doc["type"])

    @property
    def gas_price_wei(self) -> int:
        return self.gas_price_gwei * GWEI

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "nonce": self.nonce, "gasPrice": self.gas_price_gwei,
                "gasLimit": self.gas_limit, "address": self.address.hex().upper(), "value": self.value}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict()).encode()

    def unsigned_transaction(self, data: bytes) -> ethtx.Transaction:
        return ethtx.Transaction(nonce=self.nonce, gas_price=self.gas_price_wei, gas_limit=self.gas_limit,
                                 to=self.address, value=self.value, data=data)


@dataclass(frozen=True)
class TransactionMessage:
    """The node's answer: type 1 with the signed transaction, or type 0 with an error."""

    type: int
    transaction: bytes = b""
    error: dict[str, str] | None = None

    @classmethod
    def failure(cls, exc: AxonError) -> TransactionMessage:
        return cls(TYPE_ERROR, error={"code": exc.code, "message": str(exc)[:1024]})

    @property
    def is_error(self) -> bool:
        return self.type == TYPE_ERROR

    @property
    def client_error(self) -> bool:
        """An error caused by the provisioning message (as opposed to the node's own failure)."""
        return self.is_error and (self.error or {}).get("code") in _CLIENT_ERRORS

    def to_dict(self) -> dict[str, Any]:
        if self.is_error:
            return {"type": TYPE_ERROR, "error": dict(self.error or {})}
        return {"type": self.type, "transaction": self.transaction.hex().upper()}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict()).encode()


# --- the node ---------------------------------------------------------------------------------------------


def attestation(payload: Mapping[str, Any]) -> bytes:
    """Data for a decision attestation: RFC 8785 canonical JSON, so any verifier re-derives the bytes."""
    return rfc8785.dumps(dict(payload))


class ConstraintNode:
    """A node holding a blockchain key; it signs transactions over its own data when provisioned."""

    def __init__(self, key: Signer) -> None:
        self._key = key

    @property
    def address(self) -> str:
        return self._key.address

    def handle_provisioning(self, msg: ProvisioningMessage, data: bytes,
                            chain_id: int | None) -> TransactionMessage:
        """Sign a transaction with the provisioned context carrying `data`: EIP-155 for `chain_id`, or the
        draft's pre-EIP-155 form (v = 27/28) when `chain_id` is None."""
        if not isinstance(data, bytes | bytearray):
            raise NodeDataError(f"node data must be bytes, not {type(data).__name__}")
        if len(data) > MAX_DATA_BYTES:
            raise NodeDataError(f"node data is {len(data)} bytes; the limit is {MAX_DATA_BYTES}")
        if chain_id is not None and not (isinstance(chain_id, int) and not isinstance(chain_id, bool)
                                         and chain_id >= 1):
            raise NodeDataError(f"chain id must be a positive integer or None, not {chain_id!r}")
        tx = msg.unsigned_transaction(bytes(data)).sign(self._key, chain_id)
        return TransactionMessage(TYPE_ETHEREUM, tx.encode())

    def respond(self, body: bytes, read: Callable[[], bytes], chain_id: int | None) -> TransactionMessage:
        """A transport's whole job on the node: provisioning bytes in, Transaction-Message out; every failure
        becomes a type-0 message (never an exception, never a stack trace)."""
        try:
            msg = ProvisioningMessage.parse(body)
            return self.handle_provisioning(msg, read(), chain_id)
        except AxonError as exc:
            return TransactionMessage.failure(exc)
        except Exception:  # the reading callback failed: report it without its internals
            return TransactionMessage.failure(NodeDataError("the node could not read its data"))


# --- the controller side ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeTransaction:
    """A decoded, signature-checked transaction from a node."""

    transaction: ethtx.Transaction
    raw: bytes
    public_key: PublicKey

    @property
    def tx_hash(self) -> str:
        return "0x" + self.transaction.hash.hex()

    @property
    def sender(self) -> str:
        return self.public_key.address

    @property
    def chain_id(self) -> int | None:
        return self.transaction.chain_id

    @property
    def data(self) -> bytes:
        return self.transaction.data

    def check_matches(self, msg: ProvisioningMessage) -> None:
        """Raise TransactionMismatch unless the node signed exactly the provisioned context."""
        tx = self.transaction
        for name, got, want in (
            ("nonce", tx.nonce, msg.nonce), ("gas price", tx.gas_price, msg.gas_price_wei),
            ("gas limit", tx.gas_limit, msg.gas_limit), ("recipient", tx.to, msg.address),
            ("value", tx.value, msg.value),
        ):
            if got != want:
                raise TransactionMismatch(f"the node's transaction has {name} {got!r}, "
                                          f"not the provisioned {want!r}")

    def to_dict(self) -> dict[str, Any]:
        return {**self.transaction.to_dict(), "tx_hash": self.tx_hash, "sender": self.sender,
                "public_key": self.public_key.hex(), "data_text": data_text(self.data)}


def decode_transaction(raw: bytes) -> NodeTransaction:
    """Strictly decode a signed legacy transaction and recover its sender (axon.ethtx errors)."""
    tx = ethtx.decode(raw)
    return NodeTransaction(tx, bytes(raw), tx.sender())


def parse_transaction_message(body: bytes | str | Mapping[str, Any]) -> NodeTransaction:
    """Controller side: a Transaction-Message → the decoded transaction, its hash and sender. A type-0
    message raises NodeReportedError with the node's code; anything malformed raises MalformedMessage or
    an axon.ethtx error. Every error is an AxonError."""
    doc = _load(body, MAX_TRANSACTION_MESSAGE_BYTES, "transaction message")
    _check(_TRANSACTION, doc, "transaction message")
    if doc["type"] == TYPE_ERROR:
        error = doc.get("error") or {"code": "unknown", "message": "no detail given"}
        raise NodeReportedError(f"the node reported an error: {error['message']} [{error['code']}]")
    return decode_transaction(bytes.fromhex(doc["transaction"].removeprefix("0x")))


_PRINTABLE = set(string.printable) - set("\x0b\x0c")


def data_text(data: bytes) -> str | None:
    """The data as text when it is printable UTF-8 (a reading like "Temperature=25C", or JSON), else None."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text and all(c in _PRINTABLE or (c.isprintable() and ord(c) > 127) for c in text) else None
