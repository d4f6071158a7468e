"""MQTT tags: JSON payloads on the node's broker, through the project's one MQTT client (aiomqtt, behind
axon.messaging.mqtt.MqttLink, which this module drives with the tags' topics).

A tag is a topic and a JSON Pointer into its payload (RFC 6901; "" for the whole payload). A payload is
read by axon.strictjson (a repeated name, NaN, trailing text: every tag of that topic is bad, with the
reason); a pointer that names nothing makes that tag bad. A sample's source time is its arrival: MQTT
carries none, so a value is as fresh as its message, and retained messages, which the broker hands out
however old they are, are not taken. The connection is a clean session with a client id of the broker's
choosing (nothing queued while away is delivered later as if new). The connection lost: every tag bad.
Outputs are published at QoS 1 (not retained: a retained ALLOW would outlive the sidecar).

Messages are taken as paho decodes them (MqttLink's `on_arrival`, no task or queue per message) into a
mailbox holding the newest payload of each topic with its arrival time; the loop flushes it into the tag
table right before its snapshots (TagTable.defer). A topic's newest message sets every tag of that
topic, so decoding only the newest one leaves the table exactly as decoding each in turn would, at one
JSON parse per topic per snapshot instead of one per message. Messages replaced in the mailbox before a
flush are counted (`superseded`, logged at stop with `received`): they were taken in, never decided.
The mailbox is bounded by the number of topics: nothing is dropped for lack of room.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

from axon import strictjson
from axon.messaging.errors import BrokerUnavailable
from axon.messaging.mqtt import MqttLink
from synapse.plant.core import Sample, TagTable, bad, sample_of
from synapse.plant.sources import Clock, PlantWriteFailed, StateListener
from synapse.service.config import MqttConfig, MqttSourceConfig, PlantPointConfig, PlantTagConfig
from synapse.sidecar.mqtt import broker_settings

READ_ONCE_WAIT_S = 5.0
_MISSING = object()


def pointer_tokens(pointer: str) -> tuple[str, ...]:
    """An RFC 6901 JSON Pointer's reference tokens, unescaped ("" has none)."""
    if pointer == "":
        return ()
    return tuple(token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/"))


def resolve_pointer(doc: Any, tokens: tuple[str, ...]) -> Any:
    """The value at a JSON Pointer (its `pointer_tokens`), or _MISSING."""
    for token in tokens:
        if isinstance(doc, dict) and token in doc:
            doc = doc[token]
        elif isinstance(doc, list) and token.isdigit() and (token == "0" or not token.startswith("0")) \
                and int(token) < len(doc):
            doc = doc[int(token)]
        else:
            return _MISSING
    return doc


class MqttSource:
    """Tags on MQTT topics: see the module docstring and sources.Source."""

    def __init__(self, name: str, config: MqttSourceConfig, broker: MqttConfig,
                 tags: Mapping[str, PlantTagConfig], *, on_state: StateListener | None = None,
                 clock: Clock = time.time) -> None:
        self.name = name
        self.tags = dict(tags)
        # topic -> its tags, each with its pointer's tokens (parsed once, not per message)
        self.by_topic: dict[str, list[tuple[str, PlantTagConfig, tuple[str, ...]]]] = {}
        for tag_name, tag in self.tags.items():
            self.by_topic.setdefault(tag.topic, []).append(  # type: ignore[arg-type]
                (tag_name, tag, pointer_tokens(tag.pointer)))  # type: ignore[arg-type]
        self.settings = broker_settings(broker, None)
        self.reconnect_max = broker.reconnect_max
        self._on_state = on_state
        self._clock = clock
        self._table: TagTable | None = None
        self._link: MqttLink | None = None
        self._up = False
        self._mailbox: dict[str, tuple[bytes, float]] = {}  # topic -> its newest payload, arrival time
        self.received = 0
        self.superseded = 0

    @property
    def connected(self) -> bool:
        return self._link is not None and self._link.connected.is_set()

    def _make_link(self) -> MqttLink:
        return MqttLink(self.settings, tuple(self.by_topic), on_arrival=self._arrived,
                        on_state=self._link_state, reconnect_max_s=self.reconnect_max, skip_retained=True)

    async def run(self, table: TagTable) -> None:
        self._table = table
        self._link = self._make_link()
        await self._link.run()

    def samples(self, topic: str, payload: bytes, when: float) -> dict[str, Sample]:
        """The samples one message gives its topic's tags."""
        tags = self.by_topic.get(topic, [])
        try:
            doc = strictjson.loads(payload)
        except strictjson.JsonError as exc:
            return {name: bad(f"payload on {topic} is not strict JSON: {exc}", when) for name, _, _ in tags}
        out = {}
        for name, tag, tokens in tags:
            value = resolve_pointer(doc, tokens)
            if value is _MISSING:
                out[name] = bad(f"payload on {topic} has nothing at {tag.pointer!r}", when)
            elif value is None or isinstance(value, dict | list):
                out[name] = bad(f"payload on {topic} holds {'null' if value is None else 'a structure'} "
                                f"at {tag.pointer or 'its root'!r}", when)
            else:
                out[name] = sample_of(tag, value, when)
        return out

    def _arrived(self, topic: str, payload: bytes) -> None:
        self.received += 1
        table = self._table
        if table is None:
            return
        self.superseded += topic in self._mailbox
        self._mailbox[topic] = (payload, self._clock())
        table.defer(self._flush)

    def _flush(self) -> None:
        """Every topic's newest message into the table (the loop calls it before its snapshots)."""
        mailbox, self._mailbox = self._mailbox, {}
        table = self._table
        if table is None:
            return
        for topic, (payload, when) in mailbox.items():
            for name, sample in self.samples(topic, payload, when).items():
                table.put(name, sample)

    def _link_state(self, state: str, reason: str | None) -> None:
        up = state == "connected"
        if not up and self._table is not None:
            self._mailbox.clear()  # what the lost connection delivered is not decided after the loss
            self._table.lose(self.tags, f"connection lost: {reason}", self._clock())
        # Said once per change, like the other sources: the link reports every failed attempt too.
        if self._on_state is not None and up != self._up:
            self._on_state(self.name, "connected" if up else "lost", reason)
        self._up = up

    async def write(self, point: PlantPointConfig, value: int | bool | bytes) -> None:
        link = self._link
        if link is None:
            raise PlantWriteFailed(f"{self.name}: not connected to the broker")
        payload = value if isinstance(value, bytes) else json.dumps(value).encode()
        try:
            await link.publish(point.topic, payload)  # type: ignore[arg-type]
        except BrokerUnavailable as exc:
            raise PlantWriteFailed(f"{self.name}: publishing on {point.topic}: {exc}") from None

    async def read_once(self) -> dict[str, Sample]:
        """Subscribe and take the first message of each topic within READ_ONCE_WAIT_S seconds."""
        got: dict[str, Sample] = {}

        async def take(topic: str, payload: bytes) -> None:
            got.update(self.samples(topic, payload, self._clock()))

        link = MqttLink(self.settings, tuple(self.by_topic), on_message=take, skip_retained=True)
        task = asyncio.create_task(link.run())
        try:
            deadline = asyncio.get_running_loop().time() + READ_ONCE_WAIT_S
            while len(got) < len(self.tags) and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            connected = link.connected.is_set() or bool(got)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        why = f"no message within {READ_ONCE_WAIT_S:g} s" if connected else "cannot connect to the broker"
        return {name: got.get(name) or bad(why, self._clock()) for name in self.tags}
