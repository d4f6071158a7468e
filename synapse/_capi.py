"""A thin typed layer below wasmtime-py's public API, for the per-evaluation hot path only.

Why: wasmtime-py's `Func.__call__` and `Linker.define_func` convert every value through
`wasmtime_val_t` and Python wrappers, and `InstancePre.instantiate` plus `Instance.exports` wrap every
export in Python objects: together far more than the work itself (figures in docs/abi.md, "Fresh
state"). The C API's `*_unchecked` entry points pass raw 16-byte `wasmtime_val_raw_t` slots instead,
and `FreshInstances` instantiates and finds the two exports into buffers it allocated once.
Everything that is not per evaluation (engine, module, linker, InstancePre, store, limits) stays on the
public API, except the pooling allocator's settings, which wasmtime-py does not expose.

We bind each C symbol with our own ctypes prototype (so wasmtime-py's bindings keep theirs) and pass
pointers as plain ints. wasmtime is pinned (==50.0.1) in pyproject; tests/synapse/test_capi_guard.py checks
every symbol and layout used here, and that the results equal the public API's on the same module
(docs/accelerators.md says how to move the pin).

Lifetimes: an int pointer is only as good as the object it came from. `Context` keeps a reference to
its `wasmtime.Store`, and `FreshInstances` to the `Context` of its latest instance, so the store of the
instance being read outlives every read.
"""

from __future__ import annotations

import ctypes
from ctypes import CFUNCTYPE, POINTER, c_bool, c_char_p, c_size_t, c_uint8, c_uint64, c_void_p
from typing import NoReturn

import wasmtime
from wasmtime import _ffi as ffi

from synapse.sandbox import Limits, Trapped, new_store

ValRaw = ffi.wasmtime_val_raw_t
VAL_RAW_SIZE = 16  # sizeof(wasmtime_val_raw_t): a v128 is its widest member

# size_t (*)(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args_and_results, size_t n):
# returns NULL, or a wasm_trap_t* that wasmtime takes ownership of.
HostCallback = CFUNCTYPE(c_size_t, c_void_p, c_void_p, POINTER(ValRaw), c_size_t)


def _bind(name: str, restype: object, *argtypes: object) -> ctypes._CFuncPtr:
    return CFUNCTYPE(restype, *argtypes)((name, ffi.dll))


_func_call_unchecked = _bind(
    "wasmtime_func_call_unchecked", c_void_p, c_void_p, c_void_p, c_void_p, c_size_t, c_void_p
)
_linker_define_func_unchecked = _bind(
    "wasmtime_linker_define_func_unchecked",
    c_void_p, c_void_p, c_char_p, c_size_t, c_char_p, c_size_t, c_void_p, HostCallback, c_void_p, c_void_p,
)
_context_set_fuel = _bind("wasmtime_context_set_fuel", c_void_p, c_void_p, c_uint64)
_context_get_fuel = _bind("wasmtime_context_get_fuel", c_void_p, c_void_p, POINTER(c_uint64))
_context_set_epoch_deadline = _bind("wasmtime_context_set_epoch_deadline", None, c_void_p, c_uint64)
_instance_pre_instantiate = _bind(
    "wasmtime_instance_pre_instantiate", c_void_p, c_void_p, c_void_p, c_void_p, c_void_p
)
_instance_export_get = _bind(
    "wasmtime_instance_export_get", c_bool, c_void_p, c_void_p, c_char_p, c_size_t, c_void_p
)
_memory_data = _bind("wasmtime_memory_data", c_void_p, c_void_p, c_void_p)
_memory_data_size = _bind("wasmtime_memory_data_size", c_size_t, c_void_p, c_void_p)
_trap_new = _bind("wasmtime_trap_new", c_void_p, c_char_p, c_size_t)
_trap_code = _bind("wasmtime_trap_code", c_bool, c_void_p, POINTER(c_uint8))
_trap_message = _bind("wasm_trap_message", None, c_void_p, POINTER(ffi.wasm_byte_vec_t))
_trap_delete = _bind("wasm_trap_delete", None, c_void_p)
_error_message = _bind("wasmtime_error_message", None, c_void_p, POINTER(ffi.wasm_byte_vec_t))
_error_delete = _bind("wasmtime_error_delete", None, c_void_p)
_byte_vec_delete = _bind("wasm_byte_vec_delete", None, POINTER(ffi.wasm_byte_vec_t))


def _address(pointer: object) -> int:
    return ctypes.cast(pointer, c_void_p).value or 0


def _take_message(getter: ctypes._CFuncPtr, pointer: int) -> str:
    vec = ffi.wasm_byte_vec_t()
    getter(pointer, ctypes.byref(vec))
    try:
        return ctypes.string_at(vec.data, vec.size).decode("utf-8", "replace").rstrip("\0")
    finally:
        _byte_vec_delete(ctypes.byref(vec))


def _take_trap(trap: int) -> Trapped:
    """Read and free a wasm_trap_t*."""
    try:
        raw_code = c_uint8()
        code = wasmtime.TrapCode(raw_code.value) if _trap_code(trap, ctypes.byref(raw_code)) else None
        return Trapped(code, _take_message(_trap_message, trap))
    finally:
        _trap_delete(trap)


def _take_error(error: int) -> Trapped:
    """Read and free a wasmtime_error_t*."""
    try:
        return Trapped(None, _take_message(_error_message, error))
    finally:
        _error_delete(error)


def new_trap(message: str) -> int:
    """A fresh wasm_trap_t*, for a host callback to return (wasmtime then owns it)."""
    data = message.encode("utf-8", "replace")
    return _trap_new(data, len(data))


def define_host_function(
    linker: wasmtime.Linker, module: str, name: str, ty: wasmtime.FuncType, callback: HostCallback
) -> None:
    """Define `module.name` in `linker` as an unchecked host function.

    The caller keeps `callback` alive as long as the linker and every instance made from it.
    `ty` must have been made for this linker's engine (a FuncType reused with a second engine
    aborts the process), so make a fresh one per definition.
    """
    module_bytes, name_bytes = module.encode(), name.encode()
    error = _linker_define_func_unchecked(
        _address(linker.ptr()), module_bytes, len(module_bytes), name_bytes, len(name_bytes),
        _address(ty.ptr()), callback, None, None,
    )
    if error:
        raise wasmtime.WasmtimeError(str(_take_error(error)))


class Context:
    """A store's context pointer, with the per-call setters. Keeps its store alive."""

    __slots__ = ("store", "ptr")

    def __init__(self, store: wasmtime.Store) -> None:
        self.store = store
        self.ptr = _address(store._context())

    def set_fuel(self, fuel: int) -> None:
        error = _context_set_fuel(self.ptr, fuel)
        if error:
            raise wasmtime.WasmtimeError(str(_take_error(error)))

    def get_fuel(self) -> int:
        remaining = c_uint64()
        error = _context_get_fuel(self.ptr, ctypes.byref(remaining))
        if error:
            raise wasmtime.WasmtimeError(str(_take_error(error)))
        return remaining.value

    def set_epoch_deadline(self, ticks_after_current: int) -> None:
        _context_set_epoch_deadline(self.ptr, ticks_after_current)


class FreshInstances:
    """Instances of one module, made one at a time from its `wasmtime.InstancePre`.

    `instantiate` makes a new instance in a store (a start function runs then, on that store's fuel and
    deadline) and finds its `evaluate` (i64) -> i32 and its `memory`; `call` and `read` act on the
    latest instance. The caller guarantees the export types (the interface check did): `call` is
    unchecked, so wasmtime does not.
    """

    __slots__ = ("_pre", "_pre_ptr", "_instance", "_evaluate", "_memory", "_slots", "_trap", "_made_at",
                 "_context", "_args", "_base", "_names")

    def __init__(self, pre: wasmtime.InstancePre, evaluate: str, memory: str) -> None:
        self._pre = pre  # its pointer is used below
        self._pre_ptr = _address(pre.ptr())
        self._instance = ffi.wasmtime_instance_t()
        self._evaluate = ffi.wasmtime_extern_t()
        self._memory = ffi.wasmtime_extern_t()
        self._slots = (ValRaw * 1)()
        self._trap = c_void_p()
        self._names = (evaluate.encode(), memory.encode())
        self._made_at = (ctypes.addressof(self._instance), ctypes.addressof(self._trap),
                         ctypes.addressof(self._evaluate), ctypes.addressof(self._memory))
        self._context: Context | None = None
        self._args: tuple[int, int, int, int, int] | None = None
        self._base = 0

    def new_store(self, limits: Limits) -> Context:
        return Context(new_store(limits))

    def instantiate(self, context: Context) -> None:
        """Make a new instance in `context`'s store; raise Trapped if that fails or its start function
        traps."""
        self._context, self._args, self._base = None, None, 0
        instance_at, trap_at, evaluate_at, memory_at = self._made_at
        ptr = context.ptr
        error = _instance_pre_instantiate(self._pre_ptr, ptr, instance_at, trap_at)
        if error or self._trap.value:
            self._raise_failure(error)
        evaluate, memory = self._names
        if not (_instance_export_get(ptr, instance_at, evaluate, len(evaluate), evaluate_at)
                and self._evaluate.kind == ffi.WASMTIME_EXTERN_FUNC.value
                and _instance_export_get(ptr, instance_at, memory, len(memory), memory_at)
                and self._memory.kind == ffi.WASMTIME_EXTERN_MEMORY.value):
            raise Trapped(None, f"the instance does not export {evaluate.decode()} and {memory.decode()}")
        of = ffi.wasmtime_extern_t.of.offset
        self._base = _memory_data(ptr, memory_at + of)
        self._args = (ptr, evaluate_at + of, ctypes.addressof(self._slots), 1, trap_at)
        self._context = context

    def call(self, arg: int) -> int:
        """Call the latest instance's `evaluate` once; raise Trapped on a trap or a wasmtime error."""
        slot = self._slots[0]
        slot.i64 = arg
        error = _func_call_unchecked(*self._args)
        if error or self._trap.value:
            self._raise_failure(error)
        return slot.i32

    def _raise_failure(self, error: int | None) -> NoReturn:
        """Raise the wasmtime error, else the trap left in the out-parameter."""
        if error:
            raise _take_error(error)
        trap = self._trap.value
        # wasmtime leaves the out-parameter alone on success: clear it, or the next call would see
        # this trap again.
        self._trap.value = None
        raise _take_trap(trap)

    def memory_size(self) -> int:
        """Bytes of the latest instance's memory."""
        return _memory_data_size(self._context.ptr, self._made_at[3] + ffi.wasmtime_extern_t.of.offset)

    def read(self, start: int, length: int) -> bytes:
        """Bytes of the latest instance's memory; the caller keeps start + length within `memory_size()`."""
        return ctypes.string_at(self._base + start, length)

    def write(self, start: int, data: bytes) -> None:
        """Write into the latest instance's memory (the trace's request word; never on the decision path);
        the caller keeps start + len(data) within `memory_size()`."""
        ctypes.memmove(self._base + start, data, len(data))


def use_pooling_allocator(
    config: wasmtime.Config, *, instances: int, memory_bytes: int, table_elements: int, keep_resident: int
) -> None:
    """Switch `config` to wasmtime's pooling instance allocator, for at most `instances` live instances
    (each with at most one memory of `memory_bytes` and one table of `table_elements`) in the process.
    The first `keep_resident` bytes of a memory slot are zeroed rather than released when its instance
    goes, so a new instance there costs no page faults."""
    pool = ffi.wasmtime_pooling_allocation_config_new()
    try:
        ffi.wasmtime_pooling_allocation_config_total_core_instances_set(pool, instances)
        ffi.wasmtime_pooling_allocation_config_total_memories_set(pool, instances)
        ffi.wasmtime_pooling_allocation_config_total_tables_set(pool, instances)
        ffi.wasmtime_pooling_allocation_config_max_memory_size_set(pool, memory_bytes)
        ffi.wasmtime_pooling_allocation_config_table_elements_set(pool, table_elements)
        ffi.wasmtime_pooling_allocation_config_linear_memory_keep_resident_set(pool, keep_resident)
        ffi.wasmtime_pooling_allocation_strategy_set(config.ptr(), pool)  # copies the settings
    finally:
        ffi.wasmtime_pooling_allocation_config_delete(pool)
