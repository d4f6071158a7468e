"""Decision-log anchors on the ledger: the LOG_ANCHOR operation, and verification against it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from axon.keys import Identity, SigningKey
from axon.ledger import AuthorityDenied, Ledger, MalformedOperation, UnknownSender, ops

T0 = 1_700_000_000
HEAD = "sha256:" + "ab" * 32


def ident(name: str) -> Identity:
    return Identity(SigningKey(hashlib.sha256(name.encode()).digest()), f"did:sopcos:{name}#key-1")


ROOT, NODE, OTHER, STRANGER = (ident(n) for n in ("root", "node-a", "node-b", "stranger"))


@pytest.fixture
def ledger(tmp_path: Path):
    """root LVL_5 registers two nodes at LVL_1 (a node needs no authority to anchor its own log)."""
    led = Ledger.init(tmp_path / "ledger.db", ROOT, 4242, now=T0)
    led.sign_and_submit(ROOT, ops.register_key(NODE.did, NODE.key.public_key, 1), now=T0 + 1)
    led.sign_and_submit(ROOT, ops.register_key(OTHER.did, OTHER.key.public_key, 1), now=T0 + 2)
    yield led
    led.close()


def test_a_registered_node_anchors_its_own_log_and_the_anchors_survive_replay(ledger, tmp_path):
    first = ledger.sign_and_submit(NODE, ops.log_anchor(NODE.did, "0123456789ab", 3, HEAD), now=T0 + 10)
    ledger.sign_and_submit(OTHER, ops.log_anchor(OTHER.did, "0123456789ab", 9, HEAD), now=T0 + 11)
    second = ledger.sign_and_submit(NODE, ops.log_anchor(NODE.did, "ba9876543210", 7, HEAD), now=T0 + 12)
    assert [e.seq for e in ledger.log_anchors(NODE.did)] == [first.seq, second.seq]
    assert ledger.log_anchors(NODE.did)[1].op == {"op": "LOG_ANCHOR", "opcode": 10, "node": NODE.did,
                                                  "stream_id": "ba9876543210", "seq": 7, "head": HEAD}
    assert ledger.log_anchors(STRANGER.did) == []
    with Ledger.open(ledger.path) as reopened:  # state rebuilt by replaying every entry's checks
        assert [e.seq for e in reopened.log_anchors(NODE.did)] == [first.seq, second.seq]
        assert reopened.verify_chain().head_seq == second.seq


def test_a_node_cannot_anchor_another_nodes_log(ledger):
    with pytest.raises(AuthorityDenied, match="only its own decision log"):
        ledger.sign_and_submit(OTHER, ops.log_anchor(NODE.did, "0123456789ab", 3, HEAD), now=T0 + 10)
    with pytest.raises(UnknownSender):
        ledger.sign_and_submit(STRANGER, ops.log_anchor(STRANGER.did, "0123456789ab", 3, HEAD), now=T0 + 10)
    assert ledger.log_anchors(NODE.did) == [] and ledger.log_anchors(STRANGER.did) == []


@pytest.mark.parametrize("field, value, says", [
    ("stream_id", "w0", "stream id"),
    ("stream_id", "0123456789AB", "stream id"),
    ("seq", 0, "minimum"),
    ("seq", 2**53, "maximum"),
    ("seq", "3", "integer"),
    ("head", "ab" * 32, "record hash"),
    ("node", "node-a", "DID"),
])
def test_malformed_anchors_are_refused_naming_the_field(field, value, says):
    op = {"op": "LOG_ANCHOR", "opcode": 10, "node": NODE.did, "stream_id": "0123456789ab", "seq": 3,
          "head": HEAD, field: value}
    with pytest.raises(MalformedOperation, match=f"/{field}") as err:
        ops.validate(op)
    assert says in str(err.value)
