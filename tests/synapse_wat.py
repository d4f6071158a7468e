"""Hand-written policy modules for the synapse tests, following docs/abi.md (imports, exports, result
block, gas, `sopcos.meta`), so the runtime can be tested without the compiler.

`policy_module(body, meta)` wraps an `evaluate` body in the ABI prelude below and appends the meta
section. The prelude gives the body:
  $tel / $ctx (i32) -> f64     the host's get_telemetry / get_context_var
  $log (level, ptr, len)       the host's emit_log
  $charge (i64)                subtract gas; below zero: result block fault 3, then `unreachable`
  $decide (verdict, rule) -> i32   write the result block for a decision and return the verdict
  $fault (code, site) -> i32       write the result block for a fault and return 0 (DENY)
"""

from __future__ import annotations

import copy

import rfc8785
import wasmtime

from axon import abi

IMPORTS = """
  (import "sopcos" "get_telemetry" (func $tel (param i32) (result f64)))
  (import "sopcos" "get_context_var" (func $ctx (param i32) (result f64)))
  (import "sopcos" "emit_log" (func $log (param i32 i32 i32)))
"""

HELPERS = """
  (global $gas (mut i64) (i64.const 0))
  (global $budget (mut i64) (i64.const 0))
  (func $block (param $v i32) (param $r i32) (param $f i32) (param $s i32) (param $g i64)
    (i32.store (i32.const 0) (local.get $v))
    (i32.store (i32.const 4) (local.get $r))
    (i32.store (i32.const 8) (local.get $f))
    (i32.store (i32.const 12) (local.get $s))
    (i64.store (i32.const 16) (local.get $g)))
  (func $used (result i64) (i64.sub (global.get $budget) (global.get $gas)))
  (func $charge (param $n i64)
    (if (i64.lt_s (i64.sub (global.get $gas) (local.get $n)) (i64.const 0))
      (then
        (call $block (i32.const 0) (i32.const -1) (i32.const 3) (i32.const -1) (global.get $budget))
        (unreachable)))
    (global.set $gas (i64.sub (global.get $gas) (local.get $n))))
  (func $decide (param $v i32) (param $r i32) (result i32)
    (call $block (local.get $v) (local.get $r) (i32.const 0) (i32.const -1) (call $used))
    (local.get $v))
  (func $fault (param $code i32) (param $site i32) (param $rule i32) (result i32)
    (call $block (i32.const 0) (local.get $rule) (local.get $code) (local.get $site) (call $used))
    (i32.const 0))
"""

MEMORY = '  (memory (export "memory") 1 1)\n'


def meta(**fields: object) -> dict:
    """A meta document with every field, overridden by `fields` (`telemetry`/`context` go to inputs)."""
    doc = {
        "abi": abi.ABI_VERSION,
        "policy": "test-policy",
        "version": "1.0.0",
        "source_hash": "sha256:" + "0" * 64,
        "compiler": "hand-written",
        "gas_max": 100,
        "combine": "first-match",
        "default": "DENY",
        "inputs": {"telemetry": [], "context": []},
        "rules": [{"id": "only", "then": "ALLOW"}],
        "sites": [],
    }
    for key, value in fields.items():
        if key in ("telemetry", "context"):
            doc["inputs"][key] = copy.deepcopy(value)
        else:
            doc[key] = copy.deepcopy(value)
    return doc


def with_meta(wasm: bytes, doc: dict | None) -> bytes:
    return wasm if doc is None else wasm + abi.custom_section(abi.META_SECTION, rfc8785.dumps(doc))


def policy_module(body: str, doc: dict | None, *, data: str = "", extra: str = "", locals_: str = "",
                  imports: str = IMPORTS, memory: str = MEMORY) -> bytes:
    """An ABI module whose `evaluate` runs `body` after setting the gas counter from the budget."""
    wat = f"""(module
{imports}
{memory}
  {data}
{HELPERS}
  {extra}
  (func (export "evaluate") (param $budget i64) (result i32) {locals_}
    (global.set $gas (local.get $budget))
    (global.set $budget (local.get $budget))
    {body})
)"""
    return with_meta(wasmtime.wat2wasm(wat), doc)


# -- the SIP-001 §1 example, by hand ------------------------------------------------------------

BOILER_META = meta(
    policy="boiler-guard",
    gas_max=40,
    telemetry=[
        {"name": "pressure_bar", "type": "number", "min": 0, "max": 250, "unit": "bar"},
        {"name": "temp_c", "type": "number", "default": 20},
        {"name": "valve_open", "type": "bool"},
    ],
    context=[{"name": "mode", "type": "enum", "values": ["AUTO", "MANUAL", "MAINTENANCE"]}],
    rules=[
        {"id": "halt-overpressure", "then": "HALT"},
        {"id": "maintenance", "then": "DENY"},
        {"id": "high-open", "then": "WARN"},
        {"id": "normal", "then": "ALLOW"},
    ],
    sites=[],
)

# Each rule charges 10 gas before it runs: 40 over the longest path, as gas_max says.
BOILER_BODY = """
    (call $charge (i64.const 10))
    (if (f64.gt (call $tel (i32.const 0)) (f64.const 95))
      (then
        (call $log (i32.const 2) (i32.const 1024) (i32.const 21))
        (return (call $decide (i32.const 3) (i32.const 0)))))
    (call $charge (i64.const 10))
    (if (f64.eq (call $ctx (i32.const 0)) (f64.const 2))
      (then (return (call $decide (i32.const 0) (i32.const 1)))))
    (call $charge (i64.const 10))
    (if (i32.and (f64.gt (call $tel (i32.const 0)) (f64.const 80))
                 (f64.eq (call $tel (i32.const 2)) (f64.const 1)))
      (then
        (call $log (i32.const 1) (i32.const 1100) (i32.const 16))
        (return (call $decide (i32.const 2) (i32.const 2)))))
    (call $charge (i64.const 10))
    (if (f64.le (call $tel (i32.const 0)) (f64.const 80))
      (then (return (call $decide (i32.const 1) (i32.const 3)))))
    (call $decide (i32.const 0) (i32.const -1))
"""
BOILER_DATA = '(data (i32.const 1024) "pressure above 95 bar") (data (i32.const 1100) "high and venting")'


def boiler(doc: dict | None = BOILER_META) -> bytes:
    return policy_module(BOILER_BODY, doc, data=BOILER_DATA)


def boiler_inputs(pressure: float = 50.0, mode: str = "AUTO", valve: bool = False) -> tuple[dict, dict]:
    return {"pressure_bar": pressure, "valve_open": valve}, {"mode": mode}
