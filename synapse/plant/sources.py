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
from typing import Any, Generic, Protocol, TypeVar

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


ClientT = TypeVar("ClientT")


class ReconnectingSource(Generic[ClientT]):
    """The connection loop of a source with one client connection (Modbus, OPC UA): connect, serve the
    tags until the connection fails, mark every tag bad, back off, reconnect. A protocol supplies
    `_connect`, `_serve`, `_disconnect` and `_lost_reason`; MQTT keeps its own (its link reconnects)."""

    name: str
    tags: dict[str, PlantTagConfig]
    config: Any  # the source's config model: reconnect_max is read from it
    _client: ClientT | None
    _clock: Clock
    _on_state: StateListener | None

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def _connect(self) -> ClientT:
        raise NotImplementedError

    async def _serve(self, client: ClientT, table: TagTable) -> None:
        """Keep the table's tags fresh over `client`; raises when the connection fails."""
        raise NotImplementedError

    async def _disconnect(self, client: ClientT) -> None:
        raise NotImplementedError

    def _lost_reason(self, exc: Exception) -> str | None:
        """Why the connection is lost, in words, when `exc` means that; None lets `exc` propagate."""
        raise NotImplementedError

    async def run(self, table: TagTable) -> None:
        delay = BACKOFF_START_S
        while True:
            reason, client = None, None
            try:
                client = await self._connect()
                self._client = client
                delay = BACKOFF_START_S
                self._state("connected", None)
                await self._serve(client, table)
            except Exception as exc:
                raise_if_cancelled()
                reason = self._lost_reason(exc)
                if reason is None:
                    raise
            finally:
                was_connected, self._client = self._client is not None, None
                if reason is not None or was_connected:
                    table.lose(self.tags, f"connection lost: {reason or 'closing'}", self._clock())
                if client is not None:
                    await self._disconnect(client)
            if was_connected:
                self._state("lost", reason)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.config.reconnect_max)

    def _state(self, state: str, reason: str | None) -> None:
        if self._on_state is not None:
            self._on_state(self.name, state, reason)
