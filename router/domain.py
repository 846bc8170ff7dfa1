"""Plain domain types shared by every layer: routes, request shapes, decisions, jobs.

No I/O and no third-party imports here: routing, the job state machine, the service and the
adapters all speak these types, so they stay cheap to import on a Lambda cold start.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any


class Route(enum.StrEnum):
    """Where a request can run (docs/api.md "Route names")."""

    INLINE = "inline"
    ENDPOINT = "endpoint"
    SERVERLESS = "serverless"
    LAMBDA_JOB = "lambda-job"
    BATCH_TRANSFORM = "batch-transform"
    ASYNC_INFERENCE = "async-inference"

    @property
    def mode(self) -> Mode:
        return Mode.SYNC if self in (Route.INLINE, Route.ENDPOINT, Route.SERVERLESS) else Mode.JOB


class Mode(enum.StrEnum):
    SYNC = "sync"
    JOB = "job"


class OutputKind(enum.StrEnum):
    PREDICT = "predict"
    PROBA = "proba"


@dataclass(frozen=True, slots=True)
class RequestShape:
    """What routing needs to know about one request: nothing about its content."""

    mode: Mode
    records: int
    payload_bytes: int


@dataclass(frozen=True, slots=True)
class BackendState:
    """Observed backend facts that move a decision (docs/routing.md "Backend state").

    `warm` is True when the model is already loaded in this process (no load time);
    `endpoint_in_service` is None when nobody has looked (treated as not in service);
    `async_in_service`: the model's async inference endpoint has an instance up (no start-up);
    None when nobody has looked (treated as scaled to zero when it may scale to zero);
    `framework_warm`: this process already imported the model's framework (a cold load skips it);
    `worker_warm` / `worker_framework_warm`: the same for the lambda-job worker (known only when
    it shares this process, as under `router serve`; a separate worker Lambda counts as cold);
    `serverless_in_service`: the model's serverless endpoint exists and takes calls (None: not checked);
    `serverless_warm`: it has an instance up now (no cold start; unknown on AWS, so False there).
    """

    warm: bool = False
    endpoint_in_service: bool | None = None
    async_in_service: bool | None = None
    framework_warm: bool = False
    worker_warm: bool = False
    worker_framework_warm: bool = False
    serverless_in_service: bool | None = None
    serverless_warm: bool = False


@dataclass(frozen=True, slots=True)
class Estimates:
    duration_s: float
    cost_usd: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "duration_s": round(self.duration_s, 6),
            "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 8),
        }


@dataclass(frozen=True, slots=True)
class Candidate:
    route: Route
    feasible: bool
    reasons: tuple[str, ...]
    estimates: Estimates

    def to_dict(self) -> dict[str, Any]:
        return {
            "route": self.route.value,
            "feasible": self.feasible,
            "reasons": list(self.reasons),
            "estimates": self.estimates.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """The routing decision: the chosen route (None when nothing is feasible), why, and every
    candidate with why it was or was not feasible. Shared by requests, `/route` and `router plan`."""

    route: Route | None
    mode: Mode
    reason: str
    estimates: Estimates | None
    candidates: tuple[Candidate, ...]
    # True when the request is infeasible only because of its size in bytes (-> 413, not 422).
    payload_limited: bool = False

    @property
    def feasible(self) -> bool:
        return self.route is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "route": None if self.route is None else self.route.value,
            "mode": self.mode.value,
            "reason": self.reason,
            "estimates": None if self.estimates is None else self.estimates.to_dict(),
            "candidates": [c.to_dict() for c in self.candidates],
        }


class JobStatus(enum.StrEnum):
    """Job lifecycle (docs/api.md): queued -> running -> succeeded | failed; cancelling -> cancelled."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED

    @property
    def active(self) -> bool:
        return self not in FINISHED


FINISHED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


@dataclass(frozen=True, slots=True)
class Job:
    """One asynchronous job as stored. `version` increases on every write (optimistic locking)."""

    job_id: str
    owner: str
    model: str
    status: JobStatus
    route: Route
    reason: str
    created_at: datetime
    updated_at: datetime
    input_uri: str
    input_format: str = "jsonl"
    output_uri: str | None = None
    output_kind: OutputKind = OutputKind.PREDICT
    started_at: datetime | None = None
    finished_at: datetime | None = None
    records_total: int | None = None
    records_done: int | None = None
    error: dict[str, Any] | None = None
    backend_name: str | None = None
    idempotency_key: str | None = None
    request_digest: str | None = None
    checkpoint: dict[str, Any] | None = None
    attempts: int = 0
    version: int = 1
    expires_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The routing decision's estimate at submission: {duration_s, cost_usd, records, cold}; what
    # happened is started_at -> finished_at and records_done (calibration compares the two).
    estimate: dict[str, Any] | None = None
    # Where the job's end is announced, as submitted ({"webhook": URL}); set at creation only.
    notify: dict[str, Any] | None = None
    # The outbox entry the terminal transition records (router/notifications.py): id, state, attempts, due_at.
    notification: dict[str, Any] | None = None

    def evolve(self, **changes: Any) -> Job:
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class Submitted:
    """A predict request no synchronous route could take, submitted as a job (the caller allowed it)."""

    job: Job
    created: bool  # False: the owner's Idempotency-Key had already made this job
