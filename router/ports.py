"""Ports: the interfaces through which the service reaches every outside system.

Each has one AWS adapter and one embedded (local) adapter in `router/adapters/`, wired by
`bootstrap.py`. Ports are injected, never patched, so tests pass fakes and a fault-injection
wrapper can sit in front of any adapter.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, Protocol

from router.config import BatchTransformDefaults, ModelSpec
from router.domain import Job, JobStatus, OutputKind


class ModelRunner(Protocol):
    """Runs a model in-process (sklearn/ONNX). Raises InvalidInput, OutputNotSupported,
    ModelIntegrityError; anything else the model raises becomes InternalError."""

    def predict(self, model: ModelSpec, instances: Sequence[Any], output: OutputKind) -> list[Any]: ...

    def is_warm(self, model: ModelSpec) -> bool:
        """True when the model is loaded in this process (routing then skips its load time)."""
        ...

    def feature_count(self, model: ModelSpec) -> int | None:
        """The input width the loaded model expects; None when not loaded or not tabular."""
        ...

    def framework_loaded(self, framework: str) -> bool:
        """True when this process has imported the framework (a cold load then skips the import)."""
        ...


class EndpointClient(Protocol):
    """A SageMaker real-time endpoint (sagemaker-runtime InvokeEndpoint)."""

    def invoke(self, endpoint_name: str, body: bytes, content_type: str = "application/json") -> bytes:
        """Raises BackendError (model error), BackendUnavailable, BackendTimeout."""
        ...

    def in_service(self, endpoint_name: str) -> bool: ...

    def warm(self, endpoint_name: str) -> bool:
        """True when an instance of the endpoint is up now, so a serverless endpoint answers without
        a cold start. False when unknown (SageMaker does not say): routing then counts the cold start."""
        ...

    def status(self, endpoint_name: str) -> str:
        """The endpoint's last known SageMaker EndpointStatus (InService, Creating, Failed, ...;
        "Unknown" before anyone looked). Never calls AWS: health checks read it."""
        ...


@dataclass(frozen=True, slots=True)
class BatchJobState:
    """What the backend says about a transform job, in SageMaker's words."""

    name: str
    status: str  # InProgress | Completed | Failed | Stopping | Stopped
    failure_reason: str | None = None


class BatchClient(Protocol):
    """SageMaker batch transform (CreateTransformJob / DescribeTransformJob / StopTransformJob)."""

    def submit(self, job: Job, model: ModelSpec, settings: BatchTransformDefaults, input_uri: str, output_uri: str) -> str:
        """Start (or adopt, when it already exists) the transform job for `job`; returns its name."""
        ...

    def describe(self, name: str) -> BatchJobState | None: ...

    def stop(self, name: str) -> None: ...


@dataclass(frozen=True, slots=True)
class AsyncInvocation:
    """What InvokeEndpointAsync answered: where the result (or the error) of the request will appear."""

    inference_id: str
    output_uri: str
    failure_uri: str | None = None


@dataclass(frozen=True, slots=True)
class AsyncOutcome:
    """How one async inference request ended, from SageMaker's SNS notification (or found by polling
    its output locations). `status`: Completed | Failed."""

    inference_id: str
    status: str
    output_uri: str | None = None
    failure_uri: str | None = None
    failure_reason: str | None = None


class AsyncInferenceClient(Protocol):
    """A SageMaker asynchronous inference endpoint (sagemaker-runtime InvokeEndpointAsync)."""

    def invoke(self, endpoint_name: str, input_uri: str, inference_id: str, *, invocation_timeout_s: int) -> AsyncInvocation:
        """Queue one request whose body is the object at `input_uri`. Raises Throttled,
        BackendUnavailable (retry later) or BackendError (the request is refused)."""
        ...

    def in_service(self, endpoint_name: str) -> bool | None:
        """True when an instance is up (a request pays no start-up); None when unknown."""
        ...


@dataclass(frozen=True, slots=True)
class Page:
    jobs: list[Job]
    next_cursor: str | None


class JobStore(Protocol):
    """Durable job table. Every write is conditional: no lost or duplicated jobs."""

    def create(self, job: Job) -> tuple[Job, bool]:
        """Insert `job`. When the owner already has a job with the same idempotency key, return
        (that job, False) instead of inserting. Otherwise (job, True)."""
        ...

    def get(self, job_id: str) -> Job | None: ...

    def transition(self, job_id: str, from_: frozenset[JobStatus], to: JobStatus, **changes: Any) -> Job | None:
        """Move the job to `to` iff its status is in `from_` (atomically), applying `changes`.
        Returns the updated job, or None when the condition failed (stale/repeated: not an error)."""
        ...

    def update(self, job_id: str, expected_version: int, **changes: Any) -> Job | None:
        """Apply `changes` (no status change) iff the job's version is `expected_version`."""
        ...

    def list_by_owner(
        self, owner: str, *, status: JobStatus | None = None, model: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> Page: ...

    def list_active(self, *, updated_before: datetime, limit: int) -> list[Job]:
        """Queued/running/cancelling jobs not updated since `updated_before` (for the sweeper)."""
        ...

    def count_active(self, owner: str) -> int: ...

    def list_notifications_due(self, *, due_before: datetime, limit: int) -> list[Job]:
        """Jobs whose job-end notification is pending and due by `due_before`, soonest first
        (the outbox: jobs.notification_due; the sweeper re-delivers them)."""
        ...


class ObjectStore(Protocol):
    """Artifacts, job inputs and outputs: file:// locally, s3:// on AWS."""

    def get_bytes(self, uri: str) -> bytes: ...

    def put_bytes(self, uri: str, data: bytes, content_type: str = "application/octet-stream") -> None: ...

    def open_write(self, uri: str, content_type: str = "application/octet-stream") -> AbstractContextManager[BinaryIO]:
        """A streaming writer; the object appears whole when the context exits (atomic)."""
        ...

    def delete(self, uri: str) -> None: ...

    def copy(self, src_uri: str, dst_uri: str) -> None:
        """Copy an object (server-side where the store can: S3 CopyObject, no bytes through us)."""
        ...

    def open_read(self, uri: str) -> BinaryIO: ...

    def exists(self, uri: str) -> bool: ...

    def resolve(self, uri: str) -> str:
        """The canonical URI of what `uri` names (file: '..' and symlinks resolved; s3: itself)."""
        ...

    def list_uris(self, prefix_uri: str) -> Iterator[str]: ...

    def fetch_to(self, uri: str, path: str) -> None:
        """Copy the object to a local file (the inline model cache in /tmp)."""
        ...

    def presign_get(self, uri: str, expires_s: int) -> str: ...

    def presign_put(self, uri: str, expires_s: int, content_type: str) -> str: ...


class WorkerQueue(Protocol):
    """Starts the lambda-job worker for a job (Lambda Event invoke on AWS, a thread pool locally)."""

    def enqueue(self, job_id: str) -> None: ...

    def in_flight(self, job_id: str) -> bool:
        """True while the queue itself still holds the job (waiting or running); False when it cannot tell."""


class WebhookSender(Protocol):
    """POSTs a notification (router/adapters/webhook.py). Redirects are not followed."""

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> int:
        """The HTTP status of the answer; BackendUnavailable when there was none (connect, timeout)."""
        ...


class TopicPublisher(Protocol):
    """Publishes a notification to an SNS topic (router/adapters/sns_topic.py)."""

    def publish(self, topic_arn: str, message: str, attributes: Mapping[str, str]) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime: ...
