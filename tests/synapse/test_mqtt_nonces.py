"""The receiver's nonces in the node state: a message accepted once is dropped as a replay after a
restart too (issue 12 item 4), by the same rules as the in-memory cache. No broker here: the MQTT
inbox's core (`MqttPlantCommandInbox.handle`) is driven with payloads directly."""

from __future__ import annotations

import logging

import pytest

from axon.messaging import Message, seal, sign
from axon.messaging.errors import ReplayCacheFull, ReplayedMessage, StaleMessage
from axon.messaging.receiver import Receiver
from axon.messaging.signed import LedgerKeys
from synapse.service.node_state import (
    NONCE_CACHE_FULL,
    NONCE_FORGOTTEN,
    NONCE_NEW,
    NONCE_REPLAYED,
    NodeState,
)
from synapse.sidecar.alerts import Recipient
from synapse.sidecar.mqtt import AlertQueue, MqttPlantCommandInbox, NodeStateNonces
from synapse.sidecar.plant_commands import PlantCommandProcessor
from tests.messaging_fixtures import T0, plant


def test_node_state_keeps_nonces_across_reopening(tmp_path):
    path = tmp_path / "node-state.sqlite"
    first = NodeState(path)
    assert first.accept_message_nonce("aa" * 12, T0 + 30, T0, 10) == NONCE_NEW
    assert first.accept_message_nonce("aa" * 12, T0 + 30, T0 + 1, 10) == NONCE_REPLAYED
    first.close()
    again = NodeState(path)  # a restart: a new connection to the same file
    assert again.accept_message_nonce("aa" * 12, T0 + 30, T0 + 2, 10) == NONCE_REPLAYED
    assert again.accept_message_nonce("bb" * 12, T0 + 30, T0 + 2, 10) == NONCE_NEW


def test_pruned_nonces_raise_the_floor_and_the_limit_refuses_rather_than_forgets(tmp_path):
    state = NodeState(tmp_path / "node-state.sqlite")
    assert state.accept_message_nonce("01" * 12, T0 + 30, T0, 2) == NONCE_NEW
    assert state.accept_message_nonce("02" * 12, T0 + 40, T0, 2) == NONCE_NEW
    assert state.accept_message_nonce("03" * 12, T0 + 40, T0, 2) == NONCE_CACHE_FULL
    # At T0 + 35 the first expired and is pruned: a message expiring by then may repeat it.
    assert state.accept_message_nonce("01" * 12, T0 + 30, T0 + 35, 2) == NONCE_FORGOTTEN
    assert state.accept_message_nonce("03" * 12, T0 + 60, T0 + 35, 2) == NONCE_NEW


def test_the_adapter_raises_the_receivers_codes(tmp_path):
    nonces = NodeStateNonces(NodeState(tmp_path / "s.sqlite"), limit=1)
    nonces.add("01" * 12, T0 + 30, T0)
    with pytest.raises(ReplayedMessage):
        nonces.add("01" * 12, T0 + 30, T0)
    with pytest.raises(ReplayCacheFull):
        nonces.add("02" * 12, T0 + 30, T0)
    with pytest.raises(StaleMessage):
        nonces.add("01" * 12, T0 + 30, T0 + 31)


def _inbox(p, state_path, now):
    processor = PlantCommandProcessor(handlers=None, node_did=p.node.did)  # ping needs no handler
    nonces = NodeStateNonces(NodeState(state_path))
    return MqttPlantCommandInbox(lambda: p.ledger, p.node, processor, nonces, clock=lambda: now)


def test_a_captured_command_is_dropped_after_a_restart_with_a_reason_logged(tmp_path, caplog):
    p = plant(tmp_path)
    message = Message.new("CMD", {"command": "ping", "echo": "hi"}, T0)
    captured = sign(p.engineer, p.node.did, seal(p.node.key.public_key, message)).to_json().encode()
    state = tmp_path / "node-state.sqlite"

    record, reply = _inbox(p, state, T0 + 1).handle(captured)
    assert (record["status"], record["via"], record["from"]) == ("ok", "mqtt", p.engineer.did)
    assert reply is not None and reply.address == p.engineer.key.public_key.address
    answer = Receiver(p.engineer.key, did=p.engineer.did).accept_signed(reply.signed, _keys(p), T0 + 1)
    assert answer.message.body["in_reply_to"] == message.nonce and answer.sender.did == p.node.did

    # The receiver restarts (a new inbox, a new node-state connection) within the window; the same
    # payload comes again (a QoS 1 redelivery or an attacker's replay).
    with caplog.at_level(logging.WARNING, logger="axon.messaging"):
        record, reply = _inbox(p, state, T0 + 5).handle(captured)
    assert (record["status"], record["code"]) == ("dropped", "MSG-REPLAY") and reply is None
    assert "restart" in record["reason"]
    assert any("MSG-REPLAY" in r.getMessage() for r in caplog.records)


def test_without_the_node_state_the_same_replay_would_pass(tmp_path):
    """The control for the test above: two in-memory receivers (no started_at) both accept the payload,
    so it is the node state that drops it."""
    p = plant(tmp_path)
    message = Message.new("CMD", {"command": "ping"}, T0)
    captured = sign(p.engineer, p.node.did, seal(p.node.key.public_key, message))
    for _ in range(2):
        assert Receiver(p.node.key, did=p.node.did).accept_signed(captured, _keys(p), T0 + 1) is not None


def test_an_unsigned_or_unknown_sender_is_dropped_not_acted_on(tmp_path):
    p = plant(tmp_path)
    message = Message.new("CMD", {"command": "ping"}, T0)
    forged = sign(p.outsider, p.node.did, seal(p.node.key.public_key, message)).to_json().encode()
    record, reply = _inbox(p, tmp_path / "s.sqlite", T0 + 1).handle(forged)
    assert (record["status"], record["code"], reply) == ("dropped", "MSG-UNKNOWN-SENDER", None)
    record, _ = _inbox(p, tmp_path / "s.sqlite", T0 + 1).handle(b"{not json")
    assert (record["status"], record["code"]) == ("dropped", "MSG-ENVELOPE")


def _keys(p):
    return LedgerKeys(p.ledger)


def test_the_alert_queue_drops_the_oldest_and_reseals_what_waited_too_long(tmp_path):
    p = plant(tmp_path)
    recipient = Recipient(p.engineer.key.public_key, p.engineer.did)
    queue = AlertQueue(p.node, max_queued=2, window_s=30)
    for i in range(3):
        dropped = queue.put(Message.new("ALERT", {"n": i}, T0), (recipient,), f"d{i}", T0)
    assert [d.decision_id for d in dropped] == ["d0"] and [q.decision_id for q in queue.items] == ["d1", "d2"]

    item = queue.items[0]
    first = queue.envelope(item, T0 + 1)
    assert queue.envelope(item, T0 + 15) is first  # a retry soon after: the same envelope (a replay there)
    later = queue.envelope(item, T0 + 100)  # waited past half the window: sealed again, fresh on arrival
    receiver = Receiver(p.engineer.key, did=p.engineer.did)
    got = receiver.accept_signed(later, _keys(p), T0 + 101)
    assert got.message.timestamp == T0 + 100 and got.message.body == {"n": 1} and got.sender.did == p.node.did
    with pytest.raises(StaleMessage):
        Receiver(p.engineer.key, did=p.engineer.did).accept_signed(first, _keys(p), T0 + 101)
