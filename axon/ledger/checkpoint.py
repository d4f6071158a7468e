"""Signed checkpoints: the ledger's state at an entry, so that opening does not replay all history.

A checkpoint is the state `LedgerState` reached after entry `seq` (serialised here), its SHA-256, and
that entry's hash, under a signature. Opening a ledger with the keys whose checkpoints it trusts
(`Ledger.open(path, checkpoint_keys=...)`) takes the newest checkpoint signed by one of them, checks the
signature, the state's hash, and the stored entries' hash chain up to `seq` against the signed entry
hash (each entry read later is also checked against its transaction's keccak: the bytes are the ones
that were checkpointed), and then replays only the entries after it. What it skips, and therefore
trusts the signer for, is re-running the admission checks (signature recovery, nonces, authority) on
entries 1..seq: "the signer replayed exactly these bytes and got exactly this state". `verify_chain()`
still replays everything (docs/ledger.md).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import orjson
import rfc8785

from axon import strictjson
from axon.keys import PublicKey, Signer
from axon.ledger.errors import LedgerError
from axon.ledger.records import (
    GENESIS_PREV_HASH,
    ArtifactRecord,
    GroupRecord,
    KeyRecord,
    PolicyRecord,
)
from axon.ledger.state import LedgerState

FORMAT = "sopcos-ledger-checkpoint/1"


class CheckpointRefused(LedgerError):
    """A checkpoint that cannot be used (untrusted signer, bad signature or hash, entries changed)."""

    code = "AXON-LEDGER-CHECKPOINT"


@dataclass(frozen=True)
class Checkpoint:
    """The signed header; the state itself travels beside it and is bound by `state_sha256`."""

    chain_id: int
    seq: int
    entry_hash: bytes
    state_sha256: bytes

    def header(self) -> bytes:
        return rfc8785.dumps({"format": FORMAT, "chain_id": self.chain_id, "seq": self.seq,
                              "entry_hash": self.entry_hash.hex(), "state_sha256": self.state_sha256.hex()})

    @classmethod
    def from_header(cls, header: bytes) -> Checkpoint:
        try:
            doc = strictjson.loads(header)
            if doc.get("format") != FORMAT:
                raise CheckpointRefused(f"checkpoint format {doc.get('format')!r}, not {FORMAT!r}")
            return cls(chain_id=int(doc["chain_id"]), seq=int(doc["seq"]),
                       entry_hash=bytes.fromhex(doc["entry_hash"]),
                       state_sha256=bytes.fromhex(doc["state_sha256"]))
        except (strictjson.JsonError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointRefused(f"checkpoint header is malformed: {exc}") from None


def sign(state: LedgerState, signer: Signer) -> tuple[Checkpoint, bytes, bytes]:
    """(checkpoint, header signature, serialised state) for `state` as it stands."""
    blob = serialise(state)
    checkpoint = Checkpoint(chain_id=state.chain_id, seq=state.head_seq, entry_hash=state.head_hash,
                            state_sha256=hashlib.sha256(blob).digest())
    return checkpoint, signer.sign(hashlib.sha256(checkpoint.header()).digest()), blob


def check_signature(header: bytes, signature: bytes, trusted: Sequence[PublicKey], signer: str) -> Checkpoint:
    key = next((k for k in trusted if k.address == signer), None)
    if key is None:
        raise CheckpointRefused(f"checkpoint signed by {signer}, which is not trusted here")
    if not key.verify(signature, hashlib.sha256(header).digest()):
        raise CheckpointRefused(f"checkpoint signature does not verify against {signer}")
    return Checkpoint.from_header(header)


def check_links(checkpoint: Checkpoint, links: Iterable[tuple[int, int, bytes, bytes, bytes]]) -> None:
    """Entries 1..seq as (seq, timestamp, tx_hash, prev_hash, entry_hash): each entry hash covers its
    transaction's hash and links to the previous one, and the last is the signed one. (That each stored
    transaction hashes to its tx_hash is checked when the entry is read: Ledger._entry.)"""
    previous, expected = GENESIS_PREV_HASH, 1
    sha256, pack = hashlib.sha256, struct.Struct(">QQ").pack  # records.entry_hash, inlined: 100,000 times
    for seq, timestamp, tx_hash, prev_hash, stored_hash in links:
        if seq != expected or prev_hash != previous or \
                sha256(prev_hash + tx_hash + pack(seq, timestamp)).digest() != stored_hash:
            raise CheckpointRefused(f"entry {seq} is not the one that was checkpointed")
        previous, expected = stored_hash, seq + 1
    if expected != checkpoint.seq + 1 or previous != checkpoint.entry_hash:
        raise CheckpointRefused(f"the ledger does not hold the checkpointed entry {checkpoint.seq}")


def serialise(state: LedgerState) -> bytes:
    return orjson.dumps({
        "chain_id": state.chain_id, "chain_ordered": state.chain_ordered,
        "keys": [{**asdict(k), "public_key": k.public_key.hex()} for k in state.keys.values()],
        "groups": [asdict(g) for g in state.groups.values()],
        "artifacts": [asdict(a) for a in state.artifacts.values()],
        "policies": [asdict(p) for p in state.policies.values()],
        "nonces": state.nonces, "inbox": state.inbox, "log_anchors": state.log_anchors,
        "head_seq": state.head_seq, "head_hash": state.head_hash.hex(), "root_did": state.root_did,
    })


def restore(blob: bytes, checkpoint: Checkpoint) -> LedgerState:
    if hashlib.sha256(blob).digest() != checkpoint.state_sha256:
        raise CheckpointRefused("the checkpointed state does not match its signed hash")
    # Not untrusted JSON: its hash was just checked against the signed one, so these are the bytes
    # `serialise` wrote from dicts (no key twice, four levels deep). strictjson's guards are for text
    # from outside, and its fast path gives up on the colons inside DIDs and URNs.
    doc = orjson.loads(blob)  # noqa: TID251
    state = LedgerState(doc["chain_id"], chain_ordered=doc["chain_ordered"])
    for k in doc["keys"]:
        record = KeyRecord(**{**k, "public_key": PublicKey.from_hex(k["public_key"])})
        state.keys[record.did] = record
        state.did_of_address[record.address] = record.did
    state.groups = {g["group"]: GroupRecord(**{**g, "members": tuple(g["members"])}) for g in doc["groups"]}
    state.artifacts = {a["urn"]: ArtifactRecord(**a) for a in doc["artifacts"]}
    state.policies = {p["policy"]: PolicyRecord(**p) for p in doc["policies"]}
    state.nonces, state.inbox, state.log_anchors = doc["nonces"], doc["inbox"], doc["log_anchors"]
    state.head_seq, state.head_hash, state.root_did = (doc["head_seq"], bytes.fromhex(doc["head_hash"]),
                                                       doc["root_did"])
    if (state.chain_id, state.head_seq, state.head_hash) != (checkpoint.chain_id, checkpoint.seq,
                                                             checkpoint.entry_hash):
        raise CheckpointRefused("the checkpointed state is not at the checkpointed entry")
    return state
