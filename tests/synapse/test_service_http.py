"""`synapse serve` over real HTTP: evaluation, malformed requests, limits, auth, artifact lifecycle,
observability. One server process (uvicorn on a free loopback port) for the module."""

from __future__ import annotations

import json

import pytest

from synapse.service.auth import hash_token, new_token, sign_request
from tests.service_support import AUTO, BOILER, NORMAL, Plant, identity, serving_boiler_guard
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

ADMIN_TOKEN = new_token()
EVAL_TOKEN = new_token()
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
EVAL = {"Authorization": f"Bearer {EVAL_TOKEN}"}
JSON_EVAL = {**EVAL, "Content-Type": "application/json"}
MAX_BODY = 4096


@pytest.fixture(scope="module")
def plant(tmp_path_factory) -> Plant:
    return Plant(tmp_path_factory.mktemp("plant"))


@pytest.fixture(scope="module")
def server(plant):
    yield from serving_boiler_guard(plant, ADMIN_TOKEN, {
        "decision_log": {"mask": ["context.operator", "context.mode", "telemetry.pressure_bar"]},
        "limits": {"max_body_bytes": MAX_BODY, "max_batch": 8},
        "server": {"access_log": True},
    }, tokens=[{"name": "scada", "sha256": hash_token(EVAL_TOKEN), "scopes": ["evaluate"]}])


def evaluate(server, body, headers=EVAL, path="/v1/evaluate"):
    return server.client.post(path, json=body, headers=headers)


def assert_error(response, status: int, code: str | None = None):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "errors"}
    assert isinstance(body["message"], str) and body["message"]
    assert "Traceback" not in response.text
    if code is not None:
        assert body["code"] == code
    return body


# -- evaluation ------------------------------------------------------------------------------------


@pytest.mark.parametrize("telemetry, verdict, rule", [
    (NORMAL, "ALLOW", "normal"),
    ({**NORMAL, "pressure_bar": 99}, "HALT", "halt-overpressure"),
])
def test_evaluate_returns_the_decision_and_its_artifact(server, telemetry, verdict, rule):
    r = evaluate(server, {"policy": "boiler-guard", "telemetry": telemetry, "context": AUTO})
    assert r.status_code == 200
    d = r.json()
    assert d["verdict"] == verdict and d["rule"] == rule
    assert d["code"] == ["DENY", "ALLOW", "WARN", "HALT"].index(verdict)
    assert d["policy"] == "boiler-guard" and d["version"] == "1.0.0"
    assert d["urn"].startswith("urn:sopcos:artifact:")
    assert isinstance(d["gas_used"], int) and d["gas_used"] > 0 and d["reason"] is None
    assert d["decision_id"]


def test_unversioned_path_and_lookup_by_urn(server):
    urn = evaluate(server, {"policy": "boiler-guard", "telemetry": NORMAL, "context": AUTO}).json()["urn"]
    r = evaluate(server, {"policy": urn, "telemetry": NORMAL, "context": AUTO}, path="/evaluate")
    assert r.status_code == 200 and r.json()["urn"] == urn and r.json()["verdict"] == "ALLOW"


def test_a_failing_evaluation_is_deny_with_a_reason(server):
    r = evaluate(server, {"policy": "boiler-guard", "telemetry": {"pressure_bar": 400}, "context": AUTO})
    d = r.json()
    assert r.status_code == 200 and d["verdict"] == "DENY" and d["rule"] is None
    assert "pressure_bar" in d["reason"]


def test_batch_evaluates_in_order_with_per_item_errors(server):
    r = server.client.post("/v1/evaluate/batch", headers=EVAL, json={"policy": "boiler-guard", "inputs": [
        {"telemetry": NORMAL, "context": AUTO},
        {"telemetry": {**NORMAL, "pressure_bar": 99}, "context": AUTO},
        {"policy": "no-such-policy", "telemetry": NORMAL},
    ]})
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x.get("verdict") for x in results] == ["ALLOW", "HALT", None]
    assert results[2] == {"index": 2, "error": results[2]["error"]}
    assert results[2]["error"]["code"] == "SYNAPSE-SVC-POLICY-UNKNOWN"
    assert len({x["decision_id"] for x in results[:2]}) == 2


def test_batch_limits(server):
    too_many = {"policy": "boiler-guard", "inputs": [{"telemetry": NORMAL}] * 9}
    assert_error(server.client.post("/v1/evaluate/batch", json=too_many, headers=EVAL), 422)
    no_policy = {"inputs": [{"telemetry": NORMAL}]}
    body = assert_error(server.client.post("/v1/evaluate/batch", json=no_policy, headers=EVAL), 422)
    assert body["errors"][0]["pointer"] == "/inputs/0/policy"


def test_unknown_policy_and_unknown_urn_are_404(server):
    assert_error(evaluate(server, {"policy": "nope", "telemetry": NORMAL}), 404, "SYNAPSE-SVC-POLICY-UNKNOWN")
    urn = "urn:sopcos:artifact:sha256:" + "0" * 64
    assert_error(evaluate(server, {"policy": urn, "telemetry": NORMAL}), 404, "SYNAPSE-SVC-POLICY-UNKNOWN")


MALFORMED = [
    (b"", 400, ""),
    (b"{", 400, ""),
    (b"not json", 400, ""),
    (b"\xff\xfe", 400, ""),
    (b"[]", 422, ""),
    (b"null", 422, ""),
    (b'"boiler-guard"', 422, ""),
    (b"{}", 422, "/policy"),
    (b'{"telemetry": {}}', 422, "/policy"),
    (b'{"policy": "boiler-guard"}', 422, "/telemetry"),
    (b'{"policy": 7, "telemetry": {}}', 422, "/policy"),
    (b'{"policy": "", "telemetry": {}}', 422, "/policy"),
    (b'{"policy": "boiler-guard", "telemetry": []}', 422, "/telemetry"),
    (b'{"policy": "boiler-guard", "telemetry": "x"}', 422, "/telemetry"),
    (b'{"policy": "boiler-guard", "telemetry": {}, "context": 5}', 422, "/context"),
    (b'{"policy": "boiler-guard", "telemetry": {"p": null}}', 422, "/telemetry/p"),
    (b'{"policy": "boiler-guard", "telemetry": {"p": [1]}}', 422, "/telemetry/p"),
    (b'{"policy": "boiler-guard", "telemetry": {"p": {"q": 1}}}', 422, "/telemetry/p"),
    (b'{"policy": "boiler-guard", "telemetry": {"p": 1e400}}', 400, ""),  # not JSON numbers: not JSON
    (b'{"policy": "boiler-guard", "telemetry": {"p": NaN}}', 400, ""),
    (b'{"policy": "boiler-guard", "telemetry": {}, "extra": 1}', 422, "/extra"),
    (b'{"policy": "boiler-guard", "telemetry": {"a/b": [], "c~d": {}}}', 422, "/telemetry/a~1b"),
    # a reading sent twice is ambiguous (which one did the policy see?): refused, not "last one wins"
    (b'{"policy": "boiler-guard", "telemetry": {"p": 1, "p": 99}}', 400, ""),
    (b'{"policy": "boiler-guard", "policy": "other", "telemetry": {}}', 400, ""),
]


@pytest.mark.parametrize("body, status, pointer", MALFORMED)
def test_malformed_requests_get_structured_4xx(server, body, status, pointer):
    r = server.client.post("/v1/evaluate", content=body, headers=JSON_EVAL)
    errors = assert_error(r, status)["errors"]
    if status == 422:
        assert pointer in [e["pointer"] for e in errors]
    if b'"p": 99' in body or b'"other"' in body:
        assert "appears twice" in r.json()["message"]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/jsonx", "text/json",
                                          "application/x-www-form-urlencoded"])
@pytest.mark.parametrize("path", ["/v1/evaluate", "/v1/evaluate/batch"])
def test_a_body_not_declared_json_is_415(server, content_type, path):
    # issue 10: a body without a Content-Type was evaluated, though docs/service.md promises 415
    headers = EVAL if content_type is None else {**EVAL, "Content-Type": content_type}
    body = json.dumps({"policy": "boiler-guard", "telemetry": NORMAL, "context": AUTO}).encode()
    r = server.client.post(path, content=body, headers=headers)
    assert ("content-type" in r.request.headers) == (content_type is not None)
    assert_error(r, 415, "SYNAPSE-SVC-MEDIA-TYPE")
    for declared in ("application/json", "application/json; charset=utf-8", "application/sopcos+json"):
        ok = server.client.post("/v1/evaluate", content=body, headers={**EVAL, "Content-Type": declared})
        assert ok.status_code == 200, ok.text


def test_wrong_method_and_path(server):
    assert_error(server.client.get("/v1/evaluate", headers=EVAL), 405, "SYNAPSE-SVC-METHOD-NOT-ALLOWED")
    assert_error(server.client.get("/v2/nothing"), 404, "SYNAPSE-SVC-NOT-FOUND")


def test_oversize_bodies_are_413(server):
    big = json.dumps({"policy": "boiler-guard", "telemetry": {f"k{i}": i for i in range(1000)}}).encode()
    assert len(big) > MAX_BODY
    assert_error(server.client.post("/v1/evaluate", content=big, headers=JSON_EVAL), 413,
                 "SYNAPSE-SVC-BODY-TOO-LARGE")

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(10):
            yield b" " * 1000

    assert_error(server.client.post("/v1/evaluate", content=chunks(), headers=JSON_EVAL), 413,
                 "SYNAPSE-SVC-BODY-TOO-LARGE")


# -- authentication ----------------------------------------------------------------------------------


def test_evaluation_needs_a_token_here(server):
    body = {"policy": "boiler-guard", "telemetry": NORMAL, "context": AUTO}
    r = evaluate(server, body, headers={})
    assert_error(r, 401, "SYNAPSE-SVC-AUTH-REQUIRED")
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert_error(evaluate(server, body, headers={"Authorization": "Bearer sopcos_wrong"}), 401)
    assert_error(evaluate(server, body, headers={"Authorization": f"Basic {EVAL_TOKEN}"}), 401)
    assert evaluate(server, body, headers=ADMIN).status_code == 200  # admin includes evaluate


def test_admin_endpoints_refuse_evaluate_tokens_and_anonymous(server, plant):
    sop, _ = plant.artifact("1.0.1")
    assert_error(server.client.put("/v1/artifacts", content=sop), 401)
    assert_error(server.client.put("/v1/artifacts", content=sop, headers=EVAL), 403, "SYNAPSE-SVC-FORBIDDEN")
    rollback = server.client.post("/v1/policies/boiler-guard/rollback", json={"urn": "urn:x"}, headers=EVAL)
    assert_error(rollback, 403)


def test_signed_admin_requests(server, plant):
    sop, urn = plant.artifact("0.9.0")
    node = server.client.get("/readyz").json()["node"]  # what a signed request names
    assert node == plant.node.did

    def signed(who, body=sop, target="/v1/artifacts", **kw):
        return sign_request(who, node, "PUT", target, body, **kw)

    ok = server.client.put("/v1/artifacts", content=sop, headers=signed(plant.admin, now=plant.now - 10))
    assert ok.status_code == 201 and ok.json()["urn"] == urn
    # Replaying the same signed request is refused (signatures are deterministic: another timestamp).
    headers = signed(plant.admin, now=plant.now - 20)
    assert server.client.put("/v1/artifacts", content=sop, headers=headers).status_code == 200
    assert_error(server.client.put("/v1/artifacts", content=sop, headers=headers), 401)
    # The signature covers the body, the path and the node.
    other, _ = plant.artifact("0.9.1")
    assert_error(server.client.put("/v1/artifacts", content=other, headers=signed(plant.admin)), 401)
    assert_error(server.client.put("/v1/artifacts", content=sop,
                                   headers=signed(plant.admin, target="/v1/artifactz")), 401)
    elsewhere = sign_request(plant.admin, identity("node-b").did, "PUT", "/v1/artifacts", sop)
    refused = server.client.put("/v1/artifacts", content=sop, headers=elsewhere)
    assert_error(refused, 401)
    assert "this node is " + plant.node.did in refused.json()["message"]
    # Stale timestamps, too-low authority, unknown signers.
    stale = signed(plant.admin, now=plant.now - 3600)
    assert_error(server.client.put("/v1/artifacts", content=sop, headers=stale), 401)
    assert_error(server.client.put("/v1/artifacts", content=sop, headers=signed(plant.operator)), 403)
    assert_error(server.client.put("/v1/artifacts", content=sop, headers=signed(identity("stranger"))), 401)
    partial = {"X-Sopcos-Signer": plant.admin.did}
    assert_error(server.client.put("/v1/artifacts", content=sop, headers=partial), 401)


def test_tokens_never_reach_the_logs(server):
    evaluate(server, {"policy": "boiler-guard", "telemetry": NORMAL, "context": AUTO},
             headers={"Authorization": "Bearer sopcos_leakcheck"})
    evaluate(server, {"policy": "boiler-guard", "telemetry": NORMAL, "context": AUTO})
    log = server.log()
    assert ADMIN_TOKEN not in log and EVAL_TOKEN not in log and "sopcos_leakcheck" not in log
    assert '"event":"request"' in log  # the access log is on, and it is JSON


# -- artifact lifecycle ------------------------------------------------------------------------------


def test_upload_list_show(server, plant):
    sop, urn = plant.artifact("1.1.0")
    r = server.client.put("/v1/artifacts", content=sop, headers=ADMIN)
    assert r.status_code == 201 and r.json()["created"] is True and r.json()["active"] is True
    again = server.client.put("/v1/artifacts", content=sop, headers=ADMIN)
    assert again.status_code == 200 and again.json()["created"] is False
    listed = server.client.get("/v1/artifacts", headers=EVAL).json()["artifacts"]
    assert urn in [a["urn"] for a in listed]
    shown = server.client.get(f"/v1/artifacts/{urn}", headers=EVAL).json()
    assert shown["version"] == "1.1.0" and shown["state"] == "active" and shown["encrypted"] is False
    assert_error(server.client.get("/v1/artifacts/urn:sopcos:artifact:sha256:" + "1" * 64, headers=EVAL), 404)
    d = evaluate(server, {"policy": "boiler-guard", "telemetry": NORMAL, "context": AUTO}).json()
    assert d["version"] == "1.1.0"  # the newest verified version serves


@pytest.mark.parametrize("mutate, code", [
    (lambda sop: sop[:-40], "AXON-VERIFY-JSON"),
    (lambda sop: b"{}", "AXON-VERIFY-SCHEMA"),
    (lambda sop: sop.replace(b'"LVL_3"', b'"LVL_2"', 1), "AXON-VERIFY-SIGNATURE"),
])
def test_uploads_pass_through_axon(server, plant, mutate, code):
    sop, _ = plant.artifact("2.0.0", register=False)
    assert_error(server.client.put("/v1/artifacts", content=mutate(sop), headers=ADMIN), 422, code)


def test_unregistered_artifacts_are_refused(server, plant):
    sop, _ = plant.artifact("2.0.1", register=False)
    r = server.client.put("/v1/artifacts", content=sop, headers=ADMIN)
    assert_error(r, 422, "AXON-VERIFY-UNREGISTERED")


def test_retire_and_explicit_rollback(server, plant):
    doc = dict(BOILER, policy="tank-guard")
    old_sop, old = plant.artifact("1.0.0", policy="tank-guard", doc=doc)
    new_sop, new = plant.artifact("1.2.0", policy="tank-guard", doc=doc)
    for sop in (old_sop, new_sop):
        assert server.client.put("/v1/artifacts", content=sop, headers=ADMIN).status_code == 201
    body = {"policy": "tank-guard", "telemetry": NORMAL, "context": AUTO}
    assert evaluate(server, body).json()["urn"] == new
    # An older artifact is not served by naming its URN either: that would be a rollback too.
    assert "not the active" in assert_error(evaluate(server, {**body, "policy": old}), 409)["message"]
    retired = server.client.post(f"/v1/artifacts/{new}/retire", headers=ADMIN)
    assert retired.status_code == 200 and retired.json()["state"] == "retired"
    assert_error(server.client.post(f"/v1/artifacts/{new}/retire", headers=ADMIN), 409)
    # No automatic fallback to the older version: the policy is not served until someone decides.
    msg = assert_error(evaluate(server, body), 409, "SYNAPSE-SVC-POLICY-NOT-SERVED")["message"]
    assert "roll back" in msg
    assert_error(server.client.post("/v1/policies/tank-guard/rollback", json={"urn": old}), 401)
    r = server.client.post("/v1/policies/tank-guard/rollback", json={"urn": old}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["urn"] == old
    assert evaluate(server, body).json()["urn"] == old
    assert evaluate(server, {**body, "policy": old}).status_code == 200
    policies = {p["policy"]: p for p in server.client.get("/v1/policies", headers=EVAL).json()["policies"]}
    assert policies["tank-guard"]["pinned"] == old and policies["tank-guard"]["floor"] == "1.2.0"
    for policy, urn in (("tank-guard", new), ("boiler-guard", old)):  # retired; another policy's artifact
        rollback = server.client.post(f"/v1/policies/{policy}/rollback", json={"urn": urn}, headers=ADMIN)
        assert_error(rollback, 409)
    assert server.client.delete("/v1/policies/tank-guard/pin", headers=ADMIN).status_code == 204
    assert_error(evaluate(server, body), 409)
    assert_error(server.client.delete("/v1/policies/tank-guard/pin", headers=ADMIN), 409)
    newer_sop, newer = plant.artifact("1.3.0", policy="tank-guard", doc=doc)
    assert server.client.put("/v1/artifacts", content=newer_sop, headers=ADMIN).status_code == 201
    assert evaluate(server, body).json()["urn"] == newer


def test_ledger_supersession_hands_over_to_the_successor(server, plant):
    doc = dict(BOILER, policy="kiln-guard")
    a_sop, a = plant.artifact("1.0.0", policy="kiln-guard", doc=doc)
    assert server.client.put("/v1/artifacts", content=a_sop, headers=ADMIN).status_code == 201
    b_sop, b = plant.artifact("1.0.1", policy="kiln-guard", doc=doc)
    plant.supersede(a, b)
    body = {"policy": "kiln-guard", "telemetry": NORMAL, "context": AUTO}
    wait_until(lambda: evaluate(server, body).status_code != 200, what="the superseded one to be refused")
    assert "superseded" in assert_error(evaluate(server, body), 409)["message"]
    assert server.client.put("/v1/artifacts", content=b_sop, headers=ADMIN).status_code == 201
    assert evaluate(server, body).json()["urn"] == b
    shown = server.client.get(f"/v1/artifacts/{a}", headers=EVAL).json()
    assert shown["state"] == "superseded" and b in shown["reason"]


# -- observability -----------------------------------------------------------------------------------


def test_health_ready_metrics_openapi(server):
    assert server.client.get("/healthz").json() == {"status": "ok"}
    ready = server.client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["ledger"]["reachable"] is True
    assert "boiler-guard" in ready["policies"]
    evaluate(server, {"policy": "boiler-guard", "telemetry": NORMAL, "context": AUTO})
    m = server.client.get("/metrics")
    assert m.headers["content-type"].startswith("text/plain")
    text = m.text
    for series in ('synapse_decisions_total{policy="boiler-guard",verdict="ALLOW",worker="0"}',
                   "synapse_evaluate_seconds_bucket",
                   'synapse_gas_used_bucket{le="100.0",policy="boiler-guard"',
                   'synapse_artifact_loads_total{policy="boiler-guard"',
                   "synapse_artifact_rejections_total", 'synapse_http_requests_total{route="/v1/evaluate"',
                   "synapse_ledger_reachable"):
        assert series in text, series
    doc = server.client.get("/openapi.json").json()
    for path in ("/v1/evaluate", "/evaluate", "/v1/evaluate/batch", "/v1/artifacts", "/healthz", "/readyz"):
        assert path in doc["paths"], path
    assert doc["paths"]["/v1/evaluate"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EvaluateRequest"}
    assert "EvaluateRequest" in doc["components"]["schemas"]


def test_decisions_are_logged_with_masking(server, plant):
    context = {**AUTO, "operator": "j.doe"}
    r = evaluate(server, {"policy": "boiler-guard", "telemetry": NORMAL, "context": context})
    decision_id = r.json()["decision_id"]
    records = [json.loads(line) for seg in sorted((plant.dir / "decisions").glob("w0-*.jsonl"))
               for line in seg.read_text().splitlines()]
    (record,) = [x for x in records if x.get("decision_id") == decision_id]
    assert record["verdict"] == "ALLOW" and record["urn"] == r.json()["urn"]
    assert set(record["context"]["operator"]) == {"hmac-sha256"} and "j.doe" not in json.dumps(records)
    assert any(x["kind"] == "event" and x["event"] == "artifact_uploaded" for x in records)


@pytest.mark.parametrize("telemetry, context, secret, why", [
    (NORMAL, {"mode": "pin-7731-hunter2"}, "pin-7731-hunter2", 'context "mode" is not one of its values'),
    ({**NORMAL, "pressure_bar": 31337.0625}, AUTO, "31337",
     'telemetry "pressure_bar" is above its maximum 250'),
])
def test_an_input_fault_reason_never_echoes_a_masked_value(server, plant, telemetry, context, secret, why):
    # The reason names the input and the declared bound or values it breaks; the value itself is masked
    # in the record, and the reason (in the record, the response and the logs) must not undo that.
    r = evaluate(server, {"policy": "boiler-guard", "telemetry": telemetry, "context": context})
    decision = r.json()
    assert decision["verdict"] == "DENY" and decision["reason"].startswith(f"input fault: {why}")
    assert secret not in r.text
    segments = sorted((plant.dir / "decisions").glob("w0-*.jsonl"))
    records = [json.loads(line) for seg in segments for line in seg.read_text().splitlines()]
    (record,) = [x for x in records if x.get("decision_id") == decision["decision_id"]]
    assert record["reason"] == decision["reason"]
    assert secret not in "".join(seg.read_text() for seg in segments)
    assert secret not in server.log()

