"""A `synapse serve` node whose key is in a PKCS#11 token (SoftHSM2, issue 12 item 6): it decrypts an
artifact encrypted for it by ECDH in the token, signs its decision-log seals and the anchors it posts
on the ledger with the token key, and the log verifies against that key and the ledger."""

from __future__ import annotations

import pytest

from axon.ledger import Ledger, ops
from axon.pkcs11_token import generate_token_key
from synapse.service.auth import hash_token, new_token
from synapse.service.decision_log import verify_log
from tests.service_support import AUTO, HALT, NORMAL, Plant, Server, write_config
from tests.softhsm import SoftHSM

pytestmark = pytest.mark.slow

ADMIN_TOKEN = new_token()


def test_a_node_with_its_key_in_a_token_serves_seals_and_anchors_its_log(tmp_path):
    plant = Plant(tmp_path)
    with SoftHSM(tmp_path) as hsm:
        node = generate_token_key(hsm.uri("node"), "token-node")
        plant.submit(plant.root, ops.register_key(node.did, node.key.public_key, "LVL_1"))
        plant.node = node  # the artifact is encrypted for the token key
        sop, _ = plant.artifact("1.0.0", encrypted=True)
        config = write_config(tmp_path / "service.toml", {
            "ledger": {"path": plant.ledger_path, "follow_interval": 0.5},
            "node": {"key": hsm.uri("node")},
            "store": {"path": tmp_path / "store"},
            "decision_log": {"path": tmp_path / "decisions", "seal_every": 2},
            "auth": {"open_evaluate": True},
        }, tokens=[{"name": "admin", "sha256": hash_token(ADMIN_TOKEN), "scopes": ["admin"]}])
        server = Server(tmp_path, config, env={"SOFTHSM2_CONF": str(hsm.conf)}).wait_ready()
        try:
            uploaded = server.client.put("/v1/artifacts", content=sop,
                                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            assert uploaded.status_code == 201, uploaded.text
            verdicts = [server.client.post("/v1/evaluate", json={
                "policy": "boiler-guard", "context": AUTO, "telemetry": reading}).json()["verdict"]
                for reading in (NORMAL, HALT, NORMAL, HALT, NORMAL)]
            assert verdicts == ["ALLOW", "HALT", "ALLOW", "HALT", "ALLOW"]
        finally:
            assert server.stop() == 0
    with Ledger.open(plant.ledger_path) as ledger:
        (report,) = verify_log(tmp_path / "decisions", node.key.public_key, ledger=ledger)
        anchors = list(ledger.log_anchors(node.did))
    assert report.ok, report.first_bad
    assert (report.signer, report.public_key) == (node.did, node.key.public_key.hex())
    assert report.decisions >= 5 and report.seals >= 3  # every 2 records, and the final seal
    assert report.anchors == len(anchors) >= 1  # LOG_ANCHOR transactions the token key signed
