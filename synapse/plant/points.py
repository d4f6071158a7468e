"""What a plant config names, and the checks on it beyond types (docs/plc.md, "Configuration").

A point is where a value lives: a Modbus table, address, unit and register type; an OPC UA node; an MQTT
topic. Which of them a point needs depends on its source's kind, so the pydantic models in
synapse/service/config.py take every field and `check_plant` says, in one sentence naming the key, what
a point of that kind lacks or must not have. It also refuses the config where an output could write an
address some tag reads, or where two outputs share one: only declared outputs are ever written, and a
verdict must never land on a measurement.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from synapse.service.config import (
    ModbusSourceConfig,
    MqttSourceConfig,
    OpcUaSourceConfig,
    PlantConfig,
    PlantOutputConfig,
    PlantPointConfig,
    PlantTagConfig,
)
from synapse.service.errors import ConfigError

REGISTERS = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "float64": 4}
BIT_TABLES = ("coil", "discrete")
WRITABLE_TABLES = ("holding", "coil")
# Modbus limits per request (the protocol's, section 6 of the application protocol specification).
MAX_REGISTERS_PER_READ = 125
MAX_BITS_PER_READ = 2000
_POINTER = re.compile(r"^(/([^~/]|~[01])*)*$")
_TOPIC = re.compile(r"^[^#+\x00]+$")


def register_count(point: PlantPointConfig) -> int:
    """How many registers (or bits) a Modbus point spans."""
    return 1 if point.table in BIT_TABLES else REGISTERS[point.type or "uint16"]


def check_plant(plant: PlantConfig, *, has_broker: bool) -> None:
    """Cross-checks of [plant]; ConfigError (one sentence naming the key) at the first problem."""
    _require(plant.cycle > 0, "plant.cycle must be > 0 seconds")
    _require(plant.period >= plant.cycle, "plant.period must be at least plant.cycle")
    for name, source in plant.sources.items():
        where = f"plant.sources.{name}"
        if isinstance(source, MqttSourceConfig):
            _require(has_broker, f"{where}: an mqtt source reads the broker of the [mqtt] section, "
                                 "and there is none")
            continue
        _require(source.timeout > 0 and source.poll > 0 and source.reconnect_max >= 0.1,
                 f"{where}: timeout and poll must be > 0, reconnect_max >= 0.1 seconds")
        if isinstance(source, ModbusSourceConfig):
            _require(1 <= source.port <= 65535, f"{where}.port must be 1..65535")
            _require(0 <= source.unit <= 255, f"{where}.unit must be 0..255")
        elif isinstance(source, OpcUaSourceConfig):
            _check_opcua(where, source)
    for name, tag in plant.tags.items():
        _check_tag(plant, f"plant.tags.{name}", tag)
    for policy, spec in plant.policies.items():
        for side, inputs in (("telemetry", spec.telemetry), ("context", spec.context)):
            for input_name, tag_name in inputs.items():
                _require(tag_name in plant.tags, f"plant.policies.{policy}.{side}.{input_name}: no tag "
                                                  f"{tag_name!r} in plant.tags")
        for i, output in enumerate(spec.outputs):
            _check_output(plant, f"plant.policies.{policy}.outputs[{i}]", output)
    if plant.heartbeat is not None:
        _check_point(plant, "plant.heartbeat", plant.heartbeat, writable=True)
        _require(plant.heartbeat.table != "coil" and plant.heartbeat.type in (None, "uint16"),
                 "plant.heartbeat: a Modbus heartbeat is a uint16 holding register")
    _check_overlaps(plant)


def _check_opcua(where: str, source: OpcUaSourceConfig) -> None:
    _require(source.url.startswith("opc.tcp://"), f"{where}.url must start with opc.tcp://")
    if source.security == "SignAndEncrypt" or source.login == "certificate":
        _require(source.certificate is not None and source.private_key is not None,
                 f"{where}: security SignAndEncrypt and certificate login need certificate and private_key")
    if source.security == "SignAndEncrypt":
        _require(source.server_certificate is not None,
                 f"{where}: security SignAndEncrypt needs server_certificate (the server is checked "
                 "against it)")
    if source.login == "password":
        _require(source.username is not None and source.password_file is not None,
                 f"{where}: login password needs username and password_file")
    else:
        _require(source.username is None and source.password_file is None,
                 f"{where}: username and password_file are for login = \"password\"")


def _check_tag(plant: PlantConfig, where: str, tag: PlantTagConfig) -> None:
    kind = _check_point(plant, where, tag, writable=False)
    _require(tag.max_age > 0, f"{where}.max_age must be > 0 seconds")
    _require(tag.poll is None or tag.poll >= 0, f"{where}.poll must be >= 0 seconds")
    _require(kind != "modbus" or tag.poll != 0, f"{where}.poll must be > 0 seconds for a Modbus tag")
    _require(kind == "opcua" or tag.subscribe, f"{where}.subscribe is for OPC UA tags")
    _require(kind == "mqtt" or tag.pointer == "", f"{where}.pointer is for MQTT tags")
    _require(bool(_POINTER.match(tag.pointer)), f"{where}.pointer must be a JSON Pointer (\"\" or /a/b)")
    if tag.bit is not None:
        _require(kind == "modbus" and tag.table in ("holding", "input") and tag.type in (None, "uint16",
                                                                                        "int16"),
                 f"{where}.bit takes one bit of a 16-bit Modbus register")
        _require(0 <= tag.bit <= 15, f"{where}.bit must be 0..15")
    _require(tag.map is None or bool(tag.map), f"{where}.map must not be empty")


def _check_output(plant: PlantConfig, where: str, output: PlantOutputConfig) -> None:
    kind = _check_point(plant, where, output, writable=True)
    _require(output.value != "decision" or kind == "mqtt", f"{where}: value \"decision\" is for MQTT topics")
    if kind == "modbus":
        _require((output.table == "coil") == (output.value == "permissive"),
                 f"{where}: a Modbus permissive is a coil, a Modbus verdict a holding register")
        _require(output.table == "coil" or output.type in (None, "uint16", "int16"),
                 f"{where}: a Modbus verdict is a 16-bit register")
    if output.safe is not None:
        allowed = (0, 1) if output.value == "permissive" else (0, 1, 2, 3)
        _require(output.safe in allowed, f"{where}.safe must be one of {list(allowed)}")


def _check_point(plant: PlantConfig, where: str, point: PlantPointConfig, *, writable: bool) -> str:
    """The point has what its source's kind needs and nothing of another kind's; that kind."""
    source = plant.sources.get(point.source)
    _require(source is not None, f"{where}.source: no source {point.source!r} in plant.sources")
    kind = source.kind  # type: ignore[union-attr]
    modbus = {"table": point.table, "address": point.address, "unit": point.unit, "type": point.type}
    foreign = {"modbus": [k for k, v in modbus.items() if v is not None]
               + [k for k in ("byte_order", "word_order") if getattr(point, k) != "big"],
               "opcua": ["node"] if point.node is not None else [],
               "mqtt": ["topic"] if point.topic is not None else []}
    if isinstance(point, PlantTagConfig) and point.bit is not None:
        foreign["modbus"].append("bit")
    stray = [key for other, keys in foreign.items() if other != kind for key in keys]
    _require(not stray, f"{where}: {', '.join(stray)} cannot be used with a {kind} source")
    if kind == "modbus":
        _require(point.table is not None and point.address is not None,
                 f"{where}: a Modbus point needs table and address")
        _require(0 <= point.address <= 65535, f"{where}.address must be 0..65535")  # type: ignore[operator]
        _require(point.unit is None or 0 <= point.unit <= 255, f"{where}.unit must be 0..255")
        _require(point.table not in BIT_TABLES or point.type is None,
                 f"{where}.type is for registers; a {point.table} is one bit")
        _require(not writable or point.table in WRITABLE_TABLES,
                 f"{where}.table: only holding registers and coils can be written")
    elif kind == "opcua":
        _require(point.node is not None, f"{where}: an OPC UA point needs node (e.g. \"ns=2;s=Pressure\")")
    else:
        _require(point.topic is not None and bool(_TOPIC.match(point.topic)),
                 f"{where}: an MQTT point needs topic, without wildcards")
    return kind


def _spans(plant: PlantConfig, point: PlantPointConfig) -> Iterator[tuple[Any, ...]]:
    """Every unit address a point occupies, as comparable keys (holding registers and coils are the
    writable spaces; input registers and discrete inputs cannot be written, so they cannot collide)."""
    source = plant.sources[point.source]
    if isinstance(source, ModbusSourceConfig):
        unit = source.unit if point.unit is None else point.unit
        for offset in range(register_count(point)):
            yield (point.source, unit, point.table, point.address + offset)  # type: ignore[operator]
    elif isinstance(source, OpcUaSourceConfig):
        yield (point.source, point.node)
    else:
        yield ("mqtt", point.topic)


def _check_overlaps(plant: PlantConfig) -> None:
    read: dict[tuple, str] = {}
    for name, tag in plant.tags.items():
        for key in _spans(plant, tag):
            read.setdefault(key, f"plant.tags.{name}")
    written: dict[tuple, str] = {}
    outputs = [(f"plant.policies.{p}.outputs[{i}]", o) for p, spec in plant.policies.items()
               for i, o in enumerate(spec.outputs)]
    if plant.heartbeat is not None:
        outputs.append(("plant.heartbeat", plant.heartbeat))
    for where, output in outputs:
        for key in _spans(plant, output):
            _require(key not in read, f"{where} overlaps {read.get(key)}: an output must never be an "
                                      "address some tag reads")
            _require(key not in written, f"{where} overlaps {written.get(key)}: two outputs at one address")
            written[key] = where


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
