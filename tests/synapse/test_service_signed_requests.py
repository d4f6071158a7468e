"""A signed admin request is accepted once, by the node it names: real `synapse serve` processes sharing
a store (as workers do), a restart, and a second node on the same ledger (docs/service.md)."""

from __future__ import annotations

import json

import pytest

from axon.keys import write_key_file
from axon.ledger import ops
from synapse.service.auth import hash_token, new_token, sign_request
from tests.service_support import Plant, Server, identity, write_config

pytestmark = pytest.mark.slow

ADMIN_TOKEN = new_token()
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ROLLBACK = "/v1/policies/boiler-guard/rollback"


def config(plant: Plant, name: str, key, store) -> object:
    """A service named `name` (its own decision log), with the node key `key` and the store `store`."""
    return write_config(plant.dir / f"{name}.toml", {
        "ledger": {"path": plant.ledger_path, "follow_interval": 0.5},
        "node": {"key": key},
        "store": {"path": store},
        "decision_log": {"path": plant.dir / f"decisions-{name}"},
        "auth": {"open_evaluate": True},
    }, tokens=[{"name": "admin", "sha256": hash_token(ADMIN_TOKEN), "scopes": ["admin"]}])


@pytest.fixture
def plant(tmp_path) -> Plant:
    return Plant(tmp_path)


def rollback(server: Server, headers: dict[str, str], urn: str):
    body = json.dumps({"urn": urn}).encode()
    return server.client.post(ROLLBACK, content=body,
                              headers={**headers, "Content-Type": "application/json"})


def pinned(server: Server) -> str | None:
    return server.client.get("/v1/policies").json()["policies"][0]["pinned"]


def test_a_captured_signed_rollback_replays_nowhere(plant):
    """Not on another worker, not after a restart, not on another node of the same ledger."""
    old, old_urn = plant.artifact("1.0.0")
    new, _ = plant.artifact("1.1.0")
    store = plant.dir / "store"
    # Two processes on one store are what two workers are: separate memories, one node state.
    first = Server(plant.dir, config(plant, "a1", plant.node_key, store)).wait_ready()
    second = Server(plant.dir, config(plant, "a2", plant.node_key, store)).wait_ready()
    try:
        for sop in (old, new):
            assert first.client.put("/v1/artifacts", content=sop, headers=ADMIN).status_code in (200, 201)
        body = json.dumps({"urn": old_urn}).encode()
        captured = sign_request(plant.admin, plant.node.did, "POST", ROLLBACK, body)
        assert rollback(first, captured, old_urn).status_code == 200  # the genuine request, once
        assert pinned(first) == old_urn
        assert first.client.delete("/v1/policies/boiler-guard/pin", headers=ADMIN).status_code == 204

        for server in (first, second):
            replayed = rollback(server, captured, old_urn)
            assert replayed.status_code == 401 and "already accepted once" in replayed.json()["message"]
        assert pinned(second) is None
    finally:
        assert first.stop() == 0
        assert second.stop() == 0

    restarted = Server(plant.dir, config(plant, "a1", plant.node_key, store)).wait_ready()
    try:
        replayed = rollback(restarted, captured, old_urn)
        assert replayed.status_code == 401 and "already accepted once" in replayed.json()["message"]
        assert pinned(restarted) is None
    finally:
        assert restarted.stop() == 0

    # Node B: registered on the same ledger, trusting the same administrator, its own store.
    node_b = identity("node-b")
    plant.submit(plant.root, ops.register_key(node_b.did, node_b.key.public_key, "LVL_1"))
    key_b = plant.dir / "node-b.key"
    write_key_file(key_b, node_b.key, node_b.did)
    other = Server(plant.dir, config(plant, "b", key_b, plant.dir / "store-b")).wait_ready()
    try:
        for sop in (old, new):
            assert other.client.put("/v1/artifacts", content=sop, headers=ADMIN).status_code in (200, 201)
        refused = rollback(other, captured, old_urn)
        assert refused.status_code == 401
        assert f"it is for node {plant.node.did}; this node is {node_b.did}" in refused.json()["message"]
        assert pinned(other) is None
        # A request signed for node B works there, once.
        for_b = sign_request(plant.admin, node_b.did, "POST", ROLLBACK, body)
        assert rollback(other, for_b, old_urn).status_code == 200 and pinned(other) == old_urn
        assert rollback(other, for_b, old_urn).status_code == 401
    finally:
        assert other.stop() == 0
