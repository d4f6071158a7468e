"""The service's exception tree. Every error has a stable `code`, an HTTP `status` and optional
field-level `errors`, so the HTTP layer can translate any of them into {"code", "message", "errors"}
without looking inside."""

from __future__ import annotations

from typing import Any

from synapse.errors import SynapseError


class ServiceError(SynapseError):
    """Root of every error raised by `synapse.service`. `code` is stable; the message is for people."""

    code = "SYNAPSE-SVC"
    status = 400

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message, code=code)
        if status is not None:
            self.status = status
        self.errors = errors or []

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "errors": self.errors}


class ConfigError(ServiceError):
    """A configuration file or flag is wrong (the CLI turns it into exit 2)."""

    code = "SYNAPSE-SVC-CONFIG"


class RequestInvalid(ServiceError):
    code = "SYNAPSE-SVC-REQUEST-INVALID"
    status = 422


class BodyTooLarge(ServiceError):
    code = "SYNAPSE-SVC-BODY-TOO-LARGE"
    status = 413


class PolicyUnknown(ServiceError):
    code = "SYNAPSE-SVC-POLICY-UNKNOWN"
    status = 404


class PolicyNotServed(ServiceError):
    """The policy is known but none of its artifacts may be served (revoked, superseded, retired)."""

    code = "SYNAPSE-SVC-POLICY-NOT-SERVED"
    status = 409


class ArtifactUnknown(ServiceError):
    code = "SYNAPSE-SVC-ARTIFACT-UNKNOWN"
    status = 404


class ArtifactRejected(ServiceError):
    """Axon refused an artifact; `code` is Axon's own code for the failed check."""

    code = "SYNAPSE-SVC-ARTIFACT-REJECTED"
    status = 422


class Conflict(ServiceError):
    code = "SYNAPSE-SVC-CONFLICT"
    status = 409


class AuthRequired(ServiceError):
    code = "SYNAPSE-SVC-AUTH-REQUIRED"
    status = 401


class Forbidden(ServiceError):
    code = "SYNAPSE-SVC-FORBIDDEN"
    status = 403


class RateLimited(ServiceError):
    code = "SYNAPSE-SVC-RATE-LIMITED"
    status = 429

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DecisionLogError(ServiceError):
    """The decision log cannot be written or read."""

    code = "SYNAPSE-SVC-LOG"
    status = 503
