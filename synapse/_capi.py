"""A thin typed layer below wasmtime-py's public API, for the per-evaluation hot path only.

Why: wasmtime-py's `Func.__call__` and `Linker.define_func` convert every value through
`wasmtime_val_t` and Python wrappers, about 10 µs per call into wasm and 11-17 µs per host call
(measured with wasmtime 50). The C API's `*_unchecked` entry points pass raw 16-byte
`wasmtime_val_raw_t` slots instead: about 1.4 µs and 1-2 µs. Everything that is not per call
(engine, module, linker, store, instance, limits) stays on the public API.

We bind each C symbol with our own ctypes prototype (so wasmtime-py's bindings keep theirs) and pass
pointers as plain ints. wasmtime is pinned (==50.0.1) in pyproject; tests/test_capi_guard.py checks
every symbol and layout used here, and that the results equal the public API's on the same module.

Lifetimes: an int pointer is only as good as the object it came from. `Context` and `Memory` keep a
reference to their `wasmtime.Store`; whoever holds them must drop them with the store (the evaluator
replaces all three together after a trap).
"""

from __future__ import annotations

import ctypes
from ctypes import CFUNCTYPE, POINTER, c_bool, c_char_p, c_size_t, c_uint8, c_uint64, c_void_p

import wasmtime
from wasmtime import _ffi as ffi

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


class Trapped(Exception):
    """A call into wasm ended in a trap (`code` is a `wasmtime.TrapCode`, None for a host-made trap)
    or in a wasmtime error (`code` None)."""

    def __init__(self, code: wasmtime.TrapCode | None, message: str) -> None:
        super().__init__(message)
        self.code = code


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


class FuncI64ToI32:
    """An exported `(func (param i64) (result i32))`, called through wasmtime_func_call_unchecked.

    The caller guarantees the type (the interface check did); unchecked means wasmtime does not.
    """

    __slots__ = ("_context", "_func", "_slots", "_trap", "_args")

    def __init__(self, context: Context, func: wasmtime.Func) -> None:
        self._context = context
        self._func = ffi.wasmtime_func_t()
        ctypes.pointer(self._func)[0] = func._func  # our own copy: nothing else can rewrite it
        self._slots = (ValRaw * 1)()
        self._trap = c_void_p()
        self._args = (context.ptr, ctypes.addressof(self._func), ctypes.addressof(self._slots), 1,
                      ctypes.addressof(self._trap))

    def __call__(self, arg: int) -> int:
        """Call once; raise Trapped on a trap or a wasmtime error."""
        slot = self._slots[0]
        slot.i64 = arg
        error = _func_call_unchecked(*self._args)
        if error:
            raise _take_error(error)
        trap = self._trap.value
        if trap:
            # wasmtime leaves the out-parameter alone on success: clear it, or the next call would
            # see this trap again.
            self._trap.value = None
            raise _take_trap(trap)
        return slot.i32


def memory_view(context: Context, memory: wasmtime.Memory) -> memoryview:
    """A writable view of `memory`'s bytes; valid while the store lives and the memory does not grow
    (the ABI fixes it at one page, min = max)."""
    raw = ffi.wasmtime_memory_t()
    ctypes.pointer(raw)[0] = memory._memory
    base = _memory_data(context.ptr, ctypes.addressof(raw))
    size = _memory_data_size(context.ptr, ctypes.addressof(raw))
    if not base or not size:
        return memoryview(b"")
    return memoryview((ctypes.c_ubyte * size).from_address(base)).cast("B")
