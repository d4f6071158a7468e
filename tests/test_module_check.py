"""Axon's module interface check (axon/module_check.py) agrees with the sandbox's own loading checks.

Axon reads the sections of a validated module without compiling it; synapse compiles it and asks
wasmtime for its imports and exports. For every module below both must accept or both must refuse,
so that nothing Axon passes is refused at load time and, more importantly, nothing either refuses
runs.
"""

from __future__ import annotations

import pytest
import wasmtime

from axon.module_check import ModuleInterfaceError, check_module
from synapse.errors import ModuleError
from synapse.sandbox import load_module
from tests.artifact_fixtures import compiled, wat_module

MEMORY = '(memory (export "memory") 1 1)'
EVALUATE = '(func (export "evaluate") (param i64) (result i32) (i32.const 1))'
TELEMETRY = '(import "sopcos" "get_telemetry" (func (param i32) (result f64)))'
LOG = '(import "sopcos" "emit_log" (func (param i32 i32 i32)))'

MODULES = {
    "minimal": (MEMORY + EVALUATE, True),
    "all-host-functions": (TELEMETRY + '(import "sopcos" "get_context_var" (func (param i32) (result f64)))'
                           + LOG + MEMORY + EVALUATE, True),
    "evaluate-after-imports": (TELEMETRY + LOG + MEMORY + '(func $a) (func $b (param i64) (result i32) '
                               '(i32.const 0)) (export "evaluate" (func $b))', True),
    "wasi": ('(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))'
             + MEMORY + EVALUATE, False),
    "unknown-host-function": ('(import "sopcos" "get_time" (func (result f64)))' + MEMORY + EVALUATE, False),
    "wrong-host-signature": ('(import "sopcos" "get_telemetry" (func (param i32) (result i32)))'
                             + MEMORY + EVALUATE, False),
    "imported-twice": (TELEMETRY + TELEMETRY + MEMORY + EVALUATE, False),
    "imported-memory": ('(import "sopcos" "memory" (memory 1 1))' + EVALUATE, False),
    "imported-global": ('(import "sopcos" "clock" (global f64))' + MEMORY + EVALUATE, False),
    "imported-table": ('(import "sopcos" "table" (table 1 funcref))' + MEMORY + EVALUATE, False),
    "growable-memory": (MEMORY.replace("1 1", "1 2") + EVALUATE, False),
    "unbounded-memory": (MEMORY.replace("1 1", "1") + EVALUATE, False),
    "two-pages": (MEMORY.replace("1 1", "2 2") + EVALUATE, False),
    "no-memory-export": ("(memory 1 1)" + EVALUATE, False),
    "no-evaluate": (MEMORY, False),
    "evaluate-i32": (MEMORY + EVALUATE.replace("param i64", "param i32"), False),
    "evaluate-no-result": (MEMORY + '(func (export "evaluate") (param i64))', False),
    "evaluate-is-a-global": (MEMORY + '(global (export "evaluate") i32 (i32.const 0))', False),
    "memory-is-a-table": ('(table (export "memory") 1 funcref)' + EVALUATE, False),
    "extra-export": (MEMORY + EVALUATE + '(func (export "run"))', False),
    "exported-global": (MEMORY + EVALUATE + '(global (export "g") i32 (i32.const 0))', False),
}


def _synapse_accepts(wasm: bytes) -> bool:
    try:
        load_module(wasm)
    except ModuleError:
        return False
    return True


def _axon_accepts(wasm: bytes) -> bool:
    try:
        check_module(wasm)
    except ModuleInterfaceError:
        return False
    return True


@pytest.mark.parametrize("name", MODULES)
def test_axon_and_the_sandbox_agree(name):
    wat, expected = MODULES[name]
    wasm = wat_module(wat)
    assert _axon_accepts(wasm) is expected
    assert _synapse_accepts(wasm) is expected


@pytest.mark.parametrize("policy", ["boiler-guard", "tank-overfill", "compressor-surge",
                                    "chemical-dosing-ratio", "conveyor-estop-interlock",
                                    "robot-cell-maintenance-access"])
def test_every_example_policy_passes(policy):
    interface = check_module(compiled(policy))
    assert interface.meta.policy == policy
    assert set(interface.imports) <= {"get_telemetry", "get_context_var", "emit_log"}


@pytest.mark.parametrize("broken", [b"", b"\x00asm", b"\x00asm\x02\x00\x00\x00", b"not wasm at all"])
def test_not_wasm(broken):
    with pytest.raises(ModuleInterfaceError):
        check_module(broken)


def test_meta_section_is_required():
    wasm = bytes(wasmtime.wat2wasm(f"(module {MEMORY + EVALUATE})"))
    with pytest.raises(ModuleInterfaceError, match="sopcos.meta"):
        check_module(wasm)
    assert not _synapse_accepts(wasm)
