"""The service over time: following the ledger, restarting from its store without a ledger, shutting
down without losing a decision, several workers, rate limits, and a tampered decision log."""

from __future__ import annotations

import base64
import json
import re
import shutil
import signal
import subprocess
import sys
import threading

import pytest

from axon.ledger import ops
from synapse.cli import main as synapse_main
from synapse.service.auth import hash_token, new_token
from tests.service_support import AUTO, BOILER, NORMAL, Plant, Server, write_config
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

ADMIN_TOKEN = new_token()
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BODY = {"policy": "boiler-guard", "telemetry": NORMAL, "context": AUTO}
FOLLOW = 0.5


def config(plant: Plant, **sections) -> object:
    base = {
        "ledger": {"path": plant.ledger_path, "follow_interval": FOLLOW},
        "node": {"key": plant.node_key},
        "store": {"path": plant.dir / "store"},
        "decision_log": {"path": plant.dir / "decisions"},
        "auth": {"open_evaluate": True},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return write_config(plant.dir / "service.toml", base,
                        tokens=[{"name": "admin", "sha256": hash_token(ADMIN_TOKEN), "scopes": ["admin"]}])


@pytest.fixture
def plant(tmp_path) -> Plant:
    return Plant(tmp_path)


def upload(server: Server, sop: bytes) -> dict:
    r = server.client.put("/v1/artifacts", content=sop, headers=ADMIN)
    assert r.status_code in (200, 201), r.text
    return r.json()


def until_refused(server: Server, body: dict) -> None:
    """Until evaluating `body` stops succeeding (the follower has applied what the ledger says)."""
    wait_until(lambda: server.client.post("/v1/evaluate", json=body).status_code != 200,
               what="the artifact to be refused")


def serving_everywhere(server: Server, workers: int, count: int):
    """A predicate: every worker has reported `count` artifacts served. Each scrape, on a new connection,
    reaches one worker; the gauge is set once that worker's served set has changed, not before."""
    seen: dict[str, str] = {}

    def check() -> bool:
        text = server.client.get("/metrics", headers={"Connection": "close"}).text
        seen.update(re.findall(r'^synapse_artifacts_served\{worker="(\d+)"\} (\S+)$', text, re.M))
        return seen == {str(w): f"{count:.1f}" for w in range(workers)}

    return check


def fresh_post(server: Server, body: dict):
    """A request on a new connection, so that with several workers any of them may take it."""
    return server.client.post("/v1/evaluate", json=body, headers={"Connection": "close"})


def decisions_in(plant: Plant) -> dict[str, dict]:
    return {r["decision_id"]: r for seg in sorted((plant.dir / "decisions").glob("w*-*.jsonl"))
            for line in seg.read_text().splitlines() if (r := json.loads(line)).get("kind") == "decision"}


# -- following the ledger -----------------------------------------------------------------------------


def test_revoked_while_serving_is_refused_once_the_ledger_is_followed(plant):
    server = Server(plant.dir, config(plant)).wait_ready()
    try:
        sop, urn = plant.artifact("1.0.0")
        upload(server, sop)
        assert server.client.post("/v1/evaluate", json=BODY).json()["verdict"] == "ALLOW"
        plant.revoke(urn, "sensor calibration wrong")
        until_refused(server, BODY)  # no request ever tells the service: only its follower can see this
        refused = server.client.post("/v1/evaluate", json=BODY)
        assert refused.status_code == 409 and "sensor calibration wrong" in refused.json()["message"]
        assert server.client.get(f"/v1/artifacts/{urn}").json()["state"] == "revoked"
        assert 'synapse_artifact_rejections_total{code="revoked",worker="0"} 1.0' in server.client.get(
            "/metrics").text
    finally:
        assert server.stop() == 0


def test_revoking_the_signers_key_stops_its_artifacts(plant):
    server = Server(plant.dir, config(plant)).wait_ready()
    try:
        sop, _ = plant.artifact("1.0.0")
        upload(server, sop)
        plant.submit(plant.root, ops.revoke_key(plant.author.did))
        until_refused(server, BODY)
        msg = server.client.post("/v1/evaluate", json=BODY).json()["message"]
        assert "AXON-VERIFY-SIGNER-REVOKED" in msg
    finally:
        server.stop()


def test_restart_from_store_without_the_ledger_serves_last_known_good(plant):
    plain, plain_urn = plant.artifact("1.0.0")
    secret, secret_urn = plant.artifact("1.0.0", policy="secret-guard", encrypted=True, doc=BOILER)
    cfg = config(plant)
    first = Server(plant.dir, cfg).wait_ready()
    try:
        assert upload(first, plain)["encrypted"] is False
        assert upload(first, secret)["encrypted"] is True
        before = {p: first.client.post("/v1/evaluate", json={**BODY, "policy": p}).json()
                  for p in ("boiler-guard", "secret-guard")}
    finally:
        assert first.stop() == 0
    # The store holds the uploaded bytes; the encrypted one only as ciphertext.
    stored = {p.read_bytes() for p in (plant.dir / "store" / "artifacts").glob("*.sop")}
    assert stored == {plain, secret}
    wasm_prefix = base64.b64encode(b"\x00asm\x01\x00\x00\x00")[:8]
    assert wasm_prefix in plain and wasm_prefix not in secret

    shutil.move(plant.ledger_path, plant.dir / "ledger.away")
    second = Server(plant.dir, cfg).wait_ready()
    try:
        ready = second.client.get("/readyz").json()
        assert ready["status"] == "degraded" and ready["serving_last_known_good"] is True
        assert ready["ledger"]["reachable"] is False and ready["artifacts_served"] == 2
        for policy, decision in before.items():
            again = second.client.post("/v1/evaluate", json={**BODY, "policy": policy}).json()
            assert (again["urn"], again["verdict"]) == (decision["urn"], decision["verdict"])
        listed = second.client.get("/v1/artifacts").json()["artifacts"]
        assert {a["urn"]: a["verified_offline"] for a in listed} == {plain_urn: True, secret_urn: True}
        # Nothing new is accepted while the ledger is away: uploads need it.
        other, _ = plant.artifact("1.0.1", register=False)
        assert second.client.put("/v1/artifacts", content=other, headers=ADMIN).status_code == 409
        # The ledger comes back: the service re-verifies against it and is ready again.
        shutil.move(plant.dir / "ledger.away", plant.ledger_path)
        wait_until(lambda: second.client.get("/readyz").json()["status"] == "ready",
                   what="ready again after the ledger came back")
    finally:
        assert second.stop() == 0


def test_a_revocation_seen_after_restart_is_applied(plant):
    sop, urn = plant.artifact("1.0.0")
    cfg = config(plant)
    first = Server(plant.dir, cfg).wait_ready()
    try:
        upload(first, sop)
    finally:
        first.stop()
    plant.revoke(urn)
    second = Server(plant.dir, cfg).wait_ready()
    try:
        r = second.client.post("/v1/evaluate", json=BODY)
        assert r.status_code == 409 and second.client.get("/readyz").json()["status"] == "ready"
    finally:
        second.stop()


# -- shutdown, workers, limits -------------------------------------------------------------------------


def test_sigterm_under_load_loses_no_logged_decision(plant):
    sop, _ = plant.artifact("1.0.0")
    server = Server(plant.dir, config(plant)).wait_ready()
    upload(server, sop)
    answered: list[str] = []
    stop = threading.Event()

    def client() -> None:
        import httpx
        with httpx.Client(base_url=server.base, timeout=10) as c:
            while not stop.is_set():
                try:
                    r = c.post("/v1/evaluate", json=BODY)
                except httpx.TransportError:
                    return
                if r.status_code == 200:
                    answered.append(r.json()["decision_id"])

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(answered) > 10, what="more than ten answered decisions")  # then stop mid-load
        assert server.stop(signal.SIGTERM) == 0
    finally:
        server.stop(signal.SIGKILL)  # (a no-op once stopped) so that no client blocks on a live server
        stop.set()
        for t in threads:
            t.join()
    logged = decisions_in(plant)
    assert set(answered) <= set(logged), "a decision was answered but not logged"
    segment = plant.dir / "decisions" / "w0-000001.jsonl"
    records = [json.loads(line) for line in segment.read_text().splitlines()]
    assert [r["kind"] for r in records[-2:]] == ["stop", "seal"]
    assert synapse_main(["decisions", "verify", str(plant.dir / "decisions"),
                         "--public-key", plant.node.key.public_key.hex()]) == 0


def test_two_workers_share_the_store_and_each_follows_the_ledger(plant):
    sop, urn = plant.artifact("1.0.0")
    server = Server(plant.dir, config(plant), args=["--workers", "2"]).wait_ready()
    try:
        upload(server, sop)  # reaches one worker; the other picks it up from the store
        wait_until(serving_everywhere(server, 2, 1), what="both workers to serve the artifact")
        served_by: set[str] = set()

        def both_served() -> bool:  # new connections until each worker has taken one
            r = fresh_post(server, BODY)
            assert r.status_code == 200, r.text
            served_by.add(r.json()["decision_id"].split("-")[0])
            return len(served_by) == 2

        wait_until(both_served, what="both workers to serve a request", poll=0)
        plant.revoke(urn)
        wait_until(serving_everywhere(server, 2, 0), what="both workers to apply the revocation")
        for _ in range(20):  # neither worker serves it any more
            assert fresh_post(server, BODY).status_code == 409
    finally:
        assert server.stop() == 0
    streams = {r["decision_id"].split("-")[0] for r in decisions_in(plant).values()}
    assert streams == served_by  # what each worker answered, it logged
    assert synapse_main(["decisions", "verify", str(plant.dir / "decisions"),
                         "--public-key", plant.node.key.public_key.hex()]) == 0


def test_request_rate_is_bounded(plant):
    server = Server(plant.dir, config(plant, limits={"rate": 2.0, "burst": 3})).wait_ready()
    try:
        codes = [server.client.post("/v1/evaluate", json=BODY).status_code for _ in range(6)]
        assert codes[:3] == [404, 404, 404] and 429 in codes[3:]
        limited = server.client.post("/v1/evaluate", json=BODY)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert limited.json()["code"] == "SYNAPSE-SVC-RATE-LIMITED"
        assert server.client.get("/healthz").status_code == 200  # probes are never limited
    finally:
        server.stop()


def test_refuses_to_bind_beyond_loopback_without_auth(plant, tmp_path):
    bare = write_config(tmp_path / "bare.toml", {"node": {"key": plant.node_key}})
    # In a child: `serve` hardens its process first (not dumpable), which would outlive this test.
    refused = subprocess.run([sys.executable, "-m", "synapse", "serve", "--config", str(bare),
                              "--host", "0.0.0.0", "--port", "0"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "refusing to bind 0.0.0.0" in refused.stderr, refused.stderr


# -- the decision log, tampered ------------------------------------------------------------------------


def test_tampered_service_log_is_detected(plant, capsys):
    sop, _ = plant.artifact("1.0.0")
    server = Server(plant.dir, config(plant)).wait_ready()
    try:
        upload(server, sop)
        ids = [server.client.post("/v1/evaluate", json={**BODY, "telemetry": {**NORMAL, "pressure_bar": 99}})
               .json()["decision_id"] for _ in range(3)]
    finally:
        server.stop()
    log_dir = plant.dir / "decisions"
    pin = ["--public-key", plant.node.key.public_key.hex()]
    assert synapse_main(["decisions", "verify", str(log_dir), *pin]) == 0
    seg = log_dir / "w0-000001.jsonl"
    lines = seg.read_text().splitlines()
    n = next(i for i, line in enumerate(lines) if json.loads(line).get("decision_id") == ids[1])
    record = json.loads(lines[n])
    assert record["verdict"] == "HALT"
    # someone hides a trip, editing the bytes in place
    lines[n] = lines[n].replace('"verdict":"HALT","code":3', '"verdict":"ALLOW","code":1')
    assert json.loads(lines[n])["verdict"] == "ALLOW"
    seg.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert synapse_main(["decisions", "verify", str(log_dir), *pin]) == 1
    out = capsys.readouterr().out
    assert f"line {n + 1}" in out and "hash mismatch" in out
    del lines[n]  # deleting it instead is caught too
    seg.write_text("\n".join(lines) + "\n")
    assert synapse_main(["decisions", "verify", str(log_dir), *pin]) == 1
    assert "seq jumps" in capsys.readouterr().out


def test_a_stored_file_altered_on_disk_is_refused_at_restart(plant):
    good, _ = plant.artifact("1.0.0")
    other, other_urn = plant.artifact("1.0.0", policy="kiln-guard", doc=BOILER)
    cfg = config(plant)
    first = Server(plant.dir, cfg).wait_ready()
    try:
        upload(first, good)
        upload(first, other)
    finally:
        first.stop()
    index = json.loads((plant.dir / "store" / "index.json").read_text())
    altered = plant.dir / "store" / "artifacts" / index["artifacts"][other_urn]["file"]
    altered.write_bytes(altered.read_bytes().replace(b'"LVL_3"', b'"LVL_1"', 1))
    second = Server(plant.dir, cfg).wait_ready()
    try:
        assert second.client.post("/v1/evaluate", json=BODY).json()["verdict"] == "ALLOW"
        refused = second.client.post("/v1/evaluate", json={**BODY, "policy": "kiln-guard"})
        assert refused.status_code == 409 and "changed on disk" in refused.json()["message"]
        assert second.client.get(f"/v1/artifacts/{other_urn}").json()["state"] == "rejected"
    finally:
        second.stop()
