"""SIP-009 v1.1 `.sop` envelopes: data model, JSON Schema, canonical signing bytes, building and signing.

The layout is SIP-009 §4 field for field; what Sopcos Edge adds lives inside those objects
(docs/artifacts.md explains every field; axon/schema/sop-envelope.schema.json is the schema):

    header        {magic "SOPC", version "1.1", type "WASM_POLICY", kid}
    meta          {source_hash, compiler_version, authority_level, urn,
                   + policy, version, abi, gas_max, created_at, expires_at (optional), claims (optional)}
    encryption    {enabled: false}, or {enabled: true, algo "AES-256-GCM", iv, recipient_context,
                   + recipients: [{kid | public_key, ephem_pub, iv, wrapped_key}]}
    distribution  {storage_hint}
    payload       {integrity "sha256:<hex of the stored blob>", blob (base64)}
    signature     base64 of the 64-byte low-S secp256k1 signature over
                  SHA-256(RFC 8785 canonical JSON of the envelope without `signature`)

Nothing here reads files, the ledger or a clock: building takes time and randomness as arguments.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import rfc8785
from jsonschema import Draft202012Validator

from axon import accelerators, artifact_crypto, strictjson
from axon.abi import read_meta
from axon.accelerators import pybase64
from axon.artifact_crypto import WrappedKey
from axon.errors import AxonError
from axon.keys import Identity, PublicKey

MAGIC = "SOPC"
FORMAT_VERSION = "1.1"
ARTIFACT_TYPE = "WASM_POLICY"
URN_PREFIX = "urn:sopcos:artifact:sha256:"
HASH_PREFIX = "sha256:"
SCHEMA_PATH = Path(__file__).with_name("schema") / "sop-envelope.schema.json"
LEVELS = ("LVL_1", "LVL_2", "LVL_3", "LVL_4", "LVL_5")


class EnvelopeFormatError(AxonError):
    """The document is not a well-formed v1.1 envelope. `pointer` (RFC 6901) says where."""

    code = "AXON-ENVELOPE-FORMAT"

    def __init__(self, pointer: str, message: str) -> None:
        super().__init__(f"{pointer or '/'}: {message}")
        self.pointer = pointer


@cache
def schema() -> dict[str, Any]:
    return strictjson.loads(SCHEMA_PATH.read_bytes())


@cache
def _validator() -> Draft202012Validator:
    # The schema's local $refs are expanded first: they are acyclic, and resolving references on every
    # validation is about a quarter of jsonschema's time for an envelope.
    return Draft202012Validator(_expand_refs(schema(), schema()["$defs"]))


@cache
def _compiled_validator() -> Any:
    return accelerators.compiled_schema(schema())


def _known_valid(doc: Any) -> bool:
    """jsonschema-rs, compiled from the same schema, says "valid" far sooner than jsonschema (figures in
    docs/artifacts.md, "Accelerators"); only that answer is taken from it (axon/accelerators.py).
    tests/axon/test_envelope.py checks that the two agree."""
    return accelerators.known_valid(_compiled_validator(), doc)


def _expand_refs(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            return _expand_refs(defs[node["$ref"].removeprefix("#/$defs/")], defs)
        return {k: _expand_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_expand_refs(item, defs) for item in node]
    return node


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _binascii_decode(text: str) -> bytes:
    return binascii.a2b_base64(text, strict_mode=True)


def _simd_decode(text: str) -> bytes:
    return pybase64.b64decode(text, validate=True)


# The blob is most of an envelope and decoding it most of a verification, so pybase64's SIMD decoder is
# preferred to binascii when installed and not switched off (axon/accelerators.py; figures in
# docs/artifacts.md, "Accelerators"). Either is used
# with the same rules (tests/axon/test_envelope.py checks each against a regular expression of strict base64).
BASE64_DECODERS: dict[str, Callable[[str], bytes]] = {"binascii": _binascii_decode}
if pybase64 is not None:
    BASE64_DECODERS["pybase64"] = _simd_decode
BASE64_DECODER = "pybase64" if pybase64 is not None else "binascii"  # the one parse uses
_decode_base64 = BASE64_DECODERS[BASE64_DECODER]

# The optional packages in use here, each under the rules of the reference it stands in for (benchmarks
# name them).
ACCELERATORS = tuple(name for name in ("pybase64", "jsonschema-rs") if name in accelerators.IN_USE)


def strict_b64decode(text: str) -> bytes | None:
    """Strict base64, or None: only the RFC 4648 alphabet, a multiple of 4 characters, and `=` only as
    the last one or two (binascii's strict mode alone lets `AAAA=` through)."""
    pad = text.find("=")
    if len(text) % 4 or -1 < pad < len(text) - 2:
        return None
    try:
        return _decode_base64(text)
    except (binascii.Error, ValueError):
        return None


def _b64decode(text: str, pointer: str, *, canonical: bool) -> bytes:
    """strict_b64decode, or EnvelopeFormatError. `canonical` also refuses unused low bits that are not
    zero, so a short field has exactly one spelling; the blob is signed, so it is spared that second pass."""
    data = strict_b64decode(text)
    if data is None:
        raise EnvelopeFormatError(pointer, "is not strict base64 (RFC 4648, with padding)")
    if canonical and b64encode(data) != text:
        raise EnvelopeFormatError(pointer, "is not canonical base64 (its unused low bits are not zero)")
    return data


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def urn_for(blob: bytes) -> str:
    return URN_PREFIX + sha256_hex(blob)


@dataclass(frozen=True, eq=False)
class ArtifactEnvelope:
    """A parsed envelope: the JSON document as signed, with its binary fields decoded.

    Build one with `parse` (from a decoded JSON document) or `build` (from a module).
    """

    doc: dict[str, Any]
    blob: bytes
    signature: bytes
    content_iv: bytes | None
    recipients: tuple[WrappedKey, ...]

    # -- reading -----------------------------------------------------------------------------------

    @classmethod
    def parse(cls, doc: Any) -> ArtifactEnvelope:
        """Check `doc` against the schema and decode its base64 fields; EnvelopeFormatError otherwise."""
        if not _known_valid(doc):
            error = _first_error(list(_validator().iter_errors(doc)))
            if error is not None:
                raise EnvelopeFormatError(_pointer(error.absolute_path), _describe(error))
        blob = _b64decode(doc["payload"]["blob"], "/payload/blob", canonical=False)
        signature = _b64decode(doc["signature"], "/signature", canonical=True)
        encryption = doc["encryption"]
        iv = None
        recipients: tuple[WrappedKey, ...] = ()
        if encryption["enabled"]:
            iv = _b64decode(encryption["iv"], "/encryption/iv", canonical=True)
            recipients = tuple(
                WrappedKey(
                    ephem_pub=_b64decode(item["ephem_pub"], f"/encryption/recipients/{n}/ephem_pub",
                                         canonical=True),
                    iv=_b64decode(item["iv"], f"/encryption/recipients/{n}/iv", canonical=True),
                    wrapped_key=_b64decode(item["wrapped_key"], f"/encryption/recipients/{n}/wrapped_key",
                                           canonical=True),
                    kid=item.get("kid"), public_key=item.get("public_key"),
                )
                for n, item in enumerate(encryption["recipients"])
            )
        return cls(doc, blob, signature, iv, recipients)

    @property
    def header(self) -> dict[str, Any]:
        return self.doc["header"]

    @property
    def meta(self) -> dict[str, Any]:
        return self.doc["meta"]

    @property
    def kid(self) -> str:
        return self.header["kid"]

    @property
    def urn(self) -> str:
        return self.meta["urn"]

    @property
    def integrity(self) -> str:
        return self.doc["payload"]["integrity"]

    @property
    def policy(self) -> str:
        return self.meta["policy"]

    @property
    def version(self) -> str:
        return self.meta["version"]

    @property
    def authority_level(self) -> int:
        return LEVELS.index(self.meta["authority_level"]) + 1

    @property
    def created_at(self) -> int:
        return self.meta["created_at"]

    @property
    def expires_at(self) -> int | None:
        return self.meta.get("expires_at")

    @property
    def encrypted(self) -> bool:
        return bool(self.doc["encryption"]["enabled"])

    @property
    def storage_hint(self) -> str:
        return self.doc["distribution"]["storage_hint"]

    def signing_bytes(self) -> bytes:
        """What is hashed and signed (SIP-009 §5.1): RFC 8785 JSON of the envelope without `signature`."""
        return b"".join(self._signing_parts())

    def digest(self) -> bytes:
        """SHA-256 of signing_bytes(), without building them in one piece."""
        sha = hashlib.sha256()
        for part in self._signing_parts():
            sha.update(part)
        return sha.digest()

    def _signing_parts(self) -> tuple[bytes, ...]:
        return canonical_parts({k: v for k, v in self.doc.items() if k != "signature"}, blob_is_base64=True)

    def content_aad(self) -> bytes:
        return artifact_crypto.content_aad(self.header, self.meta)

    def to_bytes(self) -> bytes:
        """The `.sop` file: the whole envelope as RFC 8785 canonical JSON."""
        return canonical_json(self.doc, blob_is_base64=True)


# -- canonical form ------------------------------------------------------------------------------

_MARKER = "\x00sopc-blob\x00"
_QUOTED_MARKER = rfc8785.dumps(_MARKER)


def canonical_json(doc: Mapping[str, Any], *, blob_is_base64: bool = False) -> bytes:
    """RFC 8785 canonical JSON of an envelope document (with or without `signature`)."""
    return b"".join(canonical_parts(doc, blob_is_base64=blob_is_base64))


def canonical_parts(doc: Mapping[str, Any], *, blob_is_base64: bool = False) -> tuple[bytes, ...]:
    """canonical_json in pieces whose concatenation is the canonical form (hashed without joining).

    With `blob_is_base64` (the caller has strictly decoded `payload.blob`, as `ArtifactEnvelope.parse` does),
    the blob, the one large string, goes in verbatim where a marker was canonicalised: base64 text
    holds nothing RFC 8785 escapes, and rfc8785's escaper would be the costliest part of the signature
    check (docs/artifacts.md, "Performance"). The result is rfc8785's byte for byte
    (tests/axon/test_envelope.py); if the marker occurs elsewhere, rfc8785 does it all.
    """
    if not blob_is_base64:
        return (rfc8785.dumps(doc),)
    payload = doc["payload"]
    out = rfc8785.dumps({**doc, "payload": {**payload, "blob": _MARKER}})
    if out.count(_QUOTED_MARKER) != 1:
        return (rfc8785.dumps(doc),)
    head, tail = out.split(_QUOTED_MARKER)
    return head + b'"', payload["blob"].encode("ascii"), b'"' + tail


# -- schema error reporting ----------------------------------------------------------------------


def _pointer(path: Sequence[Any]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _error_rank(error: Any) -> tuple[int, str]:
    # Report the most specific problem first: deeper paths before "missing key at the top".
    return (-len(error.absolute_path), _pointer(error.absolute_path))


def _first_error(errors: list[Any]) -> Any:
    """The error to report. `encryption` is an anyOf (off | on); its failure is explained against the
    alternative its own `enabled` selects, not as "not valid under any of the given schemas"."""
    if not errors:
        return None
    error = min(errors, key=_error_rank)
    if error.validator == "anyOf" and error.context:
        chosen = 1 if isinstance(error.instance, dict) and error.instance.get("enabled") is True else 0
        error = _first_error([e for e in error.context if e.schema_path[0] == chosen]) or error
    return error


def _describe(error: Any) -> str:
    if error.validator == "required":
        return error.message.replace(" is a required property", " is required here")
    if error.validator == "additionalProperties":
        return f"unknown field(s): {error.message.split('(')[-1].rstrip(')')}"
    if error.validator in ("pattern", "enum", "const", "type", "oneOf", "anyOf"):
        return f"has a value of the wrong form ({error.validator}): {error.message[:200]}"
    return error.message[:300]


# -- building and signing ------------------------------------------------------------------------


@dataclass(frozen=True)
class PackageSpec:
    """What the author decides about an artifact besides its module (`scc package` options)."""

    authority_level: str  # "LVL_1".."LVL_5", the source's declared level
    created_at: int
    expires_at: int | None = None
    storage_hint: str = ""
    encrypt_for: artifact_crypto.Recipients | None = None
    claims: dict[str, Any] | None = None  # meta.claims: what `scc package --claims` proved (docs/analysis.md)


def build(module: bytes, signer: Identity, spec: PackageSpec,
          randbytes: Callable[[int], bytes] = secrets.token_bytes) -> ArtifactEnvelope:
    """Package and sign a compiled policy module. The module's `sopcos.meta` supplies name, version,
    source hash, compiler and gas bound, so the envelope cannot disagree with the module it carries."""
    module_meta = read_meta(module)
    if spec.authority_level not in LEVELS:
        raise ValueError(f"authority level must be one of {', '.join(LEVELS)}")
    header = {"magic": MAGIC, "version": FORMAT_VERSION, "type": ARTIFACT_TYPE, "kid": signer.did}
    meta: dict[str, Any] = {
        "source_hash": module_meta.source_hash, "compiler_version": module_meta.compiler,
        "authority_level": spec.authority_level, "policy": module_meta.policy,
        "version": module_meta.version, "abi": module_meta.abi, "gas_max": module_meta.gas_max,
        "created_at": spec.created_at,
    }
    if spec.expires_at is not None:
        meta["expires_at"] = spec.expires_at
    if spec.claims is not None:
        meta["claims"] = spec.claims
    if spec.encrypt_for is None:
        encryption: dict[str, Any] = {"enabled": False}
        blob = module
    else:
        sealed = artifact_crypto.encrypt_module(module, header, meta, spec.encrypt_for.keys, randbytes)
        encryption = {"enabled": True, "algo": artifact_crypto.CONTENT_ALGO, "iv": b64encode(sealed.iv),
                      "recipient_context": spec.encrypt_for.context,
                      "recipients": [_wrapped_json(w) for w in sealed.wrapped]}
        blob = sealed.ciphertext
    meta["urn"] = urn_for(blob)
    doc = {"header": header, "meta": meta, "encryption": encryption,
           "distribution": {"storage_hint": spec.storage_hint},
           "payload": {"integrity": HASH_PREFIX + sha256_hex(blob), "blob": b64encode(blob)},
           "signature": b64encode(bytes(64))}
    return sign(ArtifactEnvelope.parse(doc), signer)


def sign(envelope: ArtifactEnvelope, signer: Identity) -> ArtifactEnvelope:
    """The same envelope with `header.kid` unchanged and a fresh signature by `signer`."""
    signature = signer.key.sign(envelope.digest())
    doc = {**envelope.doc, "signature": b64encode(signature)}
    return ArtifactEnvelope(doc, envelope.blob, signature, envelope.content_iv, envelope.recipients)


def _wrapped_json(wrapped: WrappedKey) -> dict[str, str]:
    name = {"kid": wrapped.kid} if wrapped.kid is not None else {"public_key": str(wrapped.public_key)}
    return {**name, "ephem_pub": b64encode(wrapped.ephem_pub), "iv": b64encode(wrapped.iv),
            "wrapped_key": b64encode(wrapped.wrapped_key)}


def verify_signature(envelope: ArtifactEnvelope, public_key: PublicKey) -> bool:
    return public_key.verify(envelope.signature, envelope.digest())
