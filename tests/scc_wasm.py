"""Runs compiled policy modules in plain wasmtime-py for scc's own tests (no synapse).

Host functions follow docs/abi.md: inputs cross as f64 by key, bools as 0.0/1.0, enums as the
index of the value; emit_log reads the message from the module's memory.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import wasmtime

from axon import abi

_ENGINE = wasmtime.Engine()


@dataclass
class Outcome:
    verdict: int | None  # the return value; None when the call trapped
    rule: int
    fault: int
    site: int
    gas: int
    block_verdict: int
    logs: list[tuple[int, str]] = field(default_factory=list)
    trap: str | None = None
    host_calls: int = 0


def _encode(decl: dict, value) -> float:
    if decl["type"] == "bool":
        return 1.0 if value else 0.0
    if decl["type"] == "enum":
        return float(decl["values"].index(value))
    return float(value)


def _values(decls: list[dict], given: dict) -> list[float]:
    out = []
    for decl in decls:
        value = given.get(decl["name"], decl.get("default"))
        out.append(_encode(decl, value) if value is not None else 0.0)
    return out


class Runner:
    """One instance of a module; `run` may be called many times (the module is reused)."""

    def __init__(self, wasm: bytes) -> None:
        self.meta = abi.read_meta(wasm)
        self.store = wasmtime.Store(_ENGINE)
        module = wasmtime.Module(_ENGINE, wasm)
        linker = wasmtime.Linker(_ENGINE)
        f64, i32 = wasmtime.ValType.f64(), wasmtime.ValType.i32()
        self.telemetry: list[float] = []
        self.context: list[float] = []
        self.logs: list[tuple[int, str]] = []
        self.calls = 0

        def getter(values_attr: str):
            def get(key: int) -> float:
                self.calls += 1
                values = getattr(self, values_attr)
                if not 0 <= key < len(values):
                    raise wasmtime.Trap(f"input key {key} out of range")
                return values[key]
            return get

        def emit_log(caller: wasmtime.Caller, level: int, ptr: int, length: int) -> None:
            self.calls += 1
            memory = caller["memory"]
            data = memory.read(caller, ptr, ptr + length)
            self.logs.append((level, bytes(data).decode("utf-8")))

        linker.define_func(abi.IMPORT_MODULE, "get_telemetry", wasmtime.FuncType([i32], [f64]),
                           getter("telemetry"))
        linker.define_func(abi.IMPORT_MODULE, "get_context_var", wasmtime.FuncType([i32], [f64]),
                           getter("context"))
        linker.define_func(abi.IMPORT_MODULE, "emit_log", wasmtime.FuncType([i32, i32, i32], []), emit_log,
                           access_caller=True)
        self.instance = linker.instantiate(self.store, module)
        self.memory = self.instance.exports(self.store)["memory"]
        self.evaluate = self.instance.exports(self.store)["evaluate"]

    def run(self, telemetry: dict | None = None, context: dict | None = None, budget: int | None = None
            ) -> Outcome:
        self.telemetry = _values(list(self.meta.telemetry), telemetry or {})
        self.context = _values(list(self.meta.context), context or {})
        self.logs = []
        self.calls = 0
        trap = None
        verdict = None
        try:
            verdict = self.evaluate(self.store, self.meta.gas_max if budget is None else budget)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            trap = str(exc)
        block = bytes(self.memory.read(self.store, 0, abi.RESULT_SIZE))
        v, rule, fault, site, gas = struct.unpack("<iiiiq", block)
        return Outcome(verdict, rule, fault, site, gas, v, list(self.logs), trap, self.calls)


def run(wasm: bytes, telemetry: dict | None = None, context: dict | None = None,
        budget: int | None = None) -> Outcome:
    return Runner(wasm).run(telemetry, context, budget)
