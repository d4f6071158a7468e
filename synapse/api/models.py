"""The HTTP API's request and response shapes (pydantic), which also document it in OpenAPI. A decision
is not described here: the API answers `synapse.decision.Decision.to_dict()`, typed by DecisionJson."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from synapse.decision import DecisionJson

MAX_INPUTS = 1024

Name = Annotated[str, Field(min_length=1, max_length=300, strict=True,
                            description="A policy name (e.g. boiler-guard) or an artifact URN "
                                        "(urn:sopcos:artifact:sha256:...)")]
FiniteNumber = Annotated[float, Field(allow_inf_nan=False, strict=True)]
Text = Annotated[str, Field(max_length=1024, strict=True)]
# A telemetry or context value: a number, a boolean, or an enum value (a string). Nothing else. These
# models document the API; synapse.inputs.Reading applies the same rules to every reading.
Scalar = StrictBool | StrictInt | FiniteNumber | Text
InputName = Annotated[str, Field(min_length=1, max_length=128)]
Inputs = Annotated[dict[InputName, Scalar], Field(max_length=MAX_INPUTS)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class EvaluateRequest(_Strict):
    policy: Name
    telemetry: Inputs = Field(description="Telemetry values by input name")
    context: Inputs = Field(default_factory=dict, description="Context values by input name")


class BatchItem(_Strict):
    policy: Name | None = Field(default=None, description="Defaults to the batch's policy")
    telemetry: Inputs
    context: Inputs = Field(default_factory=dict)


class EvaluateBatchRequest(_Strict):
    policy: Name | None = Field(default=None, description="Policy for items that name none")
    inputs: Annotated[list[BatchItem], Field(min_length=1, max_length=100_000,
                                             description="Evaluated in order (the service's "
                                                         "limits.max_batch bounds the length)")]


class ErrorDetail(BaseModel):
    pointer: str = Field(description="JSON Pointer into the request body ('' for the whole body)")
    message: str


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable error code")
    message: str
    errors: list[ErrorDetail] = Field(default_factory=list)


class BatchError(BaseModel):
    index: int
    error: ErrorBody


class BatchResponse(BaseModel):
    results: list[DecisionJson | BatchError] = Field(
        description="One per input, in order: a decision, or an error (no decision was made: treat it "
                    "as DENY)")


class ArtifactInfo(BaseModel):
    urn: str
    policy: str
    version: str
    sha256: str
    added_at: float
    kid: str
    authority_level: int
    encrypted: bool
    state: Literal["active", "retired", "revoked", "superseded", "rejected"]
    reason: str | None
    served: bool
    active: bool
    verified_offline: bool


class UploadResponse(ArtifactInfo):
    created: bool


class ArtifactList(BaseModel):
    artifacts: list[ArtifactInfo]


class ArtifactRef(BaseModel):
    urn: str
    policy: str
    version: str


class PolicyInfo(BaseModel):
    policy: str
    active: ArtifactRef | None
    pinned: str | None
    floor: str
    reason: str | None
    versions: list[str]


class PolicyList(BaseModel):
    policies: list[PolicyInfo]


class RollbackRequest(_Strict):
    urn: Annotated[str, Field(min_length=1, max_length=300)]


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: Literal["starting", "ready", "degraded"]
    node: str  # this node's DID: what a signed request names in X-Sopcos-Node
    serving_last_known_good: bool
    ledger: dict[str, Any]
    artifacts_served: int


class Noop(BaseModel):
    ok: bool
