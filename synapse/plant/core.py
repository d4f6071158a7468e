"""The plant's sans-IO core: samples and their quality, the tag table, consistent snapshots, when a
policy is evaluated, and what is written back. No sockets and no clock of its own: the asyncio shell
(loop.py) and the protocol modules feed it samples and the time.

Rules (docs/plc.md):
- A sample carries its value, the raw value it came from, its quality (None when good, else why not)
  and its source time (OPC UA's SourceTimestamp, MQTT's arrival, Modbus's request time: the protocol
  has none). A tag whose sample is absent, bad, or older than its `max_age` is *missing*.
- A snapshot of a policy's inputs is taken at one instant from the table; if any mapped tag is missing,
  the snapshot carries the reasons (naming the tag and why) and the policy is not run on it: the
  decision is DENY with those reasons. A default declared by the policy never stands in for a tag the
  plant is configured to supply: a measurement that stopped is not "absent", it is unknown.
- Values go through `synapse.inputs.Reading`, the one reading parser: what a PLC delivers must pass the
  rules a REST reading passes (a NaN float32 is refused there and becomes a reason naming the tag).
- A policy is evaluated when its snapshot differs from the last one evaluated, and at least every
  `period` seconds.
- Outputs: the verdict code, the permissive (true for the configured verdicts only), the decision as
  JSON (MQTT); when nothing could be evaluated, and on shutdown, each output's safe value.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from synapse.decision import Verdict
from synapse.inputs import Reading, ReadingInvalid
from synapse.plant.points import REGISTERS
from synapse.service.config import PlantOutputConfig, PlantPolicyConfig, PlantTagConfig

Value = bool | int | float | str
_FORMATS = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f", "float64": "d"}
HEARTBEAT_MODULUS = 65536


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of one tag. `quality` is None when good, else what is wrong (the value is then None)."""

    value: Value | None
    raw: Any
    quality: str | None
    source_time: float


def bad(why: str, when: float, raw: Any = None) -> Sample:
    return Sample(None, raw, why, when)


# -- decoding --------------------------------------------------------------------------------------


def decode_registers(tag: PlantTagConfig, registers: list[int]) -> int | float:
    """The number held in a tag's registers, with its byte and word order (a float may be NaN)."""
    kind = tag.type or "uint16"
    words = list(registers[:REGISTERS[kind]])
    if tag.word_order == "little":
        words.reverse()
    # byte_order: the order of the two bytes inside each register (Modbus sends registers big-endian;
    # some devices store them swapped); word_order: which register holds the most significant word.
    return struct.unpack(">" + _FORMATS[kind], b"".join(w.to_bytes(2, tag.byte_order) for w in words))[0]


def encode_register(value: int) -> int:
    """A verdict code or heartbeat as one 16-bit register (two's complement for a negative int16)."""
    return value & 0xFFFF


def sample_of(tag: PlantTagConfig, raw: Any, when: float) -> Sample:
    """A good raw value as the tag's input value: a bit, an enum through its map, a scaled number."""
    if tag.bit is not None:
        raw = bool((int(raw) >> tag.bit) & 1)
    if tag.map is not None:
        key = raw if isinstance(raw, str) else (str(int(raw)) if _is_integral(raw) else None)
        value = tag.map.get(key) if key is not None else None
        if value is None:
            return bad(f"value {_show(raw)} is not in the tag's map", when, raw)
        return Sample(value, raw, None, when)
    if isinstance(raw, bool | str):
        return Sample(raw, raw, None, when)
    if isinstance(raw, int | float):
        if tag.scale == 1 and tag.offset == 0:
            return Sample(raw, raw, None, when)
        return Sample(raw * tag.scale + tag.offset, raw, None, when)
    return bad(f"a {type(raw).__name__} is not a number, a bool or a string", when, raw)


def _is_integral(raw: Any) -> bool:
    return isinstance(raw, int) or (isinstance(raw, float) and math.isfinite(raw) and raw.is_integer())


def _show(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 40 else text[:37] + "..."


# -- the table ------------------------------------------------------------------------------------


class TagTable:
    """The latest sample of every tag. `on_change()` is called when a tag's value or quality changes, and
    when a source has readings waiting to be put (`defer`: they are put by `flush`, before a snapshot)."""

    def __init__(self, tags: Mapping[str, PlantTagConfig],
                 on_change: Callable[[], None] | None = None) -> None:
        self.tags = tags
        self._samples: dict[str, Sample] = {}
        self._on_change = on_change
        self._deferred: dict[Callable[[], None], None] = {}  # an ordered set of flushes

    def defer(self, flush: Callable[[], None]) -> None:
        """A source holds readings it has not put yet; `flush()` puts them (MQTT's mailbox: a burst of
        messages is decoded once per topic, not once per message)."""
        self._deferred[flush] = None
        if self._on_change is not None:
            self._on_change()

    def flush(self) -> None:
        """Put every deferred reading: called right before snapshots are taken."""
        while self._deferred:
            deferred, self._deferred = self._deferred, {}
            for flush in deferred:
                flush()

    def get(self, tag: str) -> Sample | None:
        return self._samples.get(tag)

    def put(self, tag: str, sample: Sample) -> None:
        previous = self._samples.get(tag)
        self._samples[tag] = sample
        if (self._on_change is not None
                and (previous is None or previous.value != sample.value or previous.quality != sample.quality
                     or type(previous.value) is not type(sample.value))):
            self._on_change()

    def lose(self, tags: Iterable[str], why: str, when: float) -> None:
        """The tags' source is gone: each is bad from now on (never its last good value)."""
        for tag in tags:
            self.put(tag, bad(why, when))


# -- snapshots ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A policy's inputs at one instant, or the reasons some are missing (then it is not evaluated)."""

    telemetry: dict[str, Value]
    context: dict[str, Value]
    missing: tuple[str, ...]

    @property
    def key(self) -> tuple:
        """What decides "changed": the values (with their types) and the missing reasons' tags."""
        return (tuple((k, type(v), v) for k, v in self.telemetry.items()),
                tuple((k, type(v), v) for k, v in self.context.items()),
                tuple(reason.split(":", 1)[0] for reason in self.missing))

    @property
    def reason(self) -> str:
        return "plant inputs missing: " + "; ".join(self.missing)


def take_snapshot(policy: PlantPolicyConfig, table: TagTable, now: float) -> Snapshot:
    """The policy's mapped inputs from the table at `now` (see the module docstring)."""
    values: dict[str, dict[str, Value]] = {"telemetry": {}, "context": {}}
    missing: list[str] = []
    for side, inputs in (("telemetry", policy.telemetry), ("context", policy.context)):
        for name, tag_name in inputs.items():
            where = f"tag {tag_name!r} ({side} {name})"
            sample = table.get(tag_name)
            if sample is None:
                missing.append(f"{where}: not read yet")
            elif sample.quality is not None:
                missing.append(f"{where}: bad quality: {sample.quality}")
            elif now - sample.source_time > table.tags[tag_name].max_age:
                missing.append(f"{where}: stale, {now - sample.source_time:.1f} s old "
                               f"(max_age {table.tags[tag_name].max_age:g} s)")
            else:
                values[side][name] = sample.value  # type: ignore[assignment]
    if not missing:
        try:
            Reading.from_json(values)
        except ReadingInvalid as exc:
            side, _, name = exc.pointer.lstrip("/").partition("/")
            inputs = policy.telemetry if side == "telemetry" else policy.context
            tag_name = inputs.get(name.replace("~1", "/").replace("~0", "~"), "?")
            missing.append(f"tag {tag_name!r} ({side} {name}): not a valid reading value: {exc.why}")
    return Snapshot(values["telemetry"], values["context"], tuple(missing))


class Cadence:
    """When a policy is evaluated: on a changed snapshot, and at least every `period` seconds."""

    def __init__(self, period: float) -> None:
        self.period = period
        self._key: tuple | None = None
        self._at = -math.inf

    def due(self, key: tuple, now: float) -> bool:
        return key != self._key or now - self._at >= self.period

    def done(self, key: tuple, now: float) -> None:
        self._key, self._at = key, now

    def reset(self) -> None:
        """Evaluate at the next chance (a source came back: its outputs are written again)."""
        self._key, self._at = None, -math.inf


# -- write-back -----------------------------------------------------------------------------------


def safe_value(output: PlantOutputConfig) -> int | bool | bytes:
    """What an output holds when nothing can be evaluated, and after shutdown."""
    if output.value == "permissive":
        return bool(output.safe)
    code = int(Verdict.DENY) if output.safe is None else output.safe
    if output.value == "decision":
        return json.dumps({"verdict": Verdict(code).name, "code": code, "permissive": False,
                           "reason": "no evaluation (safe value)"}).encode()
    return code


def output_value(output: PlantOutputConfig, decision: Mapping[str, Any] | None) -> int | bool | bytes:
    """What `output` is set to for a decision (its `to_dict()`), or its safe value for None."""
    if decision is None:
        return safe_value(output)
    permissive = decision["verdict"] in output.permissive_on
    if output.value == "permissive":
        return permissive
    if output.value == "verdict":
        return int(decision["code"])
    return json.dumps({key: decision.get(key) for key in ("decision_id", "policy", "verdict", "code", "rule",
                                                          "reason")} | {"permissive": permissive},
                      separators=(",", ":")).encode()


class Heartbeat:
    """The counter written every cycle: 0, 1, ... 65535, 0, ..."""

    def __init__(self) -> None:
        self.count = 0

    def next(self) -> int:
        self.count = (self.count + 1) % HEARTBEAT_MODULUS
        return self.count
