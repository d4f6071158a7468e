"""Who may do what: bearer tokens (stored as hashes) and requests signed by ledger-registered keys.

Tokens. A token is `sopcos_` + 43 characters of base64url (32 random bytes). The config keeps only
its SHA-256 (hex): a token is high-entropy, so a fast hash is enough (nothing to brute-force, unlike a
password; scrypt would only slow every request). Presented tokens are hashed and compared with every
configured hash in constant time. Scopes: `evaluate` (evaluation and read-only listing) and `admin`
(everything). A token never reaches a log or an error message: only its configured name does.

Signed requests. An administrator with a key registered on the ledger signs the request instead:

    X-Sopcos-Signer:    did:sopcos:...#key-1
    X-Sopcos-Timestamp: Unix seconds (integer)
    X-Sopcos-Signature: hex of the 64-byte ECDSA signature (low-S) over SHA-256 of
        "sopcos-request-v1\\n" METHOD "\\n" PATH[?QUERY] "\\n" TIMESTAMP "\\n" SIGNER "\\n" hex(SHA-256(body))

The key must be on the ledger, unrevoked, with level >= `auth.admin_level`. The timestamp must be
within `auth.replay_window` seconds of the server clock, and a signature is accepted once only within
that window (a replay cache), so a captured request cannot be sent again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from axon.keys import Identity, PublicKey, sha256
from synapse.service.config import AuthConfig
from synapse.service.errors import AuthRequired, Forbidden

TOKEN_PREFIX = "sopcos_"
SIGNER_HEADER = "x-sopcos-signer"
TIMESTAMP_HEADER = "x-sopcos-timestamp"
SIGNATURE_HEADER = "x-sopcos-signature"
_REPLAY_CACHE_MAX = 100_000


class KeyRecordLike(Protocol):
    public_key: PublicKey
    level: int
    revoked: bool


@dataclass(frozen=True)
class Principal:
    """Who made a request: a token's configured name, a signer's DID, or `anonymous`."""

    name: str
    scopes: frozenset[str]
    via: str  # "token", "signature" or "open"

    def can(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


ANONYMOUS = Principal("anonymous", frozenset(), "open")
OPEN_EVALUATE = Principal("anonymous", frozenset({"evaluate"}), "open")


def new_token(randbytes: Callable[[int], bytes] = secrets.token_bytes) -> str:
    return TOKEN_PREFIX + base64.urlsafe_b64encode(randbytes(32)).rstrip(b"=").decode()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def request_digest(method: str, target: str, timestamp: str, signer: str, body: bytes) -> bytes:
    """The 32 bytes a signed request signs (see the module docstring)."""
    text = "\n".join(["sopcos-request-v1", method.upper(), target, timestamp, signer,
                      hashlib.sha256(body).hexdigest()])
    return sha256(text.encode())


def sign_request(identity: Identity, method: str, target: str, body: bytes = b"",
                 now: float | None = None) -> dict[str, str]:
    """Headers that sign a request as `identity` (for clients and tests). `target` is path[?query]."""
    timestamp = str(int(time.time() if now is None else now))
    signature = identity.key.sign(request_digest(method, target, timestamp, identity.did, body))
    return {"X-Sopcos-Signer": identity.did, "X-Sopcos-Timestamp": timestamp,
            "X-Sopcos-Signature": signature.hex()}


class Authenticator:
    """Turns request headers into a Principal, or raises AuthRequired / Forbidden. I/O-free: the ledger
    lookup (`key_lookup(did)`) and the clock are given to it."""

    def __init__(self, config: AuthConfig, key_lookup: Callable[[str], KeyRecordLike | None] | None,
                 clock: Callable[[], float] = time.time) -> None:
        self._tokens = [(t.sha256.encode(), Principal(t.name, frozenset(t.scopes), "token"))
                        for t in config.tokens]
        self._open_evaluate = config.open_evaluate or not config.tokens
        self._key_lookup = key_lookup if config.signed_requests else None
        self._admin_level = config.admin_level
        self._window = config.replay_window
        self._clock = clock
        self._seen: dict[bytes, float] = {}

    def authenticate(self, headers: Mapping[str, str], method: str, target: str,
                     body: bytes = b"") -> Principal:
        """Who is asking. No credentials: the open principal (which may evaluate only if configured so)."""
        authorization = headers.get("authorization")
        if authorization is not None:
            return self._token(authorization)
        if SIGNATURE_HEADER in headers or SIGNER_HEADER in headers:
            return self._signature(headers, method, target, body)
        return OPEN_EVALUATE if self._open_evaluate else ANONYMOUS

    @staticmethod
    def require(principal: Principal, scope: str) -> None:
        if principal.can(scope):
            return
        if principal.via == "open":
            raise AuthRequired(f"this endpoint needs the '{scope}' scope: send 'Authorization: Bearer "
                               "<token>'" + (" or a signed request" if scope == "admin" else ""))
        raise Forbidden(f"{principal.name} lacks the '{scope}' scope")

    # tokens

    def _token(self, authorization: str) -> Principal:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthRequired("Authorization header must be 'Bearer <token>'")
        presented = hash_token(token.strip()).encode()
        found = None
        for stored, principal in self._tokens:  # compare with all of them: no early exit to time
            if hmac.compare_digest(presented, stored):
                found = principal
        if found is None:
            raise AuthRequired("the bearer token is not valid")
        return found

    # signed requests

    def _signature(self, headers: Mapping[str, str], method: str, target: str, body: bytes) -> Principal:
        if self._key_lookup is None:
            raise AuthRequired("signed requests are not enabled on this service")
        signer = headers.get(SIGNER_HEADER, "")
        timestamp = headers.get(TIMESTAMP_HEADER, "")
        signature_hex = headers.get(SIGNATURE_HEADER, "")
        if not signer or not timestamp or not signature_hex:
            raise AuthRequired(f"a signed request needs all of {SIGNER_HEADER}, {TIMESTAMP_HEADER} and "
                               f"{SIGNATURE_HEADER}")
        try:
            ts = int(timestamp)
            signature = bytes.fromhex(signature_hex)
        except ValueError:
            raise AuthRequired("signed request: the timestamp must be an integer and the signature hex") \
                from None
        now = self._clock()
        if abs(now - ts) > self._window:
            raise AuthRequired(f"signed request: timestamp is more than {self._window:g} s from the "
                               "server's clock")
        record = self._lookup(signer)
        if record is None or record.revoked:
            raise AuthRequired(f"signed request: {signer} is not a registered, unrevoked key on the ledger")
        if not record.public_key.verify(signature, request_digest(method, target, timestamp, signer, body)):
            raise AuthRequired("signed request: the signature does not verify for this method, path and body")
        if record.level < self._admin_level:
            raise Forbidden(f"{signer} has authority level {record.level}; administration needs "
                            f"{self._admin_level}")
        self._remember(signature, now)
        return Principal(signer, frozenset({"admin"}), "signature")

    def _lookup(self, did: str) -> Any:
        try:
            return self._key_lookup(did)  # type: ignore[misc]
        except Exception as exc:  # the ledger is unreachable: the signer cannot be checked
            raise AuthRequired(f"signed request: the ledger cannot be read to check {did} "
                               f"({type(exc).__name__})") from None

    def _remember(self, signature: bytes, now: float) -> None:
        if self._seen.get(signature, 0.0) > now:
            raise AuthRequired("signed request: this signature was already used (replay)")
        if len(self._seen) >= _REPLAY_CACHE_MAX:
            self._seen = {sig: exp for sig, exp in self._seen.items() if exp > now}
            if len(self._seen) >= _REPLAY_CACHE_MAX:
                raise AuthRequired("signed request: too many signed requests in the replay window")
        self._seen[signature] = now + 2 * self._window
