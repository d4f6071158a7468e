"""The policy-module ABI shared by the compiler, the verifier and the runtime (docs/abi.md).

Only constants and pure functions live here, so that `scc` and `synapse` agree on one definition.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass

ABI_VERSION = 1
IMPORT_MODULE = "sopcos"
META_SECTION = "sopcos.meta"

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
        doc = json.loads(data)
        return cls(
            abi=doc["abi"],
            policy=doc["policy"],
            version=doc["version"],
            source_hash=doc["source_hash"],
            compiler=doc["compiler"],
            gas_max=doc["gas_max"],
            combine=doc["combine"],
            default=doc["default"],
            telemetry=tuple(doc["inputs"]["telemetry"]),
            context=tuple(doc["inputs"]["context"]),
            rules=tuple(doc["rules"]),
            sites=tuple(doc["sites"]),
        )
