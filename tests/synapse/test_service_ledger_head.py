"""A ledger never goes backwards unnoticed: a node remembers the highest head it verified and refuses a
ledger that does not hold it (cut short, or rewritten at the same length), while running and after a
restart (docs/ledger.md, docs/service.md)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from axon.ledger import Ledger, ops
from synapse.service.auth import hash_token, new_token
from synapse.service.ledger_link import LedgerLink, LedgerRolledBack, LedgerUnreachable, rollback_reason
from synapse.service.node_state import NodeState
from tests.service_support import AUTO, NORMAL, Plant, Server, identity, write_config
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

ADMIN_TOKEN = new_token()
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BODY = {"policy": "boiler-guard", "telemetry": NORMAL, "context": AUTO}
OTHER = {**BODY, "policy": "other-guard"}
FOLLOW = 0.3


@pytest.fixture
def plant(tmp_path) -> Plant:
    return Plant(tmp_path)


def copy_ledger(source: Path, target: Path) -> Path:
    """A consistent copy of a ledger file as it is now (SQLite's backup API)."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()
    return target


def swap_in(plant: Plant, copy: Path) -> None:
    """Replace the ledger file by (a copy of) `copy`, as an attacker or a wrong restore would."""
    staged = copy_ledger(copy, plant.dir / "staged.db")
    os.replace(staged, plant.ledger_path)


def rewritten(plant: Plant, base: Path, length: int) -> Path:
    """`base` plus different entries up to `length`: as long as the ledger the node verified (its own
    decision-log anchors included, however many it posted), with other last entries."""
    fork = copy_ledger(base, plant.dir / "fork.db")
    with Ledger.open(fork) as ledger:
        while ledger.head_seq < length:
            stranger = identity(f"stranger-{ledger.head_seq}")
            ledger.sign_and_submit(plant.root, ops.register_key(stranger.did, stranger.key.public_key,
                                                                "LVL_1"), plant.now)
    return fork


def head(path: Path) -> tuple[int, bytes]:
    with Ledger.open(path) as ledger:
        return ledger.head_seq, ledger.head_hash


# -- the rule on its own -------------------------------------------------------------------------------


def test_rollback_reason():
    verified = (16, b"\x16" * 32)
    assert rollback_reason(verified, (16, b"\x16" * 32), 20) is None
    assert "ends at entry 15" in rollback_reason(verified, None, 15)
    assert "entries 16..16 are missing" in rollback_reason(verified, None, 15)
    assert "was rewritten" in rollback_reason(verified, (16, b"\x17" * 32), 16)


def test_the_link_refuses_a_ledger_that_does_not_hold_the_verified_head(plant):
    before = copy_ledger(plant.ledger_path, plant.dir / "before.db")
    plant.submit(plant.root, ops.revoke_key(plant.operator.did))
    events: list[tuple[str, dict]] = []
    state = NodeState(plant.dir / "store" / "node-state.sqlite")
    link = LedgerLink(plant.ledger_path, heads=state, events=lambda name, **f: events.append((name, f)))
    assert link.check() == head(plant.ledger_path)[0]
    assert state.verified_head() == head(plant.ledger_path)
    real = copy_ledger(plant.ledger_path, plant.dir / "real.db")

    for attack in (before, rewritten(plant, before, head(real)[0])):
        swap_in(plant, attack)
        with pytest.raises(LedgerRolledBack) as info:
            link.ledger()  # the replaced file is noticed by the next use, not only by the follower
        assert isinstance(info.value, LedgerUnreachable)  # so every caller treats it as unusable
        with pytest.raises(LedgerRolledBack):
            link.check()
        assert not link.reachable and link.rolled_back == info.value.message
        # A second link (another worker, or this one after a restart) has no memory but the node state.
        with pytest.raises(LedgerRolledBack):
            LedgerLink(plant.ledger_path, heads=NodeState(state.path)).ledger()
    assert [name for name, _ in events] == ["ledger_rolled_back", "ledger_rolled_back"]
    assert "missing" in events[0][1]["reason"] and "rewritten" in events[1][1]["reason"]

    # The real ledger back, one entry further: used again, and the head moves on.
    with Ledger.open(real) as ledger:
        ledger.sign_and_submit(plant.root, ops.revoke_key(plant.author.did), plant.now)
    swap_in(plant, real)
    assert link.check() == head(plant.ledger_path)[0] and link.rolled_back is None and link.reachable
    assert events[-1][0] == "ledger_extends_again"
    # Without a node state (one-shot use) there is no memory: the shorter ledger is taken.
    swap_in(plant, before)
    assert LedgerLink(plant.ledger_path).check() == head(before)[0]


# -- the service: the exact attack ---------------------------------------------------------------------


def config(plant: Plant) -> Path:
    return write_config(plant.dir / "service.toml", {
        "ledger": {"path": plant.ledger_path, "follow_interval": FOLLOW},
        "node": {"key": plant.node_key},
        "store": {"path": plant.dir / "store"},
        "decision_log": {"path": plant.dir / "decisions"},
        "auth": {"open_evaluate": True},
    }, tokens=[{"name": "admin", "sha256": hash_token(ADMIN_TOKEN), "scopes": ["admin"]}])


def assert_refuses_the_revoked_artifact(server: Server, sop: bytes, why: str) -> None:
    ready = server.client.get("/readyz").json()
    assert ready["status"] == "degraded" and why in ready["ledger"]["rolled_back"]
    assert ready["ledger"]["reachable"] is False
    assert server.client.post("/v1/evaluate", json=BODY).status_code == 409  # still revoked
    again = server.client.put("/v1/artifacts", content=sop, headers=ADMIN)
    assert again.status_code == 409 and again.json()["code"] == "SYNAPSE-SVC-LEDGER-ROLLED-BACK"
    assert "synapse_ledger_rolled_back{worker=\"0\"} 1.0" in server.client.get("/metrics").text
    assert any(e.get("event") == "ledger_rolled_back" and e.get("level") == "error" for e in server.events())


def test_a_ledger_cut_short_or_rewritten_does_not_bring_a_revoked_artifact_back(plant):
    sop, urn = plant.artifact("1.0.0")
    other, _ = plant.artifact("2.0.0", policy="other-guard")
    before_revocation = copy_ledger(plant.ledger_path, plant.dir / "before.db")
    server = Server(plant.dir, config(plant)).wait_ready()
    try:
        for artifact in (sop, other):
            assert server.client.put("/v1/artifacts", content=artifact, headers=ADMIN).status_code == 201
        plant.revoke(urn, "calibration wrong")
        wait_until(lambda: server.client.post("/v1/evaluate", json=BODY).status_code == 409,
                   what="the revocation to be applied")

        # While running: the ledger is replaced by its copy from before the revocation.
        swap_in(plant, before_revocation)
        wait_until(lambda: server.client.get("/readyz").json()["ledger"]["rolled_back"] is not None,
                   what="the shorter ledger to be noticed")
        assert_refuses_the_revoked_artifact(server, sop, "missing")
        # What was verified before is still served.
        assert server.client.post("/v1/evaluate", json=OTHER).status_code == 200
    finally:
        assert server.stop() == 0

    # After a restart, with the shorter ledger, then with one as long as the real one but rewritten.
    verified = NodeState(plant.dir / "store" / "node-state.sqlite").verified_head()
    assert verified is not None
    fork = rewritten(plant, before_revocation, verified[0])
    for attack, why in ((before_revocation, "missing"), (fork, "rewritten")):
        swap_in(plant, attack)
        server = Server(plant.dir, config(plant)).wait_ready()
        try:
            assert_refuses_the_revoked_artifact(server, sop, why)
            assert server.client.post("/v1/evaluate", json=OTHER).status_code == 200
        finally:
            assert server.stop() == 0
