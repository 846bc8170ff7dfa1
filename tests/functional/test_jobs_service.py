"""JobsService on the real SQLite job store with in-memory fakes for storage, models and backends:
submission and idempotency, the checkpointing worker, cancel, SageMaker events and the sweeper —
including a crash between the job write and CreateTransformJob."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest

from router.adapters.sqlite_jobs import SqliteJobStore
from router.config import RouterConfig
from router.domain import Job, JobStatus, OutputKind, Route
from router.errors import (
    IdempotencyKeyReuse,
    InvalidInput,
    InvalidRequest,
    JobNotCancellable,
    JobNotFound,
    ModelRejectedInput,
    NoFeasibleRoute,
    TooManyJobs,
)
from router.jobs import new_job_id
from router.jobs_service import JobsService
from router.ports import BatchJobState
from router.sagemaker_names import transform_job_name
from router.service import RouterService
from tests.fakes import FakeBatch, FakeClock, FakeQueue, FakeRunner, MemoryObjectStore, answer_transform

SHA = "cd" * 32
JOBS = "s3://bucket/jobs"


def make(tmp_path: Path, *, batch: bool = False, chunk: int = 10, cap: int = 20, **model: Any) -> tuple[JobsService, dict[str, Any]]:
    spec = {"name": "m", "framework": "sklearn", "artifact": "s3://b/m.joblib", "sha256": SHA, "size_bytes": 1000,
            "profile": {"load_s": 0.1, "per_record_ms": 1.0}, **model}
    cfg = RouterConfig.model_validate({
        "storage": {"jobs": JOBS, "artifacts": "s3://bucket/models", "job_table": "sqlite:///x.db"},
        "jobs": {"chunk_records": chunk, "max_active_per_owner": cap, "max_attempts": 2},
        "sagemaker": {"batch_transform": {"instance_type": "ml.m5.xlarge"}} if batch else {},
        "models": [spec],
    })
    clock = FakeClock()
    objects = MemoryObjectStore()
    parts = {"clock": clock, "objects": objects, "queue": FakeQueue(), "batch": FakeBatch(objects) if batch else None,
             "store": SqliteJobStore(tmp_path / "jobs.db", clock=clock), "runner": FakeRunner()}
    svc = JobsService(cfg, service=RouterService(cfg, runner=parts["runner"]), store=parts["store"], objects=objects,
                      clock=clock, queue=parts["queue"], batch=parts["batch"], transform_name=transform_job_name)
    return svc, parts


def submit(svc: JobsService, rows: list[Any], owner: str = "alice", key: str | None = None) -> tuple[Job, bool]:
    return svc.submit(owner, svc.service.model("m"), instances=rows, input_uri=None, input_format="jsonl",
                      output=OutputKind.PREDICT, idempotency_key=key)


def rows(n: int) -> list[list[float]]:
    return [[float(i), 1.0] for i in range(n)]


def run_to_end(svc: JobsService, job_id: str) -> int:
    """Run the worker as Lambda would, re-invoking while it asks to continue. Returns invocations."""
    invocations = 1
    while svc.run_lambda_job(job_id, lambda: 1e9):
        invocations += 1
    return invocations


def output_lines(parts: dict[str, Any], job: Job) -> list[Any]:
    return [json.loads(x) for x in parts["objects"].get_bytes(job.output_uri).splitlines()]


def test_submit_stages_input_then_queues(tmp_path: Path) -> None:
    svc, p = make(tmp_path)
    job, created = submit(svc, rows(25))
    assert created and job.status is JobStatus.QUEUED and job.route is Route.LAMBDA_JOB
    assert p["queue"].enqueued == [job.job_id]
    assert p["objects"].get_bytes(job.input_uri).count(b"\n") == 25
    assert job.records_total == 25 and job.reason


def test_idempotent_submission(tmp_path: Path) -> None:
    svc, p = make(tmp_path)
    a, created_a = submit(svc, rows(3), key="k-1")
    b, created_b = submit(svc, rows(3), key="k-1")
    assert created_a and not created_b and a.job_id == b.job_id
    assert p["queue"].enqueued == [a.job_id]  # dispatched once
    with pytest.raises(IdempotencyKeyReuse):
        submit(svc, rows(4), key="k-1")
    c, created_c = submit(svc, rows(3), owner="bob", key="k-1")
    assert created_c and c.job_id != a.job_id
    with pytest.raises(InvalidRequest):
        submit(svc, rows(3), key="has space")


def test_active_job_cap(tmp_path: Path) -> None:
    svc, _ = make(tmp_path, cap=2)
    submit(svc, rows(1))
    submit(svc, rows(1))
    with pytest.raises(TooManyJobs):
        submit(svc, rows(1))
    submit(svc, rows(1), owner="bob")  # per owner


def test_worker_checkpoints_and_resumes_without_duplicates(tmp_path: Path) -> None:
    svc, p = make(tmp_path, chunk=10)
    job, _ = submit(svc, rows(35))
    # First invocation: the deadline is near after the second chunk -> it asks to continue.
    assert svc.run_lambda_job(job.job_id, iter([100.0, 1.0]).__next__) is True
    mid = svc.store.get(job.job_id)
    assert mid is not None and mid.status is JobStatus.RUNNING and mid.records_done == 20
    assert mid.checkpoint == {"offset": 20, "parts": 2}
    assert run_to_end(svc, job.job_id) == 1
    done = svc.store.get(job.job_id)
    assert done is not None and done.status is JobStatus.SUCCEEDED and done.records_done == 35
    assert output_lines(p, done) == [float(i) + 1.0 for i in range(35)]  # in input order, once each
    assert svc.run_lambda_job(job.job_id, lambda: 1e9) is False  # a late re-invoke is a no-op


class CancellingStore(SqliteJobStore):
    """The real store; the job is cancelled just before the worker's `at`-th checkpoint write, as
    a client's DELETE landing while the worker is busy."""

    def __init__(self, path: Path, clock: Any, at: int) -> None:
        super().__init__(path, clock=clock)
        self.at, self.checkpoints = at, 0

    def update(self, job_id: str, expected_version: int, **changes: Any) -> Job | None:
        if "checkpoint" in changes:
            self.checkpoints += 1
            if self.checkpoints == self.at:
                self.transition(job_id, frozenset({JobStatus.RUNNING}), JobStatus.CANCELLING)
        return super().update(job_id, expected_version, **changes)


def test_no_part_is_written_after_a_checkpoint_that_did_not_hold(tmp_path: Path) -> None:
    # The worker predicts the next chunk while a part and its checkpoint are being written; the
    # next part must still wait for that checkpoint (here refused: the job was cancelled).
    svc, p = make(tmp_path, chunk=10)
    svc.store = CancellingStore(tmp_path / "cancel.db", p["clock"], at=2)
    job, _ = submit(svc, rows(50))
    assert svc.run_lambda_job(job.job_id, lambda: 1e9) is False
    done = svc.store.get(job.job_id)
    assert done is not None and done.status is JobStatus.CANCELLED and done.checkpoint == {"offset": 10, "parts": 1}
    written = sorted(u.rsplit("/", 1)[-1] for u in p["objects"].list_uris(f"{JOBS}/{job.job_id}/parts/"))
    assert written == ["part-000000.jsonl", "part-000001.jsonl"]  # part 1 before its checkpoint; part 2 never
    assert [n for _, n, _ in p["runner"].calls] == [10, 10, 10]  # chunk 2 was predicted meanwhile, then dropped


def test_bad_input_fails_the_job_without_retry(tmp_path: Path) -> None:
    svc, p = make(tmp_path)
    p["runner"].fail_with = InvalidInput("row 3 has 1 feature, expected 2")
    job, _ = submit(svc, rows(5))
    assert svc.run_lambda_job(job.job_id, lambda: 1e9) is False
    failed = svc.store.get(job.job_id)
    assert failed is not None and failed.status is JobStatus.FAILED and failed.error["code"] == "invalid_input"


def test_a_model_rejecting_its_input_fails_the_job_at_once(tmp_path: Path) -> None:
    svc, p = make(tmp_path)
    p["runner"].fail_with = ModelRejectedInput("model 'm' refused the input: Found unknown categories [5] in column 0")
    job, _ = submit(svc, rows(5))
    assert svc.run_lambda_job(job.job_id, lambda: 1e9) is False
    failed = svc.store.get(job.job_id)
    assert failed is not None and failed.status is JobStatus.FAILED and failed.attempts == 1
    assert failed.error["code"] == "model_error" and "unknown categories" in failed.error["message"]


def test_cancel_queued_then_repeat_then_finished(tmp_path: Path) -> None:
    svc, _ = make(tmp_path)
    job, _ = submit(svc, rows(5))
    assert svc.cancel("alice", job.job_id).status is JobStatus.CANCELLED
    assert svc.cancel("alice", job.job_id).status is JobStatus.CANCELLED  # harmless repeat
    assert svc.run_lambda_job(job.job_id, lambda: 1e9) is False  # the worker sees it finished
    with pytest.raises(JobNotFound):
        svc.cancel("bob", job.job_id)
    other, _ = submit(svc, rows(5))
    run_to_end(svc, other.job_id)
    with pytest.raises(JobNotCancellable):
        svc.cancel("alice", other.job_id)


def test_cancel_running_lambda_job_stops_the_worker(tmp_path: Path) -> None:
    svc, _ = make(tmp_path, chunk=5)
    job, _ = submit(svc, rows(20))
    assert svc.run_lambda_job(job.job_id, iter([0.0]).__next__) is True  # one chunk, then "deadline"
    assert svc.cancel("alice", job.job_id).status is JobStatus.CANCELLING
    assert svc.run_lambda_job(job.job_id, lambda: 1e9) is False
    assert svc.store.get(job.job_id).status is JobStatus.CANCELLED  # type: ignore[union-attr]


def test_get_and_list_are_owner_scoped(tmp_path: Path) -> None:
    svc, _ = make(tmp_path)
    job, _ = submit(svc, rows(1))
    assert svc.get("alice", job.job_id).job_id == job.job_id
    with pytest.raises(JobNotFound):
        svc.get("bob", job.job_id)
    with pytest.raises(JobNotFound):
        svc.get("alice", "../../etc")
    assert svc.list("bob", status=None, model=None, limit=10, cursor=None).jobs == []
    with pytest.raises(InvalidRequest):
        svc.list("alice", status="nope", model=None, limit=10, cursor=None)


def test_upload_inputs_are_owner_scoped(tmp_path: Path) -> None:
    svc, p = make(tmp_path)
    slot = svc.upload_slot("alice")
    p["objects"].put_bytes(slot["input_uri"], b"[1,2]\n[3,4]\n")
    m = svc.service.model("m")
    job, _ = svc.submit("alice", m, instances=None, input_uri=slot["input_uri"], input_format="jsonl", output=OutputKind.PREDICT, idempotency_key=None)
    assert job.records_total == 2
    with pytest.raises(InvalidInput):  # Bob cannot read Alice's upload
        svc.submit("bob", m, instances=None, input_uri=slot["input_uri"], input_format="jsonl", output=OutputKind.PREDICT, idempotency_key=None)
    with pytest.raises(InvalidInput):
        svc.submit("alice", m, instances=None, input_uri=f"{JOBS}/{job.job_id}/output.jsonl", input_format="jsonl", output=OutputKind.PREDICT, idempotency_key=None)


def test_no_feasible_route(tmp_path: Path) -> None:
    svc, _ = make(tmp_path, inline=False)
    with pytest.raises(NoFeasibleRoute) as e:
        submit(svc, rows(1))
    assert e.value.details["decision"]["candidates"]


# ---------------------------------------------------------------- batch transform


def big_batch_job(svc: JobsService) -> Job:
    # 1M records x 1 ms = 1000 s > 0.8 x 900 s: too long for lambda-job -> batch-transform.
    slot = svc.upload_slot("alice")
    svc.objects.put_bytes(slot["input_uri"], b"[1,2]\n" * 1_000_000)
    job, _ = svc.submit("alice", svc.service.model("m"), instances=None, input_uri=slot["input_uri"], input_format="jsonl",
                        output=OutputKind.PREDICT, idempotency_key="big")
    return job


def transform_output(svc: JobsService, job: Job, lines: int) -> None:
    assert answer_transform(cast(MemoryObjectStore, svc.objects), JOBS, job.job_id) == lines


def test_batch_job_lifecycle_with_duplicate_and_stale_events(tmp_path: Path) -> None:
    svc, p = make(tmp_path, batch=True)
    job = big_batch_job(svc)
    assert job.route is Route.BATCH_TRANSFORM and job.status is JobStatus.RUNNING
    name = transform_job_name(job.job_id)
    assert job.backend_name == name and p["batch"].creates == 1
    transform_output(svc, job, 1_000_000)
    done = svc.on_batch_state(job.job_id, p["batch"].finish(name, "Completed"))
    assert done is not None and done.status is JobStatus.SUCCEEDED and done.records_done == 1_000_000
    again = svc.on_batch_state(job.job_id, BatchJobState(name, "Completed"))  # duplicate
    stale = svc.on_batch_state(job.job_id, BatchJobState(name, "InProgress"))  # out of order
    assert again is not None and stale is not None
    assert again.version == done.version == stale.version
    assert svc.on_batch_state(job.job_id, BatchJobState("router-other", "Failed")).status is JobStatus.SUCCEEDED  # type: ignore[union-attr]


def test_batch_failure_and_cancel(tmp_path: Path) -> None:
    svc, p = make(tmp_path, batch=True)
    job = big_batch_job(svc)
    name = job.backend_name
    assert name is not None
    cancelling = svc.cancel("alice", job.job_id)
    assert cancelling.status is JobStatus.CANCELLING and p["batch"].stops == [name]
    done = svc.on_batch_state(job.job_id, p["batch"].finish(name, "Stopped"))
    assert done is not None and done.status is JobStatus.CANCELLED


def test_throttled_submission_stays_queued_until_the_sweeper(tmp_path: Path) -> None:
    svc, p = make(tmp_path, batch=True)
    p["batch"].throttle_next = 1
    job = big_batch_job(svc)
    assert job.status is JobStatus.QUEUED and p["batch"].creates == 0
    p["clock"].advance(1000)
    assert svc.sweep()["redispatched"] == 1
    assert svc.store.get(job.job_id).status is JobStatus.RUNNING  # type: ignore[union-attr]
    assert p["batch"].creates == 1


def test_crash_between_job_write_and_create_transform_job(tmp_path: Path) -> None:
    """The job row exists, CreateTransformJob never ran (the process died). The sweeper submits
    it exactly once; a second sweep and a repeated submit adopt the same transform job."""
    svc, p = make(tmp_path, batch=True)
    now = p["clock"].now()
    slot = svc.upload_slot("alice")
    p["objects"].put_bytes(slot["input_uri"], b"[1,2]\n" * 10)
    job_id = new_job_id(now)
    svc.store.create(Job(job_id=job_id, owner="alice", model="m", status=JobStatus.QUEUED, route=Route.BATCH_TRANSFORM,
                         reason="r", created_at=now, updated_at=now, input_uri=slot["input_uri"],
                         output_uri=f"{JOBS}/{job_id}/output.jsonl", records_total=10))
    p["clock"].advance(1000)
    assert svc.sweep()["redispatched"] == 1
    running = svc.store.get(job_id)
    assert running is not None and running.status is JobStatus.RUNNING
    p["clock"].advance(1000)
    svc.sweep()  # describes: still InProgress, nothing new
    assert p["batch"].creates == 1
    # The completion event was lost: the sweeper finds Completed by describing.
    transform_output(svc, running, 10)
    p["batch"].finish(running.backend_name, "Completed")  # type: ignore[arg-type]
    p["clock"].advance(1000)
    assert svc.sweep()["described"] == 1
    done = svc.store.get(job_id)
    assert done is not None and done.status is JobStatus.SUCCEEDED and done.records_done == 10
    assert p["batch"].creates == 1


def test_sweeper_requeues_a_stale_lambda_job(tmp_path: Path) -> None:
    svc, p = make(tmp_path)
    p["queue"].fail = True
    job, _ = submit(svc, rows(3))  # the enqueue failed: the job waits for the sweeper
    assert svc.store.get(job.job_id).status is JobStatus.QUEUED  # type: ignore[union-attr]
    p["queue"].fail = False
    assert svc.sweep()["redispatched"] == 0  # not stale yet
    p["clock"].advance(1000)
    assert svc.sweep()["redispatched"] == 1 and p["queue"].enqueued == [job.job_id]


def test_completed_event_for_a_job_still_queued(tmp_path: Path) -> None:
    """The InProgress event was lost (moto, too, jumps straight to Completed): the job still ends
    succeeded, passing through running."""
    svc, p = make(tmp_path, batch=True)
    p["batch"].throttle_next = 1
    job = big_batch_job(svc)  # throttled: stays queued with no backend name yet
    assert job.status is JobStatus.QUEUED
    name = transform_job_name(job.job_id)
    transform_output(svc, job, 1_000_000)
    done = svc.on_batch_state(job.job_id, BatchJobState(name, "Completed"))
    assert done is not None and done.status is JobStatus.SUCCEEDED and done.started_at is not None


def test_fifty_concurrent_identical_submissions_make_one_job(tmp_path: Path) -> None:
    import threading

    svc, p = make(tmp_path, cap=100)
    barrier = threading.Barrier(50)
    results: list[tuple[str, bool]] = []
    errors: list[BaseException] = []

    def go() -> None:
        barrier.wait()
        try:
            job, created = submit(svc, rows(10), key="same-key")
            results.append((job.job_id, created))
        except BaseException as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=go) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert p["queue"].enqueued == [results[0][0]]  # dispatched exactly once


@pytest.mark.parametrize(("data", "fmt", "line"), [(b"[1,2]\n[3,4]\n[5,\n", "jsonl", 3), (b"[1,2]\n1, 2\n", "jsonl", 2), (b"1,2\n3,x\n", "csv", 2)])
def test_a_malformed_input_line_fails_the_job_naming_the_line(tmp_path: Path, data: bytes, fmt: str, line: int) -> None:
    svc, p = make(tmp_path)
    slot = svc.upload_slot("alice")
    p["objects"].put_bytes(slot["input_uri"], data)
    job, _ = svc.submit("alice", svc.service.model("m"), instances=None, input_uri=slot["input_uri"], input_format=fmt,
                        output=OutputKind.PREDICT, idempotency_key=None)
    assert svc.run_lambda_job(job.job_id, lambda: 1e9) is False
    failed = svc.store.get(job.job_id)
    assert failed is not None and failed.status is JobStatus.FAILED
    assert failed.error["code"] == "invalid_input" and failed.error["details"] == {"line": line}


class ClockRunner(FakeRunner):
    """Predicts like FakeRunner and takes half a second of the fake clock per chunk."""

    def __init__(self, clock: FakeClock, warm: bool = False) -> None:
        super().__init__(warm=warm)
        self.clock = clock

    def predict(self, model: Any, instances: Any, output: OutputKind) -> list[Any]:
        self.clock.advance(0.5)
        return super().predict(model, instances, output)


def test_a_finished_job_keeps_its_estimate_beside_what_happened(tmp_path: Path) -> None:
    svc, p = make(tmp_path, chunk=10)
    svc.service.runner = ClockRunner(p["clock"])
    job, _ = submit(svc, rows(25))
    assert job.estimate == {"duration_s": 0.125, "cost_usd": pytest.approx(job.estimate["cost_usd"]), "records": 25, "cold": True}  # type: ignore[index]
    assert svc.to_dict(job)["duration_s"] is None  # not finished yet
    run_to_end(svc, job.job_id)
    done = svc.get("alice", job.job_id)
    body = svc.to_dict(done)
    assert body["estimate"]["duration_s"] == 0.125 and body["duration_s"] == 1.5  # 3 chunks x 0.5 s
    samples = svc.job_samples("alice", svc.service.model("m"))
    assert [(s.estimate_s, s.measured_s, s.records, s.cold) for s in samples["lambda-job"]] == [(0.125, 1.5, 25, True)]
    assert svc.job_samples("bob", svc.service.model("m")) == {}  # only the caller's own jobs
    (recorded,) = svc.service.recorder.samples("m")["lambda-job"]  # the worker ran in this process
    assert recorded.measured_s == 1.5


def test_a_worker_that_shares_a_warm_runner_is_estimated_without_the_load(tmp_path: Path) -> None:
    svc, _ = make(tmp_path)
    svc.service = RouterService(svc.config, runner=FakeRunner(warm=True), worker_shares_runner=True)
    job, _ = submit(svc, rows(25))
    assert job.estimate is not None and job.estimate["duration_s"] == 0.025 and job.estimate["cold"] is False
    assert "worker warm" in job.reason
