"""The policy-module check (SIP-009 §6.2): is a module's interface exactly the ABI's (docs/abi.md)?

These are the one set of rules for it: Axon's verifier runs `check_module` on every artifact, and
Synapse's sandbox on every module it loads, before compiling it (mapping the errors to its own codes).

Two stages, cheap enough to run on every verification and every load (figures in docs/artifacts.md,
"Performance"):
  1. wasmtime validates the whole module (`Module.validate`: no compilation, so nothing to cache),
     with the wasm features a policy never needs (FEATURES_OFF) switched off, as the sandbox's engine
     has them;
  2. the import, function, memory and export sections are read from the validated bytes:
     imports only the Sopcos host functions (module `sopcos`, exact signatures, each at most once),
     exports exactly `memory` (min = max = 1 page, 32-bit, not shared) and `evaluate` (i64) -> i32,
     and the `sopcos.meta` section decodes (axon.abi.read_meta).
Each kind of refusal has its own error class (and code) under ModuleInterfaceError.

Reading four sections by hand rather than asking a compiled wasmtime.Module keeps verification free
of compilation, which costs far more than the check, and keeps decrypted modules out of any compiler
cache; the sections are read only after wasmtime has validated them, so the walker below can stay
small.
"""

from __future__ import annotations

from dataclasses import dataclass

import wasmtime

from axon import abi
from axon.abi import ModuleMeta, ModuleMetaError, read_meta, read_u32_leb128
from axon.errors import AxonError

# Features a policy module never uses; validating without them means a module that needs any of
# them is refused here, not later by the sandbox.
FEATURES_OFF = ("wasm_threads", "wasm_relaxed_simd", "wasm_memory64", "wasm_multi_memory", "wasm_gc",
                "wasm_function_references", "wasm_exceptions", "wasm_stack_switching",
                "wasm_component_model", "wasm_wide_arithmetic", "wasm_custom_page_sizes")

_VALTYPES = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64", 0x7B: "v128", 0x70: "funcref",
             0x6F: "externref"}
_KINDS = {0: "function", 1: "table", 2: "memory", 3: "global", 4: "tag"}
_SECTION_TYPE, _SECTION_IMPORT, _SECTION_FUNCTION, _SECTION_MEMORY, _SECTION_EXPORT = 1, 2, 3, 5, 7
_MEMORY_HAS_MAX, _MEMORY_SHARED, _MEMORY_64 = 1, 2, 4  # limits flags of a memory type

Signature = tuple[tuple[str, ...], tuple[str, ...]]


class ModuleInterfaceError(AxonError):
    """The module is not valid WebAssembly, or its imports/exports/meta are not the policy ABI's."""

    code = "AXON-MODULE-INTERFACE"


class WasmInvalid(ModuleInterfaceError):
    """Not WebAssembly that validates with FEATURES_OFF switched off."""

    code = "AXON-MODULE-WASM"

    @classmethod
    def from_wasmtime(cls, exc: wasmtime.WasmtimeError) -> WasmInvalid:
        """The refusal of a module wasmtime would not validate or compile, on one line."""
        return cls(f"not a valid WebAssembly module for the sandbox: {' '.join(str(exc).split())}")


class ImportMismatch(ModuleInterfaceError):
    """An import that is not one of the Sopcos host functions with its exact signature, or one twice."""

    code = "AXON-MODULE-IMPORT"


class ExportMismatch(ModuleInterfaceError):
    """The exports are not exactly `memory` (one page, min = max) and `evaluate` (i64) -> i32."""

    code = "AXON-MODULE-EXPORT"


class MetaUnreadable(ModuleInterfaceError):
    """The `sopcos.meta` section is missing, duplicated, malformed or for another ABI version."""

    code = "AXON-MODULE-META"


@dataclass(frozen=True)
class ModuleInterface:
    imports: tuple[str, ...]  # host function names, in import order
    meta: ModuleMeta


_validator: wasmtime.Engine | None = None


def _engine() -> wasmtime.Engine:
    global _validator
    if _validator is None:
        config = wasmtime.Config()  # the compilation cache is off unless asked for; it is never asked for
        for feature in FEATURES_OFF:
            setattr(config, feature, False)
        _validator = wasmtime.Engine(config)
    return _validator


def check_module(wasm: bytes) -> ModuleInterface:
    """Validate `wasm` and check its interface against the ABI; raise ModuleInterfaceError on any mismatch."""
    try:
        wasmtime.Module.validate(_engine(), wasm)
    except wasmtime.WasmtimeError as exc:
        raise WasmInvalid.from_wasmtime(exc) from None
    sections = _Sections(wasm)
    imports = _check_imports(sections)
    _check_exports(sections, imports)
    try:
        meta = read_meta(wasm)
    except ModuleMetaError as exc:
        raise MetaUnreadable(str(exc)) from None
    return ModuleInterface(tuple(name for name, _ in imports), meta)


def _show(signature: Signature) -> str:
    return f"({', '.join(signature[0])}) -> ({', '.join(signature[1])})"


def _check_imports(sections: _Sections) -> list[tuple[str, int]]:
    """(name, type index) of each imported host function, in order."""
    found: list[tuple[str, int]] = []
    for module, name, kind, type_index in sections.imports():
        where = f'"{module}"."{name}"'
        if module != abi.IMPORT_MODULE or name not in abi.HOST_FUNCTIONS:
            raise ImportMismatch(
                f"module imports {where} ({_KINDS.get(kind, 'unknown')}); a policy module may import only "
                f"{', '.join(abi.HOST_FUNCTIONS)} from \"{abi.IMPORT_MODULE}\""
            )
        if kind != 0:
            raise ImportMismatch(f"module imports {where} as a {_KINDS.get(kind, 'unknown')}, not a function")
        signature = sections.signature(type_index)
        if signature != abi.HOST_FUNCTIONS[name]:
            raise ImportMismatch(f"module imports {where} with signature {_show(signature)}; the host "
                                 f"function is {_show(abi.HOST_FUNCTIONS[name])}")
        if any(name == seen for seen, _ in found):
            raise ImportMismatch(f"module imports {where} twice")
        found.append((name, type_index))
    return found


def _check_exports(sections: _Sections, imports: list[tuple[str, int]]) -> None:
    exports = {name: (kind, index) for name, kind, index in sections.exports()}
    allowed = (abi.EXPORT_MEMORY, abi.EXPORT_EVALUATE)
    for name, (kind, _) in exports.items():
        if name not in allowed:
            raise ExportMismatch(
                f'module exports "{name}" ({_KINDS.get(kind, "unknown")}); a policy module exports exactly '
                f'"{abi.EXPORT_MEMORY}" and "{abi.EXPORT_EVALUATE}"')
    for name in allowed:
        if name not in exports:
            raise ExportMismatch(f'module does not export "{name}"')
    kind, index = exports[abi.EXPORT_MEMORY]
    if kind != 2:
        raise ExportMismatch(f'export "{abi.EXPORT_MEMORY}" is a {_KINDS.get(kind)}, not a memory')
    flags, minimum, maximum = sections.memories()[index]  # memories are never imported (checked above)
    # Shared and 64-bit memories are refused by validation already (FEATURES_OFF); the flags are checked
    # here too so that the rule does not depend on which features a caller's engine has.
    if (minimum, maximum) != (abi.MEMORY_PAGES, abi.MEMORY_PAGES) or flags & ~_MEMORY_HAS_MAX:
        raise ExportMismatch(
            f"module memory must be exactly {abi.MEMORY_PAGES} page (min = max = {abi.MEMORY_PAGES}, 32-bit, "
            f"not shared); it has min {minimum}, max {maximum}"
            + (", shared" if flags & _MEMORY_SHARED else "") + (", 64-bit" if flags & _MEMORY_64 else ""))
    kind, index = exports[abi.EXPORT_EVALUATE]
    if kind != 0:
        raise ExportMismatch(f'export "{abi.EXPORT_EVALUATE}" is a {_KINDS.get(kind)}, not a function')
    type_index = imports[index][1] if index < len(imports) else sections.functions()[index - len(imports)]
    signature = sections.signature(type_index)
    if signature != abi.EVALUATE_SIGNATURE:
        raise ExportMismatch(f'"{abi.EXPORT_EVALUATE}" has signature {_show(signature)}; the ABI '
                             f"requires {_show(abi.EVALUATE_SIGNATURE)}")


class _Sections:
    """Reader for the few sections the check needs, over bytes wasmtime has already validated."""

    def __init__(self, wasm: bytes) -> None:
        self._wasm = wasm
        self._types: list[Signature] | None = None
        self._bodies: dict[int, tuple[int, int]] = {}
        pos = len(abi.WASM_MAGIC)
        while pos < len(wasm):
            section_id = wasm[pos]
            size, body = self._u32(pos + 1)
            if section_id:  # a validated module has each non-custom section at most once
                self._bodies[section_id] = (body, body + size)
            pos = body + size

    def _u32(self, pos: int) -> tuple[int, int]:
        return read_u32_leb128(self._wasm, pos)

    def _name(self, pos: int) -> tuple[str, int]:
        size, pos = self._u32(pos)
        return self._wasm[pos : pos + size].decode("utf-8"), pos + size

    def _vector(self, section_id: int) -> tuple[int, int]:
        """(count, position of the first item) of a vector section; (0, 0) if the module has none."""
        if section_id not in self._bodies:
            return 0, 0
        return self._u32(self._bodies[section_id][0])

    def signature(self, type_index: int) -> Signature:
        if self._types is None:
            self._types = self._read_types()
        if type_index >= len(self._types):
            raise WasmInvalid(f"module refers to type {type_index}, which it does not define")
        return self._types[type_index]

    def _read_types(self) -> list[Signature]:
        count, pos = self._vector(_SECTION_TYPE)
        types: list[Signature] = []
        for _ in range(count):
            if self._wasm[pos] != 0x60:  # rec/sub types need GC, which validation has switched off
                raise WasmInvalid("module type section holds a type that is not a function type")
            params, pos = self._valtypes(pos + 1)
            results, pos = self._valtypes(pos)
            types.append((params, results))
        return types

    def _valtypes(self, pos: int) -> tuple[tuple[str, ...], int]:
        count, pos = self._u32(pos)
        types = tuple(_VALTYPES.get(self._wasm[pos + i], "?") for i in range(count))
        if "?" in types:
            raise WasmInvalid("module uses a value type a policy module cannot have")
        return types, pos + count

    def imports(self) -> list[tuple[str, str, int, int]]:
        """(module, name, kind, type index for functions else -1), stopping at the first non-function."""
        count, pos = self._vector(_SECTION_IMPORT)
        out: list[tuple[str, str, int, int]] = []
        for _ in range(count):
            module, pos = self._name(pos)
            name, pos = self._name(pos)
            kind = self._wasm[pos]
            if kind != 0:  # anything but a function import is refused, so its description is not needed
                out.append((module, name, kind, -1))
                return out
            type_index, pos = self._u32(pos + 1)
            out.append((module, name, kind, type_index))
        return out

    def functions(self) -> list[int]:
        count, pos = self._vector(_SECTION_FUNCTION)
        out: list[int] = []
        for _ in range(count):
            type_index, pos = self._u32(pos)
            out.append(type_index)
        return out

    def memories(self) -> list[tuple[int, int, int | None]]:
        """(limits flags, min, max or None) of each memory the module defines."""
        count, pos = self._vector(_SECTION_MEMORY)
        out: list[tuple[int, int, int | None]] = []
        for _ in range(count):
            flags = self._wasm[pos]
            minimum, pos = self._u32(pos + 1)
            maximum = None
            if flags & _MEMORY_HAS_MAX:
                maximum, pos = self._u32(pos)
            out.append((flags, minimum, maximum))
        return out

    def exports(self) -> list[tuple[str, int, int]]:
        count, pos = self._vector(_SECTION_EXPORT)
        out: list[tuple[str, int, int]] = []
        for _ in range(count):
            name, pos = self._name(pos)
            kind = self._wasm[pos]
            index, pos = self._u32(pos + 1)
            out.append((name, kind, index))
        return out
