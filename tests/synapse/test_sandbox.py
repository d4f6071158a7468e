"""The sandbox itself (synapse/sandbox.py): the engine's configuration, the epoch ticker, store limits,
the Limits object and the loading stages."""

from __future__ import annotations

import os
import struct
import time

import pytest
import wasmtime

from synapse import sandbox
from synapse.errors import LimitsError, MetaRefused, ModuleInvalid
from synapse.sandbox import (
    FUEL_BASE,
    FUEL_PER_GAS,
    INSTANCES_PER_STORE,
    MEMORY_SLOT_BYTES,
    PAGE_BYTES,
    POOL_INSTANCES,
    Limits,
    PolicyModule,
    load_module,
    new_store,
)
from tests.synapse_wat import boiler, meta, policy_module


def run(wat: str, export: str = "f", *args: object, limits: Limits | None = None, fuel: int = 10**6,
        deadline_ticks: int = 10**6) -> object:
    """Run one export of a test module in a sandbox store (not a policy module: no interface check)."""
    store = new_store(limits or Limits())
    store.set_fuel(fuel)
    store.set_epoch_deadline(deadline_ticks)
    instance = wasmtime.Instance(store, wasmtime.Module(sandbox.engine(), wasmtime.wat2wasm(wat)), [])
    return instance.exports(store)[export](store, *args)


def test_one_engine_per_process():
    assert sandbox.engine() is sandbox.engine()


def test_nan_results_are_canonical():
    # x86 produces the negative NaN 0xfff8... for 0/0; canonicalization gives every CPU the same bits.
    bits = run("""(module (func (export "f") (param f64) (result i64)
                    (i64.reinterpret_f64 (f64.div (local.get 0) (local.get 0)))))""", "f", 0.0)
    assert bits == struct.unpack("<q", struct.pack("<Q", 0x7FF8000000000000))[0]


def test_fuel_is_metered():
    with pytest.raises(wasmtime.Trap) as info:
        run('(module (func (export "f") (loop $l (br $l))))', fuel=10_000)
    assert info.value.trap_code is wasmtime.TrapCode.OUT_OF_FUEL


def test_the_epoch_ticker_advances_and_interrupts():
    started = time.monotonic()
    with pytest.raises(wasmtime.Trap) as info:
        run('(module (func (export "f") (loop $l (br $l))))', fuel=10**15, deadline_ticks=20)
    elapsed = time.monotonic() - started
    assert info.value.trap_code is wasmtime.TrapCode.INTERRUPT
    assert elapsed >= 0.015  # about 20 ticks of 1 ms; never early (how late depends on the machine's load)


def test_memory_cannot_grow_past_the_limit():
    wat = '(module (memory 1) (func (export "f") (result i32) (memory.grow (i32.const 1))))'
    assert run(wat) == -1
    assert run(wat, limits=Limits(memory_bytes=2 * PAGE_BYTES)) == 1


def test_a_module_wanting_more_memory_cannot_be_instantiated():
    with pytest.raises(wasmtime.WasmtimeError):
        run('(module (memory 2) (func (export "f")))')


def test_a_store_holds_instances_per_store_instances():
    store = new_store(Limits())
    module = wasmtime.Module(sandbox.engine(), wasmtime.wat2wasm("(module)"))
    for _ in range(INSTANCES_PER_STORE):
        wasmtime.Instance(store, module, [])
    with pytest.raises(wasmtime.WasmtimeError):
        wasmtime.Instance(store, module, [])


def test_the_pool_caps_the_instances_alive_in_the_process():
    module = wasmtime.Module(sandbox.engine(), wasmtime.wat2wasm("(module (memory 1 1))"))
    stores = []
    with pytest.raises(wasmtime.WasmtimeError, match="maximum concurrent"):  # noqa: PT012
        while True:
            store = new_store(Limits())
            stores.append(store)
            for _ in range(INSTANCES_PER_STORE):
                wasmtime.Instance(store, module, [])
    alive = (len(stores) - 1) * INSTANCES_PER_STORE
    assert POOL_INSTANCES - 100 < alive <= POOL_INSTANCES  # others' evaluators hold a few slots
    stores.clear()  # their slots go back to the pool
    wasmtime.Instance(new_store(Limits()), module, [])


@pytest.mark.parametrize(("wat", "feature"), [
    ("(module (memory 1 1 shared))", "threads"),
    ("(module (memory i64 1))", "memory64"),
    ("(module (memory 1) (memory 1))", "multiple memories"),
])
def test_features_a_policy_never_needs_are_off(wat, feature):
    with pytest.raises(ModuleInvalid, match=feature):
        sandbox.compile_module(wasmtime.wat2wasm(wat))


def test_no_wasi_is_ever_linked():
    # A module that imports WASI is refused before linking; none of its names resolve anyway.
    module = sandbox.compile_module(wasmtime.wat2wasm(
        '(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))))'))
    with pytest.raises(wasmtime.WasmtimeError, match="unknown import"):
        wasmtime.Linker(sandbox.engine()).instantiate(new_store(Limits()), module)


# -- Limits -----------------------------------------------------------------------------------------


def test_limits_defaults_derive_from_the_module():
    module = load_module(boiler())
    limits = Limits()
    assert limits.gas_budget(module.meta) == module.meta.gas_max == 40
    assert limits.fuel_budget(module.meta) == FUEL_BASE + FUEL_PER_GAS * 40
    assert Limits(gas=7, fuel=99).fuel_budget(module.meta) == 99
    assert Limits(gas=7).fuel_budget(module.meta) == FUEL_BASE + FUEL_PER_GAS * 7
    assert limits.memory_bytes == PAGE_BYTES


def test_the_deadline_is_rounded_up_to_whole_ticks_plus_the_current_one():
    assert Limits(deadline_ms=100).deadline_ticks == 101
    assert Limits(deadline_ms=0.2).deadline_ticks == 2


@pytest.mark.parametrize("kwargs", [
    {"gas": -1}, {"gas": 1.5}, {"gas": True}, {"gas": 2**63}, {"fuel": -5}, {"fuel": "9"},
    {"deadline_ms": 0}, {"deadline_ms": -1}, {"deadline_ms": float("inf")}, {"deadline_ms": float("nan")},
    {"deadline_ms": True}, {"memory_bytes": PAGE_BYTES - 1}, {"memory_bytes": 1.0e6},
    {"memory_bytes": MEMORY_SLOT_BYTES + 1},
])
def test_limits_out_of_range_are_refused(kwargs):
    with pytest.raises(LimitsError) as info:
        Limits(**kwargs)
    assert next(iter(kwargs)) in str(info.value)


# -- loading -------------------------------------------------------------------------------------------


def test_loading_compiles_once_and_keeps_meta_and_inputs():
    module = load_module(boiler())
    assert isinstance(module, PolicyModule) and isinstance(module.module, wasmtime.Module)
    assert module.meta.policy == "boiler-guard"
    assert [spec[0] for spec in module.inputs.telemetry] == ["pressure_bar", "temp_c", "valve_open"]


def test_an_empty_policy_meta_is_refused():
    with pytest.raises(MetaRefused, match=r"at \$\.rules: \[\] should be non-empty"):
        load_module(policy_module("(call $decide (i32.const 1) (i32.const 0))", meta(rules=[])))


def test_a_forked_child_gets_its_own_epoch_ticker_and_can_compile():
    load_module(boiler())  # the parent has compiled before it forks, as a pre-forking server would
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: it must compile, and a deadline must still fire
        try:
            try:
                run('(module (func (export "f") (loop $l (br $l))))', fuel=10**15, deadline_ticks=5)
                os.write(write, b"not interrupted")
            except wasmtime.Trap as trap:
                os.write(write, str(trap.trap_code).encode())
        finally:
            os._exit(0)
    os.close(write)
    deadline = time.monotonic() + 30
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        time.sleep(0.01)
    assert os.read(read, 100) == b"TrapCode.INTERRUPT"
