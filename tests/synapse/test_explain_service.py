"""Explain through the commands: `synapse eval --explain` and `?explain=true` on a real `synapse serve`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from synapse.service.auth import new_token
from tests.service_support import AUTO, BOILER, HALT, NORMAL, Plant, decisions, serving_boiler_guard

pytestmark = pytest.mark.slow

ADMIN_TOKEN = new_token()


@pytest.fixture(scope="module")
def plant(tmp_path_factory) -> Plant:
    return Plant(tmp_path_factory.mktemp("plant"))


@pytest.fixture(scope="module")
def server(plant):
    yield from serving_boiler_guard(plant, ADMIN_TOKEN, {"auth": {"open_evaluate": True}})


def _outcomes(explanation: dict) -> dict[str, str]:
    return {rule["id"]: rule["outcome"] for rule in explanation["rules"]}


def test_rest_explains_when_asked_and_only_then(server, plant):
    reading = {"policy": "boiler-guard", "telemetry": HALT, "context": AUTO}
    plain = server.client.post("/v1/evaluate", json=reading)
    assert plain.status_code == 200 and "explanation" not in plain.json()
    assert "explanation" not in server.client.post("/v1/evaluate?explain=false", json=reading).json()
    for path in ("/v1/evaluate?explain=true", "/evaluate?explain=true"):
        answer = server.client.post(path, json=reading)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["verdict"], body["rule"]) == ("HALT", "halt-overpressure")
        explanation = body["explanation"]
        assert explanation["traced"] and explanation["decided_by"] == "rule"
        assert _outcomes(explanation)["halt-overpressure"] == "decided"
        assert {c["name"]: c["value"] for c in explanation["conditions"]}["overpressure"] is True
        # The log keeps the decision as decided, without the explanation.
        (record,) = [r for r in decisions(plant) if r["decision_id"] == body["decision_id"]]
        assert "explanation" not in record and record["verdict"] == "HALT"


def test_rest_batch_explains_each_decision(server):
    too_high = {**NORMAL, "pressure_bar": 500}
    batch = {"policy": "boiler-guard", "inputs": [{"telemetry": NORMAL, "context": AUTO},
                                                  {"telemetry": too_high, "context": AUTO}]}
    answer = server.client.post("/v1/evaluate/batch?explain=true", json=batch)
    assert answer.status_code == 200, answer.text
    normal, faulty = answer.json()["results"]
    assert normal["verdict"] == "ALLOW" and _outcomes(normal["explanation"])["normal"] == "decided"
    assert faulty["verdict"] == "DENY" and faulty["explanation"]["decided_by"] == "input"
    assert set(_outcomes(faulty["explanation"]).values()) == {"not reached"}


@pytest.mark.parametrize("query", ["explain=yes", "explain=true&explain=true", "explain"])
def test_rest_refuses_an_explain_that_is_not_true_or_false(server, query):
    answer = server.client.post(f"/v1/evaluate?{query}",
                                json={"policy": "boiler-guard", "telemetry": NORMAL, "context": AUTO})
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["code"] == "SYNAPSE-SVC-REQUEST-INVALID" and "explain" in body["message"]


def test_synapse_eval_explain(tmp_path):
    from scc.compiler import compile_policy

    module = tmp_path / "boiler.wasm"
    module.write_bytes(compile_policy(json.dumps(BOILER).encode()).wasm)
    run = subprocess.run([sys.executable, "-m", "synapse", "eval", str(module), "--explain",
                          "--telemetry", json.dumps(HALT), "--context", json.dumps(AUTO)],
                         capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr
    decision = json.loads(run.stdout)
    assert decision["verdict"] == "HALT"
    assert _outcomes(decision["explanation"]) == {
        "halt-overpressure": "decided", "halt-overtemperature": "not reached", "maintenance": "not reached",
        "high-open": "not reached", "manual-high": "not reached", "normal": "not reached"}
    lines = b"\n".join(json.dumps({"telemetry": t, "context": AUTO}).encode() for t in (NORMAL, HALT))
    replay = subprocess.run([sys.executable, "-m", "synapse", "eval", str(module), "--explain",
                             "--input", "-"], input=lines + b"\nnot json\n", capture_output=True, timeout=60)
    assert replay.returncode == 0, replay.stderr
    normal, halt, broken = (json.loads(line) for line in replay.stdout.splitlines())
    assert _outcomes(normal["explanation"])["normal"] == "decided"
    assert halt["explanation"] == decision["explanation"]
    assert broken["explanation"]["decided_by"] == "input" and broken["explanation"]["traced"] is False
