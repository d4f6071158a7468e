"""`synapse tags check CONFIG`'s core: read every tag of [plant] once through its source's `read_once`
(connect, read, disconnect; nothing is written), as rows of a table."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from synapse.plant.sources import Clock, describe, make_sources
from synapse.service.config import MqttConfig, PlantConfig

HEADER = ("tag", "source", "address", "raw", "value", "quality", "age")


@dataclass(frozen=True)
class TagRow:
    tag: str
    source: str
    address: str
    raw: str
    value: str
    quality: str
    age: str
    readable: bool


async def read_tags(plant: PlantConfig, broker: MqttConfig | None, clock: Clock = time.time) -> list[TagRow]:
    """Every tag read once, in the config's order."""
    sources = make_sources(plant, broker, clock=clock)
    read = await asyncio.gather(*(source.read_once() for source in sources.values()))
    samples = {name: sample for per_source in read for name, sample in per_source.items()}
    now = clock()
    rows = []
    for name, tag in plant.tags.items():
        sample = samples[name]
        good = sample.quality is None
        rows.append(TagRow(name, tag.source, describe(tag), "-" if sample.raw is None else repr(sample.raw),
                           repr(sample.value) if good else "-", "good" if good else sample.quality,
                           f"{now - sample.source_time:.2f} s", good))
    return rows


def render(rows: list[TagRow]) -> str:
    """The rows as a plain text table (columns as wide as their widest cell)."""
    cells = [HEADER, *((r.tag, r.source, r.address, r.raw, r.value, r.quality, r.age) for r in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADER))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in cells)
