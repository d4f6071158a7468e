"""Modbus TCP through pymodbus (the only module that imports it): a source that polls read groups and
writes declared holding registers and coils.

Read groups. Tags of one unit, one table and one poll period are sorted by address, and runs of
contiguous (or overlapping) addresses become one request, up to the protocol's 125 registers or 2,000
bits: a multi-register value is always read in one request, so its words come from one scan of the PLC.
Each group is polled on its own period.

Quality. An exception response (illegal address, device failure, ...) makes that group's tags bad with
its name; a timeout, a refused or dropped connection is a lost connection: every tag of the source is
bad at once, then the source reconnects with backoff. Modbus has no timestamps: a sample's source time
is when its request was sent (the value is at least that fresh).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from synapse.plant.core import Sample, TagTable, bad, decode_registers, encode_register, sample_of
from synapse.plant.points import BIT_TABLES, MAX_BITS_PER_READ, MAX_REGISTERS_PER_READ, register_count
from synapse.plant.sources import (
    Clock,
    PlantWriteFailed,
    ReconnectingSource,
    StateListener,
    raise_if_cancelled,
)
from synapse.service.config import ModbusSourceConfig, PlantPointConfig, PlantTagConfig

log = logging.getLogger("synapse.plant.modbus")

# Modbus exception codes (application protocol specification, section 7).
EXCEPTIONS = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
              4: "server device failure", 5: "acknowledge", 6: "server device busy",
              8: "memory parity error", 10: "gateway path unavailable",
              11: "gateway target device failed to respond"}


class ConnectionLost(Exception):
    """The connection is gone or a request timed out: every tag of the source is bad; reconnect."""


@dataclass
class ReadGroup:
    """One request: `count` registers or bits from `start`, and the tags in it (name, offset)."""

    unit: int
    table: str
    start: int
    count: int
    poll: float
    members: list[tuple[str, int]] = field(default_factory=list)


def plan_reads(tags: Mapping[str, PlantTagConfig], source: ModbusSourceConfig) -> list[ReadGroup]:
    """Tags into as few requests as the protocol allows (see the module docstring)."""
    by_kind: dict[tuple[int, str, float], list[tuple[int, int, str]]] = {}
    for name, tag in tags.items():
        unit = source.unit if tag.unit is None else tag.unit
        poll = source.poll if tag.poll is None else tag.poll
        by_kind.setdefault((unit, tag.table, poll), []).append(  # type: ignore[arg-type]
            (tag.address, register_count(tag), name))  # type: ignore[arg-type]
    groups: list[ReadGroup] = []
    for (unit, table, poll), spans in sorted(by_kind.items()):
        limit = MAX_BITS_PER_READ if table in BIT_TABLES else MAX_REGISTERS_PER_READ
        group: ReadGroup | None = None
        for address, count, name in sorted(spans):
            end = address + count
            if group is not None and address <= group.start + group.count and end - group.start <= limit:
                group.count = max(group.count, end - group.start)
            else:
                group = ReadGroup(unit, table, address, count, poll)
                groups.append(group)
            group.members.append((name, address - group.start))
    return groups


class ModbusSource(ReconnectingSource[AsyncModbusTcpClient]):
    """A Modbus TCP server: see the module docstring and sources.Source."""

    def __init__(self, name: str, config: ModbusSourceConfig, tags: Mapping[str, PlantTagConfig], *,
                 on_state: StateListener | None = None, clock: Clock = time.time) -> None:
        self.name = name
        self.config = config
        self.tags = dict(tags)
        self.groups = plan_reads(self.tags, config)
        self._on_state = on_state
        self._clock = clock
        self._client: AsyncModbusTcpClient | None = None
        self.received = 0  # responses to read requests
        self.superseded = 0

    def _new_client(self) -> AsyncModbusTcpClient:
        # pymodbus's own reconnection is off (reconnect_delay 0): this source reconnects, so that the
        # loss is seen, the tags marked bad and the alert raised before anything else happens.
        return AsyncModbusTcpClient(self.config.host, port=self.config.port, timeout=self.config.timeout,
                                    retries=0, reconnect_delay=0, name=f"plant-{self.name}")

    async def _connect(self) -> AsyncModbusTcpClient:
        client = self._new_client()
        if not await client.connect():
            client.close()
            raise ConnectionLost(f"cannot connect to {self.config.host}:{self.config.port}")
        return client

    async def _serve(self, client: AsyncModbusTcpClient, table: TagTable) -> None:
        await self._poll(client, table)

    async def _disconnect(self, client: AsyncModbusTcpClient) -> None:
        client.close()

    def _lost_reason(self, exc: Exception) -> str | None:
        if isinstance(exc, ConnectionLost | ModbusException | OSError):
            return str(exc) or type(exc).__name__
        return None

    async def _poll(self, client: AsyncModbusTcpClient, table: TagTable) -> None:
        loop = asyncio.get_running_loop()
        due = [loop.time()] * len(self.groups)
        if not self.groups:
            await asyncio.Event().wait()  # an output-only source: stay connected
        while True:
            now = loop.time()
            for i, group in enumerate(self.groups):
                if due[i] <= now:
                    samples = await self._read(client, group)
                    raise_if_cancelled()
                    for name, sample in samples.items():
                        table.put(name, sample)
                    due[i] = max(due[i] + group.poll, now)
            await asyncio.sleep(max(0.0, min(due) - loop.time()))

    async def _read(self, client: AsyncModbusTcpClient, group: ReadGroup) -> dict[str, Sample]:
        """One request; the samples of its tags (ConnectionLost when the connection failed)."""
        when = self._clock()
        read = {"holding": client.read_holding_registers, "input": client.read_input_registers,
                "coil": client.read_coils, "discrete": client.read_discrete_inputs}[group.table]
        try:
            response = await read(group.start, count=group.count, device_id=group.unit)
        except ModbusException as exc:
            raise_if_cancelled()
            raise ConnectionLost(f"{group.table} {group.start}: {exc}") from None
        self.received += 1
        if response.isError():
            code = getattr(response, "exception_code", None)
            why = f"Modbus exception {code} ({EXCEPTIONS.get(code, 'unknown')}) reading {group.table} " \
                  f"{group.start}-{group.start + group.count - 1} of unit {group.unit}"
            return {name: bad(why, when) for name, _ in group.members}
        samples = {}
        for name, offset in group.members:
            tag = self.tags[name]
            if group.table in BIT_TABLES:
                raw: int | float | bool = bool(response.bits[offset])
            else:
                raw = decode_registers(tag, response.registers[offset:offset + register_count(tag)])
            samples[name] = sample_of(tag, raw, when)
        return samples

    async def write(self, point: PlantPointConfig, value: int | bool | bytes) -> None:
        client = self._client
        if client is None:
            raise PlantWriteFailed(f"{self.name}: not connected to {self.config.host}:{self.config.port}")
        unit = self.config.unit if point.unit is None else point.unit
        try:
            if point.table == "coil":
                response = await client.write_coil(point.address, bool(value), device_id=unit)  # type: ignore[arg-type]
            else:
                response = await client.write_register(point.address, encode_register(int(value)),  # type: ignore[arg-type]
                                                       device_id=unit)
        except ModbusException as exc:
            raise PlantWriteFailed(f"{self.name}: writing {point.table} {point.address}: {exc}") from None
        if response.isError():
            code = getattr(response, "exception_code", None)
            raise PlantWriteFailed(f"{self.name}: writing {point.table} {point.address}: Modbus exception "
                                   f"{code} ({EXCEPTIONS.get(code, 'unknown')})")

    async def read_once(self) -> dict[str, Sample]:
        try:
            client = await self._connect()
        except (ConnectionLost, OSError) as exc:
            return {name: bad(f"connection failed: {exc}", self._clock()) for name in self.tags}
        try:
            samples: dict[str, Sample] = {}
            for group in self.groups:
                try:
                    samples.update(await self._read(client, group))
                except ConnectionLost as exc:
                    samples.update({name: bad(str(exc), self._clock()) for name, _ in group.members})
            return samples
        finally:
            client.close()


