"""The plant loop: the asyncio shell around core.py that the sidecar runs in place of its feed.

Sources run as tasks and fill one tag table. The loop wakes at every cycle and whenever a tag's value
or quality changes; it lets a burst of changes settle (at most SETTLE_S), then takes each policy's
snapshot (one instant, one table: consistent),
evaluates the policies whose snapshot changed or whose `period` elapsed (`decide`, the sidecar's: the
decision is logged, alerts raised), and writes their outputs; at every cycle it writes the heartbeat.
A source lost or back is logged and recorded (`record`), and the policies using it are evaluated again
at once. When a policy cannot be evaluated at all (not served, the decision log cannot be written), its
outputs get their safe values; so they do on shutdown (the task is cancelled: safe values are written,
then the sources close). With `dry_run` nothing is ever written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from synapse.decision import Decision
from synapse.plant.core import Cadence, Heartbeat, Snapshot, TagTable, output_value, safe_value, take_snapshot
from synapse.plant.sources import Clock, PlantWriteFailed, Source, describe, make_sources
from synapse.service import logs
from synapse.service.config import MqttConfig, PlantConfig, PlantOutputConfig, PlantPointConfig

# decide(policy, snapshot): the decision made and logged, or None when nothing could be evaluated.
Decide = Callable[[str, Snapshot], Decision | None]
Record = Callable[..., None]
# on_lost(source, reason, policies using it): the sidecar alerts on it (docs/plc.md).
LostListener = Callable[[str, str | None, list[str]], None]
SHUTDOWN_WRITE_TIMEOUT_S = 2.0
# Event-loop turns a received value takes to reach the table (an OPC UA data change passes through
# asyncua's tasks; an MQTT message is read in one), and the longest a burst of changes may settle before
# it is decided.
SETTLE_TURNS = 3
SETTLE_S = 0.001


class PlantLoop:
    """See the module docstring."""

    def __init__(self, plant: PlantConfig, decide: Decide, *, broker: MqttConfig | None = None,
                 record: Record | None = None, on_lost: LostListener | None = None,
                 clock: Clock = time.time, sources: Mapping[str, Source] | None = None) -> None:
        self.plant = plant
        self._decide = decide
        self._record = record
        self._on_lost = on_lost
        self._clock = clock
        self._wake = asyncio.Event()
        self.table = TagTable(plant.tags, on_change=self._wake.set)
        self.sources = dict(sources) if sources is not None else make_sources(
            plant, broker, on_state=self._source_state, clock=clock)
        self._cadences = {name: Cadence(plant.period) for name in plant.policies}
        self._heartbeat = Heartbeat()
        self._write_errors: dict[int, str] = {}  # id(point) -> the last failure reported
        self.evaluations = 0

    async def run(self) -> None:
        tasks = [asyncio.create_task(source.run(self.table), name=f"plant-{name}")
                 for name, source in self.sources.items()]
        logs.event("plant_started", sources=sorted(self.sources), policies=sorted(self.plant.policies),
                   dry_run=self.plant.dry_run)
        try:
            await self._cycles()
        finally:
            # Cancelled (shutdown) or failed: every output to its safe value, then close the sources.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._write_safe(), SHUTDOWN_WRITE_TIMEOUT_S)
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=SHUTDOWN_WRITE_TIMEOUT_S)  # a library that holds on is left
            logs.event("plant_stopped", evaluations=self.evaluations,
                       received={name: source.received for name, source in self.sources.items()},
                       superseded={name: source.superseded for name, source in self.sources.items()})

    async def _cycles(self) -> None:
        loop = asyncio.get_running_loop()
        next_cycle = loop.time()
        while True:
            wait = next_cycle - loop.time()
            if wait > 0 and not self._wake.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):  # no task per wait, unlike wait_for
                        await self._wake.wait()
            await self._settle(loop.time() + SETTLE_S)
            await self.step()
            if loop.time() >= next_cycle:
                await self._beat()
                next_cycle = max(next_cycle + self.plant.cycle, loop.time())

    async def _settle(self, deadline: float) -> None:
        """Let changes already on their way land before the snapshot: a burst (MQTT messages queued in
        the client, a subscription's batch of data changes) is decided once, on its newest values, not
        once per value. At most SETTLE_S: under a steady stream the loop still decides that often."""
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            for _ in range(SETTLE_TURNS):
                await asyncio.sleep(0)
            if not self._wake.is_set() or loop.time() >= deadline:
                return

    async def step(self) -> None:
        """Evaluate every policy that is due on its snapshot now, and write its outputs."""
        self.table.flush()
        # Everything changed so far is in the table and in the snapshots below: only a later change
        # wakes the loop again.
        self._wake.clear()
        now = self._clock()
        writes: list[tuple[PlantOutputConfig, Any]] = []
        for name, spec in self.plant.policies.items():
            snapshot = take_snapshot(spec, self.table, now)
            cadence = self._cadences[name]
            if not cadence.due(snapshot.key, now):
                continue
            decision = self._decide(name, snapshot)
            cadence.done(snapshot.key, now)
            self.evaluations += decision is not None
            logged = decision.to_dict() if decision is not None else None
            writes += [(output, output_value(output, logged)) for output in spec.outputs]
        if writes:
            await self._write(writes)

    async def _beat(self) -> None:
        beat = self.plant.heartbeat
        if beat is not None:
            await self._write([(beat, self._heartbeat.next())])

    async def _write_safe(self) -> None:
        await self._write([(output, safe_value(output)) for spec in self.plant.policies.values()
                           for output in spec.outputs])

    async def _write(self, writes: list[tuple[PlantPointConfig, Any]]) -> None:
        if self.plant.dry_run:
            return
        await asyncio.gather(*(self._write_one(point, value) for point, value in writes))

    async def _write_one(self, point: PlantPointConfig, value: Any) -> None:
        try:
            await self.sources[point.source].write(point, value)
        except PlantWriteFailed as exc:
            if self._write_errors.get(id(point)) != exc.message:  # said once, not every cycle
                self._write_errors[id(point)] = exc.message
                logs.event("plant_write_failed", logging.WARNING, source=point.source,
                           point=describe(point), code=exc.code, reason=exc.message)
            return
        if self._write_errors.pop(id(point), None) is not None:
            logs.event("plant_write_resumed", source=point.source, point=describe(point))

    def _source_state(self, source: str, state: str, reason: str | None) -> None:
        level = logging.INFO if state == "connected" else logging.WARNING
        logs.event(f"plant_source_{state}", level, source=source, reason=reason)
        if self._record is not None:
            try:
                self._record("plant_source", source=source, state=state, reason=reason)
            except Exception as exc:  # the log is closing: the line above still says it
                logs.event("not_recorded", logging.WARNING, what="plant_source", reason=str(exc))
        using = []
        for name, spec in self.plant.policies.items():
            points = [*(self.plant.tags[t] for t in (*spec.telemetry.values(), *spec.context.values())),
                      *spec.outputs]
            if any(point.source == source for point in points):
                self._cadences[name].reset()
                using.append(name)
        if state == "lost" and self._on_lost is not None:
            self._on_lost(source, reason, using)
        self._wake.set()
