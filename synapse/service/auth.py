"""Who may do what: bearer tokens (stored as hashes) and requests signed by ledger-registered keys.

Tokens. A token is `sopcos_` + 43 characters of base64url (32 random bytes). The config keeps only
its SHA-256 (hex): a token is high-entropy, so a fast hash is enough (nothing to brute-force, unlike a
password; scrypt would only slow every request). Presented tokens are hashed and compared with every
configured hash in constant time. Scopes: `evaluate` (evaluation and read-only listing) and `admin`
(everything). A token never reaches a log or an error message: only its configured name does.

Signed requests. An administrator with a key registered on the ledger signs the request instead:

    X-Sopcos-Signer:    did:sopcos:...#key-1
    X-Sopcos-Node:      the DID of the node the request is for (GET /readyz shows it as "node")
    X-Sopcos-Timestamp: Unix seconds (integer)
    X-Sopcos-Signature: hex of the 64-byte ECDSA signature (low-S) over SHA-256 of
        "sopcos-request-v2\\n" METHOD "\\n" PATH[?QUERY] "\\n" TIMESTAMP "\\n" SIGNER "\\n" NODE "\\n"
        hex(SHA-256(body))

The key must be on the ledger, unrevoked, with level >= `auth.admin_level`. The node must be this one:
nodes on one ledger trust the same keys, so a request that did not name its node would be accepted by
all of them. The timestamp must be within `auth.replay_window` seconds of the server's clock, and what
the request signed is accepted once only: the node records it in its node state (node_state.py),
shared by its workers and kept across restarts, so a captured request cannot be sent again to any
worker, before or after a restart.
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
NODE_HEADER = "x-sopcos-node"
TIMESTAMP_HEADER = "x-sopcos-timestamp"
SIGNATURE_HEADER = "x-sopcos-signature"
_ACCEPTED_MAX = 100_000


class AcceptedRequests(Protocol):
    """Where a node records the signed requests it accepted (NodeState)."""

    def accept_once(self, digest: bytes, expires_at: float, now: float, limit: int) -> bool: ...


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


def request_digest(method: str, target: str, timestamp: str, signer: str, node: str, body: bytes) -> bytes:
    """The 32 bytes a signed request signs (see the module docstring)."""
    text = "\n".join(["sopcos-request-v2", method.upper(), target, timestamp, signer, node,
                      hashlib.sha256(body).hexdigest()])
    return sha256(text.encode())


def sign_request(identity: Identity, node: str, method: str, target: str, body: bytes = b"",
                 now: float | None = None) -> dict[str, str]:
    """Headers that sign a request as `identity` for the node whose DID is `node` (for clients and
    tests). `target` is path[?query]."""
    timestamp = str(int(time.time() if now is None else now))
    signature = identity.key.sign(request_digest(method, target, timestamp, identity.did, node, body))
    return {"X-Sopcos-Signer": identity.did, "X-Sopcos-Node": node, "X-Sopcos-Timestamp": timestamp,
            "X-Sopcos-Signature": signature.hex()}


class Authenticator:
    """Turns request headers into a Principal, or raises AuthRequired / Forbidden. I/O-free: the ledger
    lookup (`key_lookup(did)`), the record of accepted requests and the clock are given to it. `node` is
    this node's DID, which a signed request must name."""

    def __init__(self, config: AuthConfig, node: str,
                 key_lookup: Callable[[str], KeyRecordLike | None] | None, accepted: AcceptedRequests,
                 clock: Callable[[], float] = time.time) -> None:
        self._tokens = [(t.sha256.encode(), Principal(t.name, frozenset(t.scopes), "token"))
                        for t in config.tokens]
        self._open_evaluate = config.open_evaluate or not config.tokens
        self._key_lookup = key_lookup if config.signed_requests else None
        self._admin_level = config.admin_level
        self._window = config.replay_window
        self._node = node
        self._accepted = accepted
        self._clock = clock

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
        node = headers.get(NODE_HEADER, "")
        timestamp = headers.get(TIMESTAMP_HEADER, "")
        signature_hex = headers.get(SIGNATURE_HEADER, "")
        if not signer or not node or not timestamp or not signature_hex:
            raise AuthRequired(f"a signed request needs all of {SIGNER_HEADER}, {NODE_HEADER}, "
                               f"{TIMESTAMP_HEADER} and {SIGNATURE_HEADER}")
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
        if node != self._node:
            raise AuthRequired(f"signed request: it is for node {node}; this node is {self._node}")
        record = self._lookup(signer)
        if record is None or record.revoked:
            raise AuthRequired(f"signed request: {signer} is not a registered, unrevoked key on the ledger")
        digest = request_digest(method, target, timestamp, signer, node, body)
        if not record.public_key.verify(signature, digest):
            raise AuthRequired("signed request: the signature does not verify for this method, path, node "
                               "and body")
        if record.level < self._admin_level:
            raise Forbidden(f"{signer} has authority level {record.level}; administration needs "
                            f"{self._admin_level}")
        # Keyed by what was signed, not by the signature's bytes: one request is one request, however
        # many signatures of it exist. Replayable only while |now - ts| <= window, so kept until then.
        if not self._accepted.accept_once(digest, ts + self._window, now, _ACCEPTED_MAX):
            raise AuthRequired("signed request: this request was already accepted once (replay)")
        return Principal(signer, frozenset({"admin"}), "signature")

    def _lookup(self, did: str) -> Any:
        try:
            return self._key_lookup(did)  # type: ignore[misc]
        except Exception as exc:  # the ledger is unreachable: the signer cannot be checked
            raise AuthRequired(f"signed request: the ledger cannot be read to check {did} "
                               f"({type(exc).__name__})") from None
