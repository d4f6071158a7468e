"""Synapse's exception tree. Every error has a stable machine-readable `code`.

These errors describe why a module cannot be *loaded* (or a limit cannot be configured). Nothing on the
decision path raises them to a caller: `Evaluator.evaluate` turns every failure into a DENY decision.
`InputFault` is the one raised inside the decision path, and the evaluator catches it.
"""

from __future__ import annotations

from axon.errors import CodedError


class SynapseError(CodedError):
    """Root of every error raised by `synapse`. `code` is stable; the message is for people."""

    code = "SYNAPSE"


class LimitsError(SynapseError, ValueError):
    """A sandbox limit is out of range (for example a zero fuel budget)."""

    code = "SYNAPSE-LIMITS"


class ModuleError(SynapseError):
    """A policy module cannot be run: unreadable, invalid, or refused by the interface check.

    The interface check is Axon's (axon/module_check.py); the sandbox turns each kind of its refusal
    into the subclass below with the same message, so the runtime's codes do not depend on Axon's.
    """

    code = "SYNAPSE-MODULE"


class ModuleUnreadable(ModuleError):
    """The module file could not be read."""

    code = "SYNAPSE-MODULE-UNREADABLE"


class ModuleInvalid(ModuleError):
    """Not a WebAssembly module this sandbox accepts (wasmtime would not validate or compile the bytes)."""

    code = "SYNAPSE-MODULE-INVALID"


class MetaRefused(ModuleError):
    """The `sopcos.meta` section is missing, malformed, or for another ABI version."""

    code = "SYNAPSE-MODULE-META"


class ImportRefused(ModuleError):
    """The module imports something other than the Sopcos host functions, or with another signature."""

    code = "SYNAPSE-MODULE-IMPORT"


class ExportRefused(ModuleError):
    """The module's exports are not exactly `memory` and `evaluate` with the ABI's types."""

    code = "SYNAPSE-MODULE-EXPORT"


class InstantiationFailed(ModuleError):
    """The module compiled and passed the interface check but could not be instantiated."""

    code = "SYNAPSE-MODULE-INSTANTIATE"


class InputFault(SynapseError):
    """A declared input is absent without default, mistyped, not finite, or out of range (SIP-001 §3).

    `side` is "telemetry" or "context"; `name` is the input's declared name (None when the whole
    telemetry/context value is not an object).
    """

    code = "SYNAPSE-INPUT"

    def __init__(self, side: str, name: str | None, why: str) -> None:
        where = side if name is None else f'{side} "{name}"'
        super().__init__(f"{where} {why}")
        self.side = side
        self.name = name
