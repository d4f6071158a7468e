"""The one interface every plant protocol implements (modbus.py, opcua.py, mqtt.py), and the factory
that imports a protocol's module only when the config uses it (pymodbus, asyncua and aiomqtt are heavy).

A source keeps its connection up by itself (`run`), puts what it reads into the tag table, and on any
loss marks every tag it serves bad at once (the table never keeps a last good value of a dead source),
then reconnects with a backoff doubling up to its `reconnect_max`. It writes declared outputs on request
(`write`, PlantWriteFailed when it cannot), and reads every tag once for `synapse tags check`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from synapse.plant.core import Sample, TagTable
from synapse.service.config import MqttConfig, PlantConfig, PlantPointConfig, PlantTagConfig
from synapse.service.errors import ConfigError, ServiceError

Clock = Callable[[], float]
# on_state(source, "connected" | "lost", reason): the loop logs it, records it and re-evaluates.
StateListener = Callable[[str, str, str | None], None]

BACKOFF_START_S = 0.1


class PlantWriteFailed(ServiceError):
    """An output could not be written (no connection, an exception response, a timeout)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="SYNAPSE-PLANT-WRITE", status=503)


class Source(Protocol):
    name: str
    received: int  # messages, responses or values received so far (logged at stop)
    # received, then replaced by a newer one of the same tags before the loop took them (never decided):
    # MQTT's mailbox (mqtt.py); the other sources put every value they receive
    superseded: int

    @property
    def connected(self) -> bool: ...

    async def run(self, table: TagTable) -> None:
        """Connect, keep the table's tags of this source fresh, reconnect; returns only when cancelled."""

    async def write(self, point: PlantPointConfig, value: int | bool | bytes) -> None:
        """Write one declared output (PlantWriteFailed when it cannot)."""

    async def read_once(self) -> dict[str, Sample]:
        """Connect, read each tag of this source once, disconnect (`synapse tags check`)."""


def describe(point: PlantPointConfig) -> str:
    """A point's address in words, for logs and `synapse tags check`."""
    if point.node is not None:
        return point.node
    if point.topic is not None:
        pointer = getattr(point, "pointer", "")
        return point.topic + (f" {pointer}" if pointer else "")
    unit = f"unit {point.unit} " if point.unit is not None else ""
    kind = f" {point.type}" if point.type else ""
    return f"{unit}{point.table} {point.address}{kind}"


def make_sources(plant: PlantConfig, broker: MqttConfig | None, on_state: StateListener | None = None,
                 clock: Clock = time.time) -> dict[str, Source]:
    """One Source per [plant.sources.NAME], each with the tags that name it."""
    sources: dict[str, Source] = {}
    for name, config in plant.sources.items():
        tags: Mapping[str, PlantTagConfig] = {t: c for t, c in plant.tags.items() if c.source == name}
        if config.kind == "modbus":
            from synapse.plant.modbus import ModbusSource

            sources[name] = ModbusSource(name, config, tags, on_state=on_state, clock=clock)
        elif config.kind == "opcua":
            from synapse.plant.opcua import OpcUaSource

            sources[name] = OpcUaSource(name, config, tags, on_state=on_state, clock=clock)
        else:
            from synapse.plant.mqtt import MqttSource

            if broker is None:  # check_plant refuses this config; code building one by hand may not
                raise ConfigError(f"plant.sources.{name}: an mqtt source needs the [mqtt] section")
            sources[name] = MqttSource(name, config, broker, tags, on_state=on_state, clock=clock)
    return sources


def raise_if_cancelled() -> None:
    """A task being cancelled (shutdown) must stop, not go on polling or reconnect; but a cancellation
    can be lost inside a library's request (pymodbus, asyncua): it becomes the library's own error, or
    Python 3.11's wait_for returns the response that completed at the same moment and drops it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
