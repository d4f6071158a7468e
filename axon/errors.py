"""Axon's exception tree. Every error has a stable machine-readable `code`."""

from __future__ import annotations


class AxonError(Exception):
    """Root of every error raised by `axon`. `code` is stable; the message is for people."""

    code = "AXON"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}
