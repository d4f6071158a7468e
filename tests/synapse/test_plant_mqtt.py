"""The sidecar's MQTT tags against a real Mosquitto broker (issue 11): `synapse run` takes JSON payloads
(a topic and a JSON Pointer per tag), decides on change, and publishes each decision on a verdict topic.
A payload that is not strict JSON, a pointer that names nothing, a value that stopped coming (max_age)
and the broker going away are each a DENY naming the tag and why; the broker back, evaluation resumes."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from axon.messaging.mqtt import BrokerSettings, connected_link
from tests.mosquitto import Broker
from tests.service_support import Plant, Server, decisions, write_config

pytestmark = pytest.mark.slow

READINGS, MODE, VERDICTS = "plant/b1/readings", "plant/b1/mode", "plant/b1/verdict"


def config(plant: Plant, sop, broker: Broker) -> dict:
    return {
        "ledger": {"path": plant.ledger_path, "follow_interval": 0.5},
        "node": {"key": plant.node_key},
        "store": {"path": plant.dir / "store"},
        "decision_log": {"path": plant.dir / "decisions"},
        "auth": {"open_evaluate": True},
        "sidecar": {"artifacts": [sop]},
        "mqtt": {"host": broker.host, "port": broker.port, "alerts": False, "commands": False,
                 "reconnect_max": 0.5},
        "plant": {"cycle": 0.05, "period": 0.25},
        "plant.sources.bus": {"kind": "mqtt"},
        "plant.tags.pressure": {"source": "bus", "topic": READINGS, "pointer": "/drum/pressure",
                                "max_age": 1.5},
        "plant.tags.valve": {"source": "bus", "topic": READINGS, "pointer": "/vent~1valve", "max_age": 1.5},
        "plant.tags.mode": {"source": "bus", "topic": MODE, "max_age": 3600,
                            "map": {"1": "AUTO", "2": "MANUAL", "3": "MAINTENANCE"}},
        "plant.policies.boiler-guard": {
            "telemetry": {"pressure_bar": "pressure", "valve_open": "valve"}, "context": {"mode": "mode"},
            "outputs": [{"value": "decision", "source": "bus", "topic": VERDICTS}]},
    }


async def scenario(plant: Plant, broker: Broker) -> list[dict]:
    published: list[dict] = []

    async def heard(topic: str, payload: bytes) -> None:
        published.append(json.loads(payload))

    async def until(predicate, what: str) -> None:
        for _ in range(600):
            if predicate():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}: {published[-3:]}")

    def last_reason() -> str:
        return decisions(plant)[-1]["reason"] or ""

    settings = BrokerSettings(broker.host, broker.port)
    async with connected_link(settings, VERDICTS, heard) as link:
        await link.publish(MODE, b"1")
        await link.publish(READINGS, json.dumps({"drum": {"pressure": 50}, "vent/valve": False}).encode())
        await until(lambda: published and published[-1]["verdict"] == "ALLOW", "ALLOW published")
        assert published[-1]["permissive"] is True and published[-1]["policy"] == "boiler-guard"
        await link.publish(READINGS, json.dumps({"drum": {"pressure": 99}, "vent/valve": False}).encode())
        await until(lambda: published[-1]["verdict"] == "HALT", "HALT published")
        assert decisions(plant)[-1]["telemetry"] == {"pressure_bar": 99, "valve_open": False}

        await link.publish(READINGS, b'{"drum": {"pressure": NaN}, "vent/valve": false}')
        await until(lambda: published[-1]["verdict"] == "DENY", "DENY for a payload that is not JSON")
        assert f"tag 'pressure' (telemetry pressure_bar): bad quality: payload on {READINGS} is not " \
               "strict JSON" in last_reason()
        await link.publish(READINGS, json.dumps({"drum": {"pressure": 50}, "vent/valve": False}).encode())
        await until(lambda: published[-1]["verdict"] == "ALLOW", "ALLOW again")
        await link.publish(READINGS, json.dumps({"drum": {}, "vent/valve": False}).encode())
        await until(lambda: "nothing at '/drum/pressure'" in last_reason(), "DENY for a missing member")
        await link.publish(MODE, b"7")
        await until(lambda: "tag 'mode' (context mode): bad quality: value 7 is not in the tag's map"
                    in last_reason(), "DENY for an unmapped enum code")
        await link.publish(MODE, b"1")
        await link.publish(READINGS, json.dumps({"drum": {"pressure": 50}, "vent/valve": False}).encode())
        await until(lambda: published[-1]["verdict"] == "ALLOW", "ALLOW again")
        await until(lambda: "tag 'pressure' (telemetry pressure_bar): stale" in last_reason(),
                    "DENY once the readings stop coming (max_age)")
        assert published[-1]["verdict"] == "DENY" and published[-1]["permissive"] is False

    broker.stop()
    await until(lambda: "connection lost" in last_reason(), "DENY once the broker is gone")
    broker.start()
    async with connected_link(settings, VERDICTS, heard) as link:
        for _ in range(300):  # until the sidecar has subscribed again: its decisions follow the readings
            await link.publish(MODE, b"1")
            await link.publish(READINGS, json.dumps({"drum": {"pressure": 40}, "vent/valve": False}).encode())
            await asyncio.sleep(0.1)
            if decisions(plant)[-1]["telemetry"].get("pressure_bar") == 40:
                break
        assert decisions(plant)[-1]["verdict"] == "ALLOW", "evaluation did not resume"
    return published


def subscribed(server: Server) -> None:
    """Wait for the sidecar's MQTT source: ready is the HTTP side, and messages are not retained, so a
    mode published before the subscription is lost (it happened once: every decision was DENY)."""
    deadline = time.monotonic() + 30
    while not any(e.get("event") == "plant_source_connected" for e in server.events()):
        assert time.monotonic() < deadline, "the sidecar did not connect to the broker"
        time.sleep(0.05)


def test_mqtt_tags_decisions_published_and_every_fault_denies(tmp_path):
    plant = Plant(tmp_path)
    sop, _ = plant.artifact("1.0.0")
    (tmp_path / "boiler.sop").write_bytes(sop)
    with Broker(tmp_path) as broker:
        server = Server(tmp_path, write_config(tmp_path / "sidecar.toml",
                                               config(plant, tmp_path / "boiler.sop", broker)),
                        command="run")
        subscribed(server.wait_ready())
        try:
            asyncio.run(scenario(plant, broker))
        finally:
            assert server.stop() == 0
    # Every decision was logged, and none evaluated a value older than its max_age or of bad quality.
    reasons = [d["reason"] or "" for d in decisions(plant) if d["verdict"] == "DENY"]
    assert any("stale" in r for r in reasons) and any("connection lost" in r for r in reasons)


def test_a_burst_of_readings_is_taken_in_whole_and_decided_on_its_newest_values(tmp_path):
    """1,000 readings as fast as the broker takes them: every one is received and counted, those replaced
    by a newer one before the loop took them are counted as superseded (docs/plc.md), every decision is
    on one whole published reading, in publishing order, and the last decision is on the last reading."""
    plant = Plant(tmp_path)
    sop, _ = plant.artifact("1.0.0")
    (tmp_path / "boiler.sop").write_bytes(sop)
    count = 1000
    readings = [{"drum": {"pressure": 50 + i / 1000}, "vent/valve": False} for i in range(count - 1)]
    readings.append({"drum": {"pressure": 99}, "vent/valve": False})
    with Broker(tmp_path) as broker:
        sections = config(plant, tmp_path / "boiler.sop", broker)
        sections["plant"] = {"cycle": 0.05, "period": 3600.0}  # decided on change only
        server = Server(tmp_path, write_config(tmp_path / "sidecar.toml", sections), command="run")
        subscribed(server.wait_ready())

        async def burst() -> None:
            async with connected_link(BrokerSettings(broker.host, broker.port)) as link:
                await link.publish(MODE, b"1")
                for start in range(0, count, 100):  # 100 in flight at a time, in publishing order
                    await asyncio.gather(*(link.publish(READINGS, json.dumps(r).encode())
                                           for r in readings[start:start + 100]))
                for _ in range(600):
                    if decisions(plant) and decisions(plant)[-1]["verdict"] == "HALT":
                        return
                    await asyncio.sleep(0.05)
                raise AssertionError("the last reading (99 bar) was not decided")

        try:
            asyncio.run(burst())
        finally:
            assert server.stop() == 0
        stopped = next(json.loads(line) for line in server.stderr_path.read_text().splitlines()
                       if '"event":"plant_stopped"' in line)
    assert stopped["received"]["bus"] == count + 1, "a reading was not received"
    decided = [d["telemetry"]["pressure_bar"] for d in decisions(plant) if d["telemetry"]]
    assert decided[-1] == 99 and decided == sorted(decided)
    assert set(decided) <= {r["drum"]["pressure"] for r in readings}
    # each decision took at least one reading that was not superseded
    assert 0 <= stopped["superseded"]["bus"] <= count + 1 - len(decided)
