"""The hermetic sandbox (SIP-009 §6): one wasmtime engine, the interface check, stores with limits.

Stages, each a function that raises its own error:
  1. `check_interface`    Axon's module check (axon/module_check.py, the one set of ABI rules, SIP-009
                          §6.2): valid wasm with the same features off as this engine, only the Sopcos
                          host functions with their exact signatures, exactly `memory` (one page,
                          min = max) and `evaluate` (i64) -> i32, a `sopcos.meta` for our ABI version;
                          its refusals become ours. It runs first: a refused module is never compiled.
  2. `check_meta`         the input declarations are usable (the meta schema checked the rest)
  3. `compile_module`     wasmtime compiles the bytes (once; the Module is reused for every evaluation)
`load_module` runs them in order and returns a `PolicyModule`.

Engine. One per process, shared by every evaluator: fuel on (a second meter beside the module's own
gas, SIP-009 §6.3), epoch interruption on (a wall-clock deadline), NaN canonicalization on (the same
bits on every CPU), no WASI (nothing is ever linked but the three host functions), and the wasm
features a policy never needs (threads, shared memory, relaxed SIMD, memory64, multi-memory, GC,
exceptions, stack switching) off. One background thread advances the engine's epoch every
`EPOCH_TICK_MS` (restarted in a forked child; compilation is single-threaded so a child can compile).

Instances. Every evaluation runs in a new instance (synapse/evaluate.py), so making one must be cheap:
the engine uses wasmtime's pooling allocator (memory slots made once and kept resident, a module's
memory image copied in; an accelerator: with SOPCOS_ACCELERATORS=off, the default allocator), and a
store holds up to `INSTANCES_PER_STORE` instances before the evaluator replaces it, so a store's own
cost is shared. The pool caps the instances alive in the process at `POOL_INSTANCES`; an evaluator
holds at most one store. Each memory is reserved `MEMORY_SLOT_BYTES` without guard pages (wasmtime
checks bounds explicitly; a policy touches memory rarely), which keeps the pool's address space
small. Figures: docs/abi.md, "Fresh state".
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass

import wasmtime

from axon import accelerators, module_check
from axon.abi import ModuleMeta, ModuleTraceError, TraceLayout, read_trace_layout
from axon.module_check import FEATURES_OFF
from synapse.errors import ExportRefused, ImportRefused, LimitsError, MetaRefused, ModuleError, ModuleInvalid
from synapse.inputs import InputSpecs

EPOCH_TICK_MS = 1.0
PAGE_BYTES = 65536
MEMORY_SLOT_BYTES = 4 * PAGE_BYTES  # the most memory any instance may have (Limits.memory_bytes)
INSTANCES_PER_STORE = 16
POOL_INSTANCES = 8192
TABLE_ELEMENTS = 10_000

# When Limits.fuel is None: enough wasmtime fuel (~ wasm instructions) for any path a correct module
# can take with its gas budget, so only a broken or hostile module ever meets this meter (the fuel scc's
# modules burn per unit of gas, and so the margin, is in docs/abi.md under Gas).
FUEL_BASE = 100_000
FUEL_PER_GAS = 50


@dataclass(frozen=True)
class Limits:
    """Every resource limit of one evaluator, in one place.

    gas          budget passed to `evaluate`; None: the module's own `gas_max` (never runs out)
    fuel         wasmtime fuel per evaluation; None: FUEL_BASE + FUEL_PER_GAS x gas budget
    deadline_ms  wall-clock time per evaluation, to the epoch tick (EPOCH_TICK_MS)
    memory_bytes cap on linear memory; the ABI's one page, with no room to grow (at most
                 MEMORY_SLOT_BYTES)
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
        if not _is_int(self.memory_bytes) or not PAGE_BYTES <= self.memory_bytes <= MEMORY_SLOT_BYTES:
            raise LimitsError(
                f"memory_bytes must be from one wasm page ({PAGE_BYTES}) to {MEMORY_SLOT_BYTES}, "
                f"got {self.memory_bytes!r}"
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
    config.memory_reservation = MEMORY_SLOT_BYTES
    config.memory_reservation_for_growth = 0
    config.memory_guard_size = 0
    if accelerators.ENABLED:  # wasmtime-py's public API has no setting for it (docs/accelerators.md)
        from synapse import _capi

        _capi.use_pooling_allocator(config, instances=POOL_INSTANCES, memory_bytes=MEMORY_SLOT_BYTES,
                                    table_elements=TABLE_ELEMENTS, keep_resident=PAGE_BYTES)
    # Parallel compilation runs on a thread pool that a forked child does not inherit: a child that then
    # compiles waits for it forever.
    config.parallel_compilation = False
    return config


def _tick(target: wasmtime.Engine) -> None:
    # Runs while wasm runs: ctypes drops the GIL for the duration of each call into wasm.
    period = EPOCH_TICK_MS / 1000
    while True:
        time.sleep(period)
        target.increment_epoch()


# -- loading: interface check, meta, compile ------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PolicyModule:
    """A compiled module that passed the interface check, with its decoded meta section, and where it
    writes its trace when asked (None: it writes none; an error: its trace section is unreadable, which
    only explaining reports, docs/abi.md "Trace")."""

    meta: ModuleMeta
    inputs: InputSpecs
    module: wasmtime.Module
    trace: TraceLayout | ModuleTraceError | None = None


def load_module(wasm: bytes) -> PolicyModule:
    """Run the loading stages in order; raise the first stage's error."""
    meta = check_interface(wasm).meta
    inputs = check_meta(meta)
    return PolicyModule(meta, inputs, compile_module(wasm), trace_layout(wasm, meta))


def trace_layout(wasm: bytes, meta: ModuleMeta) -> TraceLayout | ModuleTraceError | None:
    """The module's trace layout, or why it cannot be read: deciding never needs it."""
    try:
        return read_trace_layout(_in_place(wasm), len(meta.rules))
    except ModuleTraceError as exc:
        return exc


def check_interface(wasm: bytes) -> module_check.ModuleInterface:
    # Before compiling, so that a refused module costs no compilation. wasmtime validates once here and
    # once more when compiling, a small share of loading (docs/artifacts.md, Performance). Checking after
    # compiling instead would not save it safely: wasmtime-py compiles WAT *text* too, whose bytes are no
    # binary to read.
    try:
        return module_check.check_module(_in_place(wasm))
    except module_check.ModuleInterfaceError as exc:
        raise _refused(exc) from None


def compile_module(wasm: bytes) -> wasmtime.Module:
    try:
        return wasmtime.Module(engine(), _in_place(wasm))
    except wasmtime.WasmtimeError as exc:
        raise _refused(module_check.WasmInvalid.from_wasmtime(exc)) from None


def _in_place(wasm: bytes | bytearray) -> bytes | bytearray:
    """A decrypted module arrives as a locked bytearray (synapse.hardening): read it where it is, since
    a bytes() copy would be neither locked nor wiped."""
    return wasm if isinstance(wasm, bytes | bytearray) else bytes(wasm)


# Axon's refusal -> the runtime's error (and code) for it.
_REFUSALS: dict[type[module_check.ModuleInterfaceError], type[ModuleError]] = {
    module_check.WasmInvalid: ModuleInvalid,
    module_check.ImportMismatch: ImportRefused,
    module_check.ExportMismatch: ExportRefused,
    module_check.MetaUnreadable: MetaRefused,
}


def _refused(exc: module_check.ModuleInterfaceError) -> ModuleError:
    return _REFUSALS.get(type(exc), ModuleError)(f"module refused: {exc}")


def check_meta(meta: ModuleMeta) -> InputSpecs:
    """Compile the input declarations, checking what the meta schema cannot say (names unique, min <=
    max, defaults their own declarations allow). The section's shape was checked by `read_meta`
    against axon/schema/sopcos-meta.schema.json, the one rule set Axon's verify uses too."""
    return InputSpecs(meta)


# -- stores ----------------------------------------------------------------------------------------


def new_store(limits: Limits) -> wasmtime.Store:
    """A fresh store for up to INSTANCES_PER_STORE instances, each with one memory of at most
    `limits.memory_bytes` and one table."""
    store = wasmtime.Store(engine())
    store.set_limits(memory_size=limits.memory_bytes, table_elements=TABLE_ELEMENTS,
                     instances=INSTANCES_PER_STORE, tables=INSTANCES_PER_STORE, memories=INSTANCES_PER_STORE)
    return store


# -- instances ----------------------------------------------------------------------------------------


class Trapped(Exception):
    """A call into wasm, or an instantiation, ended in a trap (`code` is a `wasmtime.TrapCode`, None for
    a trap a host function made) or in a wasmtime error (`code` None)."""

    def __init__(self, code: wasmtime.TrapCode | None, message: str) -> None:
        super().__init__(message)
        self.code = code


class PublicInstances:
    """Instances of one module made one at a time from its InstancePre, on wasmtime-py's public API: the
    reference path, taken when the accelerators are off (axon/accelerators.py). synapse/_capi.py's
    FreshInstances does the same through the C API; tests/synapse/test_capi_guard.py holds them equal.

    `instantiate` makes a new instance in a store from `new_store` and finds its `evaluate` and
    `memory` exports; `call` and `read` act on the latest instance.
    """

    __slots__ = ("_pre", "_names", "_store", "_evaluate", "_memory")

    def __init__(self, pre: wasmtime.InstancePre, evaluate: str, memory: str) -> None:
        self._pre = pre
        self._names = (evaluate, memory)
        self._store: wasmtime.Store | None = None
        self._evaluate: wasmtime.Func | None = None
        self._memory: wasmtime.Memory | None = None

    def new_store(self, limits: Limits) -> wasmtime.Store:
        return new_store(limits)

    def instantiate(self, store: wasmtime.Store) -> None:
        self._store = self._evaluate = self._memory = None
        try:
            exports = self._pre.instantiate(store).exports(store)
        except Exception as exc:  # a trap, a wasmtime error, or what a host function raised
            raise _trapped(exc) from None
        evaluate, memory = (exports.get(name) for name in self._names)
        if not (isinstance(evaluate, wasmtime.Func) and isinstance(memory, wasmtime.Memory)):
            raise Trapped(None, f"the instance does not export {self._names[0]} and {self._names[1]}")
        self._store, self._evaluate, self._memory = store, evaluate, memory

    def call(self, arg: int) -> int:
        try:
            return self._evaluate(self._store, arg)
        except Exception as exc:
            raise _trapped(exc) from None

    def memory_size(self) -> int:
        return self._memory.data_len(self._store)

    def read(self, start: int, length: int) -> bytes:
        return self._memory.read(self._store, start, start + length)

    def write(self, start: int, data: bytes) -> None:
        self._memory.write(self._store, data, start)


def _trapped(exc: Exception) -> Trapped:
    return Trapped(exc.trap_code if isinstance(exc, wasmtime.Trap) else None, str(exc))
