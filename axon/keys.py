"""secp256k1 identities: signing keys, public keys, DIDs, addresses and key files (spec/crypto.md).

Signatures are ECDSA over a SHA-256 digest, 64 bytes r ‖ s, low-S only; where a public key must be
recoverable (ledger transactions) the 65-byte r ‖ s ‖ recovery-id form is used.

What signs is a `Signer`: the in-memory `SigningKey`, or a key in a PKCS#11 token
(`axon.pkcs11_token.TokenKey`, named by a `pkcs11:` URI wherever a key file is accepted).
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import coincurve
from coincurve.ecdsa import cdata_to_der, deserialize_compact
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from eth_hash.auto import keccak

from axon import strictjson
from axon.errors import AxonError

KEY_FILE_TYPE = "sopcos-secp256k1-key"
KEY_ENV = "SOPCOS_KEY"
PASSPHRASE_ENV = "SOPCOS_KEY_PASSPHRASE"
DID_RE = re.compile(r"^did:sopcos:[A-Za-z0-9._:-]{1,128}(#[A-Za-z0-9._-]{1,64})?\Z")
# scrypt at n=2**17, r=8 uses 128 MiB: memory-hard enough that guessing a passphrase offline is slow.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1


class KeyMaterialError(AxonError):
    code = "AXON-KEY"


class InvalidKey(KeyMaterialError):
    code = "AXON-KEY-INVALID"


class KeyFileError(KeyMaterialError):
    code = "AXON-KEY-FILE"


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@dataclass(frozen=True)
class PublicKey:
    """A secp256k1 public key. `raw` is the 65-byte uncompressed SEC1 encoding."""

    raw: bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicKey:
        """Accepts 33-byte compressed or 65-byte uncompressed SEC1; rejects points not on the curve."""
        try:
            point = coincurve.PublicKey(bytes(data))
        except (ValueError, TypeError) as exc:
            raise InvalidKey("not a valid secp256k1 public key") from exc
        return cls(point.format(compressed=False))

    @classmethod
    def from_hex(cls, text: str) -> PublicKey:
        try:
            data = bytes.fromhex(text.removeprefix("0x"))
        except ValueError as exc:
            raise InvalidKey("public key is not hex") from exc
        return cls.from_bytes(data)

    @property
    def compressed(self) -> bytes:
        return coincurve.PublicKey(self.raw).format(compressed=True)

    @property
    def address(self) -> str:
        """Ethereum-style address: last 20 bytes of keccak-256 of the key without its 0x04 prefix."""
        return "0x" + keccak(self.raw[1:])[-20:].hex()

    def hex(self) -> str:
        return self.raw.hex()

    def verify(self, signature: bytes, digest: bytes) -> bool:
        """True only for a valid low-S 64-byte r ‖ s signature of the 32-byte `digest`."""
        if len(signature) != 64 or len(digest) != 32:
            return False
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:], "big")
        if not (0 < r < _N and 0 < s <= _N // 2):
            return False
        try:
            der = cdata_to_der(deserialize_compact(signature))
            return coincurve.PublicKey(self.raw).verify(der, digest, hasher=None)
        except (ValueError, TypeError):
            return False

    def verify_der(self, der: bytes, digest: bytes) -> bool:
        """DER-encoded signature check (strict DER, low-S), for interop and Wycheproof vectors."""
        try:
            return coincurve.PublicKey(self.raw).verify(der, digest, hasher=None)
        except (ValueError, TypeError):
            return False


_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def low_s(signature: bytes) -> bytes:
    """r ‖ s with s replaced by n - s when it is in the upper half: the one form `verify` accepts."""
    s = int.from_bytes(signature[32:64], "big")
    return signature[:32] + (_N - s if s > _N // 2 else s).to_bytes(32, "big")


class Signer(Protocol):
    """What every signing place takes (inside an `Identity`, with the DID it signs as): an in-memory
    `SigningKey`, or a key that never leaves a PKCS#11 token (`axon.pkcs11_token.TokenKey`). Both give
    the same bytes: low-S, and recoverable to `public_key`; both take `address` and `sign` from
    `SignerBase`."""

    public_key: PublicKey

    @property
    def address(self) -> str: ...

    def sign(self, digest: bytes) -> bytes:
        """64-byte low-S r ‖ s over a 32-byte digest."""
        ...

    def sign_recoverable(self, digest: bytes) -> bytes:
        """65 bytes r ‖ s ‖ recovery id (0 or 1) over a 32-byte digest."""
        ...

    def ecdh_point(self, public_key: PublicKey) -> bytes:
        """The shared point public × secret, uncompressed (65 bytes): opens SIP-017 messages."""
        ...


class SignerBase(abc.ABC):
    """What a `Signer` derives from its public key and its recoverable signature: the address, and the
    64-byte signature (the recoverable one without its recovery id)."""

    __slots__ = ()
    public_key: PublicKey

    @property
    def address(self) -> str:
        return self.public_key.address

    def sign(self, digest: bytes) -> bytes:
        """64-byte low-S r ‖ s over a 32-byte digest."""
        return self.sign_recoverable(digest)[:64]

    @abc.abstractmethod
    def sign_recoverable(self, digest: bytes) -> bytes:
        """65 bytes r ‖ s ‖ recovery id (0 or 1) over a 32-byte digest, s low."""


class SigningKey(SignerBase):
    """A secp256k1 private key. Never printed: repr and str show only the address."""

    __slots__ = ("_key", "public_key")

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32 or not 0 < int.from_bytes(secret, "big") < _N:
            raise InvalidKey("a secp256k1 secret is 32 bytes in [1, n-1]")
        self._key = coincurve.PrivateKey(secret)
        self.public_key = PublicKey(self._key.public_key.format(compressed=False))

    @classmethod
    def generate(cls, randbytes: Callable[[int], bytes] = secrets.token_bytes) -> SigningKey:
        while True:
            candidate = randbytes(32)
            if 0 < int.from_bytes(candidate, "big") < _N:
                return cls(candidate)

    @classmethod
    def from_hex(cls, text: str) -> SigningKey:
        try:
            return cls(bytes.fromhex(text.strip().removeprefix("0x")))
        except ValueError as exc:
            raise InvalidKey("secret key is not 64 hex digits") from exc

    def secret_bytes(self) -> bytes:
        return self._key.secret

    def sign_recoverable(self, digest: bytes) -> bytes:
        """65 bytes r ‖ s ‖ recovery id (0 or 1); libsecp256k1 always produces low-S, RFC 6979 nonces."""
        if len(digest) != 32:
            raise ValueError("digest must be 32 bytes")
        return self._key.sign_recoverable(digest, hasher=None)

    def ecdh_point(self, public_key: PublicKey) -> bytes:
        """The whole shared point S = public × secret, uncompressed (65 bytes), as spec/crypto.md fixes."""
        point = coincurve.PublicKey(public_key.raw).multiply(self._key.secret)
        return point.format(compressed=False)

    def __repr__(self) -> str:
        return f"SigningKey(address={self.address})"

    __str__ = __repr__


def recover(signature65: bytes, digest: bytes) -> PublicKey:
    """The public key that made a recoverable signature (r ‖ s ‖ recovery id 0/1) over `digest`."""
    if len(signature65) != 65 or signature65[64] not in (0, 1):
        raise InvalidKey("recoverable signature must be 65 bytes with recovery id 0 or 1")
    try:
        pub = coincurve.PublicKey.from_signature_and_message(signature65, digest, hasher=None)
    except (ValueError, TypeError) as exc:
        raise InvalidKey("signature does not recover to a public key") from exc
    return PublicKey(pub.format(compressed=False))


def did_for(public_key: PublicKey, name: str | None = None, fragment: str = "key-1") -> str:
    """`did:sopcos:<name>#<fragment>`; the name defaults to the key's address."""
    did = f"did:sopcos:{name or public_key.address}#{fragment}"
    if not DID_RE.match(did):
        raise InvalidKey(f"{did!r} is not a valid did:sopcos identifier")
    return did


# --- key files ----------------------------------------------------------------------------------


def key_file_document(key: SigningKey, did: str, passphrase: str | None,
                      randbytes: Callable[[int], bytes] = secrets.token_bytes) -> dict:
    doc = {"type": KEY_FILE_TYPE, "did": did, "public_key": key.public_key.hex(), "address": key.address}
    if passphrase is None:
        doc["secret"] = key.secret_bytes().hex()
        return doc
    salt, iv = randbytes(16), randbytes(12)
    kek = Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(passphrase.encode())
    doc["encrypted_secret"] = {
        "kdf": "scrypt", "salt": salt.hex(), "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P,
        "cipher": "AES-256-GCM", "iv": iv.hex(),
        "ciphertext": AESGCM(kek).encrypt(iv, key.secret_bytes(), did.encode()).hex(),
    }
    return doc


def write_key_file(path: Path, key: SigningKey, did: str, passphrase: str | None = None) -> None:
    """Create `path` readable by its owner only (0600); refuses to overwrite an existing file."""
    data = json.dumps(key_file_document(key, did, passphrase), indent=2).encode() + b"\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key file") from exc
    except OSError as exc:
        raise KeyFileError(f"cannot create {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


@dataclass(frozen=True)
class Identity:
    """A signing key with the DID it signs as."""

    key: Signer
    did: str


def parse_key_document(text: str, passphrase: str | None) -> Identity:
    """A key file's JSON, or a bare 64-hex secret (then the DID is derived from the address)."""
    text = text.strip()
    if re.fullmatch(r"(0x)?[0-9a-fA-F]{64}", text):
        key = SigningKey.from_hex(text)
        return Identity(key, did_for(key.public_key))
    try:
        doc = strictjson.loads(text)
    except strictjson.JsonError as exc:
        raise KeyFileError("key is neither a key file (JSON) nor a 64-hex-digit secret") from exc
    if not isinstance(doc, dict) or doc.get("type") != KEY_FILE_TYPE or not isinstance(doc.get("did"), str):
        raise KeyFileError(f"not a Sopcos key file (expected type {KEY_FILE_TYPE!r} and a did)")
    if "secret" in doc:
        key = SigningKey.from_hex(str(doc["secret"]))
    else:
        key = _decrypt_secret(doc.get("encrypted_secret"), doc["did"], passphrase)
    if doc.get("public_key") not in (None, key.public_key.hex()):
        raise KeyFileError("key file's public_key does not match its secret")
    return Identity(key, doc["did"])


def _decrypt_secret(enc: object, did: str, passphrase: str | None) -> SigningKey:
    if not isinstance(enc, dict):
        raise KeyFileError("key file has neither 'secret' nor 'encrypted_secret'")
    if passphrase is None:
        raise KeyFileError(f"key file is encrypted: set {PASSPHRASE_ENV} to its passphrase")
    try:
        kek = Scrypt(salt=bytes.fromhex(enc["salt"]), length=32, n=int(enc["n"]), r=int(enc["r"]),
                     p=int(enc["p"])).derive(passphrase.encode())
        secret = AESGCM(kek).decrypt(bytes.fromhex(enc["iv"]), bytes.fromhex(enc["ciphertext"]), did.encode())
    except (KeyError, ValueError, TypeError) as exc:
        raise KeyFileError("encrypted key file is malformed") from exc
    except Exception as exc:  # cryptography's InvalidTag: wrong passphrase or edited file
        raise KeyFileError("cannot decrypt key file: wrong passphrase or the file was altered") from exc
    return SigningKey(secret)


def is_pkcs11_uri(text: object) -> bool:
    """Whether `text` names a key in a PKCS#11 token (RFC 7512; the scheme is case-insensitive)."""
    return isinstance(text, str) and text[:7].lower() == "pkcs11:"


def key_location(text: str) -> str | Path:
    """A key argument as given: a `pkcs11:` URI stays a string (a Path would fold its '//'), else a path."""
    return text if is_pkcs11_uri(text) else Path(text)


def load_identity(path: str | Path | None = None, *, environ: dict[str, str] | None = None) -> Identity:
    """Load a key from `path`, or, when `path` is None, from $SOPCOS_KEY (so CI never writes keys to disk).

    `path` (or $SOPCOS_KEY) may be a `pkcs11:` URI: the key then stays in the token (docs/keys.md).
    The passphrase for an encrypted key file comes from $SOPCOS_KEY_PASSPHRASE.
    """
    env = os.environ if environ is None else environ
    passphrase = env.get(PASSPHRASE_ENV)
    if path is None:
        text = env.get(KEY_ENV)
        if not text:
            raise KeyFileError(f"no key given: pass a key file or set {KEY_ENV}")
        path = text.strip() if is_pkcs11_uri(text.strip()) else None
        if path is None:
            return parse_key_document(text, passphrase)
    if is_pkcs11_uri(str(path)):
        from axon.pkcs11_token import load_token_identity  # python-pkcs11 only for those who use a token

        return load_token_identity(str(path), env)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise KeyFileError(f"key file {path} is not text") from exc
    return parse_key_document(text, passphrase)
