"""The job lifecycle as a pure decision: (job, what happened) -> the moves to make. No I/O.

`decide` is to jobs what `routing.decide` is to routes. `JobsService` gathers the facts (reads the
job, calls a backend, reads the clock), turns them into an `Event`, and applies the `Move`s this
module returns through its ports. The rules for applying them:

- Moves are applied in order. A `Transition` is conditional on the status, an `Update` on the
  version of the job the decision saw; a write that does not take effect ends the plan.
- After a `Transition` that did not take effect (the status moved meanwhile), the same event is
  decided again on the job as it now is, at most `MAX_ROUNDS` times; an `Update` that did not take
  effect ends the plan, unless it says `redecide`.
- `Describe` and `Collect` produce a follow-up event (`BackendReport`/`BackendMissing`,
  `OutputReady`/`OutputBroken`), decided on the job as it is after the moves before them; they
  end their plan. A failed `Describe` (a backend error) ends the chain; a failed `StopBackend` is
  logged and the plan goes on (the sweeper stops it again).
- Every `Transition` into a finished status that took effect is a job end: the applier runs its
  end hooks (`JobsService(on_end=...)`) exactly there, and nowhere else.
- `tally` names the sweep counter a move adds one to when it took effect.
- The job-end notification is written by the job's terminal `Transition` itself (`outbox`): a
  finished job never lacks its notification record (router/notifications.py delivers it).

Backend kinds plug in through `BACKEND_PHASES` (their status words -> `Phase`) and the route sets
below; worker routes (`WORKER_ROUTES`) are run by the router's own checkpointing worker.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from router.domain import Job, JobStatus, Route
from router.jobs import format_time

S = JobStatus
ACTIVE = frozenset({S.QUEUED, S.RUNNING})
RUNNING = frozenset({S.RUNNING})
# A replay (same Idempotency-Key and body) dispatches a job that has been queued at least this long.
REPLAY_DISPATCH_AFTER_S = 10.0
MAX_ROUNDS = 10  # decisions of one event after conflicting writes (cancel, checkpoint, start)


class Phase(enum.StrEnum):
    """Where a backend job is, whatever the backend calls it."""

    RUNNING = "running"
    STOPPING = "stopping"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"
    UNKNOWN = "unknown"


# SageMaker DescribeTransformJob / EventBridge "TransformJobStatus" -> Phase.
TRANSFORM_PHASES: Mapping[str, Phase] = {
    "InProgress": Phase.RUNNING,
    "Completed": Phase.SUCCEEDED,
    "Failed": Phase.FAILED,
    "Stopping": Phase.STOPPING,
    "Stopped": Phase.STOPPED,
}
# An async inference request, from its SNS notification or the sweeper's look at its output objects.
ASYNC_PHASES: Mapping[str, Phase] = {"InProgress": Phase.RUNNING, "Completed": Phase.SUCCEEDED, "Failed": Phase.FAILED}
# Routes whose work runs as a backend job, by the backend's status words.
BACKEND_PHASES: Mapping[Route, Mapping[str, Phase]] = {
    Route.BATCH_TRANSFORM: TRANSFORM_PHASES,
    Route.ASYNC_INFERENCE: ASYNC_PHASES,
}
# What each backend calls its job, in messages.
BACKEND_NOUNS: Mapping[Route, str] = {
    Route.BATCH_TRANSFORM: "transform job",
    Route.ASYNC_INFERENCE: "async inference request",
}
# Backend jobs that can be stopped; a cancel of any other ends `cancelled` at once, its result discarded.
STOPPABLE_ROUTES: frozenset[Route] = frozenset({Route.BATCH_TRANSFORM})
# Routes run by the router's worker (checkpoints, deadlines, re-invocation).
WORKER_ROUTES: frozenset[Route] = frozenset({Route.LAMBDA_JOB})


def phase_of(route: Route, status: str) -> Phase:
    """The lifecycle phase of a backend status word (UNKNOWN for words this router does not know)."""
    return BACKEND_PHASES.get(route, {}).get(status, Phase.UNKNOWN)


def backend_noun(route: Route) -> str:
    return BACKEND_NOUNS.get(route, "backend job")


@dataclass(frozen=True, slots=True)
class Policy:
    """The operator's limits that decisions depend on (from `RouterConfig.jobs`)."""

    max_attempts: int
    replay_dispatch_after_s: float = REPLAY_DISPATCH_AFTER_S
    # Job-end notification targets of each model (config `models[].notify`), beside a job's own `notify`.
    notify: Mapping[str, tuple[Mapping[str, str], ...]] = field(default_factory=dict)


# ------------------------------------------------------------------------------------ events


class Via(enum.StrEnum):
    """Who saw a backend state: its own event, a sweep describing it, a cancel probing for it."""

    EVENT = "event"
    SWEEP = "sweep"
    CANCEL = "cancel"


class Cause(enum.StrEnum):
    """Why a backend refused a dispatch: a quota (waits), an outage (an attempt), or for good."""

    THROTTLED = "throttled"
    UNAVAILABLE = "unavailable"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class Created:
    """A new job was stored (queued)."""


@dataclass(frozen=True, slots=True)
class Replayed:
    """The same Idempotency-Key and body came again for this existing job."""


@dataclass(frozen=True, slots=True)
class CancelRequested:
    """The owner asked to cancel. `stoppable`: the route's backend is wired here and stops jobs;
    `backend_name`: the deterministic name a backend job of this job would have."""

    stoppable: bool
    backend_name: str | None = None


@dataclass(frozen=True, slots=True)
class Accepted:
    """The backend started (or adopted) the job's backend job `name`. `resubmission`: the job was
    no longer queued when dispatched (its backend job had vanished)."""

    name: str
    resubmission: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)  # the backend's facts, merged into job.extra


@dataclass(frozen=True, slots=True)
class Refused:
    """The dispatch did not start a backend job. `backend_name`: the name it would have had."""

    cause: Cause
    code: str
    message: str
    backend_name: str | None = None


@dataclass(frozen=True, slots=True)
class BackendReport:
    """A backend's word about backend job `name` (`status` in the backend's words, for `route`);
    `extra`: the backend's facts recorded (merged into job.extra) when the report starts the job."""

    route: Route
    name: str
    status: str
    failure_reason: str | None = None
    via: Via = Via.EVENT
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def phase(self) -> Phase:
        return phase_of(self.route, self.status)


@dataclass(frozen=True, slots=True)
class BackendMissing:
    """The backend has no backend job for this job (never created, or forgotten)."""

    via: Via


@dataclass(frozen=True, slots=True)
class OutputReady:
    """The finished backend job's output was assembled into the job's result: `records` lines."""

    name: str
    records: int


@dataclass(frozen=True, slots=True)
class OutputBroken:
    """The finished backend job's output cannot be assembled (missing or malformed)."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Stale:
    """A sweep found the job not updated for `stale_after_s`. `wired`: the route's queue/backend
    is wired here; `in_flight`: the queue still holds it; `backend_name`: the deterministic name."""

    wired: bool
    in_flight: bool = False
    backend_name: str | None = None


@dataclass(frozen=True, slots=True)
class WorkerStarted:
    """A worker invocation picked the job up."""


@dataclass(frozen=True, slots=True)
class Checkpointed:
    """The worker wrote part `before["parts"]` and wants the checkpoint moved from `before` to `after`."""

    before: Mapping[str, int]
    after: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Deadline:
    """The worker finished a chunk with `remaining_s` left and needs `reserve_s` to stop cleanly."""

    remaining_s: float
    reserve_s: float


@dataclass(frozen=True, slots=True)
class WorkerDone:
    """The worker assembled the whole output: `records` lines."""

    records: int


@dataclass(frozen=True, slots=True)
class WorkerFailed:
    """The worker failed. `permanent`: the input, output kind, artifact or model is wrong (no retry
    can help); otherwise an attempt is counted."""

    code: str
    message: str
    permanent: bool
    details: Mapping[str, Any] | None = None


Event = (
    Created | Replayed | CancelRequested | Accepted | Refused | BackendReport | BackendMissing | OutputReady
    | OutputBroken | Stale | WorkerStarted | Checkpointed | Deadline | WorkerDone | WorkerFailed
)  # fmt: skip


# ------------------------------------------------------------------------------------- moves


@dataclass(frozen=True, slots=True)
class Transition:
    """Move the job to `to` iff its status is in `from_`, writing `changes`."""

    from_: frozenset[JobStatus]
    to: JobStatus
    changes: Mapping[str, Any] = field(default_factory=dict)
    tally: str | None = None

    @property
    def ends_job(self) -> bool:
        return self.to.finished


@dataclass(frozen=True, slots=True)
class Update:
    """Write `changes` (no status change) iff the job is still at `version`."""

    version: int
    changes: Mapping[str, Any] = field(default_factory=dict)
    redecide: bool = False


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Hand the job to its route's queue or backend (a backend answers with Accepted/Refused)."""

    tally: str | None = None


@dataclass(frozen=True, slots=True)
class StopBackend:
    name: str


@dataclass(frozen=True, slots=True)
class Describe:
    """Ask the backend about backend job `name` (answers BackendReport/BackendMissing `via`)."""

    name: str
    via: Via


@dataclass(frozen=True, slots=True)
class Collect:
    """Assemble the finished backend job's output into the job's result (answers OutputReady/OutputBroken)."""

    name: str


@dataclass(frozen=True, slots=True)
class Tally:
    name: str


@dataclass(frozen=True, slots=True)
class NotCancellable:
    status: JobStatus


class Work(enum.StrEnum):
    """What the worker does next."""

    RUN = "run"  # go on with the job
    YIELD = "yield"  # stop now; a new invocation continues from the checkpoint
    QUIT = "quit"  # stop: the job is finished or not this worker's to run


@dataclass(frozen=True, slots=True)
class Worker:
    then: Work


Move = Transition | Update | Dispatch | StopBackend | Describe | Collect | Tally | NotCancellable | Worker
Plan = tuple[Move, ...]

NOTHING: Plan = ()
RUN, YIELD, QUIT = Worker(Work.RUN), Worker(Work.YIELD), Worker(Work.QUIT)


def fail(
    code: str,
    message: str,
    *,
    from_: frozenset[JobStatus] = ACTIVE,
    tally: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> Transition:
    error: dict[str, Any] = {"code": code, "message": message[:1000]}
    if details:
        error["details"] = dict(details)
    return Transition(from_, S.FAILED, {"error": error}, tally)


def finish_cancel(tally: str | None = None) -> Transition:
    return Transition(frozenset({S.CANCELLING}), S.CANCELLED, tally=tally)


# ---------------------------------------------------------------------------------- decisions


def decide(job: Job | None, event: Event, policy: Policy, now: datetime) -> Plan:
    """The moves that `event` calls for on `job` (None: the job does not exist)."""
    plan = _decide(job, event, policy, now)
    if job is None or not any(isinstance(m, Transition) and m.ends_job for m in plan):
        return plan
    return tuple(outbox(m, job, policy, now) if isinstance(m, Transition) and m.ends_job else m for m in plan)


# ------------------------------------------------------------------------- the notification outbox


def notification_id(job_id: str) -> str:
    """The stable id of a job's notification (one per job: a job finishes once)."""
    return "ntf_" + job_id.removeprefix("job_")


def notify_targets(job: Job, policy: Policy) -> list[dict[str, str]]:
    """Where the end of `job` is announced: its own webhook, then its model's targets (no repeats)."""
    out: list[dict[str, str]] = []
    own = (job.notify or {}).get("webhook")
    if isinstance(own, str) and own:
        out.append({"kind": "webhook", "url": own})
    for target in policy.notify.get(job.model, ()):
        if dict(target) not in out:
            out.append(dict(target))
    return out


def outbox(move: Transition, job: Job, policy: Policy, now: datetime) -> Transition:
    """A terminal transition carrying the job's notification record (pending, due now), when the
    job has somewhere to be announced; else the move unchanged."""
    targets = notify_targets(job, policy)
    if not targets or "notification" in move.changes:
        return move
    record = {
        "id": notification_id(job.job_id), "state": "pending", "attempts": 0,
        "due_at": format_time(now), "targets": targets, "done": [],
    }  # fmt: skip
    return Transition(move.from_, move.to, {**move.changes, "notification": record}, move.tally)


def _decide(job: Job | None, event: Event, policy: Policy, now: datetime) -> Plan:
    if job is None:
        worker = isinstance(event, WorkerStarted | Checkpointed | WorkerDone | WorkerFailed)
        return (QUIT,) if worker else NOTHING
    match event:
        case Created():
            return (Dispatch(),) if job.status is S.QUEUED else NOTHING
        case Replayed():
            return _replayed(job, policy, now)
        case CancelRequested():
            return _cancel(job, event)
        case Accepted():
            return _accepted(job, event)
        case Refused():
            return _refused(job, event, policy)
        case BackendReport():
            return _report(job, event)
        case BackendMissing():
            return _missing(job, event, policy)
        case OutputReady():
            if job.status is not S.RUNNING:
                return NOTHING
            return (Transition(RUNNING, S.SUCCEEDED, {"records_done": event.records, "backend_name": event.name}),)
        case OutputBroken():
            return (fail(event.code, event.message, from_=RUNNING),) if job.status is S.RUNNING else NOTHING
        case Stale():
            return _stale(job, event, policy)
        case WorkerStarted() | Checkpointed() | Deadline() | WorkerDone() | WorkerFailed():
            return _worker(job, event, policy)
    raise TypeError(f"not a lifecycle event: {event!r}")  # pragma: no cover - exhaustive match


def keepalive(job: Job) -> Update | None:
    """The version-checked touch a sweep ends with for a backend job it saw, so `limit` long
    InProgress jobs do not hide the ones behind them (list_active is least recently updated first)."""
    return Update(job.version, {"attempts": job.attempts}) if job.route in BACKEND_PHASES else None


def _replayed(job: Job, policy: Policy, now: datetime) -> Plan:
    # A replay re-dispatches a job queued for a while (its request may have lost its reply before
    # dispatching), once per window: the touch is version-checked, so a burst of retries is one.
    if job.status is not S.QUEUED or now - job.updated_at < timedelta(seconds=policy.replay_dispatch_after_s):
        return NOTHING
    return (Update(job.version, {"attempts": job.attempts}), Dispatch())


def _cancel(job: Job, event: CancelRequested) -> Plan:
    if job.status in (S.CANCELLED, S.CANCELLING):
        return NOTHING  # repeating a cancel is harmless
    if job.status.finished:
        return (NotCancellable(job.status),)
    if job.status is S.QUEUED and job.backend_name is None and not event.stoppable:
        return (Transition(frozenset({S.QUEUED}), S.CANCELLED),)  # never handed to a backend job
    # A queued job with a stoppable backend may have a backend job already (created, then the
    # process died, or a submission in flight): it ends only once that is stopped or known absent.
    to_cancelling = Transition(ACTIVE, S.CANCELLING)
    if job.route in BACKEND_PHASES and job.route not in STOPPABLE_ROUTES:
        return (to_cancelling, finish_cancel())  # nothing to stop: its result, when it comes, is stale
    if not event.stoppable:
        return (to_cancelling,)
    if job.backend_name is not None:
        return (to_cancelling, StopBackend(job.backend_name))
    if event.backend_name is not None:
        return (to_cancelling, Describe(event.backend_name, Via.CANCEL))
    return (to_cancelling, finish_cancel())


def _accepted(job: Job, event: Accepted) -> Plan:
    if job.status in (S.CANCELLING, S.CANCELLED):  # cancelled while it was being started
        if job.route in STOPPABLE_ROUTES:
            return (StopBackend(event.name),)
        return (finish_cancel(),) if job.status is S.CANCELLING else NOTHING
    started = {"backend_name": event.name, "attempts": job.attempts + 1, **_merged(job, event.extra)}
    if job.status is S.RUNNING and event.resubmission:
        return (Update(job.version, started),)
    if job.status is S.QUEUED and not event.resubmission:
        return (Transition(frozenset({S.QUEUED}), S.RUNNING, started),)
    return NOTHING


def _merged(job: Job, extra: Mapping[str, Any]) -> dict[str, Any]:
    """The `extra` change that records a backend's facts (nothing when it has none)."""
    return {"extra": {**job.extra, **extra}} if extra else {}


def _refused(job: Job, event: Refused, policy: Policy) -> Plan:
    if event.cause is Cause.THROTTLED or job.status not in ACTIVE:
        return NOTHING  # a quota clears by itself: stays as is, the sweeper retries
    if event.cause is Cause.PERMANENT:
        return (fail(event.code, event.message),)
    attempts = job.attempts + 1
    if attempts < policy.max_attempts:
        return (Update(job.version, {"attempts": attempts}),)
    # The create may have gone through before the error (a lost response): stop it.
    stop: Plan = (StopBackend(event.backend_name),) if event.backend_name else NOTHING
    return (*stop, fail(event.code, f"{event.message} (after {attempts} attempts)"))


def _report(job: Job, event: BackendReport) -> Plan:
    if job.status.finished or job.route is not event.route:
        return NOTHING
    if job.backend_name and job.backend_name != event.name:
        return NOTHING  # about some other backend job
    phase = event.phase
    if event.via is Via.CANCEL:
        return (StopBackend(event.name),) if job.status is S.CANCELLING else NOTHING
    seen: Plan = (Tally("described"),) if event.via is Via.SWEEP else NOTHING
    if job.status is S.CANCELLING:
        if phase in (Phase.STOPPED, Phase.SUCCEEDED, Phase.FAILED) or job.route not in STOPPABLE_ROUTES:
            return (*seen, finish_cancel())
        return (*seen, StopBackend(event.name)) if event.via is Via.SWEEP and phase is Phase.RUNNING else seen
    start = Transition(frozenset({S.QUEUED}), S.RUNNING, {"backend_name": event.name, **_merged(job, event.extra)})
    # A job whose start was missed passes through running, as its backend job did.
    through: Plan = (start,) if job.status is S.QUEUED else NOTHING
    if phase is Phase.RUNNING:
        return (*seen, *through)
    if phase is Phase.SUCCEEDED:
        return (*seen, *through, Collect(event.name))
    if phase is Phase.FAILED:
        reason = event.failure_reason or f"the {backend_noun(event.route)} failed"
        return (*seen, *through, fail("backend_error", reason))
    if phase is Phase.STOPPED:  # stopped by someone else: the job ends cancelled
        return (*seen, Transition(ACTIVE, S.CANCELLING), finish_cancel())
    return seen  # stopping, or a status this router does not know: wait for the next word


def _missing(job: Job, event: BackendMissing, policy: Policy) -> Plan:
    if event.via is Via.EVENT:
        return NOTHING
    if job.status is S.CANCELLING:
        return (finish_cancel(),)  # nothing to stop
    if event.via is Via.CANCEL or job.status not in ACTIVE:
        return NOTHING
    # Never reached the backend (a crash before the create) or the backend forgot it: dispatch
    # again; the deterministic name adopts a backend job that does exist, so it never runs twice.
    if job.status is S.RUNNING and job.attempts >= policy.max_attempts:
        gone = f"the {backend_noun(job.route)} {job.backend_name or ''} vanished (after {job.attempts} attempts)"
        return (fail("backend_error", gone, tally="failed"),)
    return (Dispatch(tally="redispatched"),)


def _stale(job: Job, event: Stale, policy: Policy) -> Plan:
    if job.status.finished:
        return NOTHING  # list_active never returns one; a sweep has nothing to repair there
    if job.route in WORKER_ROUTES:
        if job.status is S.CANCELLING:
            return (finish_cancel(),)
        if not event.wired or job.status not in ACTIVE:
            return NOTHING
        if event.in_flight:  # waiting in the queue behind other jobs: not stale, only touched
            return (Update(job.version, {"attempts": job.attempts}),)
        # A re-dispatch is an attempt only when the job made no progress since the previous one:
        # a dying worker ends failed after max_attempts, restarts of a moving job cost nothing.
        done = job.records_done or 0
        stalled = job.status is S.RUNNING and done <= int(job.extra.get("redispatched_at", 0))
        if stalled and job.attempts >= policy.max_attempts:
            dead = f"the worker stopped reporting after {job.attempts} attempts"
            return (fail("internal_error", dead, from_=RUNNING, tally="failed"),)
        changes = {"attempts": job.attempts + (1 if stalled else 0), "extra": {**job.extra, "redispatched_at": done}}
        return (Update(job.version, changes), Dispatch(tally="redispatched"))
    if job.route in BACKEND_PHASES and job.status is S.CANCELLING and job.route not in STOPPABLE_ROUTES:
        return (finish_cancel(),)  # nothing to stop or wait for
    if job.route in BACKEND_PHASES and event.wired:
        name = job.backend_name or event.backend_name
        if name is not None:
            return (Describe(name, Via.SWEEP),)
        return _missing(job, BackendMissing(Via.SWEEP), policy)
    return NOTHING


WorkerEvent = WorkerStarted | Checkpointed | Deadline | WorkerDone | WorkerFailed


def _worker(job: Job, event: WorkerEvent, policy: Policy) -> Plan:
    if isinstance(event, Deadline):
        return (YIELD,) if event.remaining_s < event.reserve_s else (RUN,)
    if job.status.finished:
        return (QUIT,)
    if job.status is S.CANCELLING:
        return (finish_cancel(), QUIT)
    match event:
        case WorkerStarted():
            if job.status is S.QUEUED:
                return (Transition(frozenset({S.QUEUED}), S.RUNNING, {"attempts": job.attempts + 1}), RUN)
            return (RUN,)
        case Checkpointed():
            # Carry on while the job runs from the checkpoint this worker started the chunk from
            # (a sweeper's touch is no reason to stop); another worker that moved it wins.
            current = dict(job.checkpoint or {"offset": 0, "parts": 0})
            if job.status is not S.RUNNING or current != dict(event.before):
                return (QUIT,)
            moved = {"checkpoint": dict(event.after), "records_done": event.after["offset"]}
            return (Update(job.version, moved, redecide=True), RUN)
        case WorkerDone():
            if job.status is not S.RUNNING:
                return (QUIT,)
            done = {"records_done": event.records, "records_total": event.records}
            return (Transition(RUNNING, S.SUCCEEDED, done), QUIT)
        case WorkerFailed():
            if event.permanent:
                return (fail(event.code, event.message, details=event.details), QUIT)
            if job.attempts >= policy.max_attempts:
                return (fail(event.code, f"{event.message} (after {job.attempts} attempts)"), QUIT)
            # Counted on the job as it is: a write that lost to another is decided again.
            return (Update(job.version, {"attempts": job.attempts + 1}, redecide=True), YIELD)
    return (QUIT,)  # pragma: no cover - exhaustive
