"""ECIES on secp256k1, as spec/crypto.md fixes it (interoperable with `eciespy`, 12-byte nonce).

ephemeral key pair per message → S = recipient_pub × ephemeral_secret (whole point) →
key = HKDF-SHA256(ikm = uncompressed(ephemeral_pub) ‖ uncompressed(S), salt = ∅, info = ∅, 32) →
AES-256-GCM with a 12-byte random IV and a 128-bit tag. Used by SIP-017 messages and by the
wrapped content keys of encrypted artifacts.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from axon.errors import AxonError
from axon.keys import InvalidKey, PublicKey, Signer, SigningKey

IV_SIZE = 12
TAG_SIZE = 16
PUBKEY_SIZE = 65


class DecryptionFailed(AxonError):
    """Wrong recipient key, or the ciphertext, IV, ephemeral key or associated data was altered."""

    code = "AXON-ECIES-DECRYPT"


@dataclass(frozen=True)
class Sealed:
    ephem_pub: bytes  # 65 bytes, uncompressed
    iv: bytes  # 12 bytes
    ciphertext: bytes  # ciphertext ‖ 16-byte tag (the cryptography/SIP-017 `blob` order)

    def to_eciespy(self) -> bytes:
        """`ephem_pub ‖ iv ‖ tag ‖ ciphertext`, the byte layout `ecies.decrypt` accepts."""
        return self.ephem_pub + self.iv + self.ciphertext[-TAG_SIZE:] + self.ciphertext[:-TAG_SIZE]

    @classmethod
    def from_eciespy(cls, data: bytes) -> Sealed:
        head = PUBKEY_SIZE + IV_SIZE + TAG_SIZE
        if len(data) < head:
            raise DecryptionFailed("ECIES message is shorter than its fixed header")
        tag = data[PUBKEY_SIZE + IV_SIZE : head]
        return cls(data[:PUBKEY_SIZE], data[PUBKEY_SIZE : PUBKEY_SIZE + IV_SIZE], data[head:] + tag)


def derive_key(ephem_pub: bytes, shared_point: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"").derive(ephem_pub + shared_point)


def seal(recipient: PublicKey, plaintext: bytes, aad: bytes | None = None,
         randbytes: Callable[[int], bytes] = secrets.token_bytes) -> Sealed:
    ephemeral = SigningKey.generate(randbytes)
    ephem_pub = ephemeral.public_key.raw
    key = derive_key(ephem_pub, ephemeral.ecdh_point(recipient))
    iv = randbytes(IV_SIZE)
    return Sealed(ephem_pub, iv, AESGCM(key).encrypt(iv, plaintext, aad))


def open_sealed(recipient: Signer, sealed: Sealed, aad: bytes | None = None) -> bytes:
    if len(sealed.iv) != IV_SIZE:
        raise DecryptionFailed(f"IV must be {IV_SIZE} bytes, got {len(sealed.iv)}")
    if len(sealed.ciphertext) < TAG_SIZE:
        raise DecryptionFailed("ciphertext is shorter than the 16-byte GCM tag")
    try:
        ephem = PublicKey.from_bytes(sealed.ephem_pub)
    except InvalidKey as exc:
        raise DecryptionFailed("ephemeral public key is not a point on secp256k1") from exc
    if len(sealed.ephem_pub) != PUBKEY_SIZE:
        raise DecryptionFailed("ephemeral public key must be 65-byte uncompressed")
    key = derive_key(ephem.raw, recipient.ecdh_point(ephem))
    try:
        return AESGCM(key).decrypt(sealed.iv, sealed.ciphertext, aad)
    except InvalidTag as exc:
        raise DecryptionFailed("decryption failed: not for this key, or altered in transit") from exc
