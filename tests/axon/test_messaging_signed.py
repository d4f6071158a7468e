"""Who sent it: signed wrappers off the ledger, OpCode 9 entries on it, authority levels, the inbox."""

from __future__ import annotations

import json
import logging

import pytest
import rfc8785

from axon.keys import sha256
from axon.ledger import ops
from axon.messaging import authority
from axon.messaging import envelope as E
from axon.messaging.errors import (
    BadMessageSignature,
    MalformedEnvelope,
    ReplayedMessage,
    StaleMessage,
    Unauthorised,
    UnknownMessageSender,
    WrongRecipient,
)
from axon.messaging.inbox import LedgerInbox
from axon.messaging.inner import Message
from axon.messaging.receiver import Receiver
from axon.messaging.signed import LedgerKeys, PinnedKeys, SignedEnvelope, sign
from tests.messaging_fixtures import T0, Plant, plant


@pytest.fixture
def p(tmp_path) -> Plant:
    return plant(tmp_path)


def rx_for(p: Plant, now: float = T0) -> Receiver:
    return Receiver(p.node.key, clock=lambda: now, did=p.node.did)


def wrapped(p: Plant, sender, body: dict, type_: str = "CMD", to: str | None = None, ts: int = T0):
    env = E.seal(p.node.key.public_key, Message.new(type_, body, ts))
    return sign(sender, to or p.node.did, env)


def test_wrapper_shape_and_signature_over_rfc8785(p):
    signed = wrapped(p, p.admin, {"command": "ping"})
    doc = json.loads(signed.to_json())
    assert list(doc) == ["p", "from", "to", "envelope", "sig"] and doc["p"] == "sip-017-signed"
    unsigned = {k: v for k, v in doc.items() if k != "sig"}
    digest = sha256(rfc8785.dumps(unsigned))
    assert p.admin.key.public_key.verify(bytes.fromhex(doc["sig"]), digest)


def test_signed_message_from_a_ledger_key_is_received_with_its_level(p):
    got = rx_for(p).accept_signed(wrapped(p, p.admin, {"command": "load"}).to_json(), LedgerKeys(p.ledger))
    assert got is not None and got.sender.did == p.admin.did and got.sender.level == 4
    assert got.sender.source == "ledger" and got.message.body == {"command": "load"}


def test_pinned_key_is_consulted_before_the_ledger(p):
    directory = PinnedKeys({p.outsider.did: (p.outsider.key.public_key, 3)}, LedgerKeys(p.ledger))
    got = rx_for(p).accept_signed(wrapped(p, p.outsider, {"command": "ping"}).to_dict(), directory)
    assert got.sender.source == "pinned" and got.sender.level == 3
    got = rx_for(p).accept_signed(wrapped(p, p.viewer, {"command": "ping"}).to_dict(), directory)
    assert got.sender.source == "ledger"


def test_unknown_and_revoked_senders_are_dropped(p):
    rx = rx_for(p)
    with pytest.raises(UnknownMessageSender, match="no key on the ledger"):
        rx.accept_signed(wrapped(p, p.outsider, {}).to_json(), LedgerKeys(p.ledger))
    with pytest.raises(UnknownMessageSender, match="not a pinned key"):
        rx.accept_signed(wrapped(p, p.admin, {}).to_json(), PinnedKeys({}))
    p.ledger.sign_and_submit(p.root, ops.revoke_key(p.operator.did), T0)
    with pytest.raises(UnknownMessageSender, match="revoked"):
        rx.accept_signed(wrapped(p, p.operator, {}).to_json(), LedgerKeys(p.ledger))
    assert rx.counts["dropped:MSG-UNKNOWN-SENDER"] == 3


def test_forged_from_is_a_bad_signature(p):
    """An outsider signs with its own key but claims to be the admin."""
    env = E.seal(p.node.key.public_key, Message.new("CMD", {"command": "load"}, T0))
    forged = SignedEnvelope(p.admin.did, p.node.did, env, sign(p.outsider, p.node.did, env).sig)
    with pytest.raises(BadMessageSignature) as info:
        rx_for(p).accept_signed(forged.to_json(), LedgerKeys(p.ledger))
    assert info.value.code == "MSG-SIGNATURE"


@pytest.mark.parametrize("field", ["from", "to", "envelope.iv", "envelope.blob", "envelope.ephem_pub", "sig"])
def test_tampering_any_wrapper_field_is_detected(p, field):
    doc = wrapped(p, p.admin, {"command": "ping"}).to_dict()
    if field == "from":
        doc["from"] = p.operator.did
    elif field == "to":
        doc["to"] = p.node.key.address  # still this receiver, but not what was signed
    elif field == "sig":
        doc["sig"] = doc["sig"][:-2] + ("00" if doc["sig"][-2:] != "00" else "01")
    else:
        part = field.split(".")[1]
        raw = bytearray.fromhex(doc["envelope"][part])
        raw[5] ^= 0x10
        doc["envelope"] = {**doc["envelope"], part: raw.hex()}
    with pytest.raises((BadMessageSignature, MalformedEnvelope)):
        rx_for(p).accept_signed(doc, LedgerKeys(p.ledger))


def test_wrapper_for_another_recipient_is_dropped(p):
    with pytest.raises(WrongRecipient) as info:
        rx_for(p).accept_signed(wrapped(p, p.admin, {}, to=p.viewer.did).to_json(), LedgerKeys(p.ledger))
    assert info.value.code == "MSG-RECIPIENT"


@pytest.mark.parametrize("doc", [
    "not json", "[]", {"p": "sip-017-signed"}, '{"p": "sip-017-signed", "p": "sip-017-signed"}',
    {"p": "sip-017", "from": "x", "to": "y", "envelope": {}, "sig": ""},
])
def test_malformed_wrappers_are_refused_precisely(p, doc):
    with pytest.raises(MalformedEnvelope) as info:
        rx_for(p).accept_signed(doc, LedgerKeys(p.ledger))
    assert info.value.code == "MSG-ENVELOPE" and "signed envelope" in str(info.value)


def test_signed_replay_is_dropped(p):
    rx = rx_for(p)
    text = wrapped(p, p.admin, {"command": "ping"}).to_json()
    rx.accept_signed(text, LedgerKeys(p.ledger))
    with pytest.raises(ReplayedMessage):
        rx.accept_signed(text, LedgerKeys(p.ledger))


# --- authority ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("who", "command", "allowed"), [
    ("viewer", "ping", True), ("viewer", "set_context", False), ("engineer", "set_context", False),
    ("operator", "set_context", True), ("operator", "load", False), ("admin", "load", True),
    ("admin", "unload", True), ("operator", "unload", False), ("admin", "format_disk", False),
    ("root", "format_disk", True),
])
def test_command_authority_levels(p, who, command, allowed, caplog):
    sender = getattr(p, who)
    got = rx_for(p).accept_signed(wrapped(p, sender, {"command": command, "secret": "s3cr3t"}).to_json(),
                                  LedgerKeys(p.ledger))
    caplog.set_level(logging.WARNING, logger="axon.messaging.authority")
    if allowed:
        authority.authorise(got.sender, got.message)
        return
    with pytest.raises(Unauthorised) as info:
        authority.authorise(got.sender, got.message)
    assert info.value.code == "MSG-UNAUTHORISED" and sender.did in str(info.value)
    assert "MSG-UNAUTHORISED" in caplog.text and "s3cr3t" not in caplog.text


def test_key_exchange_needs_lvl2_and_information_needs_lvl1(p):
    for type_, who, ok in [("KEY_EXCHANGE", "viewer", False), ("KEY_EXCHANGE", "engineer", True),
                           ("ALERT", "viewer", True), ("LOG", "viewer", True)]:
        got = rx_for(p).accept_signed(wrapped(p, getattr(p, who), {}, type_=type_).to_json(),
                                      LedgerKeys(p.ledger))
        if ok:
            authority.authorise(got.sender, got.message)
        else:
            with pytest.raises(Unauthorised):
                authority.authorise(got.sender, got.message)


def test_authority_table_in_docs_matches_the_code():
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[2] / "docs/messaging.md").read_text()
    for command, level in authority.COMMAND_LEVELS.items():
        assert f"| CMD `{command}` | LVL_{level} |" in doc
    for type_, level in authority.TYPE_LEVELS.items():
        assert f"| `{type_}` | LVL_{level} |" in doc


# --- on the ledger: OpCode 9 ----------------------------------------------------------------------


def post(p: Plant, sender, body: dict, type_: str = "CMD", to: str | None = None, ts: int = T0,
         now: int = T0):
    env = E.seal(p.node.key.public_key, Message.new(type_, body, ts))
    return p.ledger.sign_and_submit(sender, ops.message(to or p.node.did, env.to_dict()), now)


def test_ledger_inbox_reads_messages_to_did_and_address_in_order(p):
    post(p, p.admin, {"command": "ping", "n": 1})
    post(p, p.viewer, {"n": 2}, type_="ALERT", to=p.node.key.address)
    post(p, p.admin, {"n": 3}, type_="LOG", to=p.viewer.did)  # someone else's
    inbox = LedgerInbox(p.ledger, rx_for(p))
    items = inbox.poll()
    assert [i.received.message.body.get("n") for i in items] == [1, 2]
    assert [i.received.sender.did for i in items] == [p.admin.did, p.viewer.did]
    assert inbox.poll() == []  # read once
    post(p, p.admin, {"n": 4}, type_="LOG")
    assert [i.received.message.body["n"] for i in inbox.poll()] == [4]


def test_ledger_inbox_reports_drops_and_ignored_types(p):
    entry = post(p, p.admin, {}, type_="V2_THING")
    post(p, p.admin, {"n": 1}, ts=T0 - 500)
    bad = E.seal(p.viewer.key.public_key, Message.new("CMD", {}, T0)).to_dict()  # not for the node
    p.ledger.sign_and_submit(p.admin, ops.message(p.node.did, bad), T0)
    items = LedgerInbox(p.ledger, rx_for(p)).poll()
    assert [i.to_dict()["status"] for i in items] == ["ignored", "dropped", "dropped"]
    assert items[0].seq == entry.seq
    assert [i.error.code for i in items[1:]] == ["MSG-STALE", "MSG-DECRYPT"]


def test_ledger_sender_is_the_transaction_signer_and_must_be_unrevoked(p):
    post(p, p.operator, {"command": "set_context"})
    p.ledger.sign_and_submit(p.root, ops.revoke_key(p.operator.did), T0)
    [item] = LedgerInbox(p.ledger, rx_for(p)).poll()
    assert item.error.code == "MSG-UNKNOWN-SENDER"


def test_inbox_freshness_at_entry_time(p):
    """Read an hour later: against the clock every message is stale; against ledger time, fresh."""
    post(p, p.admin, {"n": 1}, type_="LOG", ts=T0, now=T0 + 5)
    later = rx_for(p, now=T0 + 3600)
    [item] = LedgerInbox(p.ledger, later).poll()
    assert isinstance(item.error, StaleMessage)
    [item] = LedgerInbox(p.ledger, rx_for(p, now=T0 + 3600)).poll(at_entry_time=True)
    assert item.received.message.body == {"n": 1}


def test_replayed_envelope_in_a_new_transaction_is_dropped(p):
    """Anyone can copy an envelope off the public ledger into a transaction of their own."""
    entry = post(p, p.admin, {"command": "ping"})
    p.ledger.sign_and_submit(p.viewer, ops.message(p.node.did, entry.op["envelope"]), T0)
    items = LedgerInbox(p.ledger, rx_for(p)).poll()
    assert items[0].received is not None and items[1].error.code == "MSG-REPLAY"
