"""What the ledger knows: key, group, artifact and policy-name records, and the hash-chained entries
they come from."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from axon.keys import PublicKey

GENESIS_PREV_HASH = bytes(32)


@dataclass(frozen=True)
class KeyRecord:
    did: str
    public_key: PublicKey
    address: str
    level: int
    registered_by: str  # DID of the registering key; the root registered itself
    registered_seq: int
    revoked: bool = False
    revoked_by: str | None = None
    revoked_seq: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "did": self.did, "public_key": self.public_key.hex(), "address": self.address,
            "level": f"LVL_{self.level}", "registered_by": self.registered_by,
            "registered_seq": self.registered_seq, "revoked": self.revoked, "revoked_by": self.revoked_by,
            "revoked_seq": self.revoked_seq,
        }


@dataclass(frozen=True)
class GroupRecord:
    group: str
    members: tuple[str, ...]
    defined_by: str
    defined_seq: int


@dataclass(frozen=True)
class ArtifactRecord:
    urn: str
    policy: str
    version: str
    authority_level: int
    registered_by: str
    registered_seq: int
    revoked: bool = False
    revoke_reason: str | None = None
    revoked_seq: int | None = None
    superseded_by: str | None = None
    superseded_seq: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "urn": self.urn, "policy": self.policy, "version": self.version,
            "authority_level": f"LVL_{self.authority_level}", "registered_by": self.registered_by,
            "registered_seq": self.registered_seq, "revoked": self.revoked,
            "revoke_reason": self.revoke_reason, "revoked_seq": self.revoked_seq,
            "superseded_by": self.superseded_by, "superseded_seq": self.superseded_seq,
        }


@dataclass(frozen=True)
class PolicyRecord:
    """Who a policy name belongs to (docs/ledger.md rule 12), from the name's first ARTIFACT_REGISTER."""

    policy: str
    owner: str  # DID of the key that first registered an artifact under the name
    owner_level: int  # that key's level (a key's level never changes)
    level: int  # the lowest authority level the name's artifacts may declare
    registered_seq: int
    level_seq: int  # the entry that set `level`: the first registration, or the last one that lowered it

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy, "owner": self.owner, "owner_level": f"LVL_{self.owner_level}",
            "level": f"LVL_{self.level}", "registered_seq": self.registered_seq, "level_seq": self.level_seq,
        }


def entry_hash(prev_hash: bytes, tx_hash: bytes, seq: int, timestamp: int) -> bytes:
    """sha256(prev_hash ‖ tx_hash ‖ seq as u64 ‖ timestamp as u64), all big-endian (docs/ledger.md)."""
    data = prev_hash + tx_hash + seq.to_bytes(8, "big") + timestamp.to_bytes(8, "big")
    return hashlib.sha256(data).digest()


@dataclass(frozen=True)
class Entry:
    """One appended operation. `tx` is the signed transaction exactly as submitted."""

    seq: int
    timestamp: int
    tx: bytes
    tx_hash: bytes
    sender: str  # address recovered from the signature
    nonce: int
    op: dict[str, Any] = field(hash=False)
    prev_hash: bytes
    entry_hash: bytes

    @property
    def op_name(self) -> str:
        return str(self.op["op"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq, "timestamp": self.timestamp, "tx_hash": "0x" + self.tx_hash.hex(),
            "sender": self.sender, "nonce": self.nonce, "op": self.op, "tx": "0x" + self.tx.hex(),
            "prev_hash": self.prev_hash.hex(), "entry_hash": self.entry_hash.hex(),
        }
