"""The hermetic sandbox (SIP-009 §6): one wasmtime engine, the interface check, stores with limits.

Stages, each a function that raises its own error:
  1. `compile_module`     wasmtime compiles the bytes (once; the Module is reused for every evaluation)
  2. `read_module_meta`   the `sopcos.meta` section decodes and speaks our ABI version
  3. `check_meta`         its rules, default, sites, gas and input declarations are usable
  4. `check_imports`      only the Sopcos host functions, with their exact signatures (SIP-009 §6.2)
  5. `check_exports`      exactly `memory` (one page, min = max) and `evaluate` (i64) -> i32
`load_module` runs them in order and returns a `PolicyModule`.

Engine. One per process, shared by every evaluator: fuel on (a second meter beside the module's own
gas, SIP-009 §6.3), epoch interruption on (a wall-clock deadline), NaN canonicalization on (the same
bits on every CPU), no WASI (nothing is ever linked but the three host functions), and the wasm
features a policy never needs (threads, shared memory, relaxed SIMD, memory64, multi-memory, GC,
exceptions, stack switching) off. One background thread advances the engine's epoch every
`EPOCH_TICK_MS` (restarted in a forked child; compilation is single-threaded so a child can compile).
The pooling allocator was considered and left off: measured, a new store plus instance costs ~21 µs
on demand vs ~11 µs pooled, paid only after a trap, and a pool caps how many instances the whole
process may hold.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass

import wasmtime

from axon import abi
from axon.abi import ModuleMeta, ModuleMetaError, Verdict, read_meta
from axon.module_check import FEATURES_OFF
from synapse.errors import ExportRefused, ImportRefused, LimitsError, MetaRefused, ModuleInvalid
from synapse.inputs import InputSpecs

EPOCH_TICK_MS = 1.0
PAGE_BYTES = 65536

# When Limits.fuel is None: enough wasmtime fuel (~ wasm instructions) for any path a correct module
# can take with its gas budget, so only a broken or hostile module ever meets this meter. scc's modules
# burn 3.6-4.5 fuel per unit of gas (measured on 10- and 1,000-rule policies, both combine modes).
FUEL_BASE = 100_000
FUEL_PER_GAS = 50


@dataclass(frozen=True)
class Limits:
    """Every resource limit of one evaluator, in one place.

    gas          budget passed to `evaluate`; None: the module's own `gas_max` (never runs out)
    fuel         wasmtime fuel per evaluation; None: FUEL_BASE + FUEL_PER_GAS x gas budget
    deadline_ms  wall-clock time per evaluation, to the epoch tick (EPOCH_TICK_MS)
    memory_bytes cap on linear memory; the ABI's one page, with no room to grow
    """

    gas: int | None = None
    fuel: int | None = None
    deadline_ms: float = 100.0
    memory_bytes: int = PAGE_BYTES

    def __post_init__(self) -> None:
        for name in ("gas", "fuel"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or not 0 <= value < 2**63):
                raise LimitsError(f"{name} must be a whole number from 0 to 2**63-1, got {value!r}")
        if not isinstance(self.deadline_ms, int | float) or isinstance(self.deadline_ms, bool) or not (
            math.isfinite(self.deadline_ms) and self.deadline_ms > 0
        ):
            raise LimitsError(
                f"deadline_ms must be a positive number of milliseconds, got {self.deadline_ms!r}"
            )
        if not _is_int(self.memory_bytes) or self.memory_bytes < PAGE_BYTES:
            raise LimitsError(
                f"memory_bytes must be at least one wasm page ({PAGE_BYTES}), got {self.memory_bytes!r}"
            )

    def gas_budget(self, meta: ModuleMeta) -> int:
        return meta.gas_max if self.gas is None else self.gas

    def fuel_budget(self, meta: ModuleMeta) -> int:
        return FUEL_BASE + FUEL_PER_GAS * self.gas_budget(meta) if self.fuel is None else self.fuel

    @property
    def deadline_ticks(self) -> int:
        # +1: the tick in progress when the call starts may be almost over.
        return math.ceil(self.deadline_ms / EPOCH_TICK_MS) + 1


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- the engine and its epoch ticker ---------------------------------------------------------------

_engine: wasmtime.Engine | None = None
_engine_lock = threading.Lock()


def engine() -> wasmtime.Engine:
    """The process's one sandbox engine (created, and its epoch ticker started, on first use)."""
    global _engine
    if _engine is None:
        with _engine_lock:
            if _engine is None:
                created = wasmtime.Engine(_config())
                _start_ticker(created)
                _engine = created
    return _engine


def _start_ticker(target: wasmtime.Engine) -> None:
    threading.Thread(target=_tick, args=(target,), name="synapse-epoch", daemon=True).start()


def _after_fork_in_child() -> None:
    # A forked child (a pre-forking server's worker) inherits the engine but not the ticker thread:
    # without a new one its deadlines would never fire.
    global _engine_lock
    _engine_lock = threading.Lock()
    if _engine is not None:
        _start_ticker(_engine)


os.register_at_fork(after_in_child=_after_fork_in_child)


def _config() -> wasmtime.Config:
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    config.cranelift_nan_canonicalization = True
    for feature in FEATURES_OFF:  # the same list Axon's module check validates against
        setattr(config, feature, False)
    config.memory_may_move = False  # the runtime reads the result block through a cached base pointer
    # Parallel compilation runs on a thread pool that a forked child does not inherit: a child that then
    # compiles waits for it forever. Measured, it is not faster here either (one large function).
    config.parallel_compilation = False
    return config


def _tick(target: wasmtime.Engine) -> None:
    # Runs while wasm runs: ctypes drops the GIL for the duration of each call into wasm.
    period = EPOCH_TICK_MS / 1000
    while True:
        time.sleep(period)
        target.increment_epoch()


# -- loading: meta, compile, interface check -----------------------------------------------------


@dataclass(frozen=True, eq=False)
class PolicyModule:
    """A compiled module that passed the interface check, with its decoded meta section."""

    meta: ModuleMeta
    inputs: InputSpecs
    module: wasmtime.Module


def load_module(wasm: bytes) -> PolicyModule:
    """Run the loading stages in order; raise the first stage's error."""
    module = compile_module(wasm)
    meta = read_module_meta(wasm)
    inputs = check_meta(meta)
    check_imports(module)
    check_exports(module)
    return PolicyModule(meta, inputs, module)


def read_module_meta(wasm: bytes) -> ModuleMeta:
    try:
        return read_meta(wasm)
    except ModuleMetaError as exc:
        raise MetaRefused(f"module refused: {exc}") from None


def check_meta(meta: ModuleMeta) -> InputSpecs:
    """The fields the runtime relies on have the documented shapes; returns the compiled inputs."""
    if not _is_int(meta.gas_max) or not 0 <= meta.gas_max < 2**63:
        raise MetaRefused(f"module refused: sopcos.meta gas_max must be a whole number, got {meta.gas_max!r}")
    if meta.default not in Verdict.__members__:
        raise MetaRefused(f"module refused: sopcos.meta default {meta.default!r} is not a verdict")
    if not meta.rules:
        raise MetaRefused("module refused: sopcos.meta lists no rules")
    for position, rule in enumerate(meta.rules):
        if not (isinstance(rule, dict) and isinstance(rule.get("id"), str)
                and rule.get("then") in Verdict.__members__):
            raise MetaRefused(f"module refused: sopcos.meta rules[{position}] needs an id and a verdict")
    if not all(isinstance(site, str) for site in meta.sites):
        raise MetaRefused("module refused: sopcos.meta sites must be JSON Pointer strings")
    return InputSpecs(meta)


def compile_module(wasm: bytes) -> wasmtime.Module:
    try:
        return wasmtime.Module(engine(), bytes(wasm))
    except wasmtime.WasmtimeError as exc:
        detail = " ".join(str(exc).split())
        raise ModuleInvalid(
            f"module refused: not a valid WebAssembly module for this sandbox: {detail}"
        ) from None


def _signature(ty: wasmtime.FuncType) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(str(p) for p in ty.params), tuple(str(r) for r in ty.results)


def _show(signature: tuple[tuple[str, ...], tuple[str, ...]]) -> str:
    params, results = signature
    return f"({', '.join(params)}) -> ({', '.join(results)})"


def _kind(ty: object) -> str:
    return {wasmtime.FuncType: "function", wasmtime.MemoryType: "memory", wasmtime.TableType: "table",
            wasmtime.GlobalType: "global"}.get(type(ty), type(ty).__name__)


def check_imports(module: wasmtime.Module) -> None:
    """Every import is one of the Sopcos host functions with its exact signature, at most once."""
    seen: set[str] = set()
    for item in module.imports:
        where = f'"{item.module}"."{item.name}"'
        if item.module != abi.IMPORT_MODULE or item.name not in abi.HOST_FUNCTIONS:
            raise ImportRefused(
                f"module refused: it imports {where} ({_kind(item.type)}); a policy module may import "
                f"only {', '.join(abi.HOST_FUNCTIONS)} from \"{abi.IMPORT_MODULE}\""
            )
        if not isinstance(item.type, wasmtime.FuncType):
            raise ImportRefused(f"module refused: it imports {where} as a {_kind(item.type)}, not a function")
        expected = abi.HOST_FUNCTIONS[item.name]
        if _signature(item.type) != expected:
            raise ImportRefused(
                f"module refused: it imports {where} with signature {_show(_signature(item.type))}; "
                f"the host function is {_show(expected)}"
            )
        if item.name in seen:
            raise ImportRefused(f"module refused: it imports {where} twice")
        seen.add(item.name)


def check_exports(module: wasmtime.Module) -> None:
    """The exports are exactly `memory` (one page, min = max, not shared) and `evaluate` (i64) -> i32."""
    exports = {item.name: item.type for item in module.exports}
    allowed = (abi.EXPORT_MEMORY, abi.EXPORT_EVALUATE)
    for name, ty in exports.items():
        if name not in allowed:
            raise ExportRefused(
                f'module refused: it exports "{name}" ({_kind(ty)}); a policy module exports exactly '
                f'"{abi.EXPORT_MEMORY}" and "{abi.EXPORT_EVALUATE}"'
            )
    for name in allowed:
        if name not in exports:
            raise ExportRefused(f'module refused: it does not export "{name}"')
    memory = exports[abi.EXPORT_MEMORY]
    if not isinstance(memory, wasmtime.MemoryType):
        raise ExportRefused(
            f'module refused: its export "{abi.EXPORT_MEMORY}" is a {_kind(memory)}, not a memory'
        )
    limits = memory.limits
    if memory.is_64 or memory.is_shared or limits.min != abi.MEMORY_PAGES or limits.max != abi.MEMORY_PAGES:
        raise ExportRefused(
            f'module refused: its memory must be exactly {abi.MEMORY_PAGES} page (min = max = '
            f"{abi.MEMORY_PAGES}, 32-bit, not shared); it has min {limits.min}, max {limits.max}"
            + (", 64-bit" if memory.is_64 else "") + (", shared" if memory.is_shared else "")
        )
    evaluate = exports[abi.EXPORT_EVALUATE]
    if not isinstance(evaluate, wasmtime.FuncType):
        raise ExportRefused(
            f'module refused: its export "{abi.EXPORT_EVALUATE}" is a {_kind(evaluate)}, not a function'
        )
    if _signature(evaluate) != abi.EVALUATE_SIGNATURE:
        raise ExportRefused(
            f'module refused: its "{abi.EXPORT_EVALUATE}" has signature {_show(_signature(evaluate))}; '
            f"the ABI requires {_show(abi.EVALUATE_SIGNATURE)}"
        )


# -- stores ----------------------------------------------------------------------------------------


def new_store(limits: Limits) -> wasmtime.Store:
    """A fresh store capped to one instance with one memory of at most `limits.memory_bytes`."""
    store = wasmtime.Store(engine())
    store.set_limits(
        memory_size=limits.memory_bytes, table_elements=10_000, instances=1, tables=1, memories=1
    )
    return store
