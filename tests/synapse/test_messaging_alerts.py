"""Alerts: which decisions alert, de-duplication, rate limit, body, and delivery through the ledger."""

from __future__ import annotations

import pytest

from axon.keys import SigningKey
from axon.messaging.inbox import LedgerInbox
from axon.messaging.receiver import Receiver
from synapse.sidecar.alerts import (
    AlertConfigError,
    Alerter,
    AlertPolicy,
    AlertSender,
    Recipient,
    resolve_recipients,
)
from tests.messaging_fixtures import T0, plant

OPS = Recipient(SigningKey(b"\x07" * 32).public_key, "did:sopcos:ops#key-1")
NODE = "did:sopcos:node-7#key-1"


def decision(verdict: str, rule: str | None = "too_hot", reason: str | None = None) -> dict:
    return {"verdict": verdict, "code": 0, "rule": rule, "logs": [], "reason": reason, "gas_used": 10}


def alerter(**kw) -> Alerter:
    return Alerter(AlertPolicy((OPS,), **kw), NODE)


def feed(a: Alerter, verdicts, start=T0, step=1.0, policy="boiler"):
    sent = []
    for i, v in enumerate(verdicts):
        out = a.observe(decision(v), policy, "urn:sopcos:boiler", f"w0-{i}", start + i * step)
        sent.extend((i, o.message.body["verdict"]) for o in out)
    return sent


def test_alert_on_deny_and_halt_only_and_body_names_everything():
    a = alerter()
    assert a.observe(decision("ALLOW"), "boiler", "urn:sopcos:boiler", "w0-1", T0) == []
    assert a.observe(decision("WARN"), "boiler", "urn:sopcos:boiler", "w0-2", T0) == []
    [out] = a.observe(decision("DENY", "too_hot", None), "boiler", "urn:sopcos:boiler", "w0-3", T0 + 1,
                      telemetry={"temp": 99.0})
    assert out.recipient == OPS and out.message.type == "ALERT"
    assert out.message.body == {"policy": "boiler", "urn": "urn:sopcos:boiler", "verdict": "DENY",
                                "previous_verdict": "WARN", "rule": "too_hot", "reason": None,
                                "decision_id": "w0-3", "time": T0 + 1, "node": NODE, "suppressed": 0}


def test_telemetry_only_when_configured():
    [out] = alerter(include_telemetry=True).observe(decision("HALT"), "p", "u", "d", T0, telemetry={"t": 1})
    assert out.message.body["telemetry"] == {"t": 1}


def test_persisting_deny_is_deduplicated_then_repeated_after_the_interval():
    a = alerter(repeat_after_s=10)
    assert feed(a, ["DENY"] * 25) == [(0, "DENY"), (10, "DENY"), (20, "DENY")]
    assert a.counts["suppressed_duplicate"] == 22


def test_change_of_verdict_alerts_at_once():
    a = alerter()
    assert feed(a, ["DENY", "DENY", "HALT", "ALLOW", "DENY"]) == [(0, "DENY"), (2, "HALT"), (4, "DENY")]


def test_flapping_sensor_is_rate_limited_and_suppressed_count_reported():
    a = alerter(max_per_window=3, rate_window_s=60)
    sent = feed(a, ["DENY", "ALLOW"] * 20)  # 20 DENY episodes within 40 s
    assert len(sent) == 3 and a.counts["suppressed_rate"] == 17
    # After the window, the next DENY goes out and says how many were held back.
    [out] = a.observe(decision("DENY"), "boiler", "urn:sopcos:boiler", "later", T0 + 100)
    assert out.message.body["suppressed"] == 17


def test_rate_limited_escalation_is_sent_when_the_limit_allows():
    a = alerter(max_per_window=1, rate_window_s=60, repeat_after_s=3600)
    assert feed(a, ["DENY", "HALT", "HALT"]) == [(0, "DENY")]
    [out] = a.observe(decision("HALT"), "boiler", "urn:sopcos:boiler", "x", T0 + 61)
    assert out.message.body["verdict"] == "HALT"


def test_policies_are_limited_independently():
    a = alerter(max_per_window=1)
    assert feed(a, ["DENY"], policy="a") and feed(a, ["DENY"], policy="b")


def test_unreadable_verdict_is_treated_as_deny():
    [out] = alerter().observe({"verdict": "MAYBE"}, "p", "u", "d", T0)
    assert out.message.body["verdict"] == "DENY"
    [out] = alerter().observe({"verdict": 3}, "p", "u", "d", T0)
    assert out.message.body["verdict"] == "HALT"


@pytest.mark.parametrize("kw", [{"verdicts": frozenset({"NOPE"})}, {"verdicts": frozenset()},
                                {"max_per_window": 0}, {"rate_window_s": 0}, {"repeat_after_s": -1}])
def test_bad_alert_settings_are_refused(kw):
    with pytest.raises(AlertConfigError):
        AlertPolicy((OPS,), **kw)
    with pytest.raises(AlertConfigError):
        AlertPolicy(())


def test_alerts_reach_the_recipients_inbox_through_the_ledger(tmp_path):
    p = plant(tmp_path)
    recipients = resolve_recipients([p.admin.did, p.viewer.key.public_key.hex()], p.ledger)
    assert recipients[0].did == p.admin.did and recipients[1].to == p.viewer.key.address
    a = Alerter(AlertPolicy(recipients), p.node.did)
    out = a.observe(decision("HALT", "overpressure"), "boiler", "urn:sopcos:boiler", "w0-9", T0)
    results = AlertSender(p.ledger, p.node).send(out, T0)
    assert [r["to"] for r in results] == [p.admin.did, p.viewer.key.address]
    assert all("seq" in r for r in results)
    for who in (p.admin, p.viewer):
        [item] = LedgerInbox(p.ledger, Receiver(who.key, clock=lambda: T0 + 1, did=who.did)).poll()
        assert item.received.sender.did == p.node.did
        assert item.received.message.body["rule"] == "overpressure"
    with pytest.raises(AlertConfigError):
        resolve_recipients([p.outsider.did], p.ledger)
    with pytest.raises(AlertConfigError):
        resolve_recipients(["nothex"], p.ledger)


def test_sender_reports_ledger_refusals_without_raising(tmp_path):
    p = plant(tmp_path)
    out = Alerter(AlertPolicy((OPS,)), p.outsider.did).observe(decision("DENY"), "p", "u", "d", T0)
    [result] = AlertSender(p.ledger, p.outsider).send(out, T0)  # the outsider has no ledger key
    assert "error" in result and result["error"]["code"]
