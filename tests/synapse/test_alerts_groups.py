"""Alerts to group DIDs: expansion into the members' live keys, de-duplication, and re-resolution as the
ledger changes (a member revoked stops receiving, a member added starts)."""

from __future__ import annotations

import json
import logging
import subprocess

import pytest

from axon.ledger import Ledger, ops
from axon.messaging.inbox import LedgerInbox
from axon.messaging.receiver import Receiver
from synapse.sidecar.alerts import (
    AlertConfigError,
    Alerter,
    AlertPolicy,
    AlertSender,
    RecipientBook,
    resolve_recipients,
)
from tests.messaging_fixtures import T0, plant
from tests.service_support import AUTO, HALT, NORMAL, Plant, Server, sidecar_config
from tests.waiting import wait_until

ROOM = "did:sopcos:group:control-room"


def decision(verdict: str = "HALT") -> dict:
    return {"verdict": verdict, "code": 0, "rule": "overpressure", "logs": [], "reason": None, "gas_used": 1}


def define(p, members, group=ROOM, at=T0 - 50):
    p.ledger.sign_and_submit(p.root, ops.define_group(group, [m.did for m in members]), at)


def inbox(p, who, at=T0 + 3) -> list:
    return LedgerInbox(p.ledger, Receiver(who.key, clock=lambda: at, did=who.did)).poll()


def revoke(p, who, at=T0 - 40):
    p.ledger.sign_and_submit(p.root, ops.revoke_key(who.did), at)


def test_group_expands_into_its_members_each_with_its_own_envelope(tmp_path):
    p = plant(tmp_path)
    define(p, [p.operator, p.engineer])
    recipients = resolve_recipients([ROOM], p.ledger)
    assert [r.did for r in recipients] == [p.operator.did, p.engineer.did]
    assert [r.public_key for r in recipients] == [p.operator.key.public_key, p.engineer.key.public_key]
    out = Alerter(AlertPolicy(recipients), p.node.did).observe(decision(), "boiler", "urn:x", "w0-1", T0)
    assert len({o.envelope.ephem_pub for o in out}) == 2  # a fresh ephemeral key per member
    results = AlertSender(p.ledger, p.node).send(out, T0)
    assert [r["to"] for r in results] == [p.operator.did, p.engineer.did] and all("seq" in r for r in results)
    for who in (p.operator, p.engineer):
        [item] = inbox(p, who)
        assert item.received.message.body["rule"] == "overpressure"
        assert item.received.sender.did == p.node.did
    # Nobody else: the viewer, not in the group, got nothing.
    assert inbox(p, p.viewer) == []


def test_a_key_named_directly_and_through_groups_gets_one_envelope(tmp_path):
    p = plant(tmp_path)
    define(p, [p.operator, p.engineer])
    define(p, [p.engineer, p.viewer], group="did:sopcos:group:night-shift")
    specs = [p.operator.did, ROOM, "did:sopcos:group:night-shift", p.viewer.key.public_key.hex()]
    recipients = resolve_recipients(specs, p.ledger)
    assert [r.to for r in recipients] == [p.operator.did, p.engineer.did, p.viewer.did]
    out = Alerter(AlertPolicy(recipients), p.node.did).observe(decision(), "boiler", "urn:x", "w0-1", T0)
    assert len(out) == 3


def test_revoked_member_is_left_out(tmp_path):
    p = plant(tmp_path)
    define(p, [p.operator, p.engineer])
    revoke(p, p.operator)
    assert [r.did for r in resolve_recipients([ROOM], p.ledger)] == [p.engineer.did]


@pytest.mark.parametrize("setup, message", [
    (lambda p: None, f"{ROOM} is neither a key nor a group on the ledger"),
    (lambda p: (define(p, [p.operator]), revoke(p, p.operator)), f"group {ROOM} has no unrevoked member"),
])
def test_unknown_or_empty_group_is_a_configuration_error_at_start(tmp_path, setup, message):
    p = plant(tmp_path)
    setup(p)
    with pytest.raises(AlertConfigError, match=message) as caught:
        resolve_recipients([p.admin.did, ROOM], p.ledger)
    assert caught.value.code == "SYNAPSE-ALERT-CONFIG"
    with pytest.raises(AlertConfigError, match=message):
        RecipientBook([ROOM], p.ledger)


def test_book_follows_the_ledger_revoked_member_stops_added_member_starts(tmp_path):
    p = plant(tmp_path)
    define(p, [p.operator, p.engineer])
    book = RecipientBook([p.admin.did, ROOM], p.ledger)
    assert [r.did for r in book.current(p.ledger)] == [p.admin.did, p.operator.did, p.engineer.did]
    first = book.current(p.ledger)
    assert book.current(p.ledger) is first  # the ledger did not move: no re-resolution

    revoke(p, p.operator, at=T0)
    assert [r.did for r in book.current(p.ledger)] == [p.admin.did, p.engineer.did]

    define(p, [p.engineer, p.viewer], at=T0 + 1)
    assert [r.did for r in book.current(p.ledger)] == [p.admin.did, p.engineer.did, p.viewer.did]

    # Sealed for the book's current recipients, the alert reaches the new member and not the revoked one.
    alerter = Alerter(AlertPolicy(book.latest), p.node.did)
    message = alerter.decide(decision(), "boiler", "urn:x", "w0-1", T0 + 2)
    assert message is not None
    AlertSender(p.ledger, p.node).send(alerter.seal(message, book.current(p.ledger)), T0 + 2)
    [item] = inbox(p, p.viewer)
    assert item.received.message.body["decision_id"] == "w0-1"
    assert inbox(p, p.operator) == []


def test_group_emptied_at_run_time_is_logged_once_and_the_others_still_alerted(tmp_path, caplog):
    p = plant(tmp_path)
    define(p, [p.operator])
    book = RecipientBook([p.admin.did, ROOM], p.ledger)
    revoke(p, p.operator, at=T0)
    with caplog.at_level(logging.WARNING, logger="synapse.sidecar.alerts"):
        assert [r.did for r in book.current(p.ledger)] == [p.admin.did]
        # The ledger moves for another reason: re-resolved, still empty, not told again.
        p.ledger.sign_and_submit(p.root, ops.register_key("did:sopcos:x", p.outsider.key.public_key, 1),
                                 T0 + 1)
        assert [r.did for r in book.current(p.ledger)] == [p.admin.did]
    told = [r for r in caplog.records if ROOM in r.getMessage()]
    assert len(told) == 1 and "no unrevoked member" in told[0].getMessage()
    # The group comes back to life, and is told again if it empties again.
    define(p, [p.engineer], at=T0 + 2)
    assert [r.did for r in book.current(p.ledger)] == [p.admin.did, p.engineer.did]
    revoke(p, p.engineer, at=T0 + 3)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="synapse.sidecar.alerts"):
        assert [r.did for r in book.current(p.ledger)] == [p.admin.did]
    assert len([r for r in caplog.records if ROOM in r.getMessage()]) == 1


@pytest.mark.slow
def test_sidecar_alerts_the_group_members_of_the_moment(tmp_path):
    """`synapse run` with a group recipient: a member revoked after start stops receiving, one added
    starts, from the next alert on."""
    plant = Plant(tmp_path)
    plant.submit(plant.root, ops.define_group(ROOM, [plant.admin.did, plant.operator.did]))
    sop, _ = plant.artifact("1.0.0")
    (plant.dir / "boiler.sop").write_bytes(sop)
    cfg = sidecar_config(plant, plant.dir / "boiler.sop", source="-", interval=0.0, context=AUTO,
                         policies=["boiler-guard"], alerts={"recipients": [ROOM], "verdicts": ["HALT"]})
    server = Server(plant.dir, cfg, command="run", stdin=subprocess.PIPE).wait_ready()

    def feed(telemetry: dict) -> None:
        server.proc.stdin.write(json.dumps({"telemetry": telemetry}).encode() + b"\n")
        server.proc.stdin.flush()

    def alerts(who) -> list:
        with Ledger.open(plant.ledger_path) as ledger:
            got = LedgerInbox(ledger, Receiver(who.key, did=who.did)).poll()
            return [i.received.message.body["decision_id"] for i in got if i.received is not None]

    try:
        feed(HALT)
        first = wait_until(lambda: alerts(plant.operator), 20, "the first ALERT to the operator")
        assert alerts(plant.admin) == first and alerts(plant.author) == []
        plant.submit(plant.root, ops.revoke_key(plant.operator.did))
        plant.submit(plant.root, ops.define_group(ROOM, [plant.admin.did, plant.author.did]))
        feed(NORMAL)
        feed(HALT)  # a new HALT episode: alerted again
        second = wait_until(lambda: alerts(plant.author), 20, "an ALERT to the member added")
        assert second != first
        wait_until(lambda: len(alerts(plant.admin)) == 2, 20, "the second ALERT to the admin")
        assert alerts(plant.admin) == first + second
        assert alerts(plant.operator) == first  # revoked: nothing more
    finally:
        assert server.stop() == 0
