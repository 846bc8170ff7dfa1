"""A hypothesis state machine over the pure lifecycle (router/lifecycle.py) alone: no store, no
service. Jobs live in a dict and moves are applied by a model of the applier's rules (conditional
transitions through `jobs.TRANSITIONS`, version-checked updates); SageMaker is a dict of transform
jobs that progress on their own, whose events may be lost, repeated or reordered. Workers
checkpoint, fail and hit deadlines; owners cancel; clients replay; the sweeper repairs.

Jobs are lambda-jobs, batch transforms and async inference requests (which cannot be stopped).
Invariants: every write is legal, finished jobs never change, a job keeps one backend job, a
cancelled job's transform job is stopped or over, and in the end, with events lost, every job
finishes (nothing is lost) with every record once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from router import jobs as jm
from router import lifecycle as lc
from router.domain import Job, JobStatus, Route
from router.lifecycle import Work

S = JobStatus
POLICY = lc.Policy(max_attempts=3)
CHUNK = 4


class LifecycleModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)
        self.jobs: dict[str, Job] = {}
        self.records: dict[str, int] = {}
        self.transforms: dict[str, str] = {}  # name -> SageMaker status
        self.history: dict[str, list[str]] = {}  # every status a transform job had, for late events
        self.stops: set[str] = set()
        self.queue: list[str] = []
        self.finished: dict[str, tuple[JobStatus, int]] = {}
        self.backend_names: dict[str, str] = {}
        self.refuse: list[lc.Cause] = []  # what the next CreateTransformJob calls answer
        self.slow_submits = False  # CreateTransformJob answers only later (a submission in flight)
        self.in_flight: list[tuple[str, lc.Accepted]] = []
        self.seq = 0

    # ------------------------------------------------------------------ a model of the applier

    def _write(self, job_id: str, job: Job) -> Job:
        self.jobs[job_id] = job
        return job

    def settle(self, job_id: str, event: lc.Event) -> Work:
        job: Job | None = self.jobs.get(job_id)
        rounds = 0
        while True:
            work, follow, redecide = Work.QUIT, None, False
            for move in lc.decide(job, event, POLICY, self.now):
                assert job is not None
                if isinstance(move, lc.Transition):
                    if job.status not in move.from_:
                        redecide = True
                        break
                    assert jm.can_transition(job.status, move.to), (job.status, move)
                    job = self._write(job_id, jm.apply_transition(job, move.to, self.now, 30, move.changes))
                elif isinstance(move, lc.Update):
                    if job.version != move.version:
                        redecide = move.redecide
                        break
                    job = self._write(job_id, jm.apply_update(job, self.now, move.changes))
                elif isinstance(move, lc.Dispatch):
                    follow = self._dispatch(job)
                    if follow is not None:
                        break
                elif isinstance(move, lc.StopBackend):
                    self.stops.add(move.name)
                    if self.transforms.get(move.name) == "InProgress":
                        self._progress(move.name, "Stopping")
                elif isinstance(move, lc.Describe):
                    status = self.transforms.get(move.name)
                    follow = lc.BackendMissing(move.via) if status is None else lc.BackendReport(job.route, move.name, status, None, move.via)
                    break
                elif isinstance(move, lc.Collect):
                    follow = lc.OutputReady(move.name, self.records[job_id])
                    break
                elif isinstance(move, lc.Worker):
                    work = move.then
            if follow is not None:
                event = follow
            elif redecide and rounds < lc.MAX_ROUNDS:
                rounds += 1
            else:
                return work

    def _dispatch(self, job: Job) -> lc.Event | None:
        if job.route is Route.LAMBDA_JOB:
            self.queue.append(job.job_id)
            return None
        name = f"router-{job.job_id}"
        if self.refuse:
            return lc.Refused(self.refuse.pop(0), "backend_unavailable", "down", name)
        extra = {"async": {"output": f"s3://b/{name}.out"}} if job.route is Route.ASYNC_INFERENCE else {}
        accepted = lc.Accepted(name, resubmission=job.status is not S.QUEUED, extra=extra)
        if self.slow_submits:  # the create happens when the call returns
            self.in_flight.append((job.job_id, accepted))
            return None
        self._create(name)
        return accepted

    def _create(self, name: str) -> None:
        if name not in self.transforms:  # a unique name: a repeat adopts the existing job
            self._progress(name, "InProgress")

    def _progress(self, name: str, status: str) -> None:
        self.transforms[name] = status
        self.history.setdefault(name, []).append(status)

    def _run_worker(self, job_id: str, budget_chunks: int, fail: str | None) -> bool:
        """One worker invocation; True when it asks to be continued."""
        if self.settle(job_id, lc.WorkerStarted()) is not Work.RUN:
            return False
        for _ in range(budget_chunks):
            job = self.jobs[job_id]
            cp = dict(job.checkpoint or {"offset": 0, "parts": 0})
            if cp["offset"] >= self.records[job_id]:
                break
            if fail is not None:
                return self.settle(job_id, lc.WorkerFailed("boom", "m", permanent=fail == "permanent")) is Work.YIELD
            after = {"offset": min(cp["offset"] + CHUNK, self.records[job_id]), "parts": cp["parts"] + 1}
            if self.settle(job_id, lc.Checkpointed(cp, after)) is not Work.RUN:
                return False
        else:
            if self.settle(job_id, lc.Deadline(0.0, 5.0)) is Work.YIELD:
                return True
        done = int((self.jobs[job_id].checkpoint or {"offset": 0})["offset"])
        self.settle(job_id, lc.WorkerDone(done))
        return False

    # ------------------------------------------------------------------ rules

    @rule(route=st.sampled_from([Route.LAMBDA_JOB, Route.BATCH_TRANSFORM, Route.ASYNC_INFERENCE]), records=st.integers(1, 12))
    def submit(self, route: Route, records: int) -> None:
        self.seq += 1
        job_id = f"job_{self.seq:04d}"
        self.jobs[job_id] = Job(job_id=job_id, owner="o", model="m", status=S.QUEUED, route=route, reason="r",
                                created_at=self.now, updated_at=self.now, input_uri="s3://b/i")  # fmt: skip
        self.records[job_id] = records
        self.settle(job_id, lc.Created())

    @rule(slow=st.booleans(), causes=st.lists(st.sampled_from(list(lc.Cause)), max_size=3))
    def sagemaker_changes_mood(self, slow: bool, causes: list[lc.Cause]) -> None:
        """CreateTransformJob answers late from now on (or not), and refuses the next calls."""
        self.slow_submits, self.refuse = slow, causes

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data())
    def submission_returns(self, data: st.DataObject) -> None:
        job_id, accepted = self.in_flight.pop(data.draw(st.integers(0, len(self.in_flight) - 1)))
        self._create(accepted.name)
        self.settle(job_id, accepted)

    @precondition(lambda self: self.transforms)
    @rule(data=st.data(), rare=st.integers(0, 4))
    def sagemaker_forgets(self, data: st.DataObject, rare: int) -> None:
        if rare == 0:
            del self.transforms[data.draw(st.sampled_from(sorted(self.transforms)))]

    @precondition(lambda self: self.queue)
    @rule(data=st.data(), chunks=st.integers(0, 3), fail=st.sampled_from([None, None, "transient", "permanent"]))
    def worker_runs(self, data: st.DataObject, chunks: int, fail: str | None) -> None:
        job_id = self.queue.pop(data.draw(st.integers(0, len(self.queue) - 1)))
        if self._run_worker(job_id, chunks, fail):
            self.queue.append(job_id)  # the worker re-invokes itself

    @precondition(lambda self: self.queue)
    @rule(data=st.data())
    def worker_dies(self, data: st.DataObject) -> None:
        self.queue.pop(data.draw(st.integers(0, len(self.queue) - 1)))  # OOM, timeout: the sweeper repairs

    @precondition(lambda self: any(s in ("InProgress", "Stopping") for s in self.transforms.values()))
    @rule(data=st.data(), end=st.sampled_from(["Completed", "Failed", "Stopped"]))
    def sagemaker_progresses(self, data: st.DataObject, end: str) -> None:
        """A transform job ends: as it would, or stopped by someone else; a stop may lose the race."""
        name = data.draw(st.sampled_from(sorted(n for n, s in self.transforms.items() if s in ("InProgress", "Stopping"))))
        if self.jobs[name.removeprefix("router-")].route is Route.ASYNC_INFERENCE and end == "Stopped":
            end = "Failed"  # an async inference request cannot be stopped
        self._progress(name, end)

    @precondition(lambda self: self.history)
    @rule(data=st.data())
    def sagemaker_event(self, data: st.DataObject) -> None:
        """An EventBridge event: any status the transform job had (late, repeated, reordered)."""
        name = data.draw(st.sampled_from(sorted(self.history)))
        status = data.draw(st.sampled_from(self.history[name]))
        job_id = name.removeprefix("router-")
        self.settle(job_id, lc.BackendReport(self.jobs[job_id].route, name, status))

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.jobs)))
        batch = self.jobs[job_id].route is Route.BATCH_TRANSFORM
        self.settle(job_id, lc.CancelRequested(batch, f"router-{job_id}" if batch else None))

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        self.now += timedelta(seconds=data.draw(st.sampled_from([0, 11])))
        self.settle(data.draw(st.sampled_from(sorted(self.jobs))), lc.Replayed())

    @rule(in_flight=st.booleans())
    def sweep(self, in_flight: bool) -> None:
        self.now += timedelta(seconds=600)
        for job_id, job in sorted(self.jobs.items()):
            if job.status.finished:
                continue
            batch = job.route is Route.BATCH_TRANSFORM  # only a transform job has a name before it starts
            self.settle(job_id, lc.Stale(True, in_flight and job_id in self.queue, f"router-{job_id}" if batch else None))
            touch = lc.keepalive(self.jobs[job_id])
            if touch is not None and self.jobs[job_id].version == touch.version:
                self.jobs[job_id] = jm.apply_update(self.jobs[job_id], self.now, touch.changes)

    # ------------------------------------------------------------------ invariants

    @invariant()
    def finished_jobs_never_change(self) -> None:
        for job_id, job in self.jobs.items():
            if job_id in self.finished:
                assert (job.status, job.version) == self.finished[job_id]
            elif job.status.finished:
                self.finished[job_id] = (job.status, job.version)

    @invariant()
    def a_job_keeps_one_backend_job(self) -> None:
        for job_id, job in self.jobs.items():
            if job.backend_name is not None:
                assert self.backend_names.setdefault(job_id, job.backend_name) == job.backend_name

    @invariant()
    def a_cancelled_jobs_transform_job_is_stopped_or_over(self) -> None:
        for job_id, job in self.jobs.items():
            name = f"router-{job_id}"
            stoppable = job.route in lc.STOPPABLE_ROUTES
            if stoppable and job.status is S.CANCELLED and self.transforms.get(name) == "InProgress":
                assert name in self.stops

    @invariant()
    def succeeded_jobs_have_every_record(self) -> None:
        for job_id, job in self.jobs.items():
            if job.status is S.SUCCEEDED:
                assert job.records_done == self.records[job_id]

    def teardown(self) -> None:
        """With every event lost from here on, the sweeper and the workers alone finish every job."""
        self.refuse, self.slow_submits = [], False
        for _ in range(60):
            while self.in_flight:
                job_id, accepted = self.in_flight.pop(0)
                self._create(accepted.name)
                self.settle(job_id, accepted)
            if all(j.status.finished for j in self.jobs.values()):
                break
            for name, status in list(self.transforms.items()):
                if status in ("InProgress", "Stopping"):
                    self._progress(name, "Stopped" if status == "Stopping" else "Completed")
            self.sweep(in_flight=False)
            while self.queue:
                job_id = self.queue.pop(0)
                if self._run_worker(job_id, 3, None):
                    self.queue.append(job_id)
        stuck = {j.job_id: j.status for j in self.jobs.values() if not j.status.finished}
        assert not stuck, stuck
        self.succeeded_jobs_have_every_record()


TestLifecycleModel = LifecycleModel.TestCase
TestLifecycleModel.settings = settings(max_examples=200, stateful_step_count=30, deadline=None)
