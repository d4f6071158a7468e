"""Who may be on the other end of an SCP connection.

The handshake proves that the peer holds the secp256k1 key it presented (a signature over the
transcript); a verifier then decides whether that key may speak for the DID it claimed: a pinned key,
or the ledger's binding (registered and not revoked). Any callable
`(did, public_key) -> PeerIdentity` that raises `ScpPeerRejected` works.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from axon.errors import AxonError
from axon.keys import PublicKey
from axon.transports.scp_errors import ScpPeerRejected


@dataclass(frozen=True)
class PeerIdentity:
    """An authenticated peer: the DID it claimed, the key that signed the transcript, and its ledger level."""

    did: str
    public_key: PublicKey
    authority_level: int | None = None


class PeerVerifier(Protocol):
    def __call__(self, did: str, public_key: PublicKey) -> PeerIdentity: ...


class PinnedPeer:
    """Accepts only the given key(s); optionally only under one DID."""

    def __init__(self, keys: PublicKey | Iterable[PublicKey], did: str | None = None) -> None:
        self._keys = frozenset(k.raw for k in ([keys] if isinstance(keys, PublicKey) else keys))
        if not self._keys:
            raise ValueError("PinnedPeer needs at least one public key")
        self._did = did

    def __call__(self, did: str, public_key: PublicKey) -> PeerIdentity:
        if public_key.raw not in self._keys:
            raise ScpPeerRejected(f"peer key {public_key.address} is not the pinned key")
        if self._did is not None and did != self._did:
            raise ScpPeerRejected(f"peer claims {did!r}, pinned identity is {self._did!r}")
        return PeerIdentity(did, public_key)


class LedgerPeer:
    """Accepts a DID the ledger binds to exactly the presented key, not revoked, at `min_level` or above.

    `ledger` is anything with `key(did) -> record | None` where the record has `public_key`,
    `revoked` and `level` (axon.ledger.Ledger does).
    """

    def __init__(self, ledger: Any, *, min_level: int = 1) -> None:
        self._ledger = ledger
        self._min_level = min_level

    def __call__(self, did: str, public_key: PublicKey) -> PeerIdentity:
        try:
            record = self._ledger.key(did)
        except AxonError as exc:  # fail closed: a ledger we cannot read admits nobody
            raise ScpPeerRejected(f"ledger lookup of {did!r} failed: {exc.code}") from exc
        if record is None:
            raise ScpPeerRejected(f"{did!r} is not registered on the ledger")
        if record.revoked:
            raise ScpPeerRejected(f"{did!r} is revoked on the ledger")
        if record.public_key.raw != public_key.raw:
            raise ScpPeerRejected(f"peer key {public_key.address} is not the key the ledger binds to {did!r}")
        if record.level < self._min_level:
            raise ScpPeerRejected(f"{did!r} has authority level {record.level}, {self._min_level} required")
        return PeerIdentity(did, public_key, record.level)
