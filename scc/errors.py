"""scc's exception tree and diagnostics. Every code is stable; docs/errors.md explains each one.

A `Diagnostic` is one finding about a policy: a stable code, a severity, a JSON Pointer into the
source (RFC 6901; "" is the whole document), a message a plant engineer can act on, and where known
the line and column. Stages return diagnostics; `PolicyError` carries them out of the pipeline.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from axon.errors import CodedError


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"


# code -> what it means. Codes are never renumbered or reused; docs/errors.md has an example of each.
CODES: dict[str, str] = {
    # reading the JSON text (scc/reader.py)
    "SCC-E001": "the source is larger than 1 MiB",
    "SCC-E002": "the source is not valid UTF-8 text",
    "SCC-E003": "the source is not valid JSON",
    "SCC-E004": "an object has the same key twice",
    "SCC-E005": "NaN, Infinity and -Infinity are not JSON numbers",
    "SCC-E006": "a number is too large to be a finite double",
    "SCC-E007": "there is more text after the JSON document",
    "SCC-E008": "the JSON is nested too deeply",
    "SCC-E009": "a string escapes half of a UTF-16 surrogate pair",
    # document structure (scc/structure.py, scc/schema/sip-001.schema.json)
    "SCC-E010": "unknown key",
    "SCC-E011": "a required key is missing",
    "SCC-E012": "a value has the wrong JSON type",
    "SCC-E013": "a value is not one of the allowed choices",
    "SCC-E014": "a name, id or version is not in the required format",
    "SCC-E015": "a list has too few or too many items",
    "SCC-E016": "an object is not a valid expression",
    "SCC-E017": "the document does not have the structure of a SIP-001 policy",
    # types (scc/checker.py)
    "SCC-E020": "an expression has the wrong type (number or bool)",
    "SCC-E021": "an enum input is used other than in a comparison",
    "SCC-E022": "a text value is not allowed here or is not a value of the enum",
    "SCC-E023": "eq/ne compares values that cannot be compared",
    "SCC-E024": "the two branches of an `if` have different types",
    # names and declarations (scc/checker.py)
    "SCC-E030": "an input is used but not declared",
    "SCC-E031": "a `let` definition is used but not defined",
    "SCC-E032": "a `let` definition uses itself or a definition below it",
    "SCC-E033": "two rules have the same id",
    "SCC-E034": "an input's min is greater than its max",
    "SCC-E035": "an input's default lies outside [min, max]",
    "SCC-E036": "an enum input's default is not one of its values",
    "SCC-E037": "an enum input lists the same value twice",
    "SCC-E038": "a log message is longer than 1,024 bytes of UTF-8",
    # limits (scc/checker.py)
    "SCC-E040": "the policy has more than 4,096 rules",
    "SCC-E041": "an expression is nested more than 64 levels deep",
    "SCC-E042": "the policy has more than 100,000 expression nodes",
    "SCC-E043": "the log messages do not fit in the module's memory",
    "SCC-E044": "`let` definitions build on each other more than 64 levels deep",
    # warnings: never stop compilation (scc/checker.py)
    "SCC-W001": "a rule can never hold",
    "SCC-W002": "a rule is shadowed by an earlier rule and can never decide",
    "SCC-W003": "a `let` definition is not used by any rule",
    "SCC-W004": "a declared input is not used by any rule",
    "SCC-W005": "a division by the constant 0 always faults when it is evaluated",
}


@dataclass(frozen=True)
class Diagnostic:
    code: str
    pointer: str
    message: str
    line: int | None = None
    column: int | None = None

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"undefined diagnostic code {self.code!r}")

    @property
    def severity(self) -> Severity:
        return Severity.WARNING if self.code.startswith("SCC-W") else Severity.ERROR

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "code": self.code,
            "severity": str(self.severity),
            "pointer": self.pointer,
            "message": self.message,
        }
        if self.line is not None:
            out["line"] = self.line
            out["column"] = self.column
        return out

    def format(self, filename: str) -> str:
        """`file:/pointer: CODE message (line L, column C)`, one line (`file: ...` for the whole
        document, whose pointer is empty)."""
        at = f" (line {self.line}, column {self.column})" if self.line is not None else ""
        where = f"{filename}:{self.pointer}" if self.pointer else filename
        return f"{where}: {self.code} {self.message}{at}"


class SccError(CodedError):
    """Root of every error raised by `scc`. `code` is stable; the message is for people."""

    code = "SCC"


class Findings:
    """Errors and warnings of anything holding `diagnostics` (a check result, a rejected policy)."""

    diagnostics: tuple[Diagnostic, ...]

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.is_error)

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if not d.is_error)


class PolicyError(Findings, SccError):
    """The policy is wrong. `diagnostics` holds every finding (errors first, then warnings)."""

    code = "SCC-POLICY"

    def __init__(self, diagnostics: Iterable[Diagnostic], *, hidden: int = 0) -> None:
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        self.hidden = hidden  # errors found beyond the display cap
        errors = self.errors
        first = errors[0] if errors else None
        summary = f"{first.pointer}: {first.code} {first.message}" if first else "policy rejected"
        more = len(errors) - 1 + hidden
        super().__init__(summary + (f" (and {more} more)" if more else ""))


class ReadError(PolicyError):
    """The source is not strict, well-formed JSON of an acceptable size (scc/reader.py)."""

    code = "SCC-READ"


class StructureError(PolicyError):
    """The JSON does not have the shape SIP-001 prescribes (scc/structure.py)."""

    code = "SCC-STRUCTURE"


class CheckError(PolicyError):
    """The policy is well-formed but wrong: types, names, declarations, limits (scc/checker.py)."""

    code = "SCC-CHECK"


class InternalError(SccError):
    """The compiler produced something it should not have. A bug in scc, never in the policy."""

    code = "SCC-INTERNAL"


def unexpected(value: object, where: str) -> InternalError:
    """An InternalError for a value of a kind that `where` never receives from the earlier stages."""
    return InternalError(f"{where} received {type(value).__name__} {value!r:.80} (a bug in scc)")


