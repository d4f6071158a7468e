"""The shape every package's exception tree shares, and Axon's own root.

Each package roots its errors in one class (`AxonError`, `synapse.errors.SynapseError`,
`scc.errors.SccError`) built on `CodedError`: a stable machine-readable `code` and a message for people.
"""

from __future__ import annotations


class CodedError(Exception):
    """An error with a stable `code` (for scripts and APIs) and a message (for people)."""

    code = "ERROR"

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class AxonError(CodedError):
    """Root of every error raised by `axon`."""

    code = "AXON"
