"""The API's request and response bodies as pydantic models: request validation (the predict fast
path falls back to these for its error messages) and the OpenAPI document at /v1/openapi.json.

Imported only when needed: a valid predict request never builds or loads them.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from router.domain import Mode, OutputKind


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def __repr__(self) -> str:
        # Powertools formats the route arguments into a debug message on every call, even with
        # debug logging off: the default repr would print every instance (ms on large bodies).
        n = getattr(self, "instances", None)
        return f"{type(self).__name__}(instances={'None' if n is None else len(n)})"


class PredictBody(_Body):
    instances: list[Any] = Field(min_length=1, description="Rows in feature order, objects keyed by feature name, or whatever the model's inference code accepts.")
    output: OutputKind = Field(OutputKind.PREDICT, description="`predict` (default) or `proba` (class probabilities).")


# An S3 bucket name as the S3 client accepts it (other characters, or a longer name, are refused
# before any request is sent), then an object key (not empty: the input is read as one object)
# without control characters; or an upload's file:// URI.
_INPUT_URI = r"^(s3://[A-Za-z0-9._-]{1,255}/[^\x00-\x1f\x7f]+|file://[^\x00-\x1f\x7f]+)$"
_INPUT_URI_RE = re.compile(_INPUT_URI)
S3_KEY_MAX_BYTES = 1024


class JobInput(_Body):
    uri: str = Field(max_length=4096, json_schema_extra={"pattern": _INPUT_URI},
                     description="s3://bucket/key of one object (key: 1-1024 bytes), or an upload's input_uri.")
    format: Literal["jsonl", "csv"] = "jsonl"

    @field_validator("uri")
    @classmethod
    def _uri(cls, uri: str) -> str:
        if not _INPUT_URI_RE.match(uri):
            raise ValueError("must be s3://bucket/key (a bucket name of letters, digits, '.', '-' or '_', "
                             "a non-empty key, no control characters) or an upload's input_uri")
        if uri.startswith("s3://") and len(uri[len("s3://"):].partition("/")[2].encode()) > S3_KEY_MAX_BYTES:
            raise ValueError(f"an S3 key is at most {S3_KEY_MAX_BYTES} bytes")
        return uri


class JobNotify(_Body):
    webhook: str = Field(max_length=2048, description="http(s) URL that gets a signed POST of the job's final status when it ends (docs/api.md \"Notifications\").")


class JobBody(_Body):
    instances: list[Any] | None = Field(None, min_length=1)
    input: JobInput | None = None
    output: OutputKind = OutputKind.PREDICT
    notify: JobNotify | None = None

    @model_validator(mode="after")
    def _one_source(self) -> JobBody:
        if (self.instances is None) == (self.input is None):
            raise ValueError("give exactly one of `instances` or `input`")
        return self


class RouteBody(_Body):
    """A description of a request, or a predict/job body (then `mode` says which; default sync)."""

    mode: Mode | None = None
    # Strict: `"10"` or `true` is a type error (400), not silently a number.
    records: StrictInt | None = Field(None, ge=1, le=10**12)
    payload_bytes: StrictInt | None = Field(None, ge=0, le=10**18)
    instances: list[Any] | None = Field(None, min_length=1)
    input: JobInput | None = None
    output: OutputKind = OutputKind.PREDICT

    @model_validator(mode="after")
    def _shape(self) -> RouteBody:
        if self.instances is None and self.input is None and self.records is None:
            raise ValueError("describe the request with `records` (and `mode`, `payload_bytes`), or send `instances`")
        return self


class EstimatesModel(BaseModel):
    duration_s: float
    cost_usd: float | None


class CandidateModel(BaseModel):
    route: str
    feasible: bool
    reasons: list[str]
    estimates: EstimatesModel


class DecisionModel(BaseModel):
    route: str | None
    mode: Mode
    reason: str
    estimates: EstimatesModel | None
    candidates: list[CandidateModel]


class PredictDecision(BaseModel):
    route: str = Field(description="The route that ran the prediction.")
    reason: str
    estimates: EstimatesModel | None = Field(description="What routing expected of the route.")


class TimingModel(BaseModel):
    total: float = Field(description="The request in the router, in ms.")
    model: float = Field(description="The route's own time (the model call), in ms.")


class PredictResponse(BaseModel):
    model: str
    model_version: str
    route: str
    predictions: list[Any]
    decision: PredictDecision
    timing_ms: TimingModel


class ErrorBody(BaseModel):
    code: str
    message: str
    request_id: str
    details: dict[str, Any] = Field(description="Always present; an empty object when there is nothing to add.")


class ErrorResponse(BaseModel):
    error: ErrorBody


class ModelInfo(BaseModel):
    name: str
    framework: str
    version: str
    features: list[str] | None
    feature_count: int | None
    routes: list[str]
    description: str | None = Field(None, description="The config's description of the model, when it has one.")
    endpoint_status: str | None = Field(None, description="For a model with an endpoint: its last known status (InService, Creating, Failed, ...).")
    serverless_status: str | None = Field(None, description="For a model with a serverless endpoint: its last known status.")


class ModelList(BaseModel):
    models: list[ModelInfo]


class RatioSpread(BaseModel):
    median: float
    p10: float
    p90: float
    min: float
    max: float


class RouteCalibration(BaseModel):
    samples: int
    ratio: RatioSpread | None = Field(description="estimate / measured duration: 1 is exact, above 1 the estimate was pessimistic.")
    records: dict[str, int] | None = Field(description="Smallest and largest piece of work sampled: {min, max}.")


class CalibrationModel(BaseModel):
    routes: dict[str, RouteCalibration] = Field(description="By route name; a route with no recent work is absent.")
    scope: str = Field(description="Where the samples come from.")
    learning: str = Field(description="`off` (routing.calibrate: false), or what routing learned from the samples.")


class EnvelopeRoute(BaseModel):
    feasible: bool
    max_records: int | None


class ModelDetail(ModelInfo):
    latency_ms: float | None
    size_bytes: int | None
    profile: dict[str, Any]
    endpoint: dict[str, Any] | None
    serverless: dict[str, Any] | None = Field(None, description="For a model with a serverless endpoint: {name, memory_mb, max_concurrency}.")
    async_inference: dict[str, Any] | None = Field(
        None, description="For a model with an async inference endpoint: its async_inference settings, endpoint_name filled in."
    )
    batch_transform: dict[str, Any] | None
    envelope: dict[str, EnvelopeRoute] = Field(description="Per route: feasible, and the largest request (records) it takes; null: no limit.")
    calibration: CalibrationModel = Field(description="Estimate/measured ratio per route over recent work (docs/routing.md \"Calibration\").")


class JobRecords(BaseModel):
    total: int | None
    done: int | None


class JobInputRef(BaseModel):
    uri: str
    format: str | None = None


class JobOutput(BaseModel):
    uri: str
    download_url: str | None = None
    expires_at: str | None = None


class JobError(BaseModel):
    code: str
    message: str
    details: dict[str, Any] | None = None


class JobBackend(BaseModel):
    name: str | None


class JobModel(BaseModel):
    job_id: str
    model: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelling", "cancelled"]
    route: str
    reason: str
    created_at: str
    updated_at: str
    started_at: str | None
    finished_at: str | None
    records: JobRecords
    input: JobInputRef
    output: JobOutput | None
    error: JobError | None
    backend: JobBackend | None
    estimate: EstimatesModel | None = Field(None, description="The routing decision's estimate at submission.")
    duration_s: float | None = Field(None, description="started_at to finished_at of a succeeded job; null otherwise.")


class JobList(BaseModel):
    jobs: list[JobModel]
    next_cursor: str | None


class UploadSlot(BaseModel):
    upload_url: str
    method: Literal["PUT"]
    headers: dict[str, str]
    input_uri: str
    expires_at: str


class HealthResponse(BaseModel):
    status: str
    version: str
    config_digest: str
    runtime: str
    endpoints: dict[str, str] | None = Field(None, description="Each declared endpoint's last known status (InService, Creating, Failed, ...), by endpoint name.")
