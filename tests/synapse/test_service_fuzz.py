"""Property-based fuzzing of the running service from its own OpenAPI document (schemathesis): whatever
the request, no 5xx, and every error answer is the structured {"code", "message", "errors"} body."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

from synapse.service.auth import hash_token, new_token
from tests.service_support import Plant, Server, write_config

pytestmark = pytest.mark.slow

ADMIN_TOKEN = new_token()
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    plant = Plant(tmp_path_factory.mktemp("fuzz"))
    config = write_config(plant.dir / "service.toml", {
        "ledger": {"path": plant.ledger_path, "follow_interval": 1.0},
        "node": {"key": plant.node_key},
        "store": {"path": plant.dir / "store"},
        "decision_log": {"path": plant.dir / "decisions"},
        "limits": {"max_body_bytes": 16384, "rate": 0.0},
        "auth": {"open_evaluate": True},
    }, tokens=[{"name": "fuzz-admin", "sha256": hash_token(ADMIN_TOKEN), "scopes": ["admin"]}])
    srv = Server(plant.dir, config).wait_ready()
    sop, _ = plant.artifact("1.0.0")
    assert srv.client.put("/v1/artifacts", content=sop,
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 201
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def api(server):
    return schemathesis.openapi.from_url(f"{server.base}/openapi.json")


def check(response) -> None:
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    ctype = (response.headers.get("content-type") or [""])[0]  # schemathesis: header -> list of values
    if response.status_code >= 400 and ctype.startswith("application/json"):
        body = response.json()
        if "code" in body:  # the constraint-node route answers in its protocol's own format
            assert set(body) == {"code", "message", "errors"}, body
    assert "Traceback" not in response.text


# schemathesis' pytest plugin (lazy schemas) does not run under this pytest, so its Python API drives
# Hypothesis directly: one property per operation, from the schema the running server publishes.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("as_admin", [True, False], ids=["admin", "anonymous"])
def test_no_request_gets_a_server_error(api, mode, as_admin):
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"} if as_admin else {}
    operations = [result.ok() for result in api.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/evaluate", "/v1/evaluate/batch", "/v1/artifacts"}
    no_negative_cases = set()
    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode))
        @SETTINGS
        def property_(case):
            response = case.call(headers=headers)
            case.validate_response(response, checks=[not_a_server_error])
            check(response)

        try:
            property_()
        except Unsatisfiable:  # nothing in the request can be wrong (GET /healthz, a free-form path)
            assert mode is GenerationMode.NEGATIVE, operation.label
            no_negative_cases.add(operation.path)
    assert not no_negative_cases & {"/v1/evaluate", "/evaluate", "/v1/evaluate/batch"}
