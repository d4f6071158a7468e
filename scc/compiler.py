"""The pipeline: read -> structure (JSON Schema) -> build + check -> lower -> gas -> emit (-> assemble).

`check_policy` runs the front end and returns every finding; `compile_policy` also produces the
module, or raises the PolicyError of the stage that rejected the policy. The same source and the
same compiler version always give byte-identical output: nothing here reads a clock, randomness,
the environment or the file system.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import rfc8785

from axon import abi
from scc import COMPILER_ID, structure
from scc.ast import Policy, build
from scc.checker import check
from scc.emit import assemble, emit_wat, trace_layout
from scc.errors import CheckError, Diagnostic, Findings, InternalError, PolicyError, ReadError, StructureError
from scc.gas import gas_max
from scc.ir import Program
from scc.limits import LIMITS, CompilerLimits
from scc.lower import lower
from scc.reader import Document, read


@dataclass(frozen=True)
class CheckResult(Findings):
    """Every finding about one source, in document order. `policy` is set when there are no errors."""

    diagnostics: tuple[Diagnostic, ...]
    policy: Policy | None = None
    document: Document | None = None
    stage: type[PolicyError] = CheckError  # the stage that produced the errors, if any
    hidden_errors: int = 0  # errors beyond CompilerLimits.max_errors_shown, counted, not listed
    hidden_warnings: int = 0

    @property
    def valid(self) -> bool:
        return not self.errors and not self.hidden_errors


@dataclass(frozen=True)
class CompileResult:
    wasm: bytes
    wat: str
    meta: dict[str, Any]  # the decoded `sopcos.meta` section
    diagnostics: tuple[Diagnostic, ...]  # warnings only: errors raise PolicyError
    program: Program = field(repr=False)

    @property
    def meta_json(self) -> bytes:
        """The section's payload: RFC 8785 canonical JSON of `meta`."""
        return rfc8785.dumps(self.meta)

    @property
    def gas_max(self) -> int:
        return self.meta["gas_max"]

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        return self.diagnostics


def source_hash(document: Any) -> str:
    """"sha256:" + hex SHA-256 of the RFC 8785 canonical form of the source document."""
    return "sha256:" + hashlib.sha256(rfc8785.dumps(document)).hexdigest()


def check_policy(source: bytes, limits: CompilerLimits = LIMITS) -> CheckResult:
    """Run the front end on `source` (the policy file's bytes) and return every finding."""
    try:
        document = read(source, limits)
    except ReadError as exc:
        return _result(list(exc.diagnostics), limits, stage=ReadError)
    try:
        structural = structure.validate(document.value)
    except RecursionError:  # cannot happen below CompilerLimits.max_json_depth; kept as a fail-safe
        structural = [Diagnostic("SCC-E008", "", "the JSON is nested too deeply to check")]
    if structural:
        return _result(document.in_document_order(structural), limits, document, stage=StructureError)
    policy = build(document.value)
    findings = document.in_document_order(check(policy, limits))
    errors = any(d.is_error for d in findings)
    return _result(findings, limits, document, None if errors else policy, stage=CheckError)


def _result(diagnostics: list[Diagnostic], limits: CompilerLimits, document: Document | None = None,
            policy: Policy | None = None, *, stage: type[PolicyError]) -> CheckResult:
    cap = limits.max_errors_shown
    errors = [d for d in diagnostics if d.is_error]
    warnings = [d for d in diagnostics if not d.is_error]
    return CheckResult(
        diagnostics=tuple(errors[:cap] + warnings[:cap]), policy=policy, document=document, stage=stage,
        hidden_errors=max(0, len(errors) - cap), hidden_warnings=max(0, len(warnings) - cap),
    )


def compile_policy(source: bytes, limits: CompilerLimits = LIMITS) -> CompileResult:
    """Compile `source` to a policy module, or raise the PolicyError of the stage that rejected it
    (ReadError, StructureError or CheckError; `.diagnostics` has every finding)."""
    checked = check_policy(source, limits)
    if not checked.valid:
        raise checked.stage(checked.diagnostics, hidden=checked.hidden_errors)
    policy, document = checked.policy, checked.document
    if policy is None or document is None:
        raise InternalError("the checker called the policy valid but returned no policy (a bug in scc)")
    program = lower(policy)
    meta = module_meta(policy, program, source_hash(document.value), gas_max(program))
    meta_json = rfc8785.dumps(meta)
    trace = trace_layout(program)
    wat = emit_wat(program, f"policy {policy.name} {policy.version}, compiled by {COMPILER_ID}; "
                            f"source {meta['source_hash']}; gas_max {meta['gas_max']}", trace)
    return CompileResult(assemble(wat, meta_json, trace), wat, meta, checked.diagnostics, program)


def module_meta(policy: Policy, program: Program, hash_: str, gas: int) -> dict[str, Any]:
    """The `sopcos.meta` document (docs/abi.md)."""

    def inputs(decls) -> list[dict[str, Any]]:
        return [{"name": d.name, **d.declaration} for d in decls]

    return {
        "abi": abi.ABI_VERSION,
        "policy": policy.name,
        "version": policy.version,
        "source_hash": hash_,
        "compiler": COMPILER_ID,
        "gas_max": gas,
        "combine": policy.combine,
        "default": policy.default.name,
        "inputs": {"telemetry": inputs(policy.telemetry), "context": inputs(policy.context)},
        "rules": [{"id": r.id, "then": r.then.name} for r in policy.rules],
        "sites": list(program.sites),
    }
