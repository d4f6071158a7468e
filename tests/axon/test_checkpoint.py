"""Signed checkpoints (axon/ledger/checkpoint.py): opening from one gives the state a full replay gives,
replays only what came after it, and is not used when its signer is not trusted, its signature or state
hash is wrong, or an entry it covers changed; what it trusts its signer for is shown, not hidden."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import orjson
import pytest

from axon.keys import Identity, SigningKey
from axon.ledger import ChainBroken, Ledger, ops
from axon.ledger.checkpoint import Checkpoint

CHAIN = 4242
T0 = 1_700_000_000


def ident(name: str) -> Identity:
    return Identity(SigningKey(hashlib.sha256(name.encode()).digest()), f"did:sopcos:{name}#key-1")


ROOT, AUTHOR, NODE, OTHER = ident("root"), ident("author"), ident("node"), ident("other-node")


def urn(i: int) -> str:
    return "urn:sopcos:artifact:sha256:" + hashlib.sha256(str(i).encode()).hexdigest()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """root → author (LVL_4); 20 artifacts, the even ones revoked; 10 messages to the node."""
    p = tmp_path / "ledger.db"
    with Ledger.init(p, ROOT, CHAIN, now=T0) as led:
        led.sign_and_submit(ROOT, ops.register_key(AUTHOR.did, AUTHOR.key.public_key, 4), now=T0)
        for i in range(20):
            led.sign_and_submit(AUTHOR, ops.register_artifact(urn(i), f"p{i}", "1.0.0", 3), now=T0 + i)
            if i % 2 == 0:
                led.sign_and_submit(AUTHOR, ops.revoke_artifact(urn(i), "recalled"), now=T0 + i)
        for i in range(10):
            led.sign_and_submit(AUTHOR, ops.message(NODE.did, {"n": i}), now=T0 + 100 + i)
    return p


def view(led: Ledger) -> tuple:
    keys = [led.key(did).to_dict() for did in (ROOT.did, AUTHOR.did)]
    return (led.head_seq, led.head_hash, sorted((a.urn, a.revoked, a.revoked_seq) for a in led.artifacts()),
            keys, [(e.seq, e.op, e.sender) for e in led.messages(NODE.did)],
            led.nonce_of(AUTHOR.key.address), led.policy("p3"))


def test_opening_from_a_checkpoint_gives_the_replayed_state(path: Path) -> None:
    with Ledger.open(path) as full:
        seq = full.write_checkpoint(NODE.key)
        expected = view(full)
    with Ledger.open(path, checkpoint_keys=[NODE.key.public_key]) as fast:
        assert fast.checkpoint_seq == seq == fast.head_seq and fast.checkpoint_refused is None
        assert view(fast) == expected
        # Appends after the checkpoint are replayed as usual, on top of the checkpointed state.
        fast.sign_and_submit(AUTHOR, ops.revoke_artifact(urn(1), "late"), now=T0 + 500)
    with Ledger.open(path, checkpoint_keys=[NODE.key.public_key]) as fast, Ledger.open(path) as full:
        assert fast.checkpoint_seq == seq < fast.head_seq
        assert view(fast) == view(full) and fast.artifact(urn(1)).revoked
        assert fast.verify_chain().head_seq == full.head_seq  # verify_chain still replays everything


def test_a_checkpoint_is_used_only_from_a_trusted_signer(path: Path) -> None:
    with Ledger.open(path) as led:
        led.write_checkpoint(OTHER.key)
    with Ledger.open(path, checkpoint_keys=[NODE.key.public_key]) as led:
        assert led.checkpoint_seq == 0  # OTHER's checkpoint is not even looked at: a full replay


def _edit(path: Path, sql: str, *params: object) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(sql, params)


def test_a_checkpoint_that_does_not_check_out_is_not_used(path: Path) -> None:
    with Ledger.open(path) as led:
        seq = led.write_checkpoint(NODE.key)
    trusted = [NODE.key.public_key]
    header, state = sqlite3.connect(path).execute("SELECT header, state FROM checkpoints").fetchone()

    # The state edited (an artifact no longer revoked): its hash no longer matches the signed one.
    doc = orjson.loads(state)
    doc["artifacts"][0]["revoked"] = False
    _edit(path, "UPDATE checkpoints SET state = ?", orjson.dumps(doc))
    with Ledger.open(path, checkpoint_keys=trusted) as led:
        assert led.checkpoint_seq == 0 and "does not match its signed hash" in led.checkpoint_refused
        assert led.artifact(urn(0)).revoked
    # ... and its hash put in the header too: the signature no longer verifies.
    cp = Checkpoint.from_header(header)
    forged = Checkpoint(cp.chain_id, cp.seq, cp.entry_hash, hashlib.sha256(orjson.dumps(doc)).digest())
    _edit(path, "UPDATE checkpoints SET header = ?", forged.header())
    with Ledger.open(path, checkpoint_keys=trusted) as led:
        assert led.checkpoint_seq == 0 and "signature does not verify" in led.checkpoint_refused
    _edit(path, "UPDATE checkpoints SET header = ?, state = ?", header, state)

    # A transaction the checkpoint covers changed: reading its entry says so, as verify_chain() does.
    original = sqlite3.connect(path).execute("SELECT tx FROM entries WHERE seq = 5").fetchone()[0]
    _edit(path, "UPDATE entries SET tx = ? WHERE seq = 5", b"\xc0")
    with Ledger.open(path, checkpoint_keys=trusted) as led:
        assert led.checkpoint_seq == seq > 5
        with pytest.raises(ChainBroken) as broken:
            led.entries()
        assert broken.value.seq == 5
        with pytest.raises(ChainBroken):
            led.verify_chain()
    _edit(path, "UPDATE entries SET tx = ? WHERE seq = 5", original)
    # A link of the hash chain it covers changed: the checkpoint is not used, and the full replay says why.
    _edit(path, "UPDATE entries SET timestamp = timestamp + 1 WHERE seq = 7")
    with pytest.raises(ChainBroken) as broken:
        Ledger.open(path, checkpoint_keys=trusted)
    assert broken.value.seq == 7


def test_what_a_checkpoint_trusts_its_signer_for(path: Path) -> None:
    """The admission checks of the entries it covers are not re-run: a trusted signer's checkpoint of a
    state those entries do not give is believed (that is why only the node's own key is trusted), while a
    full replay and verify_chain() still give the truth."""
    with Ledger.open(path) as led:
        led.write_checkpoint(NODE.key)
    _, _, state = sqlite3.connect(path).execute("SELECT header, signature, state FROM checkpoints").fetchone()
    doc = orjson.loads(state)
    revoked = next(a for a in doc["artifacts"] if a["urn"] == urn(0))
    revoked["revoked"], revoked["revoke_reason"], revoked["revoked_seq"] = False, None, None
    lie = orjson.dumps(doc)
    cp = Checkpoint.from_header(sqlite3.connect(path).execute("SELECT header FROM checkpoints").fetchone()[0])
    lying = Checkpoint(cp.chain_id, cp.seq, cp.entry_hash, hashlib.sha256(lie).digest())
    signature = NODE.key.sign(hashlib.sha256(lying.header()).digest())
    _edit(path, "UPDATE checkpoints SET header = ?, signature = ?, state = ?", lying.header(), signature, lie)
    with Ledger.open(path, checkpoint_keys=[NODE.key.public_key]) as led:
        assert not led.artifact(urn(0)).revoked  # believed
        assert led.verify_chain()  # the entries themselves are intact...
    with Ledger.open(path) as led:
        assert led.artifact(urn(0)).revoked  # ...and replaying them gives the truth


def test_a_node_checkpoints_with_its_key_and_starts_from_it(path: Path) -> None:
    from synapse.service.ledger_link import LedgerLink, ledger_opener

    events: list[tuple[str, dict]] = []

    def link() -> LedgerLink:
        return LedgerLink(path, opener=ledger_opener([NODE.key.public_key]), checkpoint_signer=NODE.key,
                          checkpoint_every=10, events=lambda name, **f: events.append((name, f)))

    first = link()
    head = first.check()
    assert events == [("ledger_checkpointed", {"seq": head})]
    first.check()
    assert len(events) == 1  # nothing new: no second checkpoint
    first.close()
    restarted = link()
    assert restarted.ledger().checkpoint_seq == head
    assert restarted.ledger().artifact(urn(0)).revoked
    restarted.close()
