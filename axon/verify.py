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
    11 check_policy_name    AXON-VERIFY-POLICY-NAME       the signer may publish under meta.policy: its owner
                                                        or an administrator at or above it, at the name's
                                                        level (docs/ledger.md rule 12)
    12 check_not_revoked    AXON-VERIFY-REVOKED           no OP_ARTIFACT_REVOKE (§8)
    13 check_not_superseded AXON-VERIFY-SUPERSEDED        no OP_ARTIFACT_SUPERSEDE; names the successor (§8)
    14 check_not_expired    AXON-VERIFY-EXPIRED           now < meta.expires_at
                            AXON-VERIFY-NOT-YET-VALID     meta.created_at not beyond now + clock skew
    15 check_rollback       AXON-VERIFY-ROLLBACK          not older than the installed version of the policy
    16 check_decryption     AXON-VERIFY-DECRYPT-NO-KEY    encrypted, and this node has no key
                            AXON-VERIFY-DECRYPT-RECIPIENT this node's key is not a recipient
                            AXON-VERIFY-DECRYPT           the wrapped key or blob does not open (§6.1)
    17 check_module         AXON-VERIFY-MODULE            valid wasm; ABI imports/exports only (§6.2)
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
from typing import Any, TypeVar

from axon import strictjson
from axon.abi import ModuleMeta
from axon.artifact_crypto import ArtifactCryptoError, NotARecipient, decrypt_module
from axon.envelope import (
    ARTIFACT_TYPE,
    FORMAT_VERSION,
    HASH_PREFIX,
    MAGIC,
    URN_PREFIX,
    ArtifactEnvelope,
    EnvelopeFormatError,
    sha256_hex,
    verify_signature,
)
from axon.errors import AxonError
from axon.keys import Identity
from axon.ledger import ArtifactRecord, AuthorityDenied, KeyRecord, Ledger, PolicyRecord, authority
from axon.module_check import ModuleInterfaceError
from axon.module_check import check_module as check_module_interface

MAX_JSON_DEPTH = 16  # an envelope is 5 levels deep; anything much deeper is not one
_T = TypeVar("_T")


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


ArtifactTooLarge = _error("ArtifactTooLarge", "AXON-VERIFY-SIZE", "size",
                          "The file is larger than the configured limit.")
MalformedJSON = _error("MalformedJSON", "AXON-VERIFY-JSON", "json", "Not strict UTF-8 JSON.")
SchemaInvalid = _error("SchemaInvalid", "AXON-VERIFY-SCHEMA", "schema", "Not a v1.1 envelope.")
BadMagic = _error("BadMagic", "AXON-VERIFY-MAGIC", "magic", "header.magic is not SOPC.")
UnsupportedVersion = _error("UnsupportedVersion", "AXON-VERIFY-VERSION", "version", "Not envelope v1.1.")
UnsupportedType = _error("UnsupportedType", "AXON-VERIFY-TYPE", "type", "Not a WASM_POLICY artifact.")
UnknownSigner = _error("UnknownSigner", "AXON-VERIFY-SIGNER-UNKNOWN", "signer", "kid not on the ledger.")
SignerRevoked = _error("SignerRevoked", "AXON-VERIFY-SIGNER-REVOKED", "signer", "The signing key is revoked.")
BadArtifactSignature = _error("BadArtifactSignature", "AXON-VERIFY-SIGNATURE", "signature",
                              "The signature does not verify.")
IntegrityMismatch = _error("IntegrityMismatch", "AXON-VERIFY-INTEGRITY", "integrity",
                           "payload.integrity is not the blob's hash.")
UrnMismatch = _error("UrnMismatch", "AXON-VERIFY-URN", "urn", "meta.urn is not derived from the blob's hash.")
AuthorityExceeded = _error("AuthorityExceeded", "AXON-VERIFY-AUTHORITY", "authority",
                           "The declared authority level is above the signer's.")
NotRegistered = _error("NotRegistered", "AXON-VERIFY-UNREGISTERED", "registered",
                       "The URN is not registered on the ledger.")
RegistrationMismatch = _error("RegistrationMismatch", "AXON-VERIFY-REGISTRATION", "registered",
                              "The ledger registered this URN for another policy, version or level.")
PolicyNameRefused = _error("PolicyNameRefused", "AXON-VERIFY-POLICY-NAME", "policy_name",
                           "The policy name belongs to another authority, or to a higher level.")
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
ArtifactDecryptionFailed = _error("ArtifactDecryptionFailed", "AXON-VERIFY-DECRYPT", "decryption",
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


_SEMVER = re.compile(r"[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9}")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


class InstalledVersions:
    """Policy name -> version installed on this node, for the rollback check (check 15)."""

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
    module: bytes | bytearray = field(repr=False)  # a bytearray when decrypted into Verifier(plaintext=)
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
                "module_bytes": len(self.module), "claims": self.envelope["meta"].get("claims")}


class CheckProgress:
    """Runs the checks one at a time and notes each that passes; a failure reports the list
    (`VerifyError.passed`). A subclass may observe each check (benchmarks/bench_verify.py times them)."""

    def __init__(self) -> None:
        self.passed: list[str] = []

    def run(self, check: Callable[..., _T], *args: Any) -> _T:
        result = check(*args)
        self.passed.append(check.__name__.removeprefix("check_"))
        return result


# -- the checks, in order: each takes typed values (the bytes, the envelope, the ledger's records) and
# -- returns what the checks after it need; none reads the ledger or the clock itself ---------------------


def check_size(data: bytes, config: VerifyConfig) -> None:  # 1
    if len(data) > config.max_artifact_bytes:
        raise ArtifactTooLarge(f"artifact is {len(data)} bytes; the limit is {config.max_artifact_bytes}")


def check_json(data: bytes) -> object:  # 2
    try:
        doc = strictjson.loads(data, max_depth=MAX_JSON_DEPTH, allow_floats=False)
    except strictjson.JsonError as exc:
        raise MalformedJSON(f"the artifact is not strict JSON: {exc}") from None
    if data.find(b"\\") != -1:  # lone surrogates come only from \u escapes: no backslash, none
        _no_lone_surrogates(doc)
    return doc


def _no_lone_surrogates(value: object) -> None:
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


def check_schema(doc: object) -> ArtifactEnvelope:  # 3 (SIP-009 §4)
    try:
        return ArtifactEnvelope.parse(doc)
    except EnvelopeFormatError as exc:
        raise SchemaInvalid(f"not a v{FORMAT_VERSION} .sop envelope: {exc}") from None


def check_magic(envelope: ArtifactEnvelope) -> None:  # 4
    if envelope.header["magic"] != MAGIC:
        raise BadMagic(f"header.magic is {envelope.header['magic']!r}, not {MAGIC!r}: not a Sopcos artifact")


def check_version(envelope: ArtifactEnvelope) -> None:  # 4
    if envelope.header["version"] != FORMAT_VERSION:
        raise UnsupportedVersion(f"envelope version {envelope.header['version']!r} is not supported; "
                                 f"this Axon reads {FORMAT_VERSION!r}")


def check_type(envelope: ArtifactEnvelope) -> None:  # 4
    if envelope.header["type"] != ARTIFACT_TYPE:
        raise UnsupportedType(f"artifact type {envelope.header['type']!r} is not {ARTIFACT_TYPE!r}")


def check_signer(envelope: ArtifactEnvelope, signer: KeyRecord | None) -> KeyRecord:  # 5 (SIP-009 §7)
    """`signer` is the ledger's record for header.kid: authority belongs to the signer."""
    if signer is None:
        raise UnknownSigner(f"signer {envelope.kid} is not a key registered on the ledger")
    if signer.revoked:
        raise SignerRevoked(f"signer {envelope.kid} was revoked on the ledger")
    return signer


def check_signature(envelope: ArtifactEnvelope, signer: KeyRecord) -> None:  # 6 (SIP-009 §5.1)
    if not verify_signature(envelope, signer.public_key):
        raise BadArtifactSignature(f"the signature is not {envelope.kid}'s over this envelope: "
                           "the artifact was altered or signed by another key")


def check_integrity(envelope: ArtifactEnvelope) -> None:  # 7
    actual = HASH_PREFIX + sha256_hex(envelope.blob)
    if envelope.integrity != actual:
        raise IntegrityMismatch(f"payload.integrity says {envelope.integrity}; the blob hashes to {actual}")


def check_urn(envelope: ArtifactEnvelope) -> None:  # 8 (SIP-009 §5.2)
    expected = URN_PREFIX + envelope.integrity.removeprefix(HASH_PREFIX)
    if envelope.urn != expected:
        raise UrnMismatch(f"meta.urn is {envelope.urn}; the blob's URN is {expected}")


def check_authority(envelope: ArtifactEnvelope, signer: KeyRecord) -> None:  # 9 (SIP-009 §7 / SIP-008)
    if envelope.authority_level > signer.level:
        raise AuthorityExceeded(f"artifact declares LVL_{envelope.authority_level} but its signer "
                                f"{envelope.kid} holds LVL_{signer.level} on the ledger")


def check_registered(envelope: ArtifactEnvelope,  # 10 (§3 step 5)
                     record: ArtifactRecord | None) -> ArtifactRecord:
    """`record` is the ledger's record for meta.urn."""
    if record is None:
        raise NotRegistered(f"{envelope.urn} is not registered on the ledger")
    registered = (record.policy, record.version, record.authority_level)
    claimed = (envelope.policy, envelope.version, envelope.authority_level)
    if registered != claimed:
        raise RegistrationMismatch(
            f"the ledger registered {envelope.urn} as {registered[0]} {registered[1]} LVL_{registered[2]}; "
            f"the envelope says {claimed[0]} {claimed[1]} LVL_{claimed[2]}")
    return record


def check_policy_name(envelope: ArtifactEnvelope, signer: KeyRecord,
                      policy: PolicyRecord | None) -> None:  # 11 (docs/ledger.md rule 12)
    """`policy` is the ledger's binding of meta.policy. The ledger held its registrant to the binding;
    this holds the signer to it, so a hijack that reached a ledger by another way still does not run."""
    if policy is None:  # registered (check 10) yet unbound: the ledger's records disagree with each other
        raise PolicyNameRefused(f"the ledger binds policy {envelope.policy!r} to no authority")
    try:
        authority.may_publish_policy(signer, policy, envelope.authority_level)
    except AuthorityDenied as exc:
        raise PolicyNameRefused(f"signer of {envelope.urn}: {exc}") from None


def check_not_revoked(envelope: ArtifactEnvelope, record: ArtifactRecord) -> None:  # 12 (SIP-009 §8)
    if record.revoked:
        raise ArtifactRevoked(f"{envelope.urn} was revoked on the ledger"
                              + (f": {record.revoke_reason}" if record.revoke_reason else ""))


def check_not_superseded(envelope: ArtifactEnvelope, record: ArtifactRecord) -> None:  # 13 (SIP-009 §8)
    if record.superseded_by is not None:
        raise ArtifactSuperseded(f"{envelope.urn} was superseded by {record.superseded_by}; install that "
                                 "instead", record.superseded_by)


def check_not_expired(envelope: ArtifactEnvelope, now: float, config: VerifyConfig) -> None:  # 14
    expires_at, created_at = envelope.expires_at, envelope.created_at
    if expires_at is not None and now >= expires_at:
        raise Expired(f"the artifact expired at {_utc(expires_at)} (now {_utc(now)})")
    if created_at > now + config.clock_skew_seconds:
        raise NotYetValid(f"the artifact says it was created at {_utc(created_at)}, after now "
                          f"({_utc(now)}) plus {config.clock_skew_seconds} s of clock skew")


def check_rollback(envelope: ArtifactEnvelope, installed: InstalledVersions | None) -> None:  # 15
    current = installed.get(envelope.policy) if installed is not None else None
    if current is not None and _version_key(envelope.version) < _version_key(current):
        raise Rollback(f"{envelope.policy} {envelope.version} is older than the installed {current}: "
                       "refusing to roll back")


def check_decryption(envelope: ArtifactEnvelope, node: Identity | None,  # 16 (SIP-009 §6.1: in RAM only)
                     into: Callable[[int], bytearray] | None = None) -> bytes | bytearray:
    """The module: the blob itself, or the blob decrypted with this node's key (into `into(n)`)."""
    if not envelope.encrypted:
        return envelope.blob
    if node is None:
        raise NoNodeKey("the artifact is encrypted; give this node's key (--key) to decrypt it")
    try:
        return decrypt_module(envelope.blob, envelope.content_iv, envelope.recipients,
                              envelope.content_aad(), node, into)
    except NotARecipient as exc:
        raise NotForThisNode(str(exc)) from None
    except ArtifactCryptoError as exc:  # a tag that does not verify, or a wrapped key of the wrong size
        raise ArtifactDecryptionFailed(str(exc)) from None


def check_module(envelope: ArtifactEnvelope, module: bytes) -> ModuleMeta:  # 17 (SIP-009 §6.2)
    try:
        meta = check_module_interface(module).meta
    except ModuleInterfaceError as exc:
        raise ModuleRejected(f"module refused: {exc}") from None
    claimed = envelope.meta
    pairs = (("policy", meta.policy, claimed["policy"]),
             ("version", meta.version, claimed["version"]),
             ("source_hash", meta.source_hash, claimed["source_hash"]),
             ("compiler", meta.compiler, claimed["compiler_version"]),
             ("gas_max", meta.gas_max, claimed["gas_max"]),
             ("abi", meta.abi, claimed["abi"]))
    for name, in_module, in_envelope in pairs:
        if in_module != in_envelope:
            raise ModuleMismatch(f"the module's sopcos.meta {name} is {in_module!r}; the envelope says "
                                 f"{in_envelope!r}")
    return meta


CHECKS: tuple[Callable[..., object], ...] = (
    check_size, check_json, check_schema, check_magic, check_version, check_type, check_signer,
    check_signature, check_integrity, check_urn, check_authority, check_registered, check_policy_name,
    check_not_revoked, check_not_superseded, check_not_expired, check_rollback, check_decryption,
    check_module,
)


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


# -- the verifier --------------------------------------------------------------------------------


class Verifier:
    """Runs the checks in CHECKS' order over one artifact. Holds no per-artifact state; safe to reuse.

    The ledger is read here and nowhere else, each record just before the check that judges it; what a
    check returns (the envelope, the signer's KeyRecord, the ArtifactRecord, the module) is passed on to
    the checks after it, as python-tuf's trusted metadata set passes on what it has verified."""

    def __init__(self, ledger: Ledger, config: VerifyConfig | None = None,
                 node_identity: Identity | None = None, now: Callable[[], float] = time.time, *,
                 plaintext: Callable[[int], bytearray] | None = None) -> None:
        """`plaintext(n)`: where an encrypted module is decrypted to (synapse passes locked memory,
        and wipes it once compiled); the module is then that bytearray. Default: new bytes."""
        self.ledger = ledger
        self.config = config or VerifyConfig()
        self.node_identity = node_identity
        self.now = now
        self.plaintext = plaintext

    def verify(self, sop_bytes: bytes, installed: InstalledVersions | None = None, *,
               progress: CheckProgress | None = None) -> VerifiedArtifact:
        """Return the verified artifact, or raise the first failing check's VerifyError."""
        progress = progress or CheckProgress()
        try:
            return self._verify(bytes(sop_bytes), installed, self.now(), progress)
        except VerifyError as exc:
            exc.passed = tuple(progress.passed)  # for reports: how far the artifact got
            raise

    def _verify(self, data: bytes, installed: InstalledVersions | None, now: float,
                progress: CheckProgress) -> VerifiedArtifact:
        config, run = self.config, progress.run
        run(check_size, data, config)
        envelope: ArtifactEnvelope = run(check_schema, run(check_json, data))
        run(check_magic, envelope)
        run(check_version, envelope)
        run(check_type, envelope)
        signer: KeyRecord = run(check_signer, envelope, self._read(self.ledger.key, envelope.kid))
        run(check_signature, envelope, signer)
        run(check_integrity, envelope)
        run(check_urn, envelope)
        run(check_authority, envelope, signer)
        record: ArtifactRecord = run(check_registered, envelope,
                                     self._read(self.ledger.artifact, envelope.urn))
        run(check_policy_name, envelope, signer, self._read(self.ledger.policy, envelope.policy))
        run(check_not_revoked, envelope, record)
        run(check_not_superseded, envelope, record)
        run(check_not_expired, envelope, now, config)
        run(check_rollback, envelope, installed)
        module: bytes | bytearray = run(check_decryption, envelope, self.node_identity, self.plaintext)
        meta: ModuleMeta = run(check_module, envelope, module)
        return VerifiedArtifact(
            envelope=envelope.doc, urn=envelope.urn, policy=envelope.policy, version=envelope.version,
            kid=envelope.kid, authority_level=envelope.authority_level, module=module, meta=meta,
            encrypted=envelope.encrypted, expires_at=envelope.expires_at, created_at=envelope.created_at,
            signer_level=signer.level)

    @staticmethod
    def _read(look_up: Callable[[str], _T], key: str) -> _T:
        try:
            return look_up(key)
        except AxonError as exc:  # a broken or unreadable ledger: nothing can be trusted
            raise LedgerUnavailable(f"cannot read the ledger ({exc.code}): {exc}") from None


def parse_envelope(sop_bytes: bytes, config: VerifyConfig | None = None) -> ArtifactEnvelope:
    """Checks 1-3 without a ledger (what `scc inspect` shows is parsed, never trusted)."""
    data = bytes(sop_bytes)
    check_size(data, config or VerifyConfig())
    return check_schema(check_json(data))
