"""A hypothesis state machine over the whole job lifecycle (JobsService on the SQLite store, fake
backends): submissions and duplicate submissions, worker runs with deadlines, SageMaker events in
any order and repeated, cancels and sweeps. Invariants: one job per (owner, key), finished jobs
never change, a transform job is created at most once per router job, and a succeeded job has
exactly one output line per input record."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from router.adapters.sqlite_jobs import SqliteJobStore
from router.config import RouterConfig
from router.domain import JobStatus, OutputKind, Route
from router.errors import IdempotencyKeyReuse, JobNotCancellable
from router.jobs_service import JobsService
from router.ports import BatchJobState
from router.sagemaker_names import transform_job_name
from router.service import RouterService
from tests.fakes import FakeBatch, FakeClock, FakeQueue, FakeRunner, MemoryObjectStore, answer_transform

SHA = "ab" * 32
FINISHED = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}


class JobLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="jobs-sm-"))
        # 300 ms per record: 10 records fit a lambda-job, 3,000 (15 min) need batch transform.
        cfg = RouterConfig.model_validate({
            "storage": {"jobs": "s3://bucket-x/jobs", "artifacts": "s3://bucket-x/models", "job_table": "sqlite:///x.db"},
            "jobs": {"chunk_records": 4, "max_active_per_owner": 1000, "max_attempts": 2},
            "sagemaker": {"batch_transform": {}},
            "models": [{"name": "m", "framework": "sklearn", "artifact": "s3://bucket-x/m", "sha256": SHA, "size_bytes": 10,
                        "profile": {"load_s": 0, "per_record_ms": 300}}],
        })
        self.clock = FakeClock()
        self.objects = MemoryObjectStore()
        self.batch = FakeBatch(self.objects)
        self.queue = FakeQueue()
        self.store = SqliteJobStore(self.dir / "jobs.db", clock=self.clock)
        self.svc = JobsService(cfg, service=RouterService(cfg, runner=FakeRunner()), store=self.store, objects=self.objects,
                               clock=self.clock, queue=self.queue, batch=self.batch, transform_name=transform_job_name)
        self.by_key: dict[tuple[str, str], str] = {}
        self.job_ids: list[str] = []
        self.finished: dict[str, tuple[JobStatus, int]] = {}
        self.records: dict[str, int] = {}

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _rows(self, n: int) -> list[list[float]]:
        return [[float(i), 1.0] for i in range(n)]

    @rule(owner=st.sampled_from(["alice", "bob"]), key=st.sampled_from([None, "k1", "k2"]), big=st.booleans(), variant=st.integers(0, 1))
    def submit(self, owner: str, key: str | None, big: bool, variant: int) -> None:
        n = (3000 if big else 10) + variant
        try:
            job, created = self.svc.submit(owner, self.svc.service.model("m"), instances=self._rows(n), input_uri=None,
                                           input_format="jsonl", output=OutputKind.PREDICT, idempotency_key=key)
        except IdempotencyKeyReuse:
            assert key is not None and (owner, key) in self.by_key
            return
        if key is not None:
            if (owner, key) in self.by_key:
                assert not created and job.job_id == self.by_key[(owner, key)]
                return
            self.by_key[(owner, key)] = job.job_id
        assert created
        self.job_ids.append(job.job_id)
        self.records[job.job_id] = n
        assert job.route is (Route.BATCH_TRANSFORM if big else Route.LAMBDA_JOB)

    @precondition(lambda self: self.job_ids)
    @rule(data=st.data(), budget=st.sampled_from([0.0, 1e9]))
    def run_worker(self, data: st.DataObject, budget: float) -> None:
        job_id = data.draw(st.sampled_from(self.job_ids))
        job = self.store.get(job_id)
        assert job is not None
        if job.route is Route.LAMBDA_JOB:
            self.svc.run_lambda_job(job_id, lambda: budget)

    @precondition(lambda self: self.job_ids)
    @rule(data=st.data(), status=st.sampled_from(["InProgress", "Completed", "Failed", "Stopped"]))
    def backend_event(self, data: st.DataObject, status: str) -> None:
        job_id = data.draw(st.sampled_from(self.job_ids))
        job = self.store.get(job_id)
        assert job is not None
        if job.route is not Route.BATCH_TRANSFORM:
            return
        name = transform_job_name(job_id)
        if status == "Completed":  # SageMaker wrote the output before saying so
            answer_transform(self.objects, "s3://bucket-x/jobs", job_id, 1)
        self.svc.on_batch_state(job_id, BatchJobState(name, status, "boom" if status == "Failed" else None))

    @precondition(lambda self: self.job_ids)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.job_ids))
        owner = self.store.get(job_id).owner  # type: ignore[union-attr]
        try:
            self.svc.cancel(owner, job_id)
        except JobNotCancellable:
            assert self.store.get(job_id).status in (JobStatus.SUCCEEDED, JobStatus.FAILED)  # type: ignore[union-attr]

    @rule()
    def sweep(self) -> None:
        self.clock.advance(1000)
        self.svc.sweep()

    @invariant()
    def finished_jobs_never_change(self) -> None:
        for job_id in self.job_ids:
            job = self.store.get(job_id)
            assert job is not None
            if job_id in self.finished:
                assert (job.status, job.version) == self.finished[job_id]
            elif job.status in FINISHED:
                self.finished[job_id] = (job.status, job.version)

    @invariant()
    def one_transform_job_per_router_job(self) -> None:
        assert self.batch.creates == len(set(self.batch.submits))

    @invariant()
    def succeeded_jobs_have_complete_output(self) -> None:
        for job_id in self.job_ids:
            job = self.store.get(job_id)
            assert job is not None
            if job.status is JobStatus.SUCCEEDED:
                lines = self.objects.get_bytes(job.output_uri).splitlines()  # type: ignore[arg-type]
                assert len(lines) == self.records[job_id]
                if job.route is Route.LAMBDA_JOB:
                    assert [json.loads(x) for x in lines] == [float(i) + 1.0 for i in range(self.records[job_id])]


TestJobLifecycle = JobLifecycle.TestCase
TestJobLifecycle.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)

