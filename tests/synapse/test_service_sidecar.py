"""`synapse run`: the sidecar on a JSON-lines file and on stdin, on a schedule, with SIP-017 alerts and
commands through the ledger, and a clean SIGTERM."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

import pytest

from axon.ledger import Ledger, ops
from axon.messaging.envelope import seal
from axon.messaging.inbox import LedgerInbox
from axon.messaging.inner import Message
from axon.messaging.receiver import Receiver
from synapse.cli import main as synapse_main
from synapse.sidecar.loop import FeedReader
from tests.service_support import AUTO, HALT, NORMAL, Plant, Server, decisions, records, sidecar_config
from tests.waiting import DEADLINE_S, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def plant(tmp_path) -> Plant:
    return Plant(tmp_path)


def verify(plant: Plant) -> int:
    return synapse_main(["decisions", "verify", str(plant.dir / "decisions"),
                         "--public-key", plant.node.key.public_key.hex()])


def test_file_feed_every_line_then_exit(plant):
    sop, urn = plant.artifact("1.0.0")
    (plant.dir / "boiler.sop").write_bytes(sop)
    feed = plant.dir / "feed.jsonl"
    feed.write_text("\n".join([
        json.dumps({"telemetry": NORMAL, "context": AUTO}),
        json.dumps({"telemetry": HALT, "context": AUTO, "policy": "boiler-guard"}),
        json.dumps({"telemetry": {**NORMAL, "valve_open": True, "pressure_bar": 85}}),  # no mode: DENY
        "{not json",
        "[1, 2]",
        json.dumps({"telemetry": NORMAL, "policy": "no-such-policy"}),
        json.dumps(NORMAL),  # not a reading (a bare object of telemetry is not one)
    ]) + "\n")
    cfg = sidecar_config(plant, plant.dir / "boiler.sop", source=str(feed), interval=0.0, follow=False,
                         exit_at_eof=True)
    server = Server(plant.dir, cfg, command="run")
    assert server.proc.wait(60) == 0, server.log()
    got = decisions(plant)
    assert [(d["verdict"], d["rule"], d["source"]) for d in got] == [
        ("ALLOW", "normal", "sidecar"), ("HALT", "halt-overpressure", "sidecar"), ("DENY", None, "sidecar")]
    assert all(d["urn"] == urn for d in got) and "mode" in got[2]["reason"]
    events = server.events()
    invalid = [e for e in events if e.get("event") == "feed_line_invalid"]
    assert [e["line"] for e in invalid] == [4, 5, 7]
    assert any(e.get("event") == "sidecar_not_evaluated" and e["policy"] == "no-such-policy" for e in events)
    assert [r["kind"] for r in records(plant)][-2:] == ["stop", "seal"]
    assert verify(plant) == 0
    server.stop()


def test_stdin_on_a_schedule_with_alerts_http_and_sigterm(plant):
    sop, urn = plant.artifact("1.0.0")
    (plant.dir / "boiler.sop").write_bytes(sop)
    cfg = sidecar_config(plant, plant.dir / "boiler.sop", source="-", interval=0.1,
                         policies=["boiler-guard"], context=AUTO,
                         alerts={"recipients": [plant.operator.did], "verdicts": ["HALT"]})
    server = Server(plant.dir, cfg, command="run", stdin=subprocess.PIPE).wait_ready()
    try:
        server.proc.stdin.write(json.dumps({"telemetry": NORMAL}).encode() + b"\n")
        server.proc.stdin.flush()
        wait_until(lambda: any(d["verdict"] == "ALLOW" for d in decisions(plant)), what="scheduled ALLOW")
        server.proc.stdin.write(json.dumps({"telemetry": HALT}).encode() + b"\n")
        server.proc.stdin.flush()
        wait_until(lambda: any(d["verdict"] == "HALT" for d in decisions(plant)), what="scheduled HALT")
        # The same HTTP API is served meanwhile.
        r = server.client.post("/v1/evaluate", json={"policy": "boiler-guard", "telemetry": NORMAL,
                                                     "context": AUTO})
        assert r.status_code == 200 and r.json()["verdict"] == "ALLOW"

        def alerts():
            with Ledger.open(plant.ledger_path) as ledger:
                inbox = LedgerInbox(ledger, Receiver(plant.operator.key, did=plant.operator.did))
                return [i for i in inbox.poll() if i.received is not None]

        (item,) = wait_until(alerts, what="an ALERT on the ledger")[:1]
        assert item.received.sender.did == plant.node.did and item.received.message.type == "ALERT"
        body = item.received.message.body
        assert body["verdict"] == "HALT" and body["urn"] == urn and body["rule"] == "halt-overpressure"
        assert body["decision_id"] in {d["decision_id"] for d in decisions(plant)}
        # Scheduled evaluations go on (the verdict stays HALT); de-duplication keeps it to one alert.
        n = len(decisions(plant))
        wait_until(lambda: len(decisions(plant)) > n + 3, what="more scheduled evaluations")
        assert len(alerts()) == 1
    finally:
        assert server.stop() == 0
    logged = records(plant)
    assert any(r["kind"] == "event" and r["event"] == "alert" and r["data"].get("seq") for r in logged)
    assert {d["source"] for d in decisions(plant)} == {"sidecar", "http"}
    assert [r["kind"] for r in logged][-2:] == ["stop", "seal"]
    assert verify(plant) == 0


def post_command(plant: Plant, sender, body: dict) -> None:
    envelope = seal(plant.node.key.public_key, Message.new("CMD", body, time.time()))
    plant.submit(sender, ops.message(plant.node.did, envelope.to_dict()))


def test_commands_from_the_ledger(plant):
    sop, urn = plant.artifact("1.0.0")
    (plant.dir / "boiler.sop").write_bytes(sop)
    cfg = sidecar_config(plant, plant.dir / "boiler.sop", source="-", interval=0.1, context=AUTO,
                         commands={"enabled": True, "poll_interval": 0.2})
    server = Server(plant.dir, cfg, command="run", stdin=subprocess.PIPE).wait_ready()
    try:
        server.proc.stdin.write(json.dumps({"telemetry": NORMAL}).encode() + b"\n")
        server.proc.stdin.flush()
        wait_until(lambda: any(d["rule"] == "normal" for d in decisions(plant)), what="a normal decision")
        # An administrator (LVL_4+ may set context) puts the boiler into maintenance for a minute.
        post_command(plant, plant.admin, {"command": "set_context", "name": "mode", "value": "MAINTENANCE",
                                          "expires_at": int(time.time()) + 60})
        wait_until(lambda: any(d["rule"] == "maintenance" for d in decisions(plant)), what="the override")
        # An operator (LVL_2) may not unload; an administrator may.
        post_command(plant, plant.operator, {"command": "unload", "urn": urn})
        post_command(plant, plant.admin, {"command": "unload", "urn": urn})
        def command_records():
            found = [r for r in records(plant) if r.get("event") == "command"]
            return found if len(found) >= 3 else None

        found = wait_until(command_records, what="three command records")
        statuses = {(r["data"]["from"], r["data"].get("command"), r["data"]["status"]) for r in found}
        assert (plant.operator.did, "unload", "refused") in statuses
        assert (plant.admin.did, "unload", "ok") in statuses
        r = server.client.post("/v1/evaluate", json={"policy": "boiler-guard", "telemetry": NORMAL,
                                                     "context": AUTO})
        assert r.status_code == 409 and server.client.get(f"/v1/artifacts/{urn}").json()["state"] == "retired"
    finally:
        assert server.stop() == 0
    assert verify(plant) == 0


def test_a_followed_file_is_read_as_it_grows(tmp_path):
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(b'{"a": 1}\n{"a": ')  # the writer is in the middle of line 2

    async def scenario():
        queue: asyncio.Queue = asyncio.Queue()
        reader = FeedReader(str(feed), True, asyncio.get_running_loop(), queue)
        reader.start()
        first = await asyncio.wait_for(queue.get(), DEADLINE_S)
        with feed.open("ab") as fh:
            fh.write(b'2}\n\n{"a": 3}\n')
        second = await asyncio.wait_for(queue.get(), DEADLINE_S)
        third = await asyncio.wait_for(queue.get(), DEADLINE_S)
        reader.stop()
        return first, second, third

    first, second, third = asyncio.run(scenario())
    assert first == (1, b'{"a": 1}') and second == (2, b'{"a": 2}') and third == (4, b'{"a": 3}')
