"""SCP's primitives, each a thin wrapper over `cryptography`/`hashlib` that fails with an SCP error.

X25519 (RFC 7748), HKDF-SHA256 (RFC 5869), HMAC-SHA-256 and AES-256-GCM with 96-bit nonces and
128-bit tags: exactly the parameters seed 002 names. Checked against Wycheproof in
tests/axon/test_scp_vectors.py.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from axon.transports.scp_errors import ScpConfigError, ScpDecryptError, ScpHmacError, ScpKeyError

X25519_LEN = 32
HASH_LEN = 32
AES_KEY_LEN = 32
NONCE_LEN = 12
TAG_LEN = 16
HKDF_MAX = 255 * HASH_LEN


def x25519_keypair(randbytes: Callable[[int], bytes]) -> tuple[X25519PrivateKey, bytes]:
    """An ephemeral key pair from injected randomness (RFC 7748 clamps the scalar)."""
    private = X25519PrivateKey.from_private_bytes(randbytes(X25519_LEN))
    return private, private.public_key().public_bytes_raw()


def x25519_shared(private: X25519PrivateKey | bytes, peer_public: bytes) -> bytes:
    """The X25519 shared secret; a low-order peer key (all-zero secret, RFC 7748 §6.1) is refused."""
    if len(peer_public) != X25519_LEN:
        raise ScpKeyError(f"X25519 public key must be {X25519_LEN} bytes, got {len(peer_public)}")
    if isinstance(private, bytes):
        private = X25519PrivateKey.from_private_bytes(private)
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as exc:  # OpenSSL refuses the all-zero output
        raise ScpKeyError("peer's X25519 key is a low-order point (all-zero shared secret)") from exc
    if not any(shared):
        raise ScpKeyError("peer's X25519 key is a low-order point (all-zero shared secret)")
    return shared


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")


def hmac_check(key: bytes, data: bytes, tag: bytes) -> None:
    """Constant-time comparison of a full 32-byte tag; truncated tags are refused."""
    if len(tag) != HASH_LEN or not hmac.compare_digest(hmac_sha256(key, data), tag):
        raise ScpHmacError("HMAC-SHA-256 does not match: the frame was altered or keyed differently")


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    """RFC 5869 §2.2; an empty salt means HashLen zero bytes."""
    return hmac_sha256(salt or bytes(HASH_LEN), ikm)


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    if not 0 < length <= HKDF_MAX:
        raise ScpConfigError(f"HKDF-SHA256 output must be 1..{HKDF_MAX} bytes, asked for {length}")
    return HKDFExpand(hashes.SHA256(), length, info).derive(prk)


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    return hkdf_expand(hkdf_extract(salt, ikm), info, length)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class AesGcm:
    """AES-256-GCM with a 96-bit nonce and a 128-bit tag, nothing else."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != AES_KEY_LEN:
            raise ScpConfigError(f"AES-256-GCM key must be {AES_KEY_LEN} bytes, got {len(key)}")
        self._aead = AESGCM(key)

    def seal(self, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """ciphertext ‖ 16-byte tag."""
        _check_nonce(nonce)
        return self._aead.encrypt(nonce, plaintext, aad)

    def open(self, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        _check_nonce(nonce)
        if len(ciphertext) < TAG_LEN:
            raise ScpDecryptError("AES-GCM ciphertext is shorter than its 16-byte tag")
        try:
            return self._aead.decrypt(nonce, ciphertext, aad)
        except InvalidTag as exc:
            raise ScpDecryptError("AES-GCM tag does not verify: ciphertext or header altered") from exc


def _check_nonce(nonce: bytes) -> None:
    if len(nonce) != NONCE_LEN:
        raise ScpConfigError(f"AES-GCM nonce must be {NONCE_LEN} bytes, got {len(nonce)}")
