"""The ledger on a real Ethereum node (anvil): operations sent with eth_sendRawTransaction and indexed from
its blocks, a reorganisation forced with evm_snapshot/evm_revert, keys paying for gas, the chain away,
and `axon ledger status`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from axon.cli import main as axon_main
from axon.keys import Identity, SigningKey, write_key_file
from axon.ledger import ops
from axon.ledger.chain import ChainLedger
from axon.ledger.errors import ChainMismatch, ChainRefused, ChainUnavailable, LedgerError
from synapse.cli import main as synapse_main
from tests.anvil import Anvil, ChainPlant
from tests.service_support import AUTO, NORMAL

pytestmark = pytest.mark.slow
CHAIN = 7317
URN = "urn:sopcos:artifact:sha256:" + "cd" * 32


def ident(name: str) -> Identity:
    return Identity(SigningKey(hashlib.sha256(name.encode()).digest()), f"did:sopcos:{name}#key-1")


ROOT, ADMIN, AUTHOR = ident("chain-root"), ident("chain-admin"), ident("chain-author")


@pytest.fixture(scope="module")
def node():
    with Anvil(chain_id=CHAIN) as anvil:
        for who in (ROOT, ADMIN, AUTHOR):
            anvil.fund(who.key.address)  # dev balances: anvil charges gas like a public chain
        yield anvil


def test_operations_go_through_the_chain_and_a_reorg_is_undone(node: Anvil, tmp_path: Path) -> None:
    ledger = ChainLedger.connect(node.url, tmp_path / "index.sqlite", confirmations=0)
    genesis = ledger.sign_and_submit(ROOT, ops.register_key(ROOT.did, ROOT.key.public_key, 5), now=0)
    assert genesis.seq == 1 and ledger.key(ROOT.did).level == 5
    ledger.sign_and_submit(ROOT, ops.register_key(ADMIN.did, ADMIN.key.public_key, 4), now=0)
    ledger.sign_and_submit(ADMIN, ops.register_key(AUTHOR.did, AUTHOR.key.public_key, 3), now=0)
    registered = ledger.sign_and_submit(AUTHOR, ops.register_artifact(URN, "boiler-guard", "1.0.0", 3), now=0)
    assert ledger.artifact(URN).registered_seq == registered.seq

    # A second node's index, built from the chain alone, agrees entry for entry.
    other = ChainLedger.connect(node.url, tmp_path / "other.sqlite")
    other.follow_to_head()
    assert [e.entry_hash for e in other.entries()] == [e.entry_hash for e in ledger.entries()]

    # Refused locally before anything is paid for: a LVL_3 key cannot revoke the root.
    with pytest.raises(LedgerError) as refused:
        ledger.send(AUTHOR, ops.revoke_key(ROOT.did), now=0)
    assert refused.value.code == "AXON-LEDGER-AUTHORITY"

    snapshot = node.rpc("evm_snapshot")
    revocation = ledger.sign_and_submit(ADMIN, ops.revoke_artifact(URN, "recalled"), now=0)
    node.mine(2)
    other.follow_to_head()
    assert ledger.artifact(URN).revoked and other.artifact(URN).revoked

    assert node.rpc("evm_revert", [snapshot]) is True
    node.mine(4)  # the other branch grows past the old one
    report = other.follow_to_head()
    assert report.fork_block is not None and report.rewound_entries == 1
    assert not other.artifact(URN).revoked  # the revocation rolled back does not count
    assert other.head_seq == revocation.seq - 1

    # The same signed revocation is included again on the new branch: it counts again.
    again = other.submit(revocation.tx, now=0)
    assert again.tx_hash == revocation.tx_hash and other.artifact(URN).revoked
    ledger.follow_to_head()
    assert ledger.artifact(URN).revoked and ledger.head_hash == other.head_hash

    status = other.status()
    assert (status.chain_id, status.chain_head, status.indexed_block, status.lag_blocks) == \
           (CHAIN, node.head(), node.head(), 0)
    ledger.close()
    other.close()


def test_a_key_without_funds_is_refused_by_the_node(node: Anvil, tmp_path: Path) -> None:
    poor = ident("chain-poor")
    ledger = ChainLedger.connect(node.url, tmp_path / "index.sqlite")
    ledger.follow_to_head()
    ledger.sign_and_submit(ADMIN, ops.register_key(poor.did, poor.key.public_key, 2), now=0)
    with pytest.raises(ChainRefused, match="refused the transaction"):  # a registered key, no balance
        ledger.send(poor, ops.message(ROOT.did, {"hello": 1}), now=0)
    node.fund(poor.key.address)
    assert ledger.sign_and_submit(poor, ops.message(ROOT.did, {"hello": 1}), now=0).op_name == "MESSAGE"
    ledger.close()


def test_the_index_answers_while_the_chain_is_away(tmp_path: Path) -> None:
    with Anvil(chain_id=CHAIN) as anvil:
        anvil.fund(ROOT.key.address)
        ledger = ChainLedger.connect(anvil.url, tmp_path / "index.sqlite")
        ledger.sign_and_submit(ROOT, ops.register_key(ROOT.did, ROOT.key.public_key, 5), now=0)
        url = anvil.url
    with pytest.raises(ChainUnavailable, match="did not answer") as away:
        ledger.follow()
    assert "127.0.0.1" in str(away.value)
    assert ledger.key(ROOT.did).level == 5 and ledger.status().chain_head is None
    ledger.close()
    reopened = ChainLedger.connect(url, tmp_path / "index.sqlite")  # a restart while the chain is away
    assert reopened.key(ROOT.did).level == 5
    reopened.close()
    with Anvil(chain_id=CHAIN + 1) as wrong, pytest.raises(ChainMismatch, match="chain id 7318"):
        ChainLedger.connect(wrong.url, tmp_path / "index.sqlite")


def test_axon_ledger_commands_take_a_url(node: Anvil, tmp_path: Path, capsys) -> None:
    key = tmp_path / "admin.key"
    write_key_file(key, ADMIN.key, ADMIN.did)
    index = tmp_path / "cli-index.sqlite"
    chain = ["--ledger", node.url, "--index", str(index)]
    urn = "urn:sopcos:artifact:sha256:" + "ef" * 32
    assert axon_main(["ledger", "register-artifact", *chain, "--key", str(key), "--urn", urn,
                      "--policy", "tank-guard", "--version", "1.0.0", "--authority", "LVL_3"]) == 0
    assert "appended entry" in capsys.readouterr().out
    assert axon_main(["ledger", "status", *chain, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["chain_id"] == CHAIN and status["chain_head"] == node.head()
    assert status["lag_blocks"] == 0 and status["confirmations"] == 0 and status["reachable"]
    with ChainLedger.connect(node.url, index) as ledger:
        assert status["entries"] == ledger.head_seq and ledger.artifact(urn).policy == "tank-guard"
    # The confirmations a command asks for are the ones its status reports.
    assert axon_main(["ledger", "status", *chain, "--confirmations", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["confirmations"] == 3


def test_synapse_eval_verifies_against_a_ledger_on_a_chain(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("SOPCOS_LEDGER_INDEX", str(tmp_path / "eval-index.sqlite"))
    with Anvil(chain_id=CHAIN) as anvil:
        plant = ChainPlant(tmp_path, anvil)
        sop, urn = plant.artifact("1.0.0")
        path = tmp_path / "boiler.sop"
        path.write_bytes(sop)
        args = ["eval", str(path), "--ledger", anvil.url, "--telemetry", json.dumps(NORMAL),
                "--context", json.dumps(AUTO)]
        # The default 2 confirmations: the registration does not count until 2 blocks are on top of it.
        assert synapse_main(args) == 1
        assert "AXON-VERIFY-UNREGISTERED" in capsys.readouterr().err
        anvil.mine(2)
        assert synapse_main(args) == 0
        assert json.loads(capsys.readouterr().out)["verdict"] == "ALLOW"
        plant.revoke(urn)
        anvil.mine(2)
        assert synapse_main(args) == 1
        assert "AXON-VERIFY-REVOKED" in capsys.readouterr().err
    assert synapse_main(args) == 2  # the chain away: a setup error that says so, not a traceback
    err = capsys.readouterr().err
    assert "cannot follow the ledger on http://127.0.0.1" in err and "Traceback" not in err


def test_axon_ledger_init_on_a_chain_sends_the_genesis_once(tmp_path: Path, capsys) -> None:
    root_key = tmp_path / "root.key"
    write_key_file(root_key, ROOT.key, ROOT.did)
    with Anvil(chain_id=CHAIN + 2) as anvil:
        anvil.fund(ROOT.key.address)
        chain = ["--ledger", anvil.url, "--index", str(tmp_path / "index.sqlite")]
        assert axon_main(["ledger", "init", *chain, "--root-key", str(root_key), "--json"]) == 0
        created = json.loads(capsys.readouterr().out)
        assert created["chain_id"] == CHAIN + 2 and created["root"] == ROOT.did  # the node's chain id
        assert axon_main(["ledger", "init", *chain, "--root-key", str(root_key)]) == 2
        assert "already holds a ledger" in capsys.readouterr().err
        assert axon_main(["ledger", "verify", *chain]) == 0
        assert "1 entries verified" in capsys.readouterr().out
