"""The policy-module ABI shared by the compiler, the verifier and the runtime (docs/abi.md).

Only constants and pure functions live here, so that `scc` and `synapse` agree on one definition.
The `sopcos.meta` section's rules are one JSON Schema, axon/schema/sopcos-meta.schema.json: Axon's
module check and Synapse's loader both read the section through `read_meta`, so a module one accepts
the other can load (or refuses with a code for what no schema can say).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from axon import accelerators, strictjson
from axon.errors import AxonError

if TYPE_CHECKING:  # jsonschema loads when a meta section needs the reference (start-up: issue 15)
    from jsonschema import Draft202012Validator

ABI_VERSION = 1
IMPORT_MODULE = "sopcos"
META_SECTION = "sopcos.meta"
META_SCHEMA_PATH = Path(__file__).with_name("schema") / "sopcos-meta.schema.json"

# name -> (params, results), as wasm value type names.
HOST_FUNCTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "get_telemetry": (("i32",), ("f64",)),
    "get_context_var": (("i32",), ("f64",)),
    "emit_log": (("i32", "i32", "i32"), ()),
}
EXPORT_MEMORY = "memory"
EXPORT_EVALUATE = "evaluate"
EVALUATE_SIGNATURE: tuple[tuple[str, ...], tuple[str, ...]] = (("i64",), ("i32",))
MEMORY_PAGES = 1

# Result block offsets (bytes, little-endian).
RESULT_VERDICT = 0
RESULT_RULE = 4
RESULT_FAULT = 8
RESULT_SITE = 12
RESULT_GAS = 16
RESULT_SIZE = 24

GAS_PER_NODE = 1
GAS_PER_RULE = 1
GAS_PER_HOST_CALL = 5

LOG_LEVELS = ("info", "warn", "error")


class Verdict(enum.IntEnum):
    """SIP-009 §8 verdict codes."""

    DENY = 0
    ALLOW = 1
    WARN = 2
    HALT = 3

    @property
    def severity(self) -> int:
        """Higher is more severe: HALT > DENY > WARN > ALLOW (SIP-001 §5)."""
        return _SEVERITY[self]


_SEVERITY = {Verdict.ALLOW: 0, Verdict.WARN: 1, Verdict.DENY: 2, Verdict.HALT: 3}


class Fault(enum.IntEnum):
    NONE = 0
    DIVISION_BY_ZERO = 1
    NAN = 2
    OUT_OF_GAS = 3


FAULT_TEXT = {
    Fault.DIVISION_BY_ZERO: "division by zero",
    Fault.NAN: "arithmetic result is not a number (NaN)",
    Fault.OUT_OF_GAS: "gas budget exhausted",
}


@dataclass(frozen=True)
class ModuleMeta:
    """The decoded `sopcos.meta` section."""

    abi: int
    policy: str
    version: str
    source_hash: str
    compiler: str
    gas_max: int
    combine: str
    default: str
    telemetry: tuple[dict, ...]
    context: tuple[dict, ...]
    rules: tuple[dict, ...]
    sites: tuple[str, ...]

    @classmethod
    def from_json(cls, data: bytes) -> ModuleMeta:
        """Decode without the schema check (`read_meta` is the checked way in)."""
        return cls.from_document(strictjson.loads(data))

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> ModuleMeta:
        """From a document that meets the meta schema (`meta_schema_error` returned None). JSON Schema's
        integers include 2.0: they are read as ints."""
        return cls(
            abi=int(doc["abi"]),
            policy=doc["policy"],
            version=doc["version"],
            source_hash=doc["source_hash"],
            compiler=doc["compiler"],
            gas_max=int(doc["gas_max"]),
            combine=doc["combine"],
            default=doc["default"],
            telemetry=tuple(doc["inputs"]["telemetry"]),
            context=tuple(doc["inputs"]["context"]),
            rules=tuple(doc["rules"]),
            sites=tuple(doc["sites"]),
        )


@cache
def _meta_schema() -> dict[str, Any]:
    return strictjson.loads(META_SCHEMA_PATH.read_bytes())


@cache
def _meta_validator() -> Draft202012Validator:
    from jsonschema import Draft202012Validator
    return Draft202012Validator(_meta_schema())


@cache
def _compiled_meta_validator() -> Any:
    return accelerators.compiled_schema(_meta_schema())


def meta_schema_error(doc: Any) -> str | None:
    """Where and why `doc` breaks the meta schema (the most relevant error), or None if it meets it."""
    if accelerators.known_valid(_compiled_meta_validator(), doc):
        return None
    from jsonschema.exceptions import best_match
    error = best_match(_meta_validator().iter_errors(doc))
    if error is None:
        return None
    message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
    return f"at {error.json_path}: {message}"


class ModuleMetaError(AxonError):
    """A module's `sopcos.meta` section is missing, duplicated or unreadable."""

    code = "AXON-ABI-META"


WASM_MAGIC = b"\x00asm\x01\x00\x00\x00"
_CUSTOM_SECTION_ID = 0


def read_u32_leb128(data: bytes, pos: int) -> tuple[int, int]:
    """Decode one unsigned LEB128 u32 at `pos`; return (value, next position)."""
    value = 0
    for shift in range(0, 35, 7):
        if pos >= len(data):
            raise ModuleMetaError("module is truncated inside a length field")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if value > 0xFFFFFFFF:
                raise ModuleMetaError("module has a length field larger than 32 bits")
            return value, pos
    raise ModuleMetaError("module has a length field longer than 5 bytes")


def custom_section(name: str, payload: bytes) -> bytes:
    """A custom section (id 0) called `name`, to append to a module: how `sopcos.meta` is written."""
    encoded = name.encode()
    body = _u32_leb128(len(encoded)) + encoded + payload
    return bytes([_CUSTOM_SECTION_ID]) + _u32_leb128(len(body)) + body


def _u32_leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_custom_sections(wasm: bytes, name: str) -> list[bytes]:
    """Payloads of every custom section called `name`, in module order.

    Walks the section headers only (id, size); it does not validate the module, wasmtime does that.
    """
    if not wasm.startswith(WASM_MAGIC):
        raise ModuleMetaError("not a WebAssembly module (bad magic number or version)")
    found: list[bytes] = []
    pos = len(WASM_MAGIC)
    while pos < len(wasm):
        section_id = wasm[pos]
        size, body = read_u32_leb128(wasm, pos + 1)
        end = body + size
        if end > len(wasm):
            raise ModuleMetaError("module is truncated inside a section")
        if section_id == _CUSTOM_SECTION_ID:
            name_len, name_at = read_u32_leb128(wasm, body)
            if name_at + name_len > end:
                raise ModuleMetaError("custom section name runs past its section")
            if wasm[name_at : name_at + name_len] == name.encode():
                found.append(bytes(wasm[name_at + name_len : end]))
        pos = end
    return found


def read_meta(wasm: bytes) -> ModuleMeta:
    """Decode the `sopcos.meta` section of a policy module (docs/abi.md).

    Raises ModuleMetaError when the section is absent, present more than once (which copy would a
    runtime trust?), not strict JSON, written for another ABI version, or not of the meta schema's
    shape.
    """
    sections = read_custom_sections(wasm, META_SECTION)
    if not sections:
        raise ModuleMetaError(f"module has no {META_SECTION!r} custom section")
    if len(sections) > 1:
        raise ModuleMetaError(f"module has {len(sections)} {META_SECTION!r} custom sections; expected one")
    try:
        doc = strictjson.loads(sections[0])
    except strictjson.JsonError as exc:
        raise ModuleMetaError(f"{META_SECTION!r} section is not strict JSON: {exc}") from None
    if isinstance(doc, dict) and doc.get("abi", ABI_VERSION) != ABI_VERSION:
        raise ModuleMetaError(
            f"module was built for ABI version {doc['abi']!r}; this runtime speaks {ABI_VERSION}"
        )
    broken = meta_schema_error(doc)
    if broken is not None:
        raise ModuleMetaError(f"{META_SECTION!r} section is malformed {broken} "
                              f"(axon/schema/{META_SCHEMA_PATH.name})")
    return ModuleMeta.from_document(doc)


# -- the trace (docs/abi.md, "Trace"): what one evaluation did, written by the module when asked ----------

TRACE_SECTION = "sopcos.trace"
TRACE_VERSION = 1
# Offsets from the trace's base (`at` in the section): the host writes TRACE_ASKED into the request word
# before calling `evaluate`; a module that traces writes TRACE_ASKED into the written word on entry.
TRACE_REQUEST = 0
TRACE_WRITTEN = 4
TRACE_ASKED = 1
TRACE_HEADER = 8
# A rule's byte: its `when` was never computed (0), was false (1), held (2).
RULE_NOT_TRACED, RULE_FALSE, RULE_HELD = 0, 1, 2
# A definition's byte: not computed (0), started but not finished: a fault stopped it (1), computed (2).
LET_NOT_COMPUTED, LET_UNFINISHED, LET_COMPUTED = 0, 1, 2
TRACE_LET_TYPES = ("number", "bool")


class ModuleTraceError(AxonError):
    """A module's `sopcos.trace` section is duplicated or unreadable."""

    code = "AXON-ABI-TRACE"


@dataclass(frozen=True)
class TraceLayout:
    """Where the trace lies in the module's memory: from `at` (a multiple of 8), the request and written
    words, one f64 per definition (its value; a bool as 0.0 or 1.0), one byte per definition (its
    state), one byte per rule (its `when`). `lets` are (name, type) in the order the module lays them out."""

    at: int
    lets: tuple[tuple[str, str], ...]
    rules: int

    @property
    def size(self) -> int:
        return TRACE_HEADER + 9 * len(self.lets) + self.rules

    def let_value_at(self, index: int) -> int:
        return self.at + TRACE_HEADER + 8 * index

    def let_state_at(self, index: int) -> int:
        return self.at + TRACE_HEADER + 8 * len(self.lets) + index

    def rule_state_at(self, index: int) -> int:
        return self.at + TRACE_HEADER + 9 * len(self.lets) + index

    def document(self) -> dict[str, Any]:
        """The section's document (written as RFC 8785 canonical JSON)."""
        return {"version": TRACE_VERSION, "at": self.at, "rules": self.rules,
                "lets": [{"name": name, "type": kind} for name, kind in self.lets]}


def read_trace_layout(wasm: bytes, rules: int) -> TraceLayout | None:
    """The `sopcos.trace` section of a module whose meta lists `rules` rules; None when it has none (a
    module from an scc without traces, or one whose trace did not fit in its memory). Raises
    ModuleTraceError when the section is present more than once or is not a layout inside one page."""
    try:
        sections = read_custom_sections(wasm, TRACE_SECTION)
    except ModuleMetaError as exc:
        raise ModuleTraceError(str(exc)) from None
    if not sections:
        return None
    if len(sections) > 1:
        raise ModuleTraceError(f"module has {len(sections)} {TRACE_SECTION!r} custom sections; expected one")
    try:
        doc = strictjson.loads(sections[0])
    except strictjson.JsonError as exc:
        raise ModuleTraceError(f"{TRACE_SECTION!r} section is not strict JSON: {exc}") from None
    broken = _trace_shape_error(doc, rules)
    if broken is not None:
        raise ModuleTraceError(f"{TRACE_SECTION!r} section is malformed: {broken}")
    layout = TraceLayout(doc["at"], tuple((let["name"], let["type"]) for let in doc["lets"]), rules)
    if layout.at + layout.size > MEMORY_PAGES * 65536:
        raise ModuleTraceError(f"{TRACE_SECTION!r} section places {layout.size} bytes at {layout.at}, "
                               "past the end of the module's memory")
    return layout


def _trace_shape_error(doc: Any, rules: int) -> str | None:
    if not isinstance(doc, dict) or set(doc) != {"version", "at", "rules", "lets"}:
        return 'expected an object with exactly "version", "at", "rules" and "lets"'
    if doc["version"] != TRACE_VERSION or isinstance(doc["version"], bool):
        return f"version {doc['version']!r}; this runtime reads version {TRACE_VERSION}"
    at = doc["at"]
    if not isinstance(at, int) or isinstance(at, bool) or at < RESULT_SIZE or at % 8:
        return f'"at" must be a multiple of 8 from {RESULT_SIZE} (after the result block), got {at!r}'
    if doc["rules"] != rules or isinstance(doc["rules"], bool):
        return f'"rules" is {doc["rules"]!r}; the meta section lists {rules} rules'
    lets = doc["lets"]
    if not isinstance(lets, list):
        return '"lets" must be a list'
    names = set()
    for i, let in enumerate(lets):
        if not (isinstance(let, dict) and set(let) == {"name", "type"} and isinstance(let["name"], str)
                and let["type"] in TRACE_LET_TYPES):
            return f'"lets"[{i}] must be {{"name": a string, "type": "number" or "bool"}}'
        if let["name"] in names:
            return f'"lets"[{i}]: {let["name"]!r} appears twice'
        names.add(let["name"])
    return None
