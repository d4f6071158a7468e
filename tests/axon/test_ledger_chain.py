"""The chain follower's core (axon/ledger/follow.py) on blocks made here: admission in block order,
confirmations, reorganisations rolled back and re-applied, and readers of the index that see it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from axon.keys import Identity, SigningKey
from axon.ledger import Ledger, LedgerError, operation_transaction, ops
from axon.ledger.follow import Block, follow

CHAIN = 4242
T0 = 1_700_000_000


def ident(name: str) -> Identity:
    return Identity(SigningKey(hashlib.sha256(name.encode()).digest()), f"did:sopcos:{name}#key-1")


ROOT, ADMIN, AUTHOR = ident("root"), ident("admin"), ident("author")
URN = "urn:sopcos:artifact:sha256:" + "ab" * 32


def signed(who: Identity, op: dict, nonce: int, chain_id: int = CHAIN) -> bytes:
    return operation_transaction(op, nonce).sign(who.key, chain_id).encode()


@dataclass
class FakeChain:
    """A chain of blocks; `fork(at)` drops every block after `at` (what evm_revert does)."""

    mined: list[Block] = field(default_factory=list)

    def mine(self, *txs: bytes, salt: str = "") -> Block:
        number = len(self.mined)
        parent = self.mined[-1].hash if self.mined else bytes(32)
        digest = hashlib.sha256(parent + b"".join(txs) + salt.encode() + number.to_bytes(8, "big")).digest()
        block = Block(number=number, hash=digest, parent_hash=parent, timestamp=T0 + number, transactions=txs)
        self.mined.append(block)
        return block

    def fork(self, at: int) -> None:
        del self.mined[at + 1:]

    def head_number(self) -> int:
        return len(self.mined) - 1

    def block_hash(self, number: int) -> bytes | None:
        return self.mined[number].hash if 0 <= number < len(self.mined) else None

    def blocks(self, numbers: range) -> list[Block]:
        return self.mined[numbers.start:numbers.stop]


@pytest.fixture
def index(tmp_path: Path):
    with Ledger.create_chain_index(tmp_path / "index.sqlite", CHAIN) as led:
        yield led


def genesis_chain() -> FakeChain:
    chain = FakeChain()
    chain.mine()  # block 0: before the ledger
    chain.mine(signed(ROOT, ops.register_key(ROOT.did, ROOT.key.public_key, 5), 0))
    chain.mine(signed(ROOT, ops.register_key(ADMIN.did, ADMIN.key.public_key, 4), 1),
               signed(ADMIN, ops.register_key(AUTHOR.did, AUTHOR.key.public_key, 3), 0))
    chain.mine(signed(AUTHOR, ops.register_artifact(URN, "boiler-guard", "1.0.0", 3), 0))
    return chain


def test_blocks_are_admitted_in_order_through_the_ledger_rules(index: Ledger) -> None:
    chain = genesis_chain()
    stranger = ident("stranger")
    too_high = ops.register_key("did:sopcos:x#key-1", stranger.key.public_key, 4)
    chain.mine(signed(stranger, ops.revoke_artifact(URN, "not theirs"), 0),  # unknown sender
               signed(AUTHOR, too_high, 1),  # a LVL_3 key registering a LVL_4 one
               signed(ADMIN, ops.revoke_artifact(URN, "recalled"), 1, chain_id=CHAIN + 1))  # other chain
    report = follow(index, chain, confirmations=0)
    assert [e.op_name for e in report.admitted] == ["KEY_REGISTER"] * 3 + ["ARTIFACT_REGISTER"]
    assert [r.code for r in report.refused] == ["AXON-LEDGER-SENDER-UNKNOWN", "AXON-LEDGER-AUTHORITY",
                                                "AXON-LEDGER-CHAIN-ID"]
    assert index.artifact(URN) is not None and not index.artifact(URN).revoked
    assert index.entries()[0].timestamp == T0 + 1  # the block's time
    # The refused transaction still used AUTHOR's nonce 1 on the chain: its next one (2) is admitted.
    chain.mine(signed(AUTHOR, ops.revoke_artifact(URN, "withdrawn"), 2))
    assert [e.op_name for e in follow(index, chain, 0).admitted] == ["ARTIFACT_REVOKE"]
    chain.mine(signed(AUTHOR, ops.message(ROOT.did, {"x": 1}), 2))  # a used nonce is still a replay
    assert [r.code for r in follow(index, chain, 0).refused] == ["AXON-LEDGER-REPLAY"]


def test_an_operation_counts_after_its_confirmations(index: Ledger) -> None:
    chain = genesis_chain()
    chain.mine()
    report = follow(index, chain, confirmations=2)
    assert report.indexed_block == chain.head_number() - 2
    assert index.artifact(URN) is None  # registered in the head block's parent: one confirmation
    chain.mine(signed(AUTHOR, ops.revoke_artifact(URN, "recalled"), 1))
    follow(index, chain, 2)
    assert not index.artifact(URN).revoked
    chain.mine()
    follow(index, chain, 2)
    assert not index.artifact(URN).revoked  # one block on top: not yet
    chain.mine()
    follow(index, chain, 2)
    assert index.artifact(URN).revoked


def test_a_reorganisation_rolls_back_a_revocation_and_reapplies_it(index: Ledger, tmp_path: Path) -> None:
    chain = genesis_chain()
    fork_at = chain.head_number()
    revoke = signed(AUTHOR, ops.revoke_artifact(URN, "recalled"), 1)
    chain.mine(revoke)
    chain.mine()
    follow(index, chain, 0)
    reader = Ledger.open(index.path)  # another process reading the same index (a service worker)
    assert index.artifact(URN).revoked and reader.artifact(URN).revoked
    head_before = index.head_seq

    chain.fork(fork_at)
    chain.mine(salt="other branch")
    chain.mine(salt="other branch")
    report = follow(index, chain, 0)
    assert report.fork_block == fork_at and report.rewound_entries == 1
    assert not index.artifact(URN).revoked and index.head_seq == head_before - 1
    assert not reader.artifact(URN).revoked  # the reader rebuilt its state from the rewound file
    assert index.verify_chain().head_seq == head_before - 1

    chain.mine(revoke)  # the same transaction included again on the new branch
    report = follow(index, chain, 0)
    assert [e.op_name for e in report.admitted] == ["ARTIFACT_REVOKE"]
    assert index.artifact(URN).revoked and reader.artifact(URN).revoked
    reader.close()
    with Ledger.open(index.path) as reopened:
        assert reopened.artifact(URN).revoked


def test_a_fork_below_every_indexed_block_rewinds_everything(index: Ledger) -> None:
    chain = genesis_chain()
    follow(index, chain, 0)
    chain.fork(0)
    chain.mine(salt="rewritten")
    report = follow(index, chain, 0)
    assert report.fork_block == -1 and index.head_seq == 0 and index.key(ROOT.did) is None


def test_the_index_takes_entries_only_from_blocks(index: Ledger) -> None:
    with pytest.raises(LedgerError, match="local index of a ledger on an Ethereum chain"):
        index.sign_and_submit(ROOT, ops.register_key(ROOT.did, ROOT.key.public_key, 5), now=T0)
    chain = genesis_chain()
    follow(index, chain, 0)
    head = index.head_seq
    # A block another follower of the same index already applied is not applied twice.
    assert index.apply_block(1, chain.mined[1].hash, T0, list(chain.mined[1].transactions)) == ([], [])
    assert index.head_seq == head


def test_a_rewind_drops_the_checkpoints_past_the_fork(index: Ledger) -> None:
    node = ident("node")
    chain = genesis_chain()
    fork_at = chain.head_number()
    chain.mine(signed(AUTHOR, ops.revoke_artifact(URN, "recalled"), 1))
    follow(index, chain, 0)
    assert index.write_checkpoint(node.key) == index.head_seq
    chain.fork(fork_at)
    chain.mine(salt="other branch")
    chain.mine(salt="other branch")
    follow(index, chain, 0)
    with Ledger.open(index.path, checkpoint_keys=[node.key.public_key]) as reopened:
        assert reopened.checkpoint_seq == 0  # the checkpoint held the revocation the fork undid
        assert not reopened.artifact(URN).revoked
