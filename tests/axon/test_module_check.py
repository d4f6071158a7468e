"""The policy-module check (axon/module_check.py): the one set of ABI interface rules.

Axon's verifier runs it on every artifact and Synapse's sandbox on every module it loads. For every
module below the check must give the expected verdict, and the runtime must refuse exactly the modules
the check refuses, with the same reason (its message, after "module refused: ") and the runtime's
own error code for that kind of refusal.
"""

from __future__ import annotations

import pytest
import wasmtime

from axon import module_check
from axon.errors import AxonError
from axon.module_check import (
    ExportMismatch,
    ImportMismatch,
    MetaUnreadable,
    ModuleInterfaceError,
    WasmInvalid,
    check_module,
)
from synapse.errors import ExportRefused, ImportRefused, MetaRefused, ModuleError, ModuleInvalid
from synapse.sandbox import PolicyModule, load_module
from tests.artifact_fixtures import compiled, wat_module

MEMORY = '(memory (export "memory") 1 1)'
EVALUATE = '(func (export "evaluate") (param i64) (result i32) (i32.const 1))'
TELEMETRY = '(import "sopcos" "get_telemetry" (func (param i32) (result f64)))'
CONTEXT = '(import "sopcos" "get_context_var" (func (param i32) (result f64)))'
LOG = '(import "sopcos" "emit_log" (func (param i32 i32 i32)))'


def _bare(wat: str) -> bytes:
    return bytes(wasmtime.wat2wasm(f"(module {wat})"))


# name -> (the module: WAT that gets a valid sopcos.meta appended, or a function making its bytes;
#          the check's refusal, None when it accepts the module; words its message contains)
MODULES = {
    "minimal": (MEMORY + EVALUATE, None, ""),
    "all-host-functions": (TELEMETRY + CONTEXT + LOG + MEMORY + EVALUATE, None, ""),
    "evaluate-after-imports": (TELEMETRY + LOG + MEMORY + '(func $a) (func $b (param i64) (result i32) '
                               '(i32.const 0)) (export "evaluate" (func $b))', None, ""),
    # imports
    "wasi": ('(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))'
             + MEMORY + EVALUATE, ImportMismatch,
             'imports "wasi_snapshot_preview1"."fd_write" (function); a policy module may import only '
             'get_telemetry, get_context_var, emit_log from "sopcos"'),
    "unknown-host-function": ('(import "sopcos" "get_time" (func (result f64)))' + MEMORY + EVALUATE,
                              ImportMismatch, 'imports "sopcos"."get_time" (function)'),
    "wrong-host-signature": (TELEMETRY.replace("(result f64)", "(result i32)") + MEMORY + EVALUATE,
                             ImportMismatch, 'imports "sopcos"."get_telemetry" with signature (i32) -> '
                                             "(i32); the host function is (i32) -> (f64)"),
    "imported-twice": (TELEMETRY + TELEMETRY + MEMORY + EVALUATE,
                       ImportMismatch, 'imports "sopcos"."get_telemetry" twice'),
    "imported-memory": ('(import "sopcos" "memory" (memory 1 1))' + EVALUATE,
                        ImportMismatch, 'imports "sopcos"."memory" (memory)'),
    "host-function-as-a-global": ('(import "sopcos" "emit_log" (global i32))' + MEMORY + EVALUATE,
                                  ImportMismatch, 'imports "sopcos"."emit_log" as a global, not a function'),
    "imported-table": ('(import "sopcos" "table" (table 1 funcref))' + MEMORY + EVALUATE,
                       ImportMismatch, 'imports "sopcos"."table" (table)'),
    # exports
    "growable-memory": (MEMORY.replace("1 1", "1 2") + EVALUATE,
                        ExportMismatch, "memory must be exactly 1 page (min = max = 1, 32-bit, not shared)"),
    "unbounded-memory": (MEMORY.replace("1 1", "1") + EVALUATE, ExportMismatch, "it has min 1, max None"),
    "two-pages": (MEMORY.replace("1 1", "2 2") + EVALUATE, ExportMismatch, "it has min 2, max 2"),
    "no-memory-export": ("(memory 1 1)" + EVALUATE, ExportMismatch, 'does not export "memory"'),
    "no-evaluate": (MEMORY, ExportMismatch, 'does not export "evaluate"'),
    "evaluate-i32": (MEMORY + EVALUATE.replace("param i64", "param i32"),
                     ExportMismatch, '"evaluate" has signature (i32) -> (i32); the ABI requires (i64) -> '
                                     "(i32)"),
    "evaluate-no-result": (MEMORY + '(func (export "evaluate") (param i64))',
                           ExportMismatch, '"evaluate" has signature (i64) -> ()'),
    "evaluate-is-an-import": ('(import "sopcos" "emit_log" (func $log (param i32 i32 i32))) '
                              '(export "evaluate" (func $log))' + MEMORY,
                              ExportMismatch, '"evaluate" has signature (i32, i32, i32) -> ()'),
    "evaluate-is-a-global": (MEMORY + '(global (export "evaluate") i32 (i32.const 0))',
                             ExportMismatch, 'export "evaluate" is a global, not a function'),
    "memory-is-a-table": ('(table (export "memory") 1 funcref)' + EVALUATE,
                          ExportMismatch, 'export "memory" is a table, not a memory'),
    "extra-export": (MEMORY + EVALUATE + '(func (export "run"))',
                     ExportMismatch, 'exports "run" (function); a policy module exports exactly'),
    "exported-global": (MEMORY + EVALUATE + '(global (export "g") i32 (i32.const 0))',
                        ExportMismatch, 'exports "g" (global)'),
    # sopcos.meta
    "no-meta": (lambda: _bare(MEMORY + EVALUATE), MetaUnreadable, "has no 'sopcos.meta' custom section"),
    "abi-2": (lambda: wat_module(MEMORY + EVALUATE, abi=2), MetaUnreadable, "built for ABI version 2"),
    "meta-twice": (MEMORY + EVALUATE + '(@custom "sopcos.meta" "{}")',
                   MetaUnreadable, "2 'sopcos.meta' custom sections"),
    "meta-not-json": (lambda: _bare(MEMORY + EVALUATE + '(@custom "sopcos.meta" "{abi: 1")'),
                      MetaUnreadable, "not strict JSON"),
    # not wasm, or wasm that needs a feature a policy never uses (FEATURES_OFF)
    "empty": (lambda: b"", WasmInvalid, "not a valid WebAssembly module"),
    "magic-only": (lambda: b"\x00asm", WasmInvalid, "not a valid WebAssembly module"),
    "version-2": (lambda: b"\x00asm\x02\x00\x00\x00", WasmInvalid, "not a valid WebAssembly module"),
    "truncated-section": (lambda: b"\x00asm\x01\x00\x00\x00\x01\xff", WasmInvalid, "not a valid WebAssembly"),
    "zip-file": (lambda: b"PK\x03\x04 a zip file", WasmInvalid, "magic header not detected"),
    # wasmtime-py would compile WAT text: the check must see (and refuse) the bytes themselves.
    "wat-text": (lambda: f"(module {MEMORY + EVALUATE})".encode(), WasmInvalid, "magic header not detected"),
    "shared-memory": ('(memory (export "memory") 1 1 shared)' + EVALUATE, WasmInvalid, "threads"),
    "memory64": ('(memory (export "memory") i64 1 1)' + EVALUATE, WasmInvalid, "memory64"),
    "two-memories": (MEMORY + "(memory 1 1)" + EVALUATE, WasmInvalid, "multiple memories"),
    "exception-tag": (MEMORY + EVALUATE + "(tag)", WasmInvalid, "exceptions"),
}

# The runtime's error for each kind of refusal (its codes are part of its interface).
RUNTIME_ERROR = {WasmInvalid: ModuleInvalid, ImportMismatch: ImportRefused, ExportMismatch: ExportRefused,
                 MetaUnreadable: MetaRefused}


@pytest.mark.parametrize("name", MODULES)
def test_the_check_and_the_runtime_refuse_the_same_modules_for_the_same_reason(name):
    module, refusal, words = MODULES[name]
    wasm = wat_module(module) if isinstance(module, str) else module()
    if refusal is None:
        assert check_module(wasm).meta.policy == "boiler-guard"
        assert isinstance(load_module(wasm), PolicyModule)
        return
    with pytest.raises(ModuleInterfaceError) as axon:
        check_module(wasm)
    assert type(axon.value) is refusal and words in str(axon.value)
    with pytest.raises(ModuleError) as synapse:
        load_module(wasm)
    assert type(synapse.value) is RUNTIME_ERROR[refusal]
    assert str(synapse.value) == f"module refused: {axon.value}"


def test_every_kind_of_refusal_has_its_own_code_under_one_root():
    codes = {cls: cls.code for cls in RUNTIME_ERROR}
    assert codes == {WasmInvalid: "AXON-MODULE-WASM", ImportMismatch: "AXON-MODULE-IMPORT",
                     ExportMismatch: "AXON-MODULE-EXPORT", MetaUnreadable: "AXON-MODULE-META"}
    assert all(issubclass(cls, ModuleInterfaceError) and issubclass(cls, AxonError) for cls in codes)
    assert {cls.code for cls in RUNTIME_ERROR.values()} == {
        "SYNAPSE-MODULE-INVALID", "SYNAPSE-MODULE-IMPORT", "SYNAPSE-MODULE-EXPORT", "SYNAPSE-MODULE-META"}


def test_refusals_are_one_line():
    with pytest.raises(WasmInvalid) as info:
        check_module(b"\x00asm\x01\x00\x00\x00\x01\xff")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("memory", "words"), [
    ('(memory (export "memory") 1 1 shared)', "it has min 1, max 1, shared"),
    ('(memory (export "memory") i64 1 1)', "it has min 1, max 1, 64-bit"),
])
def test_the_memory_rule_holds_even_where_validation_allows_the_feature(monkeypatch, memory, words):
    # An engine with wasmtime's default features validates shared and 64-bit memories; the export rule
    # must still refuse them rather than rely on FEATURES_OFF alone.
    monkeypatch.setattr(module_check, "_validator", wasmtime.Engine())
    with pytest.raises(ExportMismatch) as info:
        check_module(wat_module(memory + EVALUATE))
    assert words in str(info.value) and "32-bit, not shared" in str(info.value)


@pytest.mark.parametrize("policy", ["boiler-guard", "tank-overfill", "compressor-surge",
                                    "chemical-dosing-ratio", "conveyor-estop-interlock",
                                    "robot-cell-maintenance-access"])
def test_every_example_policy_passes(policy):
    interface = check_module(compiled(policy))
    assert interface.meta.policy == policy
    assert set(interface.imports) <= {"get_telemetry", "get_context_var", "emit_log"}
    assert load_module(compiled(policy)).meta == interface.meta


def test_imports_are_reported_in_module_order():
    interface = check_module(wat_module(LOG + TELEMETRY + MEMORY + EVALUATE))
    assert interface.imports == ("emit_log", "get_telemetry")
