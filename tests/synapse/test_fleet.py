"""Three nodes, one truth (issue 12 item 3): three real `synapse serve` processes, each with its own
store and its own index of one ledger on a real Ethereum node (anvil), follow the chain. An artifact
registered from an admin machine loads on all; a revocation stops it on all; a node that was offline
catches up on restart; with the chain away, the nodes keep serving what they verified."""

from __future__ import annotations

from pathlib import Path

import pytest

from axon.ledger import ops
from synapse.service.auth import hash_token, new_token
from tests.anvil import Anvil, ChainPlant
from tests.service_support import AUTO, NORMAL, Server, write_config
from tests.waiting import wait_until

pytestmark = pytest.mark.slow
ADMIN_TOKEN = new_token()
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FOLLOW_INTERVAL = 0.3


def node_config(plant: ChainPlant, name: str) -> Path:
    _, key = plant.node_identity(name)
    work = plant.dir / name
    work.mkdir()
    return write_config(work / "service.toml", {
        "ledger": {"path": plant.anvil.url, "confirmations": 0, "follow_interval": FOLLOW_INTERVAL},
        "node": {"key": key},
        "store": {"path": work / "store"},
        "decision_log": {"path": work / "decisions"},
        "auth": {"open_evaluate": True},
    }, tokens=[{"name": "fleet-admin", "sha256": hash_token(ADMIN_TOKEN), "scopes": ["admin"]}])


def verdict(server: Server, policy: str) -> str | None:
    """The node's verdict for a normal reading, or None when it does not serve the policy."""
    r = server.client.post("/v1/evaluate", json={"policy": policy, "telemetry": NORMAL, "context": AUTO})
    if r.status_code in (404, 409):
        return None
    assert r.status_code == 200, r.text
    return r.json()["verdict"]


def test_three_nodes_follow_one_chain(tmp_path: Path) -> None:
    with Anvil() as anvil:
        plant = ChainPlant(tmp_path, anvil)
        configs = [node_config(plant, f"node-{i}") for i in (1, 2, 3)]
        nodes = [Server(config.parent, config).wait_ready() for config in configs]
        try:
            # Registered from the admin machine (its own index), pushed to every node: each verifies it
            # against its own index of the chain, so it is refused as unregistered until the node's next
            # follow step has indexed the registration.
            sop, urn = plant.artifact("1.0.0")
            spare_sop, _ = plant.artifact("1.0.0", policy="boiler-guard-spare")
            for node in nodes:
                for data in (sop, spare_sop):
                    def upload(node=node, data=data) -> bool:
                        r = node.client.put("/v1/artifacts", content=data, headers=ADMIN)
                        assert r.status_code == 201 or r.json()["code"] == "AXON-VERIFY-UNREGISTERED", r.text
                        return r.status_code == 201
                    wait_until(upload, what="the node to index the registration")
            assert [verdict(n, "boiler-guard") for n in nodes] == ["ALLOW"] * 3

            # Node 3 goes offline; the revocation reaches the other two by following the chain.
            nodes[2].stop()
            plant.submit(plant.author, ops.revoke_artifact(urn, "recalled from the office"))
            for node in nodes[:2]:
                wait_until(lambda node=node: verdict(node, "boiler-guard") is None,
                           what="the revocation to stop the artifact")
                revoked = [e for e in node.events() if e.get("event") == "artifact_revoked"]
                assert [e["urn"] for e in revoked] == [urn]

            # Node 3 restarts on its own store and index: it catches up and does not serve it either.
            nodes[2] = Server(configs[2].parent, configs[2]).wait_ready()
            wait_until(lambda: verdict(nodes[2], "boiler-guard") is None, what="node 3 to catch up")
            assert all(verdict(n, "boiler-guard-spare") == "ALLOW" for n in nodes)

            # The chain goes away: every node keeps serving what it verified, and says the chain is away.
            anvil.stop()
            for node in nodes:
                wait_until(lambda node=node: any(e.get("event") == "ledger_chain_unavailable"
                                                 for e in node.events()), what="the chain to be missed")
                assert verdict(node, "boiler-guard-spare") == "ALLOW"
                assert verdict(node, "boiler-guard") is None
                ready = node.client.get("/readyz").json()
                assert ready["serving_last_known_good"] and not ready["ledger"]["reachable"]
                assert "did not answer" in ready["ledger"]["error"]
        finally:
            for node in nodes:
                node.stop()
