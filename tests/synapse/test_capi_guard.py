"""Guards synapse/_capi.py, the layer below wasmtime-py's public API: the pinned version, the C symbols
and struct layouts it relies on, and that its fast path gives exactly what the public API gives on the
same module. If wasmtime is upgraded, this file says what broke before a plant does."""

from __future__ import annotations

import ctypes
import importlib.metadata
import itertools
import struct

import pytest
import wasmtime
from wasmtime import _ffi as ffi

from axon import abi, accelerators
from axon.abi import Verdict
from axon.module_check import FEATURES_OFF
from synapse import _capi, sandbox
from synapse.errors import InstantiationFailed
from synapse.evaluate import Evaluator
from synapse.sandbox import Limits, new_store
from tests.synapse_wat import BOILER_DATA, BOILER_META, boiler, meta, policy_module


def test_wasmtime_is_the_pinned_version():
    assert importlib.metadata.version("wasmtime") == "50.0.1"


@pytest.mark.parametrize("symbol", [
    "wasmtime_func_call_unchecked", "wasmtime_linker_define_func_unchecked", "wasmtime_context_set_fuel",
    "wasmtime_context_get_fuel", "wasmtime_context_set_epoch_deadline", "wasmtime_memory_data",
    "wasmtime_memory_data_size", "wasmtime_trap_new", "wasmtime_trap_code", "wasm_trap_message",
    "wasm_trap_delete", "wasmtime_error_message", "wasmtime_error_delete", "wasm_byte_vec_delete",
    "wasmtime_instance_pre_instantiate", "wasmtime_instance_export_get",
    "wasmtime_pooling_allocation_config_new", "wasmtime_pooling_allocation_strategy_set",
])
def test_the_c_symbols_exist(symbol):
    assert ffi.dll[symbol] is not None


@pytest.mark.parametrize("name", [
    *FEATURES_OFF, "consume_fuel", "epoch_interruption", "cranelift_nan_canonicalization", "memory_may_move",
    "parallel_compilation", "memory_reservation", "memory_reservation_for_growth", "memory_guard_size",
])
def test_every_engine_setting_is_one_wasmtime_py_has(name):
    # wasmtime.Config takes any attribute: a setting renamed upstream would be set on nothing, silently.
    assert isinstance(getattr(wasmtime.Config, name, None), property)


def test_the_struct_layouts_match_the_c_headers():
    # wasmtime_val_raw_t: a 16-byte union (v128 is its widest member); scalars live at offset 0.
    assert ctypes.sizeof(_capi.ValRaw) == _capi.VAL_RAW_SIZE == 16
    assert _capi.ValRaw.i32.offset == _capi.ValRaw.i64.offset == _capi.ValRaw.f64.offset == 0
    # wasmtime_func_t {uint64 store_id; void *__private}; wasmtime_memory_t {{uint64; uint32}; uint32}.
    assert ctypes.sizeof(ffi.wasmtime_func_t) == 16
    assert ctypes.sizeof(ffi.wasmtime_memory_t) == 24
    # wasmtime_instance_t {uint64 store_id; size_t __private}; wasmtime_extern_t {uint8 kind; union of}.
    assert ctypes.sizeof(ffi.wasmtime_instance_t) == 16
    assert ffi.wasmtime_extern_t.of.offset == 8 and ctypes.sizeof(ffi.wasmtime_extern_t) == 32
    assert (ffi.WASMTIME_EXTERN_FUNC.value, ffi.WASMTIME_EXTERN_MEMORY.value) == (0, 3)
    assert ffi.wasmtime_trap_code_t is ctypes.c_uint8
    assert [name for name, _ in ffi.wasm_byte_vec_t._fields_] == ["size", "data"]
    assert wasmtime.TrapCode.OUT_OF_FUEL.value == 11 and wasmtime.TrapCode.INTERRUPT.value == 10


# -- the fast path gives what the public API gives ------------------------------------------------------

CALC = """(module
  (import "sopcos" "get_telemetry" (func $get (param i32) (result f64)))
  (memory (export "memory") 1 1)
  (func (export "calc") (param $x i64) (result i32)
    (i32.wrap_i64 (i64.add (i64.mul (local.get $x) (i64.const 3)) (i64.const 1))))
  (func (export "fetch") (param $key i64) (result i32)
    (f64.store (i32.const 32) (call $get (i32.wrap_i64 (local.get $key))))
    (i32.const 0)))"""


def _host(values: dict[int, float], keys_seen: list[int]) -> _capi.HostCallback:
    def callback(_env, _caller, args, _nargs):
        slot = args[0]
        keys_seen.append(slot.i32)
        if slot.i32 not in values:
            return _capi.new_trap(f"no key {slot.i32}")
        slot.f64 = values[slot.i32]
        return 0

    return _capi.HostCallback(callback)


VALUES = {0: -0.0, 1: 5e-324, 2: 1.7976931348623157e308, 3: 123.456, -1: -2.5}


@pytest.fixture()
def fast():
    """CALC with an unchecked host function: fresh instances of it for "calc" and for "fetch"."""
    keys: list[int] = []
    callback = _host(VALUES, keys)
    linker = wasmtime.Linker(sandbox.engine())
    f64_of_i32 = wasmtime.FuncType([wasmtime.ValType.i32()], [wasmtime.ValType.f64()])
    _capi.define_host_function(linker, "sopcos", "get_telemetry", f64_of_i32, callback)
    context = _capi.Context(new_store(Limits()))
    context.set_fuel(10**6)
    context.set_epoch_deadline(10**6)
    pre = linker.instantiate_pre(wasmtime.Module(sandbox.engine(), wasmtime.wat2wasm(CALC)))
    instances = {name: _capi.FreshInstances(pre, name, "memory") for name in ("calc", "fetch")}
    for made in instances.values():
        made.instantiate(context)
    return {"context": context, "keys": keys, "callback": callback, **instances}


@pytest.fixture()
def slow():
    """CALC on the public API only."""
    linker = wasmtime.Linker(sandbox.engine())
    f64_of_i32 = wasmtime.FuncType([wasmtime.ValType.i32()], [wasmtime.ValType.f64()])
    linker.define_func("sopcos", "get_telemetry", f64_of_i32, lambda key: VALUES[key])
    store = new_store(Limits())
    store.set_fuel(10**6)
    store.set_epoch_deadline(10**6)
    instance = linker.instantiate(store, wasmtime.Module(sandbox.engine(), wasmtime.wat2wasm(CALC)))
    return store, instance.exports(store)


@pytest.mark.parametrize("x", [0, 1, -1, 7, 2**31, 2**40 + 5, -(2**63), 2**63 - 1])
def test_unchecked_calls_return_what_the_public_api_returns(fast, slow, x):
    store, exports = slow
    assert fast["calc"].call(x) == exports["calc"](store, x)


@pytest.mark.parametrize("key", sorted(VALUES))
def test_unchecked_host_functions_pass_keys_and_f64_bits_exactly(fast, slow, key):
    store, exports = slow
    assert fast["fetch"].call(key) == 0
    exports["fetch"](store, key)
    assert fast["fetch"].read(32, 8) == exports["memory"].read(store, 32, 40)
    assert struct.unpack("<d", fast["fetch"].read(32, 8))[0] == VALUES[key]
    assert fast["keys"] == [key]


def test_memory_is_the_page_the_public_api_sees(fast, slow):
    store, exports = slow
    assert fast["fetch"].memory_size() == exports["memory"].data_len(store) == abi.MEMORY_PAGES * 65536


def test_each_instance_starts_from_the_modules_initial_memory(fast):
    assert fast["fetch"].call(3) == 0
    assert struct.unpack("<d", fast["fetch"].read(32, 8))[0] == VALUES[3]
    fast["fetch"].instantiate(fast["context"])
    assert fast["fetch"].read(32, 8) == bytes(8)


def test_a_host_trap_surfaces_with_its_message_and_does_not_stick(fast):
    with pytest.raises(_capi.Trapped, match="no key 9") as info:
        fast["fetch"].call(9)
    assert info.value.code is None
    assert fast["fetch"].call(3) == 0  # the trap out-parameter was cleared
    assert fast["calc"].call(2) == 7


def test_fuel_setters_agree_with_the_public_api(fast):
    context = fast["context"]
    store = context.store
    context.set_fuel(5_000)
    assert context.get_fuel() == store.get_fuel() == 5_000
    fast["calc"].call(1)
    assert context.get_fuel() == store.get_fuel() < 5_000
    context.set_fuel(0)
    with pytest.raises(_capi.Trapped) as info:
        fast["calc"].call(1)
    assert info.value.code is wasmtime.TrapCode.OUT_OF_FUEL


def test_the_epoch_deadline_setter_arms_an_interrupt(fast):
    fast["context"].set_fuel(10**6)
    fast["context"].set_epoch_deadline(0)
    with pytest.raises(_capi.Trapped) as info:
        fast["calc"].call(1)
    assert info.value.code is wasmtime.TrapCode.INTERRUPT


# -- the whole evaluator: the C API's path decides exactly as the public API's --------------------------


@pytest.fixture()
def reference(monkeypatch):
    """Make an Evaluator on the public API's path (as with SOPCOS_ACCELERATORS=off), in this process."""

    def make(wasm: bytes, limits: Limits | None = None) -> Evaluator:
        with monkeypatch.context() as patch:
            patch.setattr(accelerators, "ENABLED", False)
            evaluator = Evaluator.from_wasm(wasm, limits=limits)
        assert isinstance(evaluator._instances, sandbox.PublicInstances)
        return evaluator

    return make


def test_the_evaluator_decides_exactly_as_on_the_public_api_path(reference):
    assert "pressure above 95 bar" in BOILER_DATA
    fast, slow = Evaluator.from_wasm(boiler()), reference(boiler())
    assert isinstance(fast._instances, _capi.FreshInstances)
    modes = BOILER_META["inputs"]["context"][0]["values"]
    for pressure, mode, valve in itertools.product([0, 50, 80, 80.5, 95, 96, 250], modes, [False, True]):
        reading = ({"pressure_bar": pressure, "valve_open": valve}, {"mode": mode})
        assert fast.evaluate(*reading) == slow.evaluate(*reading)


ONE_INPUT = meta(telemetry=[{"name": "x", "type": "number"}])
FAILING = [  # (evaluate body, limits): each ends in a different DENY
    ("(drop (call $tel (i32.const 7)))", None),
    ("(drop (call $ctx (i32.const 0)))", None),
    ("(call $log (i32.const 3) (i32.const 1024) (i32.const 1))", None),
    ("(call $log (i32.const 0) (i32.const 1030) (i32.const 2))", None),
    ("(call $log (i32.const 0) (i32.const -16) (i32.const 4))", None),
    ("(unreachable)", None),
    ("(drop (i32.load (i32.const 65534)))", None),
    ("(call $charge (i64.const 1000))", None),
    ("(loop $spin (br $spin))", Limits(fuel=5_000)),
    ("(return (call $fault (i32.const 1) (i32.const -1) (i32.const 0)))", None),
    ("(call $block (i32.const 7) (i32.const 0) (i32.const 0) (i32.const -1) (i64.const 1)) "
     "(return (i32.const 7))", None),
]


@pytest.mark.parametrize(("body", "limits"), FAILING)
def test_failures_are_the_same_deny_on_both_paths(reference, body, limits):
    wasm = policy_module(f"{body} (call $log (i32.const 0) (i32.const 1024) (i32.const 2)) "
                         "(call $decide (i32.const 1) (i32.const 0))", ONE_INPUT,
                         data='(data (i32.const 1024) "ok") (data (i32.const 1030) "\\ff\\fe")')
    fast, slow = Evaluator.from_wasm(wasm, limits=limits), reference(wasm, limits)
    for x in (1, 2):
        decision = fast.evaluate({"x": x})
        assert decision.verdict is Verdict.DENY and decision.reason
        assert decision == slow.evaluate({"x": x})


def test_a_start_function_that_calls_the_host_is_refused_on_both_paths(reference):
    wasm = policy_module("(call $decide (i32.const 1) (i32.const 0))", ONE_INPUT,
                         extra="(func $start (drop (call $tel (i32.const 0)))) (start $start)")
    for make in (Evaluator.from_wasm, reference):
        with pytest.raises(InstantiationFailed, match="get_telemetry was called outside an evaluation"):
            make(wasm)
