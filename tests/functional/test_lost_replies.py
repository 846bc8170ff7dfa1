"""A job table reply lost after the write went through (a timeout, a dropped connection) must not
leave the job queued until the sweeper's next stale pass: the client's retry with the same
Idempotency-Key dispatches the stored job that is still queued, and botocore's own retry of the
very same create counts as that create (202, dispatched). Dispatching twice stays harmless: one
transform job (deterministic name), one output (the worker's conditional claim and checkpoints)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ReadTimeoutError
from moto import mock_aws

from router.adapters import dynamodb_schema as sc
from router.adapters.dynamodb_jobs import DynamoDBJobStore
from router.adapters.sqlite_jobs import SqliteJobStore
from router.config import RouterConfig
from router.domain import Job, JobStatus, OutputKind, Route
from router.errors import BackendUnavailable
from router.jobs_service import REPLAY_DISPATCH_AFTER_S, JobsService
from router.ports import JobStore
from router.sagemaker_names import transform_job_name
from router.service import RouterService
from tests.fakes import FakeBatch, FakeClock, FakeQueue, FakeRunner, MemoryObjectStore


class LosesFirstCreateReply:
    """A JobStore whose first create() is written but whose reply never arrives (the caller sees
    the table as unavailable, as after a timeout)."""

    def __init__(self, inner: JobStore) -> None:
        self.inner = inner
        self.lost = 0

    def create(self, job: Job) -> tuple[Job, bool]:
        result = self.inner.create(job)
        if self.lost == 0:
            self.lost += 1
            raise BackendUnavailable("job table: transact_write_items failed (ReadTimeoutError)")
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class LosesReplies:
    """A boto3 DynamoDB client whose next `lose` calls of `op` are carried out and then fail as a
    read timeout (`retry=False`), or are carried out twice, as botocore's retry after a lost reply
    does (`retry=True`)."""

    def __init__(self, client: Any, op: str, *, retry: bool, lose: int = 1) -> None:
        self._client, self._op, self._retry, self.lose = client, op, retry, lose

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._client, name)
        if name != self._op:
            return real

        def call(**kwargs: Any) -> Any:
            if self.lose <= 0:
                return real(**kwargs)
            self.lose -= 1
            first = real(**kwargs)
            if not self._retry:
                raise ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com/")
            del first  # the reply that never arrived; the retry's answer is what the caller sees
            return real(**kwargs)

        return call


def config(batch: bool = False) -> RouterConfig:
    return RouterConfig.model_validate({
        "storage": {"jobs": "s3://bucket/jobs", "artifacts": "s3://bucket/models", "job_table": "sqlite:///x.db"},
        "jobs": {"chunk_records": 10},
        "sagemaker": {"batch_transform": {"instance_type": "ml.m5.xlarge"}} if batch else {},
        "models": [{"name": "m", "framework": "sklearn", "artifact": "s3://b/m.joblib", "sha256": "cd" * 32, "size_bytes": 1000,
                    "profile": {"load_s": 0.1, "per_record_ms": 1.0}, **({"inline": False} if batch else {})}],
    })


def service(store: JobStore, clock: FakeClock, *, batch: bool = False) -> tuple[JobsService, FakeQueue, FakeBatch | None]:
    cfg = config(batch)
    objects = MemoryObjectStore()
    queue, fb = FakeQueue(), (FakeBatch(objects) if batch else None)
    svc = JobsService(cfg, service=RouterService(cfg, runner=FakeRunner()), store=store, objects=objects, clock=clock,
                      queue=queue, batch=fb, transform_name=transform_job_name)
    return svc, queue, fb


def submit(svc: JobsService, n: int = 25, key: str | None = "retry-me") -> tuple[Job, bool]:
    return svc.submit("alice", svc.service.model("m"), instances=[[float(i), 1.0] for i in range(n)], input_uri=None,
                      input_format="jsonl", output=OutputKind.PREDICT, idempotency_key=key)


def test_a_retry_after_a_lost_reply_dispatches_the_queued_job(tmp_path: Path) -> None:
    clock = FakeClock()
    store = LosesFirstCreateReply(SqliteJobStore(tmp_path / "jobs.db", clock=clock))
    svc, queue, _ = service(store, clock)  # type: ignore[arg-type]
    with pytest.raises(BackendUnavailable):
        submit(svc)
    (queued,) = store.list_by_owner("alice").jobs
    assert queued.status is JobStatus.QUEUED and queue.enqueued == []  # written, never dispatched
    job, created = submit(svc)  # the client retrying at once: the first request may still be dispatching
    assert job.job_id == queued.job_id and not created and queue.enqueued == []
    clock.advance(REPLAY_DISPATCH_AFTER_S)
    job, created = submit(svc)  # the client's retry a little later, same key and body
    assert job.job_id == queued.job_id and not created
    assert queue.enqueued == [job.job_id]
    while svc.run_lambda_job(job.job_id, lambda: 1e9):
        pass
    done = store.get(job.job_id)
    assert done is not None and done.status is JobStatus.SUCCEEDED and done.records_done == 25
    output = [json.loads(x) for x in svc.objects.get_bytes(str(done.output_uri)).splitlines()]
    assert output == [float(i) + 1.0 for i in range(25)]
    # A replay of a job that runs or ran dispatches nothing.
    clock.advance(REPLAY_DISPATCH_AFTER_S)
    assert submit(svc)[0].job_id == job.job_id and queue.enqueued == [job.job_id]


def test_a_burst_of_replays_dispatches_once_per_window(tmp_path: Path) -> None:
    clock = FakeClock()
    svc, queue, _ = service(SqliteJobStore(tmp_path / "jobs.db", clock=clock), clock)
    job, _ = submit(svc)
    for _ in range(5):
        submit(svc)
    assert queue.enqueued == [job.job_id]
    clock.advance(REPLAY_DISPATCH_AFTER_S)
    for _ in range(5):
        submit(svc)
    assert queue.enqueued == [job.job_id, job.job_id]


def test_a_second_dispatch_of_a_queued_job_still_runs_it_once(tmp_path: Path) -> None:
    clock = FakeClock()
    store = SqliteJobStore(tmp_path / "jobs.db", clock=clock)
    svc, queue, _ = service(store, clock)
    job, _ = submit(svc)
    clock.advance(REPLAY_DISPATCH_AFTER_S)
    assert submit(svc)[0].job_id == job.job_id
    assert queue.enqueued == [job.job_id, job.job_id]  # at-least-once: both invocations arrive
    for job_id in queue.enqueued:
        while svc.run_lambda_job(job_id, lambda: 1e9):
            pass
    done = store.get(job.job_id)
    assert done is not None and done.status is JobStatus.SUCCEEDED and done.attempts == 1
    output = svc.objects.get_bytes(str(done.output_uri)).splitlines()
    assert len(output) == 25  # each record once


def test_a_batch_job_replayed_after_a_lost_reply_starts_one_transform_job(tmp_path: Path) -> None:
    clock = FakeClock()
    store = LosesFirstCreateReply(SqliteJobStore(tmp_path / "jobs.db", clock=clock))
    svc, _, batch = service(store, clock, batch=True)  # type: ignore[arg-type]
    assert batch is not None
    with pytest.raises(BackendUnavailable):
        submit(svc, 2000)
    clock.advance(REPLAY_DISPATCH_AFTER_S)
    job, _ = submit(svc, 2000)
    assert job.route is Route.BATCH_TRANSFORM and job.status is JobStatus.RUNNING
    assert batch.creates == 1 and job.backend_name == transform_job_name(job.job_id)
    clock.advance(REPLAY_DISPATCH_AFTER_S)
    assert submit(svc, 2000)[0].status is JobStatus.RUNNING and batch.creates == 1


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        sc.create_table(client, "jobs")
        yield client


def test_dynamodb_a_lost_create_reply_then_the_clients_retry(dynamodb: Any) -> None:
    clock = FakeClock()
    lossy = LosesReplies(dynamodb, "transact_write_items", retry=False)
    svc, queue, _ = service(DynamoDBJobStore(lossy, "jobs", clock=clock), clock)  # type: ignore[arg-type]
    with pytest.raises(BackendUnavailable):
        submit(svc)
    assert queue.enqueued == []
    clock.advance(REPLAY_DISPATCH_AFTER_S)
    job, created = submit(svc)
    assert not created and job.status is JobStatus.QUEUED and queue.enqueued == [job.job_id]


@pytest.mark.parametrize("op,key", [("transact_write_items", "retry-me"), ("put_item", None)])
def test_dynamodb_botocores_own_retry_of_the_create_is_that_create(dynamodb: Any, op: str, key: str | None) -> None:
    clock = FakeClock()
    lossy = LosesReplies(dynamodb, op, retry=True)
    svc, queue, _ = service(DynamoDBJobStore(lossy, "jobs", clock=clock), clock)  # type: ignore[arg-type]
    job, created = submit(svc, key=key)
    assert lossy.lose == 0  # the create was written twice, as a retry after a lost reply does
    assert created and queue.enqueued == [job.job_id]  # 202 and dispatched, not 200 and left queued
