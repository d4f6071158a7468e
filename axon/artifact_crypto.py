"""Encrypted artifacts (SIP-009 §3 step 3, §6.1): content encryption and key wrapping.

The module is encrypted with AES-256-GCM under a fresh 32-byte content key and a 12-byte IV (the
envelope's `encryption.iv`); its associated data is the RFC 8785 JSON of {header, meta without urn},
so the ciphertext only opens under the header and meta it was packaged with. `meta.urn` is left out
because it is the hash of the ciphertext itself (it cannot be an input to it), and GCM's tag already
authenticates the ciphertext. The content key is wrapped for each recipient with the ECIES of
SIP-017 (axon/ecies.py) exactly as messages use it, without associated data, so any eciespy-compatible
implementation can unwrap it; a wrapped key moved to another artifact opens nothing there, because
the content key only authenticates under this artifact's header and meta. Decryption returns bytes:
nothing here, or in its callers, writes a plaintext module anywhere.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import rfc8785
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from axon import ecies
from axon.errors import AxonError
from axon.keys import DID_RE, Identity, InvalidKey, PublicKey

CONTENT_ALGO = "AES-256-GCM"
KEY_SIZE = 32
IV_SIZE = 12
TAG_SIZE = 16
_PUBLIC_KEY_HEX = re.compile(r"^(0x)?04[0-9a-fA-F]{128}$|^(0x)?0[23][0-9a-fA-F]{64}$")


class ArtifactCryptoError(AxonError):
    code = "AXON-ARTIFACT-CRYPTO"


class ContentDecryptionFailed(ArtifactCryptoError):
    """The blob does not open under the content key: altered blob, IV, header or meta."""

    code = "AXON-ARTIFACT-DECRYPT"


class NotARecipient(ArtifactCryptoError):
    code = "AXON-ARTIFACT-NOT-RECIPIENT"


class RecipientError(ArtifactCryptoError):
    """A recipient named for encryption cannot be resolved to a usable public key."""

    code = "AXON-ARTIFACT-RECIPIENT"


# -- AES-256-GCM ---------------------------------------------------------------------------------


def encrypt_content(key: bytes, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM, 12-byte IV, 16-byte tag; returns ciphertext ‖ tag."""
    _check_key_iv(key, iv)
    return AESGCM(key).encrypt(iv, plaintext, aad)


def decrypt_content(key: bytes, iv: bytes, ciphertext: bytes, aad: bytes,
                    into: Callable[[int], bytearray] | None = None) -> bytes | bytearray:
    """Inverse of encrypt_content; ContentDecryptionFailed when the tag does not verify.

    `into(n)`: a writable buffer of n bytes to decrypt into (AESGCM.decrypt_into), so the plaintext
    exists only where the caller put it (synapse.hardening: locked pages, wiped after use)."""
    _check_key_iv(key, iv)
    if len(ciphertext) < TAG_SIZE:
        raise ContentDecryptionFailed("ciphertext is shorter than the 16-byte GCM tag")
    try:
        if into is None:
            return AESGCM(key).decrypt(iv, ciphertext, aad)
        buffer = into(len(ciphertext) - TAG_SIZE)
        try:
            AESGCM(key).decrypt_into(iv, ciphertext, aad, buffer)
        except InvalidTag:
            buffer[:] = bytes(len(buffer))  # unauthenticated plaintext may have been written
            raise
        return buffer
    except InvalidTag:
        raise ContentDecryptionFailed(
            "the encrypted module does not open: its blob, IV, header or meta was altered") from None


def _check_key_iv(key: bytes, iv: bytes) -> None:
    # Fixed sizes: AES-256 only, and the 96-bit IV GCM is specified for (no GHASH-derived IVs).
    if len(key) != KEY_SIZE:
        raise ArtifactCryptoError(f"content key must be {KEY_SIZE} bytes (AES-256), got {len(key)}")
    if len(iv) != IV_SIZE:
        raise ArtifactCryptoError(f"IV must be {IV_SIZE} bytes, got {len(iv)}")


def content_aad(header: Mapping[str, Any], meta: Mapping[str, Any]) -> bytes:
    return rfc8785.dumps({"header": header, "meta": {k: v for k, v in meta.items() if k != "urn"}})


# -- recipients ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecipientKey:
    public_key: PublicKey
    kid: str | None = None  # the DID the key is registered under, when named by DID


@dataclass(frozen=True)
class Recipients:
    """`context` is what the envelope records (a group DID, or the names as given); `keys` get a wrap."""

    context: str | list[str]
    keys: tuple[RecipientKey, ...]


class RecipientKeyDirectory(Protocol):
    """The two ledger look-ups recipient resolution needs (axon.ledger.Ledger has them)."""

    def key(self, did: str) -> Any: ...

    def group_members(self, group_did: str) -> Sequence[Any]: ...


def resolve_recipients(names: Sequence[str], directory: RecipientKeyDirectory | None) -> Recipients:
    """Turn `--encrypt-for` arguments (public keys in hex, key DIDs, group DIDs) into wrapping keys.

    A group DID expands to its members' keys; revoked keys never receive the content key.
    """
    if not names:
        raise RecipientError("name at least one recipient (a group DID, a key DID or a public key)")
    keys: dict[str, RecipientKey] = {}
    context: list[str] = []
    groups = 0
    for name in names:
        if _PUBLIC_KEY_HEX.match(name):
            try:
                public_key = PublicKey.from_hex(name)
            except InvalidKey:
                raise RecipientError(f"{name[:20]}... is not a point on secp256k1") from None
            keys.setdefault(public_key.hex(), RecipientKey(public_key))
            context.append(public_key.hex())
            continue
        if not DID_RE.match(name):
            raise RecipientError(f"{name!r} is neither a DID (did:sopcos:...) nor a public key in hex")
        if directory is None:
            raise RecipientError(f"{name} is a DID: give the ledger (--ledger) so it can be resolved")
        records, is_group = _resolve_did(name, directory)
        for record in records:
            keys.setdefault(record.public_key.hex(), RecipientKey(record.public_key, record.did))
        groups += is_group
        context.append(name)
    if not keys:
        raise RecipientError("no recipient has a usable (registered, unrevoked) key")
    recorded: str | list[str] = context[0] if len(context) == 1 and groups == 1 else context
    return Recipients(recorded, tuple(keys.values()))


def _resolve_did(did: str, directory: RecipientKeyDirectory) -> tuple[list[Any], bool]:
    """(key records, whether `did` named a group)."""
    record = directory.key(did)
    if record is not None:
        if record.revoked:
            raise RecipientError(f"{did} is revoked on the ledger; it cannot be a recipient")
        return [record], False
    members = [m for m in directory.group_members(did) if not m.revoked]
    if not members:
        raise RecipientError(f"{did} is neither a registered key nor a group with unrevoked members")
    return members, True


# -- whole modules ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrappedKey:
    """The content key wrapped for one recipient, named by DID (`kid`) or by public key (hex)."""

    ephem_pub: bytes
    iv: bytes
    wrapped_key: bytes
    kid: str | None = None
    public_key: str | None = None

    def matches(self, identity: Identity) -> bool:
        if self.kid is not None:
            return self.kid == identity.did
        return self.public_key == identity.key.public_key.hex()


@dataclass(frozen=True)
class SealedModule:
    iv: bytes
    ciphertext: bytes  # ciphertext ‖ tag: the stored blob
    wrapped: tuple[WrappedKey, ...]


def encrypt_module(module: bytes, header: Mapping[str, Any], meta: Mapping[str, Any],
                   recipients: Sequence[RecipientKey],
                   randbytes: Callable[[int], bytes] = secrets.token_bytes) -> SealedModule:
    aad = content_aad(header, meta)
    content_key, iv = randbytes(KEY_SIZE), randbytes(IV_SIZE)
    ciphertext = encrypt_content(content_key, iv, module, aad)
    wrapped = []
    for recipient in recipients:
        sealed = ecies.seal(recipient.public_key, content_key, randbytes=randbytes)
        wrapped.append(WrappedKey(sealed.ephem_pub, sealed.iv, sealed.ciphertext, kid=recipient.kid,
                                  public_key=None if recipient.kid else recipient.public_key.hex()))
    return SealedModule(iv, ciphertext, tuple(wrapped))


def decrypt_module(blob: bytes, iv: bytes, wrapped: Sequence[WrappedKey], aad: bytes,
                   identity: Identity, into: Callable[[int], bytearray] | None = None) -> bytes | bytearray:
    """Unwrap the content key with the node's key and open the blob, in memory (`into`: as in
    decrypt_content)."""
    entries = [w for w in wrapped if w.matches(identity)]
    if not entries:
        raise NotARecipient(f"this node ({identity.did}) is not among the artifact's "
                            f"{len(wrapped)} recipient(s)")
    try:
        content_key = ecies.open_sealed(identity.key, ecies.Sealed(entries[0].ephem_pub, entries[0].iv,
                                                                   entries[0].wrapped_key))
    except ecies.DecryptionFailed:
        raise ContentDecryptionFailed(
            "the content key wrapped for this node does not open with its key (wrong key, or the "
            "wrapped key, header or meta was altered)") from None
    return decrypt_content(content_key, iv, blob, aad, into)
