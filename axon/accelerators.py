"""The optional accelerators, and the one switch that turns them all off (docs/accelerators.md).

Each accelerator stands in for a reference path and keeps the reference's rules; tests check that the
two agree:
  c-api           synapse/_capi.py: the evaluator's per-evaluation calls through wasmtime's C API and
                  the pooling allocator, for wasmtime-py's public API and its default allocator
  pybase64        SIMD base64 decoding of an envelope's blob, for binascii (axon/envelope.py)
  jsonschema-rs   a compiled validator's "valid", for jsonschema (axon/envelope.py, axon/abi.py)
  strictjson-fast orjson plus a key count, for the standard library's strict parser (axon/strictjson.py)
  messaging-fast  a key count and one check per field, for the SIP-017 envelope schema
                  (axon/messaging/envelope.py)

`SOPCOS_ACCELERATORS=off` in the environment turns every one off for the process. It is read once, when
this module is first imported: a process never mixes the two ways. Unset, empty, `on`, `1`, `true` or
`yes` leave them on; any other value turns them off, since the reference paths are the ones that are
always right.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

ENV_VAR = "SOPCOS_ACCELERATORS"
_ON = frozenset({"", "on", "1", "true", "yes"})

ENABLED: bool = os.environ.get(ENV_VAR, "").strip().lower() in _ON


def _optional(name: str) -> ModuleType | None:
    if not ENABLED:
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


pybase64 = _optional("pybase64")
jsonschema_rs = _optional("jsonschema_rs")

# The accelerators this process uses (benchmarks and `--version`-style reports name them).
IN_USE: tuple[str, ...] = tuple(
    name for name, used in (("c-api", ENABLED), ("pybase64", pybase64 is not None),
                            ("jsonschema-rs", jsonschema_rs is not None), ("strictjson-fast", ENABLED),
                            ("messaging-fast", ENABLED))
    if used
)


def compiled_schema(schema: dict[str, Any]) -> Any:
    """jsonschema-rs's validator for `schema`, or None when it is off or not installed."""
    return None if jsonschema_rs is None else jsonschema_rs.Draft202012Validator(schema)


def known_valid(compiled: Any, doc: Any) -> bool:
    """True only when `compiled` (from `compiled_schema`) exists and says `doc` is valid. Only that answer
    is taken from it: anything else (off, invalid, a value it cannot convert such as a lone surrogate)
    goes to jsonschema, the reference, which also words the error."""
    if compiled is None:
        return False
    try:
        return compiled.is_valid(doc)
    except ValueError:
        return False
