"""The pure job lifecycle (router/lifecycle.py) as one table: event x job state -> the moves.

No store, no backend: each row is a job record, what happened, and the exact plan `decide` must
return. The SageMaker status words, the races (a cancel during a submission, a missed InProgress,
an event about another transform job) and the sweeper's repairs are all rows here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.session
import pytest
from hypothesis import given
from hypothesis import strategies as st

from router import jobs as jm
from router import lifecycle as lc
from router.domain import Job, JobStatus, Route
from router.lifecycle import (
    QUIT,
    RUN,
    YIELD,
    Accepted,
    BackendMissing,
    BackendReport,
    CancelRequested,
    Cause,
    Checkpointed,
    Collect,
    Created,
    Deadline,
    Describe,
    Dispatch,
    NotCancellable,
    OutputBroken,
    OutputReady,
    Refused,
    Replayed,
    Stale,
    StopBackend,
    Tally,
    Update,
    Via,
    WorkerDone,
    WorkerFailed,
    WorkerStarted,
)

S = JobStatus
Q, R, C, X, OK, F = S.QUEUED, S.RUNNING, S.CANCELLING, S.CANCELLED, S.SUCCEEDED, S.FAILED
BT, LJ, AI = Route.BATCH_TRANSFORM, Route.LAMBDA_JOB, Route.ASYNC_INFERENCE
NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
POLICY = lc.Policy(max_attempts=3)
NAME = "router-job-x"


def job(status: JobStatus = Q, route: Route = BT, **kw: Any) -> Job:
    base: dict[str, Any] = {
        "job_id": "job_X", "owner": "alice", "model": "m", "status": status, "route": route, "reason": "r",
        "created_at": NOW - timedelta(hours=1), "updated_at": NOW - timedelta(minutes=1), "input_uri": "s3://b/in",
    }  # fmt: skip
    base.update(kw)
    return Job(**base)


def T(from_: set[JobStatus], to: JobStatus, **changes: Any) -> lc.Transition:
    return lc.Transition(frozenset(from_), to, changes)


def fail(from_: set[JobStatus], code: str, message: str, tally: str | None = None, **details: Any) -> lc.Transition:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return lc.Transition(frozenset(from_), F, {"error": error}, tally)


def report(status: str, via: Via = Via.EVENT, name: str = NAME, reason: str | None = None) -> BackendReport:
    return BackendReport(BT, name, status, reason, via)


IID = "router-job_X"
SENT = {"async": {"output": "s3://b/out", "failure": "s3://b/err"}}


def async_report(status: str, via: Via = Via.EVENT, reason: str | None = None, extra: dict[str, Any] | None = None) -> BackendReport:
    return BackendReport(AI, IID, status, reason, via, extra or {})


START = T({Q}, R, backend_name=NAME)
TO_CANCELLING = T({Q, R}, C)
END_CANCEL = T({C}, X)

# (id, job, event, expected plan)
ROWS: list[tuple[str, Job, lc.Event, lc.Plan]] = [
    # --- a SageMaker transform state (EventBridge), every job status x every TransformJobStatus
    ("event/queued/InProgress", job(Q), report("InProgress"), (START,)),
    ("event/queued/Completed: passes through running", job(Q), report("Completed"), (START, Collect(NAME))),
    ("event/queued/Failed: passes through running", job(Q), report("Failed", reason="boom"), (START, fail({Q, R}, "backend_error", "boom"))),
    ("event/queued/Stopping", job(Q), report("Stopping"), ()),
    ("event/queued/Stopped: ends cancelled", job(Q), report("Stopped"), (TO_CANCELLING, END_CANCEL)),
    ("event/running/InProgress: repeat", job(R, backend_name=NAME), report("InProgress"), ()),
    ("event/running/Completed", job(R, backend_name=NAME), report("Completed"), (Collect(NAME),)),
    ("event/running/Failed without reason", job(R, backend_name=NAME), report("Failed"), (fail({Q, R}, "backend_error", "the transform job failed"),)),
    ("event/running/Stopping", job(R, backend_name=NAME), report("Stopping"), ()),
    ("event/running/Stopped", job(R, backend_name=NAME), report("Stopped"), (TO_CANCELLING, END_CANCEL)),
    ("event/cancelling/InProgress", job(C, backend_name=NAME), report("InProgress"), ()),
    ("event/cancelling/Stopping", job(C, backend_name=NAME), report("Stopping"), ()),
    ("event/cancelling/Stopped", job(C, backend_name=NAME), report("Stopped"), (END_CANCEL,)),
    ("event/cancelling/Completed: still cancelled", job(C, backend_name=NAME), report("Completed"), (END_CANCEL,)),
    ("event/cancelling/Failed: still cancelled", job(C, backend_name=NAME), report("Failed"), (END_CANCEL,)),
    *[
        (f"event/{st.value}/{word}: finished is absorbing", job(st, backend_name=NAME), report(word), ())
        for st in (OK, F, X)
        for word in lc.TRANSFORM_PHASES
    ],
    ("event about another transform job", job(R, backend_name=NAME), report("Failed", name="router-other"), ()),
    ("event for a job of another route", job(R, LJ), report("Completed"), ()),
    ("event with a status word nobody knows", job(Q), report("Exploded"), ()),
    # --- the transform job's output, once SageMaker said Completed
    ("output assembled", job(R, backend_name=NAME), OutputReady(NAME, 7), (T({R}, OK, records_done=7, backend_name=NAME),)),
    ("output missing: fails, not running forever", job(R), OutputBroken("backend_error", "no .out"), (fail({R}, "backend_error", "no .out"),)),
    ("output assembled after a cancel", job(C), OutputReady(NAME, 7), ()),
    # --- a sweep describing a stale batch job
    ("sweep/stale batch job: describe its transform job", job(R, backend_name=NAME), Stale(True, backend_name="router-job-y"), (Describe(NAME, Via.SWEEP),)),
    ("sweep/stale queued batch job: describe by the deterministic name", job(Q), Stale(True, backend_name=NAME), (Describe(NAME, Via.SWEEP),)),
    ("sweep/no batch client here", job(Q), Stale(False, backend_name=NAME), ()),
    ("sweep/no name to describe: dispatch", job(Q), Stale(True), (Dispatch("redispatched"),)),
    ("sweep/InProgress", job(R, backend_name=NAME), report("InProgress", Via.SWEEP), (Tally("described"),)),
    ("sweep/lost InProgress event", job(Q), report("InProgress", Via.SWEEP), (Tally("described"), START)),
    ("sweep/lost Completed event", job(R, backend_name=NAME), report("Completed", Via.SWEEP), (Tally("described"), Collect(NAME))),
    ("sweep/cancelling, still InProgress: stop again", job(C, backend_name=NAME), report("InProgress", Via.SWEEP), (Tally("described"), StopBackend(NAME))),
    ("sweep/cancelling, Stopping: wait", job(C, backend_name=NAME), report("Stopping", Via.SWEEP), (Tally("described"),)),
    ("sweep/cancelling, Stopped", job(C, backend_name=NAME), report("Stopped", Via.SWEEP), (Tally("described"), END_CANCEL)),
    ("sweep/not found, queued: never reached SageMaker", job(Q), BackendMissing(Via.SWEEP), (Dispatch("redispatched"),)),
    ("sweep/not found, running: vanished, submit again", job(R, attempts=2), BackendMissing(Via.SWEEP), (Dispatch("redispatched"),)),
    ("sweep/not found, running at max_attempts", job(R, backend_name=NAME, attempts=3), BackendMissing(Via.SWEEP),
     (fail({Q, R}, "backend_error", f"the transform job {NAME} vanished (after 3 attempts)", tally="failed"),)),
    ("sweep/not found, cancelling: nothing to stop", job(C), BackendMissing(Via.SWEEP), (END_CANCEL,)),
    ("not found, seen through an event", job(Q), BackendMissing(Via.EVENT), ()),
    # --- dispatching a batch job: what CreateTransformJob said
    ("created: dispatch", job(Q), Created(), (Dispatch(),)),
    ("accepted", job(Q, attempts=0), Accepted(NAME), (T({Q}, R, backend_name=NAME, attempts=1),)),
    ("accepted, but cancelled meanwhile: stop it", job(C), Accepted(NAME), (StopBackend(NAME),)),
    ("accepted, but cancelled and ended meanwhile: stop it", job(X), Accepted(NAME), (StopBackend(NAME),)),
    ("accepted, but another submitter started it", job(R, backend_name=NAME), Accepted(NAME), ()),
    ("accepted again after the transform job vanished", job(R, attempts=1, version=4), Accepted(NAME, resubmission=True),
     (Update(4, {"backend_name": NAME, "attempts": 2}),)),
    ("throttled: waits, not an attempt", job(Q, attempts=2), Refused(Cause.THROTTLED, "throttled", "slow down", NAME), ()),
    ("outage: an attempt", job(Q, attempts=1, version=2), Refused(Cause.UNAVAILABLE, "backend_unavailable", "down", NAME), (Update(2, {"attempts": 2}),)),
    ("outage at max_attempts: stop what may exist, fail", job(Q, attempts=2), Refused(Cause.UNAVAILABLE, "backend_unavailable", "down", NAME),
     (StopBackend(NAME), fail({Q, R}, "backend_unavailable", "down (after 3 attempts)"))),
    ("outage at max_attempts, no name known", job(Q, attempts=2), Refused(Cause.UNAVAILABLE, "backend_timeout", "slow"),
     (fail({Q, R}, "backend_timeout", "slow (after 3 attempts)"),)),
    ("refused for good (model gone, bad input, SageMaker says no)", job(Q), Refused(Cause.PERMANENT, "invalid_input", "line 3", NAME),
     (fail({Q, R}, "invalid_input", "line 3"),)),
    ("refused after the job ended", job(X), Refused(Cause.UNAVAILABLE, "backend_unavailable", "down", NAME), ()),
    # --- a replay of the same Idempotency-Key and body (a lost DynamoDB reply)
    ("replay of a job queued 10 s: dispatch once more", job(Q, updated_at=NOW - timedelta(seconds=10), version=3), Replayed(),
     (Update(3, {"attempts": 0}), Dispatch())),
    ("replay within 10 s: nothing", job(Q, updated_at=NOW - timedelta(seconds=9.9)), Replayed(), ()),
    ("replay of a running job", job(R, updated_at=NOW - timedelta(hours=1)), Replayed(), ()),
    # --- a cancel request
    ("cancel queued lambda-job: ends at once", job(Q, LJ), CancelRequested(False), (T({Q}, X),)),
    ("cancel running lambda-job: the worker sees it", job(R, LJ), CancelRequested(False), (TO_CANCELLING,)),
    ("cancel running batch job: stop its transform job", job(R, backend_name=NAME), CancelRequested(True, NAME), (TO_CANCELLING, StopBackend(NAME))),
    ("cancel queued batch job: its transform job may exist", job(Q), CancelRequested(True, NAME), (TO_CANCELLING, Describe(NAME, Via.CANCEL))),
    ("cancel queued batch job, no name to look for", job(Q), CancelRequested(True), (TO_CANCELLING, END_CANCEL)),
    ("cancel queued batch job without a batch client", job(Q), CancelRequested(False), (T({Q}, X),)),
    ("cancel probe: the transform job exists", job(C), report("InProgress", Via.CANCEL), (StopBackend(NAME),)),
    ("cancel probe: no transform job", job(C), BackendMissing(Via.CANCEL), (END_CANCEL,)),
    ("cancel probe after the job moved on", job(X), BackendMissing(Via.CANCEL), ()),
    ("cancel twice", job(C), CancelRequested(True, NAME), ()),
    ("cancel a cancelled job", job(X), CancelRequested(True, NAME), ()),
    ("cancel a succeeded job", job(OK), CancelRequested(True, NAME), (NotCancellable(OK),)),
    ("cancel a failed job", job(F, LJ), CancelRequested(False), (NotCancellable(F),)),
    # --- an async-inference job: SNS notifications, S3-output polling, an unstoppable request
    ("async/accepted: records where the answer will appear", job(Q, AI), Accepted(IID, extra=SENT),
     (T({Q}, R, backend_name=IID, attempts=1, extra=SENT),)),
    ("async/re-sent after the request was lost", job(R, AI, backend_name=IID, attempts=1, version=3), Accepted(IID, resubmission=True, extra=SENT),
     (Update(3, {"backend_name": IID, "attempts": 2, "extra": SENT}),)),
    ("async/accepted after a cancel: nothing to stop, ends", job(C, AI), Accepted(IID, extra=SENT), (END_CANCEL,)),
    ("async/accepted after the cancel ended", job(X, AI), Accepted(IID, extra=SENT), ()),
    ("async/success notification", job(R, AI, backend_name=IID), async_report("Completed"), (Collect(IID),)),
    ("async/success notification, the send's write lost", job(Q, AI), async_report("Completed", extra=SENT),
     (T({Q}, R, backend_name=IID, extra=SENT), Collect(IID))),
    ("async/error notification", job(R, AI, backend_name=IID), async_report("Failed", reason="the model failed on the request: x"),
     (fail({Q, R}, "backend_error", "the model failed on the request: x"),)),
    ("async/error notification without a reason", job(R, AI, backend_name=IID), async_report("Failed"),
     (fail({Q, R}, "backend_error", "the async inference request failed"),)),
    ("async/notification after a cancel: result discarded", job(C, AI, backend_name=IID), async_report("Completed"), (END_CANCEL,)),
    ("async/still in progress after a cancel: ends anyway", job(C, AI, backend_name=IID), async_report("InProgress", Via.SWEEP), (Tally("described"), END_CANCEL)),
    ("async/a late notification of a cancelled job", job(X, AI, backend_name=IID), async_report("Completed"), ()),
    ("async/sweep: look at the output objects", job(R, AI, backend_name=IID), Stale(True), (Describe(IID, Via.SWEEP),)),
    ("async/sweep: never sent", job(Q, AI), Stale(True), (Dispatch("redispatched"),)),
    ("async/sweep: cancelling ends", job(C, AI, backend_name=IID), Stale(True), (END_CANCEL,)),
    ("async/sweep: no answer yet", job(R, AI, backend_name=IID), async_report("InProgress", Via.SWEEP), (Tally("described"),)),
    ("async/sweep: answer found, its notification lost", job(R, AI, backend_name=IID), async_report("Completed", Via.SWEEP), (Tally("described"), Collect(IID))),
    ("async/sweep: the request was lost: send again", job(R, AI, backend_name=IID, attempts=1), BackendMissing(Via.SWEEP), (Dispatch("redispatched"),)),
    ("async/sweep: lost again and again", job(R, AI, backend_name=IID, attempts=3), BackendMissing(Via.SWEEP),
     (fail({Q, R}, "backend_error", f"the async inference request {IID} vanished (after 3 attempts)", tally="failed"),)),
    ("async/cancel a sent request: ends at once", job(R, AI, backend_name=IID), CancelRequested(False), (TO_CANCELLING, END_CANCEL)),
    ("async/cancel a request never sent", job(Q, AI), CancelRequested(False), (T({Q}, X),)),
    ("async/outage at max_attempts: fails, nothing to stop", job(Q, AI, attempts=2), Refused(Cause.UNAVAILABLE, "backend_unavailable", "down"),
     (fail({Q, R}, "backend_unavailable", "down (after 3 attempts)"),)),
    # --- a sweep of a stale lambda-job
    ("sweep/lambda queued: dispatch", job(Q, LJ, version=2), Stale(True), (Update(2, {"attempts": 0, "extra": {"redispatched_at": 0}}), Dispatch("redispatched"))),
    ("sweep/lambda running with progress: free re-dispatch", job(R, LJ, records_done=8, attempts=1, extra={"redispatched_at": 4}), Stale(True),
     (Update(1, {"attempts": 1, "extra": {"redispatched_at": 8}}), Dispatch("redispatched"))),
    ("sweep/lambda running without progress: an attempt", job(R, LJ, records_done=4, attempts=1, extra={"redispatched_at": 4}), Stale(True),
     (Update(1, {"attempts": 2, "extra": {"redispatched_at": 4}}), Dispatch("redispatched"))),
    ("sweep/lambda worker keeps dying: fails at max_attempts", job(R, LJ, attempts=3), Stale(True),
     (fail({R}, "internal_error", "the worker stopped reporting after 3 attempts", tally="failed"),)),
    ("sweep/lambda waiting in the queue: only touched", job(R, LJ, attempts=3, version=5), Stale(True, in_flight=True), (Update(5, {"attempts": 3}),)),
    ("sweep/lambda cancelling: ends", job(C, LJ), Stale(True), (END_CANCEL,)),
    ("sweep/lambda cancelling, no queue here: ends", job(C, LJ), Stale(False), (END_CANCEL,)),
    ("sweep/lambda without a queue here", job(Q, LJ), Stale(False), ()),
    # --- the lambda-job worker
    ("worker/start a queued job", job(Q, LJ, attempts=0), WorkerStarted(), (T({Q}, R, attempts=1), RUN)),
    ("worker/resume a running job", job(R, LJ), WorkerStarted(), (RUN,)),
    ("worker/start a cancelling job", job(C, LJ), WorkerStarted(), (END_CANCEL, QUIT)),
    ("worker/late re-invoke of a finished job", job(OK, LJ), WorkerStarted(), (QUIT,)),
    ("worker/checkpoint", job(R, LJ, checkpoint={"offset": 4, "parts": 1}, version=6), Checkpointed({"offset": 4, "parts": 1}, {"offset": 8, "parts": 2}),
     (Update(6, {"checkpoint": {"offset": 8, "parts": 2}, "records_done": 8}, redecide=True), RUN)),
    ("worker/first checkpoint", job(R, LJ), Checkpointed({"offset": 0, "parts": 0}, {"offset": 4, "parts": 1}),
     (Update(1, {"checkpoint": {"offset": 4, "parts": 1}, "records_done": 4}, redecide=True), RUN)),
    ("worker/checkpoint after a cancel", job(C, LJ), Checkpointed({"offset": 0, "parts": 0}, {"offset": 4, "parts": 1}), (END_CANCEL, QUIT)),
    ("worker/checkpoint, another worker moved on", job(R, LJ, checkpoint={"offset": 8, "parts": 2}), Checkpointed({"offset": 4, "parts": 1}, {"offset": 8, "parts": 2}), (QUIT,)),
    ("worker/checkpoint of a finished job", job(OK, LJ), Checkpointed({"offset": 0, "parts": 0}, {"offset": 4, "parts": 1}), (QUIT,)),
    ("worker/deadline near: yield", job(R, LJ), Deadline(4.9, 5.0), (YIELD,)),
    ("worker/time left", job(R, LJ), Deadline(5.0, 5.0), (RUN,)),
    ("worker/done", job(R, LJ), WorkerDone(12), (T({R}, OK, records_done=12, records_total=12), QUIT)),
    ("worker/done, but cancelled since the last checkpoint", job(C, LJ), WorkerDone(12), (END_CANCEL, QUIT)),
    ("worker/bad input: fails for good", job(R, LJ), WorkerFailed("invalid_input", "line 2", permanent=True, details={"line": 2}),
     (fail({Q, R}, "invalid_input", "line 2", line=2), QUIT)),
    ("worker/transient error: an attempt, continue later", job(R, LJ, attempts=1, version=3), WorkerFailed("storage_unavailable", "S3 down", permanent=False),
     (Update(3, {"attempts": 2}, redecide=True), YIELD)),
    ("worker/transient error at max_attempts", job(R, LJ, attempts=3), WorkerFailed("storage_unavailable", "S3 down", permanent=False),
     (fail({Q, R}, "storage_unavailable", "S3 down (after 3 attempts)"), QUIT)),
    ("worker/error on a cancelling job", job(C, LJ), WorkerFailed("storage_unavailable", "S3 down", permanent=False), (END_CANCEL, QUIT)),
    ("worker/error on a finished job", job(F, LJ), WorkerFailed("storage_unavailable", "S3 down", permanent=False), (QUIT,)),
]  # fmt: skip


@pytest.mark.parametrize(("job_", "event", "expected"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_the_lifecycle_table(job_: Job, event: lc.Event, expected: lc.Plan) -> None:
    assert lc.decide(job_, event, POLICY, NOW) == expected


def test_the_table_ids_are_unique() -> None:
    ids = [r[0] for r in ROWS]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(
    "event",
    [Created(), Replayed(), CancelRequested(True), Accepted(NAME), report("Completed"), BackendMissing(Via.SWEEP), Stale(True)],
    ids=lambda e: type(e).__name__,
)
def test_a_missing_job_calls_for_nothing(event: lc.Event) -> None:
    assert lc.decide(None, event, POLICY, NOW) == ()


@pytest.mark.parametrize("event", [WorkerStarted(), WorkerDone(1), WorkerFailed("x", "y", permanent=False)], ids=lambda e: type(e).__name__)
def test_a_worker_of_a_missing_job_quits(event: lc.Event) -> None:
    assert lc.decide(None, event, POLICY, NOW) == (QUIT,)


def test_the_transform_statuses_are_exactly_sagemakers() -> None:
    """Every TransformJobStatus in botocore's SageMaker model has a phase, and no other word does."""
    model = botocore.session.get_session().get_service_model("sagemaker")
    assert set(lc.TRANSFORM_PHASES) == set(model.shape_for("TransformJobStatus").enum)
    assert lc.phase_of(BT, "InProgress") is lc.Phase.RUNNING and lc.phase_of(LJ, "InProgress") is lc.Phase.UNKNOWN


def test_keepalive_touches_backend_jobs_only() -> None:
    assert lc.keepalive(job(R, BT, attempts=2, version=7)) == Update(7, {"attempts": 2})
    assert lc.keepalive(job(R, AI, version=2)) == Update(2, {"attempts": 0})
    assert lc.keepalive(job(R, LJ)) is None


def test_failure_messages_are_bounded() -> None:
    (move,) = lc.decide(job(R), Refused(Cause.PERMANENT, "backend_error", "x" * 5000), POLICY, NOW)
    assert isinstance(move, lc.Transition) and len(move.changes["error"]["message"]) == 1000


# --- properties over every event and job state ------------------------------------------------

_NAMES = st.sampled_from([NAME, "router-other"])
_EVENTS: st.SearchStrategy[lc.Event] = st.one_of(
    st.just(Created()),
    st.just(Replayed()),
    st.builds(CancelRequested, st.booleans(), st.none() | _NAMES),
    st.builds(Accepted, _NAMES, st.booleans(), st.just({}) | st.just(SENT)),
    st.builds(Refused, st.sampled_from(list(Cause)), st.just("backend_error"), st.just("m"), st.none() | _NAMES),
    st.builds(BackendReport, st.sampled_from([BT, LJ, AI]), _NAMES, st.sampled_from([*lc.TRANSFORM_PHASES, "Weird"]), st.none() | st.just("r"), st.sampled_from(list(Via)), st.just({}) | st.just(SENT)),
    st.builds(BackendMissing, st.sampled_from(list(Via))),
    st.builds(OutputReady, _NAMES, st.integers(0, 9)),
    st.builds(OutputBroken, st.just("backend_error"), st.just("m")),
    st.builds(Stale, st.booleans(), st.booleans(), st.none() | _NAMES),
    st.just(WorkerStarted()),
    st.builds(Checkpointed, st.just({"offset": 0, "parts": 0}), st.just({"offset": 4, "parts": 1})),
    st.builds(Deadline, st.floats(0, 10), st.floats(0, 10)),
    st.builds(WorkerDone, st.integers(0, 9)),
    st.builds(WorkerFailed, st.just("e"), st.just("m"), st.booleans()),
)  # fmt: skip
_JOBS = st.builds(
    job,
    st.sampled_from(list(JobStatus)),
    st.sampled_from([BT, LJ, AI]),
    attempts=st.integers(0, 4),
    backend_name=st.none() | _NAMES,
    records_done=st.none() | st.integers(0, 9),
    checkpoint=st.none() | st.just({"offset": 0, "parts": 0}),
    updated_at=st.sampled_from([NOW, NOW - timedelta(hours=1)]),
)


@given(job_=_JOBS, event=_EVENTS)
def test_every_write_is_legal_for_the_job_it_was_decided_on(job_: Job, event: lc.Event) -> None:
    """A transition names the job's current status among its sources and is in the state machine;
    an update is conditional on the version decided on; a finished job is never written."""
    first_write = True
    status = job_.status
    for move in lc.decide(job_, event, POLICY, NOW):
        if isinstance(move, lc.Transition):
            assert move.from_ <= jm.sources(move.to), move
            if first_write:
                assert status in move.from_, (status, move)
            status, first_write = move.to, False
            jm.check_changes(move.changes)
        elif isinstance(move, Update):
            assert first_write and move.version == job_.version
            jm.check_changes(move.changes)
            first_write = False
    if job_.status.finished:
        assert all(isinstance(m, lc.Worker | NotCancellable | StopBackend) for m in lc.decide(job_, event, POLICY, NOW))


@given(job_=_JOBS, event=_EVENTS)
def test_follow_up_moves_end_their_plan_and_worker_moves_only_answer_worker_events(job_: Job, event: lc.Event) -> None:
    plan = lc.decide(job_, event, POLICY, NOW)
    for move in plan[:-1]:
        assert not isinstance(move, Describe | Collect), plan
    worker_event = isinstance(event, WorkerStarted | Checkpointed | Deadline | WorkerDone | WorkerFailed)
    assert any(isinstance(m, lc.Worker) for m in plan) == worker_event
    if worker_event:
        assert isinstance(plan[-1], lc.Worker)


@given(job_=_JOBS, event=_EVENTS)
def test_decide_is_deterministic_and_ignores_nothing_but_its_arguments(job_: Job, event: lc.Event) -> None:
    assert lc.decide(job_, event, POLICY, NOW) == lc.decide(job_, event, POLICY, NOW)
