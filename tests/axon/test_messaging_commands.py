"""Commands into the sidecar: authority, body checks, handlers, ping → LOG, KEY_EXCHANGE, ledger edge."""

from __future__ import annotations

import logging

import pytest

from axon.ledger import ops
from axon.messaging import envelope as E
from axon.messaging import key_exchange as kx
from axon.messaging.inbox import LedgerInbox
from axon.messaging.inner import Message
from axon.messaging.receiver import Received, Receiver
from axon.messaging.signed import LedgerKeys
from synapse.sidecar.plant_commands import LedgerPlantCommandInbox, PlantCommandProcessor
from tests.messaging_fixtures import T0, Plant, plant

URN = "urn:sopcos:boiler-pressure:sha256:" + "ab" * 32


class Handlers:
    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[tuple] = []
        self.fail = fail

    def load_artifact(self, urn, storage_hint=None):
        self.calls.append(("load", urn))
        if self.fail:
            raise self.fail
        return {"version": "1.2.0"}

    def unload(self, urn):
        self.calls.append(("unload", urn))

    def set_context(self, name, value, expires_at):
        self.calls.append(("set_context", name, value, expires_at))


@pytest.fixture
def p(tmp_path) -> Plant:
    return plant(tmp_path)


def received(p: Plant, who: str, body: dict, type_: str = "CMD") -> Received:
    sender = LedgerKeys(p.ledger).sender(getattr(p, who).did)
    return Received(sender, Message.new(type_, body, T0))


def processor(p: Plant, handlers=None) -> PlantCommandProcessor:
    return PlantCommandProcessor(handlers or Handlers(), p.node.did)


@pytest.mark.parametrize(("who", "body", "status", "call"), [
    ("admin", {"command": "load", "urn": URN}, "ok", ("load", URN)),
    ("admin", {"command": "unload", "urn": URN}, "ok", ("unload", URN)),
    ("operator", {"command": "set_context", "name": "mode", "value": "maintenance", "expires_at": T0 + 600},
     "ok", ("set_context", "mode", "maintenance", T0 + 600)),
    ("operator", {"command": "load", "urn": URN}, "refused", None),
    ("engineer", {"command": "set_context", "name": "mode", "value": 1, "expires_at": T0 + 600},
     "refused", None),
    ("viewer", {"command": "unload", "urn": URN}, "refused", None),
])
def test_commands_need_their_authority_level(p, who, body, status, call, caplog):
    handlers = Handlers()
    caplog.set_level(logging.WARNING)
    outcome = processor(p, handlers).process(received(p, who, body), T0)
    assert outcome.status == status
    assert handlers.calls == ([call] if call else [])
    record = outcome.record
    assert record["from"] == getattr(p, who).did and record["command"] == body["command"]
    if status == "refused":
        assert record["code"] == "MSG-UNAUTHORISED" and "MSG-UNAUTHORISED" in caplog.text
    else:
        assert "code" not in record
    if body["command"] == "load" and status == "ok":
        assert record["version"] == "1.2.0" and record["urn"] == URN


def test_ping_is_answered_with_a_log_message(p):
    outcome = processor(p).process(received(p, "viewer", {"command": "ping", "echo": "hello"}), T0 + 1)
    assert outcome.status == "ok" and outcome.reply_to.did == p.viewer.did
    reply = outcome.reply
    assert reply.type == "LOG" and reply.timestamp == T0 + 1
    assert reply.body == {"in_reply_to": outcome.record["nonce"], "command": "ping", "status": "ok",
                          "node": p.node.did, "time": T0 + 1, "echo": "hello"}


@pytest.mark.parametrize(("body", "reason"), [
    ({"command": "load"}, "missing required field(s) 'urn'"),
    ({"command": "load", "urn": "http://x"}, "/urn"),
    ({"command": "load", "urn": URN, "force": True}, "unexpected field(s) 'force'"),
    ({"command": "set_context", "name": "1bad", "value": 1, "expires_at": T0 + 5}, "/name"),
    ({"command": "set_context", "name": "mode", "value": [1], "expires_at": T0 + 5}, "/value"),
    ({"command": "set_context", "name": "mode", "value": 1}, "'expires_at'"),
    ({"command": "set_context", "name": "mode", "value": 1, "expires_at": T0}, "already past"),
    ({"command": "set_context", "name": "mode", "value": 1, "expires_at": T0 + 86401}, "max_context_ttl_s"),
    ({"command": "ping", "echo": "x" * 300}, "/echo"),
    ({"command": "reboot"}, "unknown command"),
    ({}, "unknown command"),
])
def test_bad_command_bodies_are_refused_with_a_reason(p, body, reason):
    handlers = Handlers()
    outcome = processor(p, handlers).process(received(p, "root", body), T0)
    assert outcome.status == "refused" and outcome.record["code"] == "MSG-SCHEMA"
    assert reason in outcome.record["reason"] and handlers.calls == [] and outcome.reply is None


def test_a_failing_handler_is_a_failed_outcome_not_a_crash(p):
    class Refusal(Exception):
        code = "AXON-VERIFY-REVOKED"

    outcome = processor(p, Handlers(fail=Refusal("artifact revoked on the ledger"))).process(
        received(p, "admin", {"command": "load", "urn": URN}), T0)
    assert outcome.status == "failed" and outcome.record["code"] == "AXON-VERIFY-REVOKED"
    assert "revoked" in outcome.record["reason"]
    outcome = processor(p, Handlers(fail=RuntimeError("disk full"))).process(
        received(p, "admin", {"command": "load", "urn": URN}), T0)
    assert outcome.record["code"] == "SYNAPSE-COMMAND-FAILED"


SECRET = "S3CRET-override-7f3a"


class LeakyContextHandlers(Handlers):
    """A set_context handler that hands the value back, or fails with it in its message."""

    def set_context(self, name, value, expires_at):
        super().set_context(name, value, expires_at)
        if self.fail:
            raise RuntimeError(f"cannot apply {name}={value}")
        return {"value": value, "applied": value}


@pytest.mark.parametrize("fail", [False, True])
@pytest.mark.parametrize("value", [SECRET, SECRET + "x" * 200])
def test_a_set_context_value_reaches_neither_record_nor_log(p, fail, value, caplog):
    caplog.set_level(logging.DEBUG)
    handlers = LeakyContextHandlers(fail=RuntimeError() if fail else None)
    body = {"command": "set_context", "name": "shift_code", "value": value, "expires_at": T0 + 600}
    outcome = processor(p, handlers).process(received(p, "admin", body), T0)
    too_long = len(value) > 128  # refused by the schema, whose reason names the rule, not the value
    assert outcome.status == ("refused" if too_long else "failed" if fail else "ok")
    assert handlers.calls == ([] if too_long else [("set_context", "shift_code", value, T0 + 600)])
    assert too_long or outcome.record["name"] == "shift_code"
    assert SECRET not in repr(outcome.record) and SECRET not in caplog.text


def test_log_and_alert_are_recorded_as_received(p):
    for type_ in ("LOG", "ALERT"):
        outcome = processor(p).process(received(p, "viewer", {"x": 1}, type_), T0)
        assert outcome.status == "received" and outcome.reply is None


def test_key_exchange_offer_is_accepted_and_session_stored(p):
    pending = kx.offer(p.node.did, T0)
    proc = processor(p)
    outcome = proc.process(received(p, "engineer", pending.offer.to_body(), "KEY_EXCHANGE"), T0)
    assert outcome.status == "ok" and outcome.reply.type == "KEY_EXCHANGE"
    ours = kx.complete(pending, outcome.reply.body, p.node.did, p.engineer.did, T0)
    theirs = proc.sessions.take(pending.offer.session_id, T0)
    assert theirs is not None and theirs.key == ours.key
    other_offer = kx.offer(p.node.did, T0).offer.to_body()
    refused = proc.process(received(p, "viewer", other_offer, "KEY_EXCHANGE"), T0)
    assert refused.status == "refused" and refused.record["code"] == "MSG-UNAUTHORISED"
    bad = proc.process(received(p, "engineer", {"kx": "offer"}, "KEY_EXCHANGE"), T0)
    assert bad.record["code"] == "MSG-KEY-EXCHANGE"


def test_key_exchange_initiated_by_the_node(p):
    """Node → admin offer; the admin's accept completes the node's pending offer."""
    proc = processor(p)
    offer_msg = proc.offer_session(p.admin.did, T0)
    answer, admin_session = kx.accept(offer_msg.body, p.node.did, p.admin.did, T0)
    outcome = proc.process(received(p, "admin", answer.to_body(), "KEY_EXCHANGE"), T0)
    assert outcome.status == "ok"
    assert proc.sessions.take(admin_session.session_id, T0).key == admin_session.key
    again = proc.process(received(p, "admin", answer.to_body(), "KEY_EXCHANGE"), T0)
    assert again.status == "refused" and "no offer" in again.record["reason"]


# --- the ledger edge ------------------------------------------------------------------------------


def post(p: Plant, sender, body: dict, type_: str = "CMD", ts: int = T0):
    env = E.seal(p.node.key.public_key, Message.new(type_, body, ts))
    return p.ledger.sign_and_submit(sender, ops.message(p.node.did, env.to_dict()), T0)


def test_ledger_command_inbox_end_to_end(p):
    handlers = Handlers()
    clock = [T0]
    edge = LedgerPlantCommandInbox(p.ledger, p.node, PlantCommandProcessor(handlers, p.node.did),
                              clock=lambda: clock[0])
    post(p, p.admin, {"command": "load", "urn": URN})
    post(p, p.viewer, {"command": "load", "urn": URN})  # unauthorised
    ping = post(p, p.viewer, {"command": "ping"})
    post(p, p.admin, {"command": "ping"}, type_="V9_NEW")
    post(p, p.admin, {"command": "unload", "urn": URN}, ts=T0 - 120)  # stale
    records = edge.poll()
    assert [r["status"] for r in records] == ["ok", "refused", "ok", "ignored", "dropped"]
    assert records[1]["code"] == "MSG-UNAUTHORISED" and records[4]["code"] == "MSG-STALE"
    assert handlers.calls == [("load", URN)]
    # The ping's LOG reply is on the ledger, to the viewer, and the viewer can read it.
    assert records[2]["seq"] == ping.seq and "reply_seq" in records[2]
    [item] = LedgerInbox(p.ledger, Receiver(p.viewer.key, clock=lambda: T0, did=p.viewer.did)).poll()
    assert item.received.sender.did == p.node.did
    assert item.received.message.type == "LOG"
    assert item.received.message.body["in_reply_to"] == records[2]["nonce"]
    assert edge.poll() == []


def test_ledger_command_inbox_ignores_history_before_it_started(p):
    post(p, p.admin, {"command": "load", "urn": URN})
    handlers = Handlers()
    processor = PlantCommandProcessor(handlers, p.node.did)
    edge = LedgerPlantCommandInbox(p.ledger, p.node, processor, clock=lambda: T0)
    assert edge.poll() == [] and handlers.calls == []
