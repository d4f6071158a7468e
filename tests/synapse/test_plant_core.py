"""The plant's sans-IO core and config checks (issue 11), without servers: register decoding, samples,
snapshots (missing, bad, stale, invalid values -> reasons naming the tag), the evaluation cadence,
output values, read grouping, and the config refusals (overlaps, points a source kind cannot have)."""

from __future__ import annotations

import json
import math
import struct

import pytest

from synapse.plant.core import (
    Cadence,
    Sample,
    TagTable,
    bad,
    decode_registers,
    output_value,
    safe_value,
    sample_of,
    take_snapshot,
)
from synapse.plant.modbus import plan_reads
from synapse.service.config import (
    ModbusSourceConfig,
    PlantOutputConfig,
    PlantPolicyConfig,
    PlantTagConfig,
    ServiceConfig,
)
from synapse.service.errors import ConfigError

FORMATS = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f", "float64": "d"}


def registers(kind: str, value, byte_order: str, word_order: str) -> list[int]:
    """How a device with these orders lays `value` out in registers (built from the bytes, by hand)."""
    data = struct.pack(">" + FORMATS[kind], value)
    words = [data[i:i + 2] for i in range(0, len(data), 2)]
    if byte_order == "little":
        words = [w[::-1] for w in words]
    if word_order == "little":
        words.reverse()
    return [int.from_bytes(w, "big") for w in words]


@pytest.mark.parametrize("kind,value", [("int16", -1234), ("uint16", 65000), ("int32", -123456789),
                                        ("uint32", 4000000000), ("float32", 97.5), ("float64", -1e300)])
@pytest.mark.parametrize("byte_order", ["big", "little"])
@pytest.mark.parametrize("word_order", ["big", "little"])
def test_register_types_and_orders_decode(kind, value, byte_order, word_order):
    tag = PlantTagConfig(source="s", table="holding", address=0, type=kind, byte_order=byte_order,
                         word_order=word_order)
    assert decode_registers(tag, registers(kind, value, byte_order, word_order)) == value


def test_samples_bits_maps_scale_offset():
    tag = lambda **kw: PlantTagConfig(source="s", table="holding", address=0, **kw)  # noqa: E731
    assert sample_of(tag(bit=3), 0b1000, 1.0).value is True
    assert sample_of(tag(bit=2), 0b1000, 1.0).value is False
    assert sample_of(tag(scale=0.1, offset=-5), 1000, 1.0).value == pytest.approx(95.0)
    assert type(sample_of(tag(), 7, 1.0).value) is int  # unscaled integers stay integers
    modes = tag(map={"0": "AUTO", "1": "MANUAL"})
    assert sample_of(modes, 1, 1.0).value == "MANUAL" and sample_of(modes, 1.0, 1.0).value == "MANUAL"
    unknown = sample_of(modes, 9, 1.0)
    assert unknown.value is None and unknown.quality == "value 9 is not in the tag's map"
    assert sample_of(tag(map={"on": "AUTO"}), "on", 1.0).value == "AUTO"


POLICY = PlantPolicyConfig(telemetry={"pressure_bar": "pressure", "valve_open": "valve"},
                           context={"mode": "mode"})
TAGS = {"pressure": PlantTagConfig(source="s", table="holding", address=0, max_age=2.0),
        "valve": PlantTagConfig(source="s", table="coil", address=0, max_age=2.0),
        "mode": PlantTagConfig(source="s", table="holding", address=1, max_age=60.0)}


def test_snapshot_takes_good_fresh_values_and_names_every_missing_tag():
    table = TagTable(TAGS)
    first = take_snapshot(POLICY, table, 100.0)
    assert first.telemetry == {} and len(first.missing) == 3
    assert "tag 'pressure' (telemetry pressure_bar): not read yet" in first.reason
    table.put("pressure", Sample(97.5, 975, None, 99.0))
    table.put("valve", bad("Modbus exception 2 (illegal data address)", 99.5))
    table.put("mode", Sample("AUTO", 0, None, 50.0))
    snap = take_snapshot(POLICY, table, 100.0)
    assert snap.telemetry == {"pressure_bar": 97.5} and snap.context == {"mode": "AUTO"}
    assert snap.missing == ("tag 'valve' (telemetry valve_open): bad quality: Modbus exception 2 "
                            "(illegal data address)",)
    table.put("valve", Sample(False, False, None, 99.5))
    assert take_snapshot(POLICY, table, 100.0).missing == ()
    stale = take_snapshot(POLICY, table, 101.5)  # pressure read at 99.0, max_age 2 s
    assert stale.missing == ("tag 'pressure' (telemetry pressure_bar): stale, 2.5 s old (max_age 2 s)",)
    assert "pressure_bar" not in stale.telemetry  # never a stale value, even beside the reason


def test_values_go_through_the_reading_parser():
    table = TagTable(TAGS)
    table.put("pressure", Sample(math.nan, math.nan, None, 100.0))
    table.put("valve", Sample(True, True, None, 100.0))
    table.put("mode", Sample("X" * 2000, "X" * 2000, None, 100.0))
    snap = take_snapshot(POLICY, table, 100.0)
    assert len(snap.missing) == 1 and snap.missing[0].startswith(
        "tag 'pressure' (telemetry pressure_bar): not a valid reading value: must be true, false, a finite")


def test_lost_source_leaves_no_last_good_value_and_wakes_the_loop():
    woken = []
    table = TagTable(TAGS, on_change=lambda: woken.append(1))
    table.put("pressure", Sample(50, 500, None, 1.0))
    table.put("pressure", Sample(50, 500, None, 2.0))  # the same value again is not a change
    assert len(woken) == 1
    table.lose(["pressure", "valve"], "connection lost: refused", 3.0)
    assert table.get("pressure").value is None and table.get("pressure").quality == "connection lost: refused"
    assert len(woken) == 3


def test_deferred_readings_wake_the_loop_and_are_put_once_by_flush():
    woken, flushed = [], []
    table = TagTable(TAGS, on_change=lambda: woken.append(1))

    def mailbox():
        flushed.append(1)
        table.put("pressure", Sample(60, 600, None, 1.0))

    table.defer(mailbox)
    table.defer(mailbox)  # more messages before the loop flushes: still one flush
    assert len(woken) == 2 and table.get("pressure") is None
    table.flush()
    assert flushed == [1] and table.get("pressure").value == 60
    table.flush()
    assert flushed == [1]


def test_cadence_on_change_and_at_least_every_period():
    cadence = Cadence(1.0)
    assert cadence.due(("a",), 0.0)
    cadence.done(("a",), 0.0)
    assert not cadence.due(("a",), 0.5) and cadence.due(("b",), 0.5) and cadence.due(("a",), 1.0)
    cadence.reset()
    assert cadence.due(("a",), 0.1)


def test_outputs_permissive_verdict_decision_and_safe_values():
    permissive = PlantOutputConfig(value="permissive", source="o", table="coil", address=0)
    lenient = PlantOutputConfig(value="permissive", source="o", table="coil", address=1,
                                permissive_on=["ALLOW", "WARN"])
    verdict = PlantOutputConfig(value="verdict", source="o", table="holding", address=0)
    decision = PlantOutputConfig(value="decision", source="b", topic="t")
    for name, code, strict, warned in (("ALLOW", 1, True, True), ("WARN", 2, False, True),
                                       ("DENY", 0, False, False), ("HALT", 3, False, False)):
        made = {"verdict": name, "code": code, "reason": None, "policy": "p", "decision_id": "x-1",
                "rule": "r"}
        assert output_value(permissive, made) is strict and output_value(lenient, made) is warned
        assert output_value(verdict, made) == code
        assert json.loads(output_value(decision, made))["verdict"] == name
    assert output_value(permissive, None) is False and output_value(verdict, None) == 0
    assert safe_value(PlantOutputConfig(value="verdict", source="o", table="holding", address=0, safe=3)) == 3
    assert json.loads(safe_value(decision))["verdict"] == "DENY"


def test_reads_grouped_by_unit_table_and_period_contiguous_and_bounded():
    source = ModbusSourceConfig(kind="modbus", host="h", poll=0.1)
    tags = {"a": PlantTagConfig(source="s", table="holding", address=0, type="float32"),
            "b": PlantTagConfig(source="s", table="holding", address=2),
            "c": PlantTagConfig(source="s", table="holding", address=10),  # a gap: another request
            "d": PlantTagConfig(source="s", table="holding", address=3, poll=1.0),  # another period
            "e": PlantTagConfig(source="s", table="holding", address=3, unit=2),  # another unit
            "f": PlantTagConfig(source="s", table="coil", address=3),
            **{f"r{i}": PlantTagConfig(source="s", table="input", address=i) for i in range(130)}}
    groups = {(g.unit, g.table, g.start, g.count, g.poll): sorted(n for n, _ in g.members)
              for g in plan_reads(tags, source)}
    assert groups == {(1, "holding", 0, 3, 0.1): ["a", "b"], (1, "holding", 10, 1, 0.1): ["c"],
                      (1, "holding", 3, 1, 1.0): ["d"], (2, "holding", 3, 1, 0.1): ["e"],
                      (1, "coil", 3, 1, 0.1): ["f"],
                      (1, "input", 0, 125, 0.1): sorted(f"r{i}" for i in range(125)),
                      (1, "input", 125, 5, 0.1): sorted(f"r{i}" for i in range(125, 130))}


def out(value: str, table: str, address: int) -> dict:
    return {"value": value, "source": "plc", "table": table, "address": address}


BASE = {"sources": {"plc": {"kind": "modbus", "host": "127.0.0.1"},
                    "ua": {"kind": "opcua", "url": "opc.tcp://h:4840/"}},
        "tags": {"pressure": {"source": "plc", "table": "holding", "address": 100, "type": "float32"}}}


def check(plant: dict, **sections) -> None:
    ServiceConfig.model_validate({"plant": plant, **sections}).validate()


@pytest.mark.parametrize("change,message", [
    ({"policies": {"p": {"outputs": [out("verdict", "holding", 101)]}}},
     "plant.policies.p.outputs[0] overlaps plant.tags.pressure: an output must never be an address some tag "
     "reads"),
    ({"policies": {"p": {"outputs": [out("verdict", "holding", 7), out("verdict", "holding", 7)]}}},
     "plant.policies.p.outputs[1] overlaps plant.policies.p.outputs[0]: two outputs at one address"),
    ({"heartbeat": {"source": "plc", "table": "holding", "address": 100}}, "plant.heartbeat overlaps"),
    ({"policies": {"p": {"outputs": [out("verdict", "input", 1)]}}},
     "only holding registers and coils can be written"),
    ({"policies": {"p": {"outputs": [out("permissive", "holding", 1)]}}}, "a Modbus permissive is a coil"),
    ({"policies": {"p": {"telemetry": {"x": "nope"}}}}, "plant.policies.p.telemetry.x: no tag 'nope'"),
    ({"tags": {"t": {"source": "plc", "node": "ns=2;s=X"}}}, "node cannot be used with a modbus source"),
    ({"tags": {"t": {"source": "plc", "table": "coil"}}}, "a Modbus point needs table and address"),
    ({"tags": {"t": {"source": "ua", "table": "coil", "address": 1}}},
     "table, address cannot be used with a opcua source"),
    ({"tags": {"t": {"source": "bus", "topic": "a/b"}}, "sources": {"bus": {"kind": "mqtt"}}},
     "an mqtt source reads the broker of the [mqtt] section, and there is none"),
    ({"sources": {"ua": {"kind": "opcua", "url": "opc.tcp://h/", "security": "SignAndEncrypt"}}},
     "need certificate and private_key"),
    ({"period": 0.01}, "plant.period must be at least plant.cycle"),
])
def test_config_refusals_name_the_key(change, message):
    with pytest.raises(ConfigError) as caught:
        check({**BASE, **change})
    assert message in str(caught.value)


def test_a_valid_plant_config_passes_and_unknown_keys_name_the_known_ones(tmp_path):
    check({**BASE, "policies": {"p": {"telemetry": {"pressure_bar": "pressure"}, "outputs": [
        {"value": "verdict", "source": "plc", "table": "holding", "address": 102},
        {"value": "permissive", "source": "plc", "table": "coil", "address": 0},
        {"value": "verdict", "source": "ua", "node": "ns=2;s=Verdict"}]}}})
    from synapse.service.config import load_config

    path = tmp_path / "node.toml"
    path.write_text('[plant.sources.plc]\nkind = "modbus"\nhost = "h"\nhots = "x"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert ("plant.sources.plc.modbus.hots: unknown key 'hots' in plant.sources.plc.modbus "
            "(known: kind, host") in str(caught.value)
