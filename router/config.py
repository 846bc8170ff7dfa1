"""The operator config file (docs/configuration.md): pydantic models, loading and validation.

One YAML file declares models, limits, prices and backends. Unknown keys are rejected with the
exact path and line of the mistake; omitted limits take the current AWS defaults (docs/routing.md);
relative `file://` and `sqlite:///` locations are resolved against the file's own folder.
This is the only module that reads the file.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from router.errors import ConfigError

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
MODEL_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
ROLE_ARN_RE = r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$"
INSTANCE_TYPE_RE = r"^ml\.[a-z0-9]+\.[a-z0-9]+$"
# SageMaker endpoint names: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}
ENDPOINT_NAME_RE = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"
VERSION_RE = r"^[0-9]+(\.[0-9A-Za-z+-]+){0,4}$"

Framework = Literal["sklearn", "onnx", "pytorch", "container"]
INPROCESS_FRAMEWORKS: frozenset[str] = frozenset({"sklearn", "onnx"})

PositiveFloat = Annotated[float, Field(gt=0)]
# runtime.* keys whose upper bound is an AWS quota that cannot be raised.
AWS_FIXED_MAXIMA = frozenset(
    {"lambda_timeout_s", "lambda_memory_mb", "lambda_ephemeral_mb", "sync_payload_mb", "api_payload_mb",
     "endpoint_timeout_s", "endpoint_payload_mb", "async_payload_mb", "async_timeout_s", "serverless_timeout_s",
     "serverless_payload_mb"}
)
NonNegFloat = Annotated[float, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class Runtime(_Strict):
    """The deployment's limits. Defaults are AWS's (docs/routing.md); override when AWS moves them."""

    sync_timeout_s: PositiveFloat = Field(29.0, description="API Gateway REST integration timeout (29 s default, raisable for Regional APIs).")
    lambda_timeout_s: float = Field(900.0, gt=0, le=900, description="Lambda timeout; AWS maximum 900 s (15 min).")
    lambda_memory_mb: int = Field(3008, ge=128, le=10240, description="Router/worker Lambda memory (128-10,240 MB).")
    lambda_ephemeral_mb: int = Field(512, ge=512, le=10240, description="Lambda /tmp size (512-10,240 MB); inline model artifacts are cached there.")
    safety_margin: float = Field(0.8, gt=0, le=1, description="Use at most this share of any time or memory limit.")
    # AWS fixed quotas (not raisable): a lower value is allowed, a higher one would route work AWS refuses.
    sync_payload_mb: float = Field(6.0, gt=0, le=6, description="Lambda synchronous invoke payload limit (6 MB request and response; AWS's fixed maximum).")
    api_payload_mb: float = Field(10.0, gt=0, le=10, description="API Gateway REST payload limit (10 MB; AWS's fixed maximum).")
    endpoint_timeout_s: float = Field(60.0, gt=0, le=60, description="SageMaker real-time endpoint invocation timeout (60 s; AWS's fixed maximum).")
    endpoint_payload_mb: float = Field(6.0, gt=0, le=6, description="SageMaker real-time endpoint payload limit (6 MB; AWS's fixed maximum).")
    async_payload_mb: float = Field(1024.0, gt=0, le=1024, description="SageMaker asynchronous inference request payload limit (1 GB; AWS's fixed maximum).")
    async_timeout_s: float = Field(3600.0, gt=0, le=3600, description="SageMaker asynchronous inference processing time per request (3,600 s; AWS's fixed maximum).")
    serverless_timeout_s: float = Field(60.0, gt=0, le=60, description="SageMaker serverless endpoint invocation timeout (60 s; AWS's fixed maximum).")
    serverless_payload_mb: float = Field(4.0, gt=0, le=4, description="SageMaker serverless endpoint request and response payload limit (4 MB; AWS's fixed maximum).")


class Prices(_Strict):
    """us-east-1 list prices, for estimates and cost tie-breaks only."""

    lambda_gb_s: NonNegFloat = Field(0.0000166667, description="Lambda price per GB-second (x86).")
    lambda_request: NonNegFloat = Field(0.0000002, description="Lambda price per request ($0.20 per million).")
    instance_hour: dict[str, NonNegFloat] = Field(
        default_factory=lambda: {"ml.m5.large": 0.115, "ml.m5.xlarge": 0.23, "ml.g4dn.xlarge": 0.736},
        description="SageMaker instance price per hour, by instance type.",
    )
    serverless_gb_s: NonNegFloat = Field(
        0.00002, description="SageMaker Serverless Inference price per GB-second of inference ($0.0000200 per second at 1024 MB)."
    )
    serverless_data_gb: NonNegFloat = Field(0.016, description="SageMaker Serverless Inference price per GB of data processed (request and response).")


# Routes a profile may time on their own (docs/routing.md "Estimates").
ProfiledRoute = Literal["inline", "endpoint", "lambda-job", "batch-transform", "async-inference"]


class RouteTiming(_Strict):
    """One route's run time with the model loaded: fixed_ms + records x per_record_ms."""

    fixed_ms: NonNegFloat = Field(0.0, description="Time of one request (or job) on the route that does not depend on its size.")
    per_record_ms: NonNegFloat = Field(description="Time per record on the route, at the batch sizes it uses.")


class Profile(_Strict):
    """Measured (by `router profile`) or declared model timings."""

    load_s: NonNegFloat = Field(description="Time to load the model into memory, cold (framework import included).")
    import_s: NonNegFloat | None = Field(
        None, description="The part of load_s spent importing the framework; a process that already imported it pays load_s - import_s."
    )
    per_record_ms: NonNegFloat = Field(description="Time to predict one record once loaded, for routes without their own `routes` entry.")
    memory_mb: PositiveFloat | None = Field(None, description="Resident memory of the loaded model; default: 3 x artifact size.")
    serverless_cold_start_s: NonNegFloat | None = Field(
        None, description="Time a serverless endpoint with no instance up takes to answer its first call, before the prediction; default: routing.serverless_startup_s + load_s."
    )
    routes: dict[ProfiledRoute, RouteTiming] | None = Field(
        None, description="Per route: {fixed_ms, per_record_ms} measured at the batch sizes the route uses (`router profile`)."
    )

    @model_validator(mode="after")
    def _import_within_load(self) -> Profile:
        if self.import_s is not None and self.import_s > self.load_s:
            raise ValueError(f"import_s ({self.import_s:g}) cannot exceed load_s ({self.load_s:g}): load_s includes the import")
        return self

    def timing(self, route: str) -> tuple[float, float]:
        """(fixed_ms, per_record_ms) of a route: its own entry, else per_record_ms with no fixed
        part (what every route used before profiles had `routes`)."""
        own = None if self.routes is None else cast(dict[str, RouteTiming], self.routes).get(route)
        return (own.fixed_ms, own.per_record_ms) if own is not None else (0.0, self.per_record_ms)

    def load_after_import_s(self) -> float:
        """Cold load in a process that already imported the framework."""
        return self.load_s - (self.import_s or 0.0)


class SavedWith(_Strict):
    """The library versions a model file was saved with (train/serve skew check)."""

    sklearn: str | None = Field(None, pattern=VERSION_RE, description="scikit-learn version that saved the model; a newer one than the Lambda package's is refused.")
    numpy: str | None = Field(None, pattern=VERSION_RE, description="numpy version that saved the model; numpy 2 pickles need numpy 2.")


class Routing(_Strict):
    prefer: Literal["latency", "cost"] = Field("latency", description="Which feasible route wins: the fastest or the cheapest.")
    default_profile: Profile = Field(
        default_factory=lambda: Profile(load_s=1.0, per_record_ms=1.0),
        description="Assumed timings for a model with no `profile` (run `router profile` to measure).",
    )
    batch_startup_s: NonNegFloat = Field(300.0, description="Assumed SageMaker batch-transform start-up (instances provisioning, container pull).")
    endpoint_overhead_ms: NonNegFloat = Field(20.0, description="Assumed network + serialization overhead of one endpoint call.")
    async_startup_s: NonNegFloat = Field(
        300.0, description="Assumed start-up of an asynchronous inference endpoint scaled to zero (an instance provisioned, the container pulled)."
    )
    endpoint_status_ttl_s: NonNegFloat = Field(30.0, description="How long an endpoint's InService status is cached.")
    serverless_startup_s: NonNegFloat = Field(
        5.0, description="Assumed start of a serverless endpoint instance (capacity and container) before the model loads, for profiles without serverless_cold_start_s."
    )
    calibrate: bool = Field(
        False, description="Learn per-record times from recent work done by this process (bounded; the reason says so). Off: the profile alone."
    )


class Storage(_Strict):
    artifacts: str = Field("file://./models", description="Where model artifacts live: file://DIR or s3://bucket/prefix.")
    jobs: str = Field("file://./.router/jobs", description="Job inputs and outputs: file://DIR or s3://bucket/prefix.")
    job_table: str = Field("sqlite:///./.router/jobs.db", description="Job table: sqlite:///PATH or dynamodb://table-name.")

    @field_validator("artifacts", "jobs")
    @classmethod
    def _object_uri(cls, v: str) -> str:
        if not (v.startswith("file://") or re.match(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$", v)):
            raise ValueError(f"must be file://PATH or s3://bucket[/prefix], got {v!r}")
        return v

    @field_validator("job_table")
    @classmethod
    def _table_uri(cls, v: str) -> str:
        if not (v.startswith("sqlite:///") or re.match(r"^dynamodb://[A-Za-z0-9_.-]{3,255}$", v)):
            raise ValueError(f"must be sqlite:///PATH or dynamodb://table-name, got {v!r}")
        return v


class Auth(_Strict):
    enabled: bool = Field(True, description="Local runtime only: false serves every caller as owner `local`. The AWS runtime refuses to start with auth off.")
    api_keys: dict[str, str] = Field(default_factory=dict, description="Local bearer keys -> owner names.")

    @field_validator("api_keys")
    @classmethod
    def _keys(cls, v: dict[str, str]) -> dict[str, str]:
        for key, owner in v.items():
            if len(key) < 16:
                raise ValueError(f"API key {key[:4]}... is shorter than 16 characters")
            if not owner:
                raise ValueError(f"API key {key[:4]}... maps to an empty owner")
        return v


class Jobs(_Strict):
    max_active_per_owner: int = Field(20, ge=1, description="Active (queued/running/cancelling) jobs one owner may have; more -> 429 too_many_jobs.")
    ttl_days: int = Field(30, ge=1, description="Finished jobs expire from the job table after this many days.")
    chunk_records: int = Field(5000, ge=1, description="Records the lambda-job worker reads, predicts and writes at a time.")
    max_attempts: int = Field(3, ge=1, le=10, description="A job that fails this many times ends `failed`.")
    stale_after_s: NonNegFloat = Field(900.0, description="The sweeper looks at queued/running jobs untouched for this long.")
    url_expiry_s: int = Field(3600, ge=60, le=604800, description="Presigned download/upload URL lifetime.")


class BatchTransformDefaults(_Strict):
    instance_type: str = Field("ml.m5.xlarge", pattern=INSTANCE_TYPE_RE)
    instance_count: int = Field(1, ge=1)
    max_payload_mb: int = Field(6, ge=0, le=100, description="MaxPayloadInMB (<= 100).")
    max_concurrent_transforms: int = Field(1, ge=1, description="MaxConcurrentTransforms; x max_payload_mb <= 100.")
    invocation_timeout_s: int = Field(600, ge=1, le=3600, description="ModelClientConfig.InvocationsTimeoutInSeconds (<= 3600).")
    max_retries: int = Field(3, ge=0, le=3, description="ModelClientConfig.InvocationsMaxRetries (<= 3).")

    @model_validator(mode="after")
    def _payload_product(self) -> BatchTransformDefaults:
        if self.max_concurrent_transforms * self.max_payload_mb > 100:
            raise ValueError(
                f"max_concurrent_transforms x max_payload_mb = {self.max_concurrent_transforms * self.max_payload_mb} "
                "exceeds SageMaker's limit of 100"
            )
        return self


class BatchTransformOverride(_Strict):
    """Per-model batch-transform settings; omitted fields take `sagemaker.batch_transform`."""

    enabled: bool = Field(True, description="false: this model never goes to batch transform.")
    instance_type: str | None = Field(None, pattern=INSTANCE_TYPE_RE)
    instance_count: int | None = Field(None, ge=1)
    max_payload_mb: int | None = Field(None, ge=0, le=100)
    max_concurrent_transforms: int | None = Field(None, ge=1)
    invocation_timeout_s: int | None = Field(None, ge=1, le=3600)
    max_retries: int | None = Field(None, ge=0, le=3)


class SageMaker(_Strict):
    execution_role_arn: str | None = Field(None, pattern=ROLE_ARN_RE, description="Role SageMaker assumes for models and transform jobs.")
    region: str | None = Field(None, description="AWS region; default: the environment's.")
    batch_transform: BatchTransformDefaults | None = Field(
        None, description="Defaults for every model's batch-transform jobs; without it only models with their own `batch_transform` can use that route."
    )


class EndpointSpec(_Strict):
    name: str = Field(pattern=ENDPOINT_NAME_RE, description="SageMaker endpoint name.")
    instance_type: str = Field("ml.m5.large", pattern=INSTANCE_TYPE_RE)
    instance_count: int = Field(1, ge=1)


SNS_TOPIC_ARN_RE = r"^arn:aws[a-z\-]*:sns:[a-z0-9\-]*:[0-9]{12}:[a-zA-Z0-9_.-]+$"
S3_PREFIX_RE = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$"


class AsyncInferenceSpec(_Strict):
    """A SageMaker asynchronous inference endpoint for a model (route `async-inference`, job mode)."""

    endpoint_name: str | None = Field(
        None, pattern=ENDPOINT_NAME_RE, description="SageMaker endpoint name; default: router-<model name>-async (slugged)."
    )
    instance_type: str = Field("ml.m5.large", pattern=INSTANCE_TYPE_RE, description="Instance type of the endpoint's variant (priced by prices.instance_hour).")
    instance_count: int = Field(1, ge=1, description="InitialInstanceCount: instances when the endpoint is created.")
    min_instances: int = Field(0, ge=0, description="Fewest instances autoscaling keeps; 0 scales to zero when idle (a request then pays routing.async_startup_s).")
    max_instances: int = Field(1, ge=1, description="Most instances autoscaling runs.")
    max_concurrent_invocations_per_instance: int = Field(
        1, ge=1, le=1000, description="ClientConfig.MaxConcurrentInvocationsPerInstance: requests one instance works on at a time."
    )
    invocation_timeout_s: int = Field(3600, ge=1, le=3600, description="InvokeEndpointAsync InvocationTimeoutSeconds: a request's processing limit (<= 3,600 s).")
    output_path: str | None = Field(
        None, pattern=S3_PREFIX_RE, description="OutputConfig.S3OutputPath: where SageMaker writes results; default: <storage.jobs>/async-output/."
    )
    failure_path: str | None = Field(
        None, pattern=S3_PREFIX_RE, description="OutputConfig.S3FailurePath: where SageMaker writes a failed request's error; default: <storage.jobs>/async-failure/."
    )
    success_topic: str | None = Field(None, pattern=SNS_TOPIC_ARN_RE, description="NotificationConfig.SuccessTopic: SNS topic ARN told when a request succeeds.")
    error_topic: str | None = Field(None, pattern=SNS_TOPIC_ARN_RE, description="NotificationConfig.ErrorTopic: SNS topic ARN told when a request fails.")
    scale_to_zero_after_s: PositiveFloat = Field(
        600.0, description="Idle time after which the endpoint scales in to min_instances (the autoscaling cooldown; the local emulator does the same)."
    )

    @model_validator(mode="after")
    def _instance_bounds(self) -> AsyncInferenceSpec:
        if self.min_instances > self.max_instances:
            raise ValueError(f"min_instances ({self.min_instances}) exceeds max_instances ({self.max_instances})")
        if self.instance_count > self.max_instances:
            raise ValueError(f"instance_count ({self.instance_count}) exceeds max_instances ({self.max_instances})")
        return self


# SageMaker ServerlessConfig.MemorySizeInMB: 1 GB steps from 1024 to 6144.
SERVERLESS_MEMORY_SIZES = (1024, 2048, 3072, 4096, 5120, 6144)


class ServerlessSpec(_Strict):
    """A SageMaker serverless endpoint for the model (EndpointConfig variant with ServerlessConfig)."""

    name: str | None = Field(
        None, pattern=ENDPOINT_NAME_RE, description="SageMaker endpoint name; default: router-<model name>-serverless (characters other than letters, digits and - become -)."
    )
    memory_mb: int = Field(2048, ge=1024, le=6144, description="ServerlessConfig.MemorySizeInMB: 1024, 2048, 3072, 4096, 5120 or 6144.")
    max_concurrency: int = Field(5, ge=1, le=200, description="ServerlessConfig.MaxConcurrency: concurrent invocations before SageMaker throttles (1-200).")

    @field_validator("memory_mb")
    @classmethod
    def _memory_step(cls, v: int) -> int:
        if v not in SERVERLESS_MEMORY_SIZES:
            raise ValueError(f"must be one of {', '.join(map(str, SERVERLESS_MEMORY_SIZES))} (1 GB steps), got {v}")
        return v


def default_serverless_name(model_name: str) -> str:
    """`router-<model>-serverless` (the SAM template's default endpoint prefix), with the characters
    SageMaker endpoint names refuse replaced by '-'."""
    return "router-" + re.sub(r"-+", "-", re.sub(r"[^A-Za-z0-9-]", "-", model_name)).strip("-") + "-serverless"


class CompiledOnnx(_Strict):
    """A scikit-learn model's ONNX conversion, checked against it (`router models compile`)."""

    artifact: str = Field(description="file://PATH or s3://bucket/key of the .onnx file.")
    sha256: str = Field(description="The .onnx file's SHA-256 (64 hex characters); a mismatch refuses to load it.")
    rows: int = Field(ge=1, description="Records the check compared.")
    data: str = Field(description="Where those records came from: the --data file, or how they were generated.")
    tolerance: NonNegFloat = Field(description="Classifiers: the least share of agreeing labels; regressors: the largest absolute error allowed.")
    agreement: float | None = Field(None, ge=0, le=1, description="Classifiers: the share of records whose labels agree.")
    max_abs_error: NonNegFloat | None = Field(None, description="Regressors: the largest absolute difference of a prediction.")

    @field_validator("sha256", mode="before")
    @classmethod
    def _sha(cls, v: Any) -> Any:
        return _normalize_sha256(v)

    @field_validator("artifact")
    @classmethod
    def _artifact(cls, v: str) -> str:
        return _artifact_uri(v)


def _artifact_uri(v: str) -> str:
    if not (v.startswith("file://") or v.startswith("s3://")):
        raise ValueError(f"must be file://PATH or s3://bucket/key, got {v!r}")
    return v


def _normalize_sha256(v: Any) -> Any:
    if isinstance(v, str):
        v = v.strip().lower()
        if v.startswith("sha256:"):
            v = v[len("sha256:"):]
        if not SHA256_RE.match(v):
            raise ValueError(f"must be 64 hexadecimal characters, got {len(v)} characters")
    return v


WEBHOOK_URL_RE = r"^https?://[^\s/?#@]+(/[^\s]*)?$"
SNS_TOPIC_ARN_RE = r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$"
ENV_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"


class NotifyTarget(_Strict):
    """Where the end of a model's jobs is announced (docs/api.md "Notifications")."""

    webhook: str | None = Field(None, max_length=2048, pattern=WEBHOOK_URL_RE, description="http(s) URL that gets a signed POST of the job's final status.")
    sns: bool = Field(False, description="true: also publish the final status to `notifications.sns_topic_arn` (AWS).")


class Notifications(_Strict):
    """Job-end notifications: webhook signing and retries, the SNS topic (docs/api.md "Notifications")."""

    webhook_secret: str | None = Field(
        None, min_length=16, description="HMAC-SHA256 key webhook POSTs are signed with; prefer `webhook_secret_env`."
    )
    webhook_secret_env: str | None = Field(
        None, pattern=ENV_NAME_RE, description="Name of the environment variable holding the signing key (wins over `webhook_secret`)."
    )
    sns_topic_arn: str | None = Field(None, pattern=SNS_TOPIC_ARN_RE, description="SNS topic for targets with `sns: true` (AWS runtime).")
    max_attempts: int = Field(8, ge=1, le=20, description="Deliveries tried per notification before it is given up (logged, kept on the job).")
    timeout_s: float = Field(5.0, gt=0, le=30, description="Connect + read timeout of one webhook POST.")
    backoff_s: float = Field(30.0, gt=0, le=3600, description="Wait before the first retry; doubled after each failed attempt.")
    backoff_max_s: float = Field(3600.0, gt=0, le=86400, description="The longest wait between two attempts.")
    allow_private_webhooks: bool = Field(
        False, description="AWS runtime: allow webhooks to loopback, private and link-local addresses. `router serve` always allows them."
    )


class Trigger(_Strict):
    """An object landing under `source` starts a job (docs/configuration.md "Triggers")."""

    source: str = Field(description="s3://bucket/prefix/ (AWS: S3 events) or file://DIR/ (router serve watches the folder).")
    model: str = Field(pattern=MODEL_NAME_RE, description="The model the job runs.")
    owner: str = Field(min_length=1, max_length=256, description="The job's owner (who sees it in GET /v1/jobs).")
    output_prefix: str = Field(description="Where each job's result goes: <output_prefix><key under source>.out.jsonl.")
    format: Literal["jsonl", "csv"] | None = Field(None, description="Input format; default: csv for keys ending .csv, else jsonl.")
    output: Literal["predict", "proba"] = Field("predict", description="`predict` or `proba`, as in a job body.")
    poll_s: float = Field(2.0, gt=0, le=3600, description="router serve: seconds between two looks at the folder.")

    @field_validator("source", "output_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not (v.startswith("file://") or re.match(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$", v)):
            raise ValueError(f"must be s3://bucket/prefix/ or file://DIR/, got {v!r}")
        return v if v.endswith("/") else v + "/"

    @model_validator(mode="after")
    def _no_loop(self) -> Trigger:
        if self.source.split("://")[0] != self.output_prefix.split("://")[0]:
            raise ValueError("source and output_prefix must both be s3:// or both file://")
        if self.output_prefix.startswith(self.source) or self.source.startswith(self.output_prefix):
            raise ValueError("output_prefix and source must not contain each other: results would start jobs")
        return self


class ModelSpec(_Strict):
    name: str = Field(pattern=MODEL_NAME_RE)
    framework: Framework
    artifact: str = Field(description="file://PATH or s3://bucket/key of the model file (joblib, .onnx, or model.tar.gz).")
    sha256: str = Field(description="The artifact's SHA-256 (64 hex characters); a mismatch refuses to load it.")
    size_bytes: int | None = Field(None, ge=0, description="Artifact size; filled from the file for file:// artifacts.")
    features: list[str] | None = Field(None, min_length=1, description="Feature names in column order (tabular models).")
    latency_ms: PositiveFloat | None = Field(None, description="Objective for synchronous requests.")
    profile: Profile | None = None
    saved_with: SavedWith | None = Field(
        None, description="Versions the model was saved with; read from file:// artifacts, declare it for s3:// ones."
    )
    inline: bool = Field(True, description="false: never run in-process, even if the framework allows it.")
    endpoint: EndpointSpec | None = None
    serverless: ServerlessSpec | None = Field(None, description="A SageMaker serverless endpoint: the `serverless` sync route (docs/routing.md).")
    batch_transform: BatchTransformOverride | None = None
    async_inference: AsyncInferenceSpec | None = Field(
        None, description="A SageMaker asynchronous inference endpoint: jobs of one large or slow request may go there (route async-inference)."
    )
    image_uri: str | None = Field(None, description="Container image for SageMaker (framework `container`, or to override the official image).")
    description: str | None = None
    onnx: CompiledOnnx | None = Field(None, description="sklearn models: an ONNX conversion the inline route and lambda-job run instead.")
    notify: NotifyTarget | None = Field(None, description="Announce the end of every job of this model (besides a job's own `notify`).")

    @field_validator("sha256", mode="before")
    @classmethod
    def _sha(cls, v: Any) -> Any:
        return _normalize_sha256(v)

    @model_validator(mode="after")
    def _onnx_of_sklearn(self) -> ModelSpec:
        if self.onnx is not None and self.framework != "sklearn":
            raise ValueError(f"onnx: only a scikit-learn model has an ONNX conversion; this one is {self.framework}")
        return self

    @model_validator(mode="after")
    def _serverless_name(self) -> ModelSpec:
        if self.serverless is None:
            return self
        name = self.serverless_endpoint_name
        if name is None or not re.match(ENDPOINT_NAME_RE, name):
            raise ValueError(f"serverless: the default endpoint name {name!r} is not a valid SageMaker endpoint name: set serverless.name")
        if self.endpoint is not None and self.endpoint.name == name:
            raise ValueError(f"serverless: endpoint name {name!r} is also the model's real-time endpoint: give them different names")
        return self

    @property
    def serverless_endpoint_name(self) -> str | None:
        """The serverless endpoint's name (None: the model has no serverless endpoint)."""
        if self.serverless is None:
            return None
        return self.serverless.name or default_serverless_name(self.name)

    @field_validator("artifact")
    @classmethod
    def _artifact(cls, v: str) -> str:
        return _artifact_uri(v)

    @field_validator("features")
    @classmethod
    def _unique_features(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            dupes = sorted({f for f in v if v.count(f) > 1})
            if dupes:
                raise ValueError(f"duplicate feature names: {', '.join(dupes)}")
        return v

    @property
    def version(self) -> str:
        return f"sha256:{self.sha256}"

    @property
    def inline_source(self) -> tuple[str, str, str]:
        """(framework, artifact, sha256) of what runs in-process: the ONNX conversion when there is one."""
        if self.onnx is not None:
            return "onnx", self.onnx.artifact, self.onnx.sha256
        return self.framework, self.artifact, self.sha256

    @property
    def async_endpoint_name(self) -> str | None:
        """The async inference endpoint's name: declared, or router-<name>-async cut to SageMaker's 63 characters."""
        spec = self.async_inference
        if spec is None:
            return None
        if spec.endpoint_name is not None:
            return spec.endpoint_name
        slug = re.sub(r"[^A-Za-z0-9]+", "-", self.name).strip("-")
        return f"router-{slug[:50].rstrip('-')}-async"

    @property
    def in_process(self) -> bool:
        """Can this model run inside the Lambda at all (framework and operator allow it)?"""
        return self.inline and self.framework in INPROCESS_FRAMEWORKS


class RouterConfig(_Strict):
    version: Literal[1] = 1
    runtime: Runtime = Field(default_factory=Runtime)
    routing: Routing = Field(default_factory=Routing)
    prices: Prices = Field(default_factory=Prices)
    storage: Storage = Field(default_factory=Storage)
    auth: Auth = Field(default_factory=Auth)
    jobs: Jobs = Field(default_factory=Jobs)
    sagemaker: SageMaker = Field(default_factory=SageMaker)
    models: list[ModelSpec] = Field(default_factory=list)
    notifications: Notifications = Field(default_factory=Notifications)
    triggers: list[Trigger] = Field(default_factory=list)
    _by_name: dict[str, ModelSpec] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _cross_checks(self) -> RouterConfig:
        # Checks that span several models or sections. Each error carries `ctx["at"]`, the exact
        # path of the mistake, because a model-level validator's own loc is only the top level.
        seen: dict[str, int] = {}
        for i, m in enumerate(self.models):
            if m.name in seen:
                raise PydanticCustomError(
                    "duplicate_model_name",
                    f"duplicate model name '{m.name}' (already declared at models[{seen[m.name]}])",
                    {"at": ("models", i, "name")},
                )
            seen[m.name] = i
        endpoints: dict[str, str] = {m.endpoint.name: m.name for m in self.models if m.endpoint is not None}
        for i, m in enumerate(self.models):
            name = m.serverless_endpoint_name
            if name is None:
                continue
            if name in endpoints:
                raise PydanticCustomError(
                    "duplicate_endpoint_name",
                    f"serverless endpoint name '{name}' is already the endpoint of model '{endpoints[name]}'",
                    {"at": ("models", i, "serverless")},
                )
            endpoints[name] = m.name
        for i, t in enumerate(self.triggers):
            if t.model not in seen:
                raise PydanticCustomError("unknown_model", f"no model named '{t.model}' in `models`", {"at": ("triggers", i, "model")})
            if t.source.startswith(self.storage.jobs.rstrip("/") + "/") or self.storage.jobs.rstrip("/") + "/" == t.source:
                raise PydanticCustomError(
                    "private_source", "a trigger's source cannot be inside storage.jobs (the router's own job data)", {"at": ("triggers", i, "source")}
                )
            for j, other in enumerate(self.triggers[:i]):
                if t.source.startswith(other.source) or other.source.startswith(t.source):
                    raise PydanticCustomError(
                        "overlapping_triggers", f"source overlaps triggers[{j}].source: one object would start two jobs", {"at": ("triggers", i, "source")}
                    )
        for m in self.models:
            if m.notify is not None and m.notify.sns and self.notifications.sns_topic_arn is None:
                raise PydanticCustomError(
                    "no_sns_topic", "notify.sns needs notifications.sns_topic_arn", {"at": ("models", seen[m.name], "notify", "sns")}
                )
        for i, m in enumerate(self.models):
            # The merged per-model settings must obey SageMaker's limits too, or the model would
            # only fail when its first transform job is created.
            try:
                self.batch_settings(m)
            except ValidationError as e:
                detail = "; ".join(str(err["msg"]).removeprefix("Value error, ") for err in e.errors())
                raise PydanticCustomError(
                    "batch_transform_limit",
                    f"with the sagemaker.batch_transform defaults merged in: {detail}",
                    {"at": ("models", i, "batch_transform")},
                ) from None
        return self

    def model_post_init(self, context: Any, /) -> None:
        self._by_name = {m.name: m for m in self.models}

    def webhook_secret(self) -> bytes | None:
        """The webhook signing key: `webhook_secret_env`'s variable, else `webhook_secret`."""
        n = self.notifications
        value = os.environ.get(n.webhook_secret_env) if n.webhook_secret_env else None
        value = value or n.webhook_secret
        return value.encode("utf-8") if value else None

    def model(self, name: str) -> ModelSpec | None:
        return self._by_name.get(name)

    def batch_settings(self, model: ModelSpec) -> BatchTransformDefaults | None:
        """The effective batch-transform settings of a model, or None when it cannot use the route."""
        override = model.batch_transform
        if override is not None and not override.enabled:
            return None
        base = self.sagemaker.batch_transform
        if base is None and override is None:
            return None
        merged = (base or BatchTransformDefaults()).model_dump()
        if override is not None:
            merged.update({k: v for k, v in override.model_dump(exclude={"enabled"}).items() if v is not None})
        return BatchTransformDefaults.model_validate(merged)

    @property
    def digest(self) -> str:
        """A stable digest of the effective config (shown by /v1/health)."""
        return "sha256:" + hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


# ---------------------------------------------------------------- loading


def load_config(path: str | Path, *, check_artifacts: bool = True, check_digests: bool = False) -> RouterConfig:
    """Read, resolve and validate a config file. Raises ConfigError with one line per problem.

    `check_digests` also hashes every file:// artifact against its `sha256` (the operator's
    `router config validate`; the runtimes verify each artifact when they load it)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(str(p), [f"cannot read the file: {e.strerror or e}"]) from None
    except UnicodeDecodeError as e:
        raise ConfigError(str(p), [f"cannot read the file: not UTF-8 text (byte {e.start})"]) from None
    return parse_config(
        text, source=str(p), base_dir=p.resolve().parent, check_artifacts=check_artifacts, check_digests=check_digests
    )


def parse_config(
    text: str,
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    check_artifacts: bool = True,
    check_digests: bool = False,
) -> RouterConfig:
    try:
        # One parse: the node tree (for line numbers) and the data built from it (= yaml.safe_load).
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        context = getattr(e, "context", None)
        if context:
            problem = f"{context}, {problem}"
        raise ConfigError(source, [f"not valid YAML: {problem}{where}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [f"the top level must be a mapping of keys, got {type(data).__name__}"])
    # PyYAML keeps the last of two equal keys silently; a repeated section would drop settings.
    duplicates = _duplicate_keys(root)
    if duplicates:
        raise ConfigError(source, duplicates)
    base = base_dir or Path.cwd()
    data = _resolve_locations(data, base)
    try:
        cfg = RouterConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(source, [_format_error(err, root) for err in e.errors()]) from None
    if check_artifacts:
        _check_artifacts(cfg, root, source, digests=check_digests)
    return cfg


def _resolve_locations(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make file:// and sqlite:/// locations absolute, relative to the config file's folder."""

    def fix(v: Any) -> Any:
        if isinstance(v, str):
            if v.startswith("file://"):
                return "file://" + str((base / v[len("file://"):]).resolve()) if not v.startswith("file:///") else v
            if v.startswith("sqlite:///") and not v.startswith("sqlite:////"):
                return "sqlite:///" + str((base / v[len("sqlite:///"):]).resolve())
        return v

    out = dict(data)
    storage = out.get("storage", {})
    if isinstance(storage, dict):
        # Omitted locations take their (relative) defaults, which must resolve against the
        # file's folder too: otherwise they would follow whatever the current directory is.
        defaults = {k: f.default for k, f in Storage.model_fields.items() if isinstance(f.default, str)}
        out["storage"] = {k: fix(v) for k, v in {**defaults, **storage}.items()}
    models = out.get("models")
    if isinstance(models, list):
        out["models"] = [_resolve_model(m, fix) if isinstance(m, dict) and "artifact" in m else m for m in models]
    triggers = out.get("triggers")
    if isinstance(triggers, list):
        out["triggers"] = [
            {**t, **{k: fix(t[k]) for k in ("source", "output_prefix") if k in t}} if isinstance(t, dict) else t for t in triggers
        ]
    return out


def _resolve_model(m: dict[str, Any], fix: Any) -> dict[str, Any]:
    m = {**m, "artifact": fix(m["artifact"])}
    if isinstance(m.get("onnx"), dict) and "artifact" in m["onnx"]:
        m["onnx"] = {**m["onnx"], "artifact": fix(m["onnx"]["artifact"])}
    art = m["artifact"]
    if isinstance(art, str) and art.startswith("file://") and m.get("size_bytes") is None:
        path = uri_to_path(art)
        if path.is_file():
            m["size_bytes"] = path.stat().st_size
    return m


def uri_to_path(uri: str) -> Path:
    """file:///abs/path -> Path('/abs/path')."""
    if not uri.startswith("file://"):
        raise ValueError(f"not a file:// URI: {uri}")
    return Path(uri[len("file://"):])


def _check_artifacts(cfg: RouterConfig, root: yaml.Node | None, source: str, *, digests: bool = False) -> None:
    """file:// artifacts (a model's, and its ONNX conversion's) must exist, and with `digests`
    match their sha256. (s3:// ones are checked when they are loaded.)"""
    problems = []
    for i, m in enumerate(cfg.models):
        files: list[tuple[str, str, tuple[int | str, ...]]] = [(m.artifact, m.sha256, ("models", i))]
        if m.onnx is not None:
            files.append((m.onnx.artifact, m.onnx.sha256, ("models", i, "onnx")))
        for artifact, sha256, loc in files:
            if not artifact.startswith("file://"):
                continue
            where = _format_loc(loc)
            path = uri_to_path(artifact)
            if not path.is_file():
                problems.append(_with_line(f"{where}.artifact: file not found: {path}", root, (*loc, "artifact")))
                continue
            if not digests:
                continue
            try:
                with path.open("rb") as f:
                    actual = hashlib.file_digest(f, "sha256").hexdigest()
            except OSError as e:
                problems.append(_with_line(f"{where}.artifact: cannot read {path}: {e.strerror or e}", root, (*loc, "artifact")))
                continue
            if actual != sha256:
                problems.append(
                    _with_line(
                        f"{where}.sha256: does not match {path} (its sha256 is {actual}); "
                        f"the router would refuse to load model {m.name!r}",
                        root,
                        (*loc, "sha256"),
                    )
                )
    if problems:
        raise ConfigError(source, problems)


def _duplicate_keys(node: yaml.Node | None, loc: tuple[int | str, ...] = ()) -> list[str]:
    """`path: duplicate key` for every mapping key that appears twice, anywhere in the file."""
    problems: list[str] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[Any, int] = {}
        for k, v in node.value:
            key = getattr(k, "value", None)
            if isinstance(key, str):
                if key in first:
                    problems.append(
                        f"{_format_loc((*loc, key))}: key given twice, first on line {first[key]} (line {k.start_mark.line + 1})"
                    )
                else:
                    first[key] = k.start_mark.line + 1
            problems += _duplicate_keys(v, (*loc, key) if isinstance(key, str) else loc)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            problems += _duplicate_keys(item, (*loc, i))
    return problems


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _format_error(err: Mapping[str, Any], root: yaml.Node | None) -> str:
    loc = tuple(err.get("loc", ()))
    typ = err.get("type", "")
    msg = str(err.get("msg", ""))
    ctx = err.get("ctx") or {}
    if isinstance(ctx.get("at"), tuple):
        # A cross-section check (RouterConfig._cross_checks) that knows the exact path.
        loc = ctx["at"]
        return _with_line(f"{_format_loc(loc)}: {msg}", root, loc)
    if typ == "extra_forbidden":
        msg = "unknown key"
    elif typ == "missing":
        msg = "field required"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    elif typ == "literal_error":
        msg = msg[0].lower() + msg[1:]
        msg += f", got {err.get('input')!r}"
    else:
        msg = msg[:1].lower() + msg[1:]
        if "input" in err and not isinstance(err["input"], dict | list):
            msg += f", got {err['input']!r}"
        if typ == "less_than_equal" and len(loc) == 2 and loc[0] == "runtime" and loc[1] in AWS_FIXED_MAXIMA:
            msg += " (AWS's fixed maximum: it cannot be raised)"
        if typ == "string_type" and isinstance(err.get("input"), bool):
            # YAML 1.1 reads unquoted yes/no/on/off/true/false as booleans.
            msg += " (quote the value: YAML reads unquoted yes/no/on/off as booleans)"
    # pydantic appends the class name for model-level validators: loc is the parent.
    return _with_line(f"{_format_loc(loc)}: {msg}", root, loc)


def _with_line(text: str, root: yaml.Node | None, loc: tuple[int | str, ...]) -> str:
    line = _line_of(root, loc)
    return f"{text} (line {line})" if line else text


def _line_of(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the YAML node at `loc`, or of its nearest existing parent."""
    node = root
    best = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if node is None:
            break
        nxt: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for k, v in node.value:
                if getattr(k, "value", None) == part:
                    # A key that is itself the mistake: point at the key.
                    nxt = v
                    best = k.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            nxt = node.value[part]
            best = nxt.start_mark.line + 1
        if nxt is None:
            break
        node = nxt
    return best


def json_schema() -> dict[str, Any]:
    """JSON Schema of the config file, for editors (`router config schema`)."""
    schema = RouterConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Hybrid inference router operator config"
    return schema
