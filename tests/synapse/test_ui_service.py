"""The service operations behind the operator page (issue 16 item 2), in-process: who may read the page's
data, the decision feed (no inputs, per-minute counts, live watchers), the overview's plain reasons, and
the decision-log check the page's button runs. The page itself: tests/synapse/test_ui_browser.py."""

from __future__ import annotations

import pytest

from axon.keys import load_identity
from synapse.service.auth import hash_token
from synapse.service.config import ServiceConfig, TokenConfig
from synapse.service.errors import AuthRequired
from synapse.service.live import DecisionFeed
from synapse.service.service import PolicyService
from tests.service_support import AUTO, HALT, NORMAL, Plant

TOKEN = "sopcos_" + "e" * 43


@pytest.fixture
def service(tmp_path):
    plant = Plant(tmp_path)
    config = ServiceConfig()
    config.ledger.path, config.store.path = plant.ledger_path, tmp_path / "store"
    config.decision_log.path = tmp_path / "log"
    config.auth.tokens = [TokenConfig(name="viewer", sha256=hash_token(TOKEN), scopes=["evaluate"])]
    service = PolicyService(config, load_identity(plant.node_key))
    service.start()
    service.plant = plant
    yield service
    service.stop()


def test_the_page_data_is_open_on_loopback_and_needs_the_evaluate_scope_beyond(service):
    for host in ("127.0.0.1:8080", "localhost:8080", "[::1]:8080", "127.0.0.1"):
        assert service.authorize_view({"host": host}, "GET", "/v1/overview", "127.0.0.1").name == "loopback"
    assert service.authorize_view({"host": "[::1]:8080"}, "GET", "/v1/overview", "::1").name == "loopback"
    # DNS rebinding: a page of another name, resolved to 127.0.0.1, in the operator's browser
    for host in ("evil.example:8080", "evil.example", ""):
        with pytest.raises(AuthRequired):
            service.authorize_view({"host": host}, "GET", "/v1/overview", "127.0.0.1")
    for client in ("10.0.0.7", "192.168.1.20", "unknown", None):
        with pytest.raises(AuthRequired):
            service.authorize_view({}, "GET", "/v1/overview", client)
    with pytest.raises(AuthRequired):
        service.authorize_view({"authorization": "Bearer sopcos_wrong"}, "GET", "/v1/overview", "10.0.0.7")
    viewer = service.authorize_view({"authorization": f"Bearer {TOKEN}"}, "GET", "/v1/overview", "10.0.0.7")
    assert viewer.name == "viewer"


def test_decisions_reach_the_feed_and_watchers_without_their_inputs(service):
    service.upload(service.plant.artifact("1.0.0")[0])
    seen = []
    stop = service.watch_decisions(seen.append)
    halt = service.evaluate("boiler-guard", HALT, {**AUTO, "operator_id": "badge-1234"})
    stop()
    allow = service.evaluate("boiler-guard", NORMAL, AUTO)
    assert [d["decision_id"] for d in seen] == [halt.decision_id]
    recent = service.recent_decisions()
    assert [d["decision_id"] for d in recent["decisions"]] == [halt.decision_id, allow.decision_id]
    item = recent["decisions"][0]
    assert item["verdict"] == "HALT" and item["rule"] == "halt-overpressure" and item["source"] == "http"
    assert "telemetry" not in item and "context" not in item and "badge-1234" not in repr(recent)
    buckets = recent["stats"]["buckets"]
    assert len(buckets) == 60 and recent["stats"]["bucket_seconds"] == 60
    assert buckets[-1]["counts"] == {"ALLOW": 1, "WARN": 0, "HALT": 1, "DENY": 0}
    assert buckets[-1]["latency_ms_max"] >= buckets[-1]["latency_ms_mean"] > 0
    assert all(sum(b["counts"].values()) == 0 for b in buckets[:-1])


def test_the_feed_keeps_an_hour_by_minute_and_drops_a_watcher_that_fails():
    feed = DecisionFeed(keep=3)
    broken = []

    def gone(item):
        broken.append(item)
        raise RuntimeError("event loop is closed")

    feed.watch(gone)
    for minute, verdict in enumerate(["ALLOW", "HALT", "DENY", "WARN", "SOMETHING"]):
        feed.record({"verdict": verdict}, latency_s=0.001 * (minute + 1), source="sidecar",
                    now=1_000_020 + 60 * minute)
    assert len(broken) == 1  # dropped after its first failure
    assert [d["verdict"] for d in feed.recent()] == ["DENY", "WARN", "SOMETHING"]
    buckets = feed.stats(1_000_020 + 60 * 4)["buckets"]
    counted = [b["counts"] for b in buckets if sum(b["counts"].values())]
    assert counted[-1] == {"ALLOW": 0, "WARN": 0, "HALT": 0, "DENY": 1}  # an unknown verdict counts as DENY
    assert [b["latency_ms_max"] for b in buckets[-5:]] == [1.0, 2.0, 3.0, 4.0, 5.0]
    later = feed.stats(1_000_020 + 3600 + 60 * 2)["buckets"]  # an hour on: the first three minutes are gone
    assert sum(sum(b["counts"].values()) for b in later) == 2


def test_the_overview_says_in_plain_words_why_an_artifact_is_not_served(service):
    plant = service.plant
    sop, urn = plant.artifact("1.0.0")
    service.upload(sop)
    newer, newer_urn = plant.artifact("1.1.0")
    service.upload(newer)
    service.retire(newer_urn, by="test")
    overview = service.overview()
    assert overview["status"] == "ready" and overview["ledger"]["follow_lag_seconds"] is not None
    (boiler,) = overview["policies"]
    assert boiler["active"] is None and boiler["floor"] == "1.1.0"
    assert "cannot be served" in boiler["reason"]
    retired, older = boiler["artifacts"]
    assert retired["urn"] == newer_urn
    assert retired["why_not_served"] == f"{newer_urn} was retired by an administrator"
    assert older["urn"] == urn and older["why_not_served"] is None and older["served"]
    log = overview["decision_log"]
    assert log["sealed_seq"] >= 1 and log["head_seq"] >= log["sealed_seq"]
    service.rollback("boiler-guard", urn, by="test")
    (boiler,) = service.overview()["policies"]
    assert boiler["pinned"] == urn and boiler["signer"] == "did:sopcos:author#key-1"
    assert boiler["authority_level"] == "LVL_3"


def test_the_decision_log_check_finds_a_changed_record(service):
    service.upload(service.plant.artifact("1.0.0")[0])
    decision = service.evaluate("boiler-guard", HALT, AUTO)
    report = service.verify_decision_log()
    assert report["ok"] and report["checked_against_ledger"]
    assert report["streams"][0]["decisions"] == 1
    segment = next((service.config.decision_log.path).glob("w0-*.jsonl"))
    segment.write_bytes(segment.read_bytes().replace(b'"verdict":"HALT"', b'"verdict":"ALLOW"'))
    report = service.verify_decision_log()
    assert not report["ok"]
    bad = report["streams"][0]["first_bad"]
    assert bad["seq"] == int(decision.decision_id.rsplit("-", 1)[1]) and "hash" in bad["reason"]
