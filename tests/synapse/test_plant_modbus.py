"""The sidecar in the plant over Modbus TCP, end to end (issue 11): `synapse run` reads a real pymodbus
server (the boiler's sensors), decides, and writes the verdict, the permissive coil and a heartbeat to a
second one (the burner management PLC). The pressure ramps up: HALT is written and the permissive
dropped, and the HALT is the first decision that saw the pressure above the trip point. The sensor
server is killed: every output goes to its safe value, the decision names the tag and why, and an alert
is sealed on the ledger. It comes back: evaluation resumes. SIGTERM: the outputs are left safe."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.plc_servers import ModbusServer
from tests.service_support import Plant, Server, decisions, records, write_config
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

ALLOW, HALT, DENY = 1, 3, 0
PRESSURE, TEMP, MODE = 0, 2, 3  # holding registers of the sensor PLC
VERDICT, HEARTBEAT, PERMISSIVE = 10, 11, 0  # holding registers and coil of the burner PLC


def plant_config(plant: Plant, sop, sensors: ModbusServer, burner: ModbusServer, **extra) -> dict:
    return {
        "ledger": {"path": plant.ledger_path, "follow_interval": 0.5},
        "node": {"key": plant.node_key},
        "store": {"path": plant.dir / "store"},
        "decision_log": {"path": plant.dir / "decisions"},
        "auth": {"open_evaluate": True},
        "sidecar": {"artifacts": [sop]},
        "sidecar.alerts": {"recipients": [plant.operator.did], "verdicts": ["DENY", "HALT"]},
        "plant": {"cycle": 0.05, "period": 0.5, **extra},
        "plant.sources.sensors": {"kind": "modbus", "host": "127.0.0.1", "port": sensors.port,
                                  "poll": 0.05, "timeout": 0.5, "reconnect_max": 0.5},
        "plant.sources.burner": {"kind": "modbus", "host": "127.0.0.1", "port": burner.port},
        "plant.tags.pressure": {"source": "sensors", "table": "holding", "address": PRESSURE, "scale": 0.1,
                                "max_age": 1.0},
        "plant.tags.steam_temp": {"source": "sensors", "table": "holding", "address": TEMP, "type": "int16",
                                  "max_age": 1.0},
        "plant.tags.vent_valve": {"source": "sensors", "table": "coil", "address": 0, "max_age": 1.0},
        "plant.tags.mode": {"source": "sensors", "table": "holding", "address": MODE, "max_age": 1.0,
                            "map": {"0": "AUTO", "1": "MANUAL", "2": "MAINTENANCE"}},
        "plant.policies.boiler-guard": {
            "telemetry": {"pressure_bar": "pressure", "temp_c": "steam_temp", "valve_open": "vent_valve"},
            "context": {"mode": "mode"},
            "outputs": [{"value": "verdict", "source": "burner", "table": "holding", "address": VERDICT},
                        {"value": "permissive", "source": "burner", "table": "coil", "address": PERMISSIVE}]},
        "plant.heartbeat": {"source": "burner", "table": "holding", "address": HEARTBEAT},
    }


def outputs(client) -> tuple[int, bool]:
    """(verdict register, permissive coil) of the burner PLC."""
    return (client.read_holding_registers(VERDICT, count=1, device_id=1).registers[0],
            client.read_coils(PERMISSIVE, count=1, device_id=1).bits[0])


def test_pressure_ramp_halts_a_lost_plc_is_safe_and_evaluation_resumes(tmp_path):
    plant = Plant(tmp_path)
    sop, urn = plant.artifact("1.0.0")
    (tmp_path / "boiler.sop").write_bytes(sop)
    with ModbusServer(tmp_path) as sensors, ModbusServer(tmp_path) as burner:
        sensor_io = sensors.client()
        sensor_io.write_registers(PRESSURE, [500, 0, 20 & 0xFFFF, 0], device_id=1)  # 50.0 bar, 20 degC, AUTO
        burner_io = burner.client()
        burner_io.write_register(VERDICT, 99, device_id=1)  # something the sidecar must overwrite
        config = write_config(tmp_path / "sidecar.toml",
                              plant_config(plant, tmp_path / "boiler.sop", sensors, burner))
        server = Server(tmp_path, config, command="run").wait_ready()
        try:
            wait_until(lambda: outputs(burner_io) == (ALLOW, True), what="ALLOW and the permissive set")
            beat = burner_io.read_holding_registers(HEARTBEAT, count=1, device_id=1).registers[0]
            wait_until(lambda: burner_io.read_holding_registers(HEARTBEAT, count=1, device_id=1).registers[0]
                       != beat, what="the heartbeat counting")

            for tenths in [*range(600, 1000, 50), 990]:  # 60.0, 65.0 .. 95.0, 99.0 bar
                sensor_io.write_register(PRESSURE, tenths, device_id=1)
                wait_until(lambda t=tenths: any(d["telemetry"].get("pressure_bar") == t / 10
                                                for d in decisions(plant)), what=f"{tenths / 10} bar decided")
            wait_until(lambda: outputs(burner_io) == (HALT, False), what="HALT written, permissive dropped")
            seen = [(d["telemetry"].get("pressure_bar"), d["verdict"]) for d in decisions(plant)]
            first_over = next(i for i, (p, _) in enumerate(seen) if p is not None and p > 95)
            assert seen[first_over][1] == "HALT", seen  # the first decision above the trip point
            assert ("ALLOW" in [v for _, v in seen[:first_over]]) and len({p for p, _ in seen}) >= 8

            sensors.kill()  # the sensor PLC loses power
            wait_until(lambda: outputs(burner_io) == (DENY, False), what="the safe verdict after the loss")
            lost = [d for d in decisions(plant) if "connection lost" in (d["reason"] or "")]
            assert lost and lost[0]["verdict"] == "DENY" and lost[0]["urn"] == urn
            why = "tag 'pressure' (telemetry pressure_bar): bad quality: connection lost"
            assert why in lost[0]["reason"]
            assert lost[0]["telemetry"] == {}  # no last good value stood in for the lost ones
            wait_until(lambda: any(r.get("event") == "alert" and "seq" in r["data"]
                                   and r["data"]["decision_id"] == lost[0]["decision_id"]
                                   for r in records(plant)), what="the loss's alert, sealed on the ledger")
            assert any(r.get("event") == "plant_source" and r["data"]["source"] == "sensors"
                       and r["data"]["state"] == "lost" and r["data"]["reason"] for r in records(plant))
            # The loss is alerted on its own too (a policy already at DENY would not alert again).
            wait_until(lambda: any(r.get("event") == "alert" and "seq" in r["data"]
                                   and r["data"]["decision_id"] == "plant-source:sensors"
                                   for r in records(plant)), what="the source's own alert on the ledger")

            sensors.start()  # back on the same port, registers cleared by the restart
            sensor_io.close()
            sensor_io = sensors.client()
            sensor_io.write_registers(PRESSURE, [400, 0, 20, 0], device_id=1)
            wait_until(lambda: outputs(burner_io) == (ALLOW, True), what="evaluation resumed")
            assert decisions(plant)[-1]["telemetry"]["pressure_bar"] == 40.0
        finally:
            assert server.stop() == 0
        assert outputs(burner_io) == (DENY, False)  # left at the safe values on shutdown
        assert [r["kind"] for r in records(plant)][-2:] == ["stop", "seal"]
        sensor_io.close()
        burner_io.close()


def test_tags_check_prints_a_table_writes_nothing_and_fails_on_an_unreadable_tag(tmp_path):
    plant = Plant(tmp_path)
    sop, _ = plant.artifact("1.0.0")
    with ModbusServer(tmp_path, inputs={"input": {"5": [0x42C3, 0]}, "discrete": {"2": [True]}}) as sensors, \
            ModbusServer(tmp_path) as burner:
        sensors.client().write_registers(PRESSURE, [975, 0, 0xFFEC, 1], device_id=1)  # 97.5 bar, -20, MANUAL
        burner_io = burner.client()
        burner_io.write_register(VERDICT, 99, device_id=1)
        sections = plant_config(plant, tmp_path / "boiler.sop", sensors, burner)
        sections["plant.tags.flow"] = {"source": "sensors", "table": "input", "address": 5, "type": "float32"}
        sections["plant.tags.flame"] = {"source": "sensors", "table": "discrete", "address": 2}
        good = write_config(tmp_path / "good.toml", sections)
        result = subprocess.run([sys.executable, "-m", "synapse", "tags", "check", str(good)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:-1]}
        assert "975" in rows["pressure"] and "97.5" in rows["pressure"] and " good " in rows["pressure"]
        assert "-20" in rows["steam_temp"] and "'MANUAL'" in rows["mode"] and "97.5" in rows["flow"]
        assert "True" in rows["flame"] and "all 6 tags read" in result.stdout

        sections["plant.tags.far"] = {"source": "sensors", "table": "holding", "address": 5000}
        sections["plant.tags.gone"] = {"source": "burner", "table": "holding", "address": 20}
        sections["plant.sources.burner"] = {**sections["plant.sources.burner"], "port": 1}  # nothing there
        bad_config = write_config(tmp_path / "bad.toml", sections)
        result = subprocess.run([sys.executable, "-m", "synapse", "tags", "check", str(bad_config)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 1, result.stdout + result.stderr
        rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:-1]}
        assert "Modbus exception 2 (illegal data address)" in rows["far"] and " good " in rows["pressure"]
        assert "connection failed" in rows["gone"]
        assert "2 of 8 tags unreadable: far, gone" in result.stdout
        assert outputs(burner_io) == (99, False)  # nothing was written
        burner_io.close()


def test_dry_run_evaluates_and_logs_but_writes_nothing(tmp_path):
    plant = Plant(tmp_path)
    sop, _ = plant.artifact("1.0.0")
    (tmp_path / "boiler.sop").write_bytes(sop)
    with ModbusServer(tmp_path) as sensors, ModbusServer(tmp_path) as burner:
        sensors.client().write_registers(PRESSURE, [500, 0, 20, 0], device_id=1)
        burner_io = burner.client()
        burner_io.write_registers(VERDICT, [99, 7], device_id=1)
        config = write_config(tmp_path / "sidecar.toml",
                              plant_config(plant, tmp_path / "boiler.sop", sensors, burner))
        server = Server(tmp_path, config, command="run", args=["--dry-run"]).wait_ready()
        try:
            wait_until(lambda: any(d["verdict"] == "ALLOW" for d in decisions(plant)), what="an ALLOW logged")
        finally:
            assert server.stop() == 0
        # Not the verdict, not the permissive, not the heartbeat, not the safe values at shutdown.
        assert outputs(burner_io) == (99, False)
        assert burner_io.read_holding_registers(HEARTBEAT, count=1, device_id=1).registers[0] == 7
        burner_io.close()
