"""Axon's artifact verification (SIP-009 §5, §7, §8): may this `.sop` run here, now?

`Verifier.verify(sop_bytes)` runs the checks below in this order, stopping at the first failure; each
is one small function raising its own `VerifyError` subclass with a stable code (docs/artifacts.md):

     1 check_size           AXON-VERIFY-SIZE              the file is within VerifyConfig.max_artifact_bytes
     2 check_json           AXON-VERIFY-JSON              strict JSON (axon.strictjson); no floats,
                                                        no lone surrogates, nesting <= 16
     3 check_schema         AXON-VERIFY-SCHEMA            SIP-009 §4 v1.1 schema (+ additions), strict base64
     4 check_magic          AXON-VERIFY-MAGIC             header.magic == "SOPC"
       check_version        AXON-VERIFY-VERSION           header.version == "1.1"
       check_type           AXON-VERIFY-TYPE              header.type == "WASM_POLICY"
     5 check_signer         AXON-VERIFY-SIGNER-UNKNOWN    header.kid is a key on the ledger (SIP-009 §7)
                            AXON-VERIFY-SIGNER-REVOKED    ... and that key is not revoked
     6 check_signature      AXON-VERIFY-SIGNATURE         low-S ECDSA over SHA-256(RFC 8785 JSON) (§5.1)
     7 check_integrity      AXON-VERIFY-INTEGRITY         payload.integrity == sha256(blob)
     8 check_urn            AXON-VERIFY-URN               meta.urn derived from the same hash (§5.2)
     9 check_authority      AXON-VERIFY-AUTHORITY         declared level <= the signer's ledger level (§7)
    10 check_registered     AXON-VERIFY-UNREGISTERED      the URN is registered on the ledger (§3 step 5)
                            AXON-VERIFY-REGISTRATION      ... for this policy, version and level
    11 check_not_revoked    AXON-VERIFY-REVOKED           no OP_ARTIFACT_REVOKE (§8)
    12 check_not_superseded AXON-VERIFY-SUPERSEDED        no OP_ARTIFACT_SUPERSEDE; names the successor (§8)
    13 check_not_expired    AXON-VERIFY-EXPIRED           now < meta.expires_at
                            AXON-VERIFY-NOT-YET-VALID     meta.created_at not beyond now + clock skew
    14 check_rollback       AXON-VERIFY-ROLLBACK          not older than the installed version of the policy
    15 check_decryption     AXON-VERIFY-DECRYPT-NO-KEY    encrypted, and this node has no key
                            AXON-VERIFY-DECRYPT-RECIPIENT this node's key is not a recipient
                            AXON-VERIFY-DECRYPT           the wrapped key or blob does not open (§6.1)
    16 check_module         AXON-VERIFY-MODULE            valid wasm; ABI imports/exports only (§6.2)
                            AXON-VERIFY-MODULE-META       its sopcos.meta agrees with the envelope's meta
    (any)                   AXON-VERIFY-LEDGER            the ledger could not be read: fail closed

The verifier does no I/O of its own: the bytes come in, the ledger and node key are injected, the
clock is a function. Decrypted modules exist only as bytes in the returned VerifiedArtifact.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from axon import strictjson
from axon.abi import ModuleMeta
from axon.artifact_crypto import ArtifactCryptoError, NotARecipient, decrypt_module
from axon.envelope import (
    ARTIFACT_TYPE,
    FORMAT_VERSION,
    HASH_PREFIX,
    MAGIC,
    URN_PREFIX,
    Envelope,
    EnvelopeFormatError,
    sha256_hex,
    verify_signature,
)
from axon.errors import AxonError
from axon.keys import Identity
from axon.module_check import ModuleInterfaceError
from axon.module_check import check_module as check_module_interface

MAX_JSON_DEPTH = 16  # an envelope is 5 levels deep; anything much deeper is not one


# -- errors --------------------------------------------------------------------------------------


class VerifyError(AxonError):
    """An artifact failed verification. `check` names the step; `to_dict` adds it (and extras)."""

    code = "AXON-VERIFY"
    check = ""
    passed: tuple[str, ...] = ()  # the checks that passed before this one

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "check": self.check}


def _error(name: str, code: str, check: str, doc: str) -> type[VerifyError]:
    return type(name, (VerifyError,), {"code": code, "check": check, "__doc__": doc, "__module__": __name__})


TooLarge = _error("TooLarge", "AXON-VERIFY-SIZE", "size", "The file is larger than the configured limit.")
MalformedJSON = _error("MalformedJSON", "AXON-VERIFY-JSON", "json", "Not strict UTF-8 JSON.")
SchemaInvalid = _error("SchemaInvalid", "AXON-VERIFY-SCHEMA", "schema", "Not a v1.1 envelope.")
BadMagic = _error("BadMagic", "AXON-VERIFY-MAGIC", "magic", "header.magic is not SOPC.")
UnsupportedVersion = _error("UnsupportedVersion", "AXON-VERIFY-VERSION", "version", "Not envelope v1.1.")
UnsupportedType = _error("UnsupportedType", "AXON-VERIFY-TYPE", "type", "Not a WASM_POLICY artifact.")
UnknownSigner = _error("UnknownSigner", "AXON-VERIFY-SIGNER-UNKNOWN", "signer", "kid not on the ledger.")
SignerRevoked = _error("SignerRevoked", "AXON-VERIFY-SIGNER-REVOKED", "signer", "The signing key is revoked.")
BadSignature = _error("BadSignature", "AXON-VERIFY-SIGNATURE", "signature", "The signature does not verify.")
IntegrityMismatch = _error("IntegrityMismatch", "AXON-VERIFY-INTEGRITY", "integrity",
                           "payload.integrity is not the blob's hash.")
UrnMismatch = _error("UrnMismatch", "AXON-VERIFY-URN", "urn", "meta.urn is not derived from the blob's hash.")
AuthorityExceeded = _error("AuthorityExceeded", "AXON-VERIFY-AUTHORITY", "authority",
                           "The declared authority level is above the signer's.")
NotRegistered = _error("NotRegistered", "AXON-VERIFY-UNREGISTERED", "registered",
                       "The URN is not registered on the ledger.")
RegistrationMismatch = _error("RegistrationMismatch", "AXON-VERIFY-REGISTRATION", "registered",
                              "The ledger registered this URN for another policy, version or level.")
ArtifactRevoked = _error("ArtifactRevoked", "AXON-VERIFY-REVOKED", "revoked", "The artifact is revoked.")
Expired = _error("Expired", "AXON-VERIFY-EXPIRED", "expiry", "The artifact has expired.")
NotYetValid = _error("NotYetValid", "AXON-VERIFY-NOT-YET-VALID", "expiry",
                     "The artifact claims to be created in the future.")
Rollback = _error("Rollback", "AXON-VERIFY-ROLLBACK", "rollback",
                  "Older than the version already installed for this policy.")
NoNodeKey = _error("NoNodeKey", "AXON-VERIFY-DECRYPT-NO-KEY", "decryption",
                   "The artifact is encrypted and this node has no key.")
NotForThisNode = _error("NotForThisNode", "AXON-VERIFY-DECRYPT-RECIPIENT", "decryption",
                        "This node's key is not among the recipients.")
DecryptionFailed = _error("DecryptionFailed", "AXON-VERIFY-DECRYPT", "decryption",
                          "The content key or the module does not decrypt.")
ModuleRejected = _error("ModuleRejected", "AXON-VERIFY-MODULE", "module",
                        "Not a valid policy module (imports/exports/meta).")
ModuleMismatch = _error("ModuleMismatch", "AXON-VERIFY-MODULE-META", "module",
                        "The module's sopcos.meta disagrees with the envelope.")
LedgerUnavailable = _error("LedgerUnavailable", "AXON-VERIFY-LEDGER", "ledger",
                           "The ledger could not be read; nothing is trusted.")


class ArtifactSuperseded(VerifyError):
    """The artifact was superseded; `successor` is the URN to install instead."""

    code = "AXON-VERIFY-SUPERSEDED"
    check = "superseded"

    def __init__(self, message: str, successor: str) -> None:
        super().__init__(message)
        self.successor = successor

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "successor": self.successor}


# -- configuration, inputs, result ----------------------------------------------------------------


@dataclass(frozen=True)
class VerifyConfig:
    """Every limit of verification in one place."""

    max_artifact_bytes: int = 8 * 1024 * 1024
    clock_skew_seconds: int = 300  # how far in the future created_at may be (clocks disagree a little)

    def __post_init__(self) -> None:
        for name in ("max_artifact_bytes", "clock_skew_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"VerifyConfig.{name} must be a whole number >= 0, not {value!r}")


class TrustLedger(Protocol):
    """The ledger look-ups verification needs (axon.ledger.Ledger provides them)."""

    def key(self, did: str) -> Any: ...

    def artifact(self, urn: str) -> Any: ...


_SEMVER = re.compile(r"[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9}")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


class InstalledVersions:
    """Policy name -> version installed on this node, for the rollback check (check 14)."""

    def __init__(self, versions: Mapping[str, str] | None = None) -> None:
        self._versions = dict(versions or {})

    def get(self, policy: str) -> str | None:
        return self._versions.get(policy)

    def record(self, policy: str, version: str) -> None:
        self._versions[policy] = version

    def to_dict(self) -> dict[str, str]:
        return dict(self._versions)

    @classmethod
    def from_json(cls, text: str) -> InstalledVersions:
        """From `{"policy": "MAJOR.MINOR.PATCH", ...}`; ValueError names what is wrong."""
        try:
            doc = strictjson.loads(text, max_depth=1)
        except strictjson.JsonError as exc:
            raise ValueError(f"not strict JSON: {exc}") from None
        versions = doc.values() if isinstance(doc, dict) else [None]
        valid = all(isinstance(v, str) and _SEMVER.fullmatch(v) for v in versions)
        if not valid:
            raise ValueError('expected {"policy name": "MAJOR.MINOR.PATCH", ...}')
        return cls(doc)


@dataclass(frozen=True, eq=False)
class VerifiedArtifact:
    """An artifact that passed every check. `module` is the plaintext wasm, in memory only."""

    envelope: dict[str, Any]
    urn: str
    policy: str
    version: str
    kid: str
    authority_level: int
    module: bytes = field(repr=False)
    meta: ModuleMeta
    encrypted: bool
    expires_at: int | None
    created_at: int
    signer_level: int

    def summary(self) -> dict[str, Any]:
        """What `axon verify --json` reports (never the module bytes)."""
        return {"urn": self.urn, "policy": self.policy, "version": self.version, "kid": self.kid,
                "authority_level": f"LVL_{self.authority_level}", "signer_level": f"LVL_{self.signer_level}",
                "encrypted": self.encrypted, "created_at": self.created_at, "expires_at": self.expires_at,
                "gas_max": self.meta.gas_max, "compiler_version": self.meta.compiler,
                "module_bytes": len(self.module)}


@dataclass
class _Run:
    """One verification's state, filled in as the checks pass."""

    data: bytes
    config: VerifyConfig
    ledger: TrustLedger | None
    node: Identity | None
    now: float
    installed: InstalledVersions | None
    doc: Any = None
    envelope: Envelope | None = None
    signer: Any = None
    record: Any = None
    module: bytes | None = None
    module_meta: ModuleMeta | None = None
    passed: list[str] = field(default_factory=list)


# -- the checks, in order ------------------------------------------------------------------------


def check_size(run: _Run) -> None:  # 1
    if len(run.data) > run.config.max_artifact_bytes:
        raise TooLarge(f"artifact is {len(run.data)} bytes; the limit is {run.config.max_artifact_bytes}")


def check_json(run: _Run) -> None:  # 2
    try:
        run.doc = strictjson.loads(run.data, max_depth=MAX_JSON_DEPTH, allow_floats=False)
    except strictjson.JsonError as exc:
        raise MalformedJSON(f"the artifact is not strict JSON: {exc}") from None
    if run.data.find(b"\\") != -1:  # lone surrogates come only from \u escapes: no backslash, none
        _no_lone_surrogates(run.doc)


def _no_lone_surrogates(value: Any) -> None:
    """An unpaired UTF-16 surrogate has no UTF-8 form, so the envelope would have no canonical JSON."""
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise MalformedJSON("the artifact is not strict JSON: a string contains an unpaired "
                                    "UTF-16 surrogate escape") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_lone_surrogates(key)
            _no_lone_surrogates(item)
    elif isinstance(value, list):
        for item in value:
            _no_lone_surrogates(item)


def check_schema(run: _Run) -> None:  # 3
    try:
        run.envelope = Envelope.parse(run.doc)
    except EnvelopeFormatError as exc:
        raise SchemaInvalid(f"not a v{FORMAT_VERSION} .sop envelope: {exc}") from None


def check_magic(run: _Run) -> None:  # 4
    if run.envelope.header["magic"] != MAGIC:
        raise BadMagic(f"header.magic is {run.envelope.header['magic']!r}, not {MAGIC!r}: "
                       "not a Sopcos artifact")


def check_version(run: _Run) -> None:  # 4
    if run.envelope.header["version"] != FORMAT_VERSION:
        raise UnsupportedVersion(f"envelope version {run.envelope.header['version']!r} is not supported; "
                                 f"this Axon reads {FORMAT_VERSION!r}")


def check_type(run: _Run) -> None:  # 4
    if run.envelope.header["type"] != ARTIFACT_TYPE:
        raise UnsupportedType(f"artifact type {run.envelope.header['type']!r} is not {ARTIFACT_TYPE!r}")


def check_signer(run: _Run) -> None:  # 5 (SIP-009 §7: authority belongs to the signer, looked up by kid)
    kid = run.envelope.kid
    run.signer = run.ledger.key(kid)
    if run.signer is None:
        raise UnknownSigner(f"signer {kid} is not a key registered on the ledger")
    if run.signer.revoked:
        raise SignerRevoked(f"signer {kid} was revoked on the ledger")


def check_signature(run: _Run) -> None:  # 6 (SIP-009 §5.1)
    if not verify_signature(run.envelope, run.signer.public_key):
        raise BadSignature(f"the signature is not {run.envelope.kid}'s over this envelope: "
                           "the artifact was altered or signed by another key")


def check_integrity(run: _Run) -> None:  # 7
    actual = HASH_PREFIX + sha256_hex(run.envelope.blob)
    if run.envelope.integrity != actual:
        raise IntegrityMismatch(f"payload.integrity says {run.envelope.integrity}; "
                                f"the blob hashes to {actual}")


def check_urn(run: _Run) -> None:  # 8 (SIP-009 §5.2)
    expected = URN_PREFIX + run.envelope.integrity.removeprefix(HASH_PREFIX)
    if run.envelope.urn != expected:
        raise UrnMismatch(f"meta.urn is {run.envelope.urn}; the blob's URN is {expected}")


def check_authority(run: _Run) -> None:  # 9 (SIP-009 §7 / SIP-008)
    declared, held = run.envelope.authority_level, run.signer.level
    if declared > held:
        raise AuthorityExceeded(f"artifact declares LVL_{declared} but its signer {run.envelope.kid} "
                                f"holds LVL_{held} on the ledger")


def check_registered(run: _Run) -> None:  # 10 (SIP-009 §3 step 5)
    envelope = run.envelope
    run.record = run.ledger.artifact(envelope.urn)
    if run.record is None:
        raise NotRegistered(f"{envelope.urn} is not registered on the ledger")
    registered = (run.record.policy, run.record.version, run.record.authority_level)
    claimed = (envelope.policy, envelope.version, envelope.authority_level)
    if registered != claimed:
        raise RegistrationMismatch(
            f"the ledger registered {envelope.urn} as {registered[0]} {registered[1]} LVL_{registered[2]}; "
            f"the envelope says {claimed[0]} {claimed[1]} LVL_{claimed[2]}")


def check_not_revoked(run: _Run) -> None:  # 11 (SIP-009 §8)
    if run.record.revoked:
        reason = getattr(run.record, "revoke_reason", None)
        raise ArtifactRevoked(f"{run.envelope.urn} was revoked on the ledger"
                              + (f": {reason}" if reason else ""))


def check_not_superseded(run: _Run) -> None:  # 12 (SIP-009 §8)
    successor = run.record.superseded_by
    if successor is not None:
        raise ArtifactSuperseded(f"{run.envelope.urn} was superseded by {successor}; install that instead",
                                 successor)


def check_not_expired(run: _Run) -> None:  # 13
    expires_at, created_at = run.envelope.expires_at, run.envelope.created_at
    if expires_at is not None and run.now >= expires_at:
        raise Expired(f"the artifact expired at {_utc(expires_at)} (now {_utc(run.now)})")
    if created_at > run.now + run.config.clock_skew_seconds:
        raise NotYetValid(f"the artifact says it was created at {_utc(created_at)}, after now "
                          f"({_utc(run.now)}) plus {run.config.clock_skew_seconds} s of clock skew")


def check_rollback(run: _Run) -> None:  # 14
    installed = run.installed.get(run.envelope.policy) if run.installed is not None else None
    if installed is not None and _version_key(run.envelope.version) < _version_key(installed):
        raise Rollback(f"{run.envelope.policy} {run.envelope.version} is older than the installed "
                       f"{installed}: refusing to roll back")


def check_decryption(run: _Run) -> None:  # 15 (SIP-009 §6.1: in RAM only)
    envelope = run.envelope
    if not envelope.encrypted:
        run.module = envelope.blob
        return
    if run.node is None:
        raise NoNodeKey("the artifact is encrypted; give this node's key (--key) to decrypt it")
    try:
        run.module = decrypt_module(envelope.blob, envelope.content_iv, envelope.recipients,
                                    envelope.content_aad(), run.node)
    except NotARecipient as exc:
        raise NotForThisNode(str(exc)) from None
    except ArtifactCryptoError as exc:  # a tag that does not verify, or a wrapped key of the wrong size
        raise DecryptionFailed(str(exc)) from None


def check_module(run: _Run) -> None:  # 16 (SIP-009 §6.2)
    try:
        run.module_meta = check_module_interface(run.module).meta
    except ModuleInterfaceError as exc:
        raise ModuleRejected(f"module refused: {exc}") from None
    meta, envelope = run.module_meta, run.envelope.meta
    pairs = (("policy", meta.policy, envelope["policy"]),
             ("version", meta.version, envelope["version"]),
             ("source_hash", meta.source_hash, envelope["source_hash"]),
             ("compiler", meta.compiler, envelope["compiler_version"]),
             ("gas_max", meta.gas_max, envelope["gas_max"]),
             ("abi", meta.abi, envelope["abi"]))
    for name, in_module, in_envelope in pairs:
        if in_module != in_envelope:
            raise ModuleMismatch(f"the module's sopcos.meta {name} is {in_module!r}; the envelope says "
                                 f"{in_envelope!r}")


CHECKS: tuple[Callable[[_Run], None], ...] = (
    check_size, check_json, check_schema, check_magic, check_version, check_type, check_signer,
    check_signature, check_integrity, check_urn, check_authority, check_registered, check_not_revoked,
    check_not_superseded, check_not_expired, check_rollback, check_decryption, check_module,
)
_LEDGER_CHECKS = (check_signer, check_registered)


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


# -- the verifier --------------------------------------------------------------------------------


class Verifier:
    """Runs CHECKS in order over one artifact. Holds no per-artifact state; safe to reuse."""

    def __init__(self, ledger: TrustLedger, config: VerifyConfig | None = None,
                 node_identity: Identity | None = None, now: Callable[[], float] = time.time) -> None:
        self.ledger = ledger
        self.config = config or VerifyConfig()
        self.node_identity = node_identity
        self.now = now

    def verify(self, sop_bytes: bytes, installed: InstalledVersions | None = None) -> VerifiedArtifact:
        """Return the verified artifact, or raise the first failing check's VerifyError."""
        run = _Run(bytes(sop_bytes), self.config, self.ledger, self.node_identity, self.now(), installed)
        for check in CHECKS:
            try:
                _run_check(check, run)
            except VerifyError as exc:
                exc.passed = tuple(run.passed)  # for reports: how far the artifact got
                raise
            run.passed.append(check.__name__.removeprefix("check_"))
        envelope = run.envelope
        return VerifiedArtifact(
            envelope=envelope.doc, urn=envelope.urn, policy=envelope.policy, version=envelope.version,
            kid=envelope.kid, authority_level=envelope.authority_level, module=run.module,
            meta=run.module_meta, encrypted=envelope.encrypted, expires_at=envelope.expires_at,
            created_at=envelope.created_at, signer_level=run.signer.level)


def _run_check(check: Callable[[_Run], None], run: _Run) -> None:
    if check not in _LEDGER_CHECKS:
        check(run)
        return
    try:
        check(run)
    except VerifyError:
        raise
    except AxonError as exc:  # a broken or unreadable ledger: nothing can be trusted
        raise LedgerUnavailable(f"cannot read the ledger ({exc.code}): {exc}") from None


def parse_envelope(sop_bytes: bytes, config: VerifyConfig | None = None) -> Envelope:
    """Checks 1-3 without a ledger (what `scc inspect` shows is parsed, never trusted)."""
    run = _Run(bytes(sop_bytes), config or VerifyConfig(), None, None, 0.0, None)
    for check in (check_size, check_json, check_schema):
        check(run)
    return run.envelope
