"""Async-inference jobs in JobsService, on the real SQLite job store with in-memory storage and a fake
async endpoint: one request per job with the job's InferenceId, completion by notification or by
the sweeper's poll of the output locations, repeated notifications, failures, a lost request, and
cancel (the request cannot be stopped: the job ends cancelled and the result is discarded)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from router.adapters.sqlite_jobs import SqliteJobStore
from router.async_inference import inference_id
from router.config import RouterConfig
from router.domain import Job, JobStatus, OutputKind, Route
from router.errors import BackendUnavailable, Throttled
from router.jobs_service import JobsService
from router.ports import AsyncInvocation, AsyncOutcome
from router.service import RouterService
from tests.fakes import FakeClock, FakeRunner, MemoryObjectStore

SHA = "cd" * 32
JOBS = "s3://bucket/jobs"
OUT = "s3://bucket/async-output"


class FakeAsync:
    """An async endpoint that queues what it is sent and answers when the test says so."""

    def __init__(self, objects: MemoryObjectStore) -> None:
        self.objects = objects
        self.sent: list[dict[str, Any]] = []
        self.errors: list[Exception] = []  # raised by the next invokes, in order

    def invoke(self, endpoint_name: str, input_uri: str, inference_id: str, *, invocation_timeout_s: int) -> AsyncInvocation:
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append({"endpoint": endpoint_name, "input": input_uri, "id": inference_id, "timeout": invocation_timeout_s})
        n = len(self.sent)
        return AsyncInvocation(inference_id, f"{OUT}/{n}.out", f"{OUT}/{n}-error.out")

    def in_service(self, endpoint_name: str) -> bool | None:
        return True

    def answer(self, index: int, doc: Any) -> AsyncOutcome:
        sent = self.sent[index]
        uri = f"{OUT}/{index + 1}.out"
        self.objects.put_bytes(uri, json.dumps(doc).encode())
        return AsyncOutcome(sent["id"], "Completed", output_uri=uri)

    def fail(self, index: int, message: str) -> AsyncOutcome:
        uri = f"{OUT}/{index + 1}-error.out"
        self.objects.put_bytes(uri, json.dumps({"error": {"code": "model_error", "message": message}}).encode())
        return AsyncOutcome(self.sent[index]["id"], "Failed", failure_uri=uri, failure_reason=f"ClientError: {message}")


def make(tmp_path: Path) -> tuple[JobsService, FakeAsync, FakeClock, MemoryObjectStore]:
    cfg = RouterConfig.model_validate({
        "storage": {"jobs": JOBS, "artifacts": "s3://bucket/models", "job_table": "sqlite:///x.db"},
        "jobs": {"max_attempts": 2},
        "models": [{"name": "m", "framework": "pytorch", "artifact": "s3://b/m.tar.gz", "sha256": SHA,
                    "profile": {"load_s": 1, "per_record_ms": 1.0},
                    "async_inference": {"min_instances": 1, "invocation_timeout_s": 900}}],
    })
    clock, objects = FakeClock(), MemoryObjectStore()
    fake = FakeAsync(objects)
    svc = JobsService(cfg, service=RouterService(cfg, runner=FakeRunner()), store=SqliteJobStore(tmp_path / "jobs.db", clock=clock),
                      objects=objects, clock=clock, async_client=fake)
    return svc, fake, clock, objects


def submit(svc: JobsService, rows: list[Any]) -> Job:
    job, created = svc.submit("alice", svc.service.model("m"), instances=rows, input_uri=None, input_format="jsonl",
                              output=OutputKind.PROBA, idempotency_key=None)
    assert created
    return job


ROWS = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]


def lines(objects: MemoryObjectStore, job: Job) -> list[Any]:
    assert job.output_uri is not None
    return [json.loads(x) for x in objects.get_bytes(job.output_uri).splitlines()]


def test_a_job_is_one_request_with_the_jobs_inference_id(tmp_path: Path) -> None:
    svc, fake, _, objects = make(tmp_path)
    job = submit(svc, ROWS)
    assert job.route is Route.ASYNC_INFERENCE and job.status is JobStatus.RUNNING
    [sent] = fake.sent
    assert sent == {"endpoint": "router-m-async", "input": f"{JOBS}/{job.job_id}/async-input.json", "id": inference_id(job.job_id), "timeout": 900}
    assert json.loads(objects.get_bytes(sent["input"])) == {"instances": ROWS, "output": "proba"}
    assert job.backend_name == inference_id(job.job_id)


def test_the_notification_ends_it_and_a_repeat_changes_nothing(tmp_path: Path) -> None:
    svc, fake, clock, objects = make(tmp_path)
    job = submit(svc, ROWS)
    outcome = fake.answer(0, {"predictions": [[0.1, 0.9], [0.5, 0.5], [1.0, 0.0]]})
    done = svc.on_async_outcome(job.job_id, outcome)
    assert done is not None and done.status is JobStatus.SUCCEEDED and done.records_done == 3
    assert lines(objects, done) == [[0.1, 0.9], [0.5, 0.5], [1.0, 0.0]]
    clock.advance(60)
    again = svc.on_async_outcome(job.job_id, outcome)  # SNS delivers at least once
    late_failure = svc.on_async_outcome(job.job_id, AsyncOutcome(outcome.inference_id, "Failed", failure_reason="late"))
    assert again == late_failure == svc.store.get(job.job_id)
    assert again is not None and (again.version, again.updated_at, again.status) == (done.version, done.updated_at, JobStatus.SUCCEEDED)


def test_a_failed_request_fails_the_job_with_the_reason(tmp_path: Path) -> None:
    svc, fake, _, _ = make(tmp_path)
    job = submit(svc, ROWS)
    failed = svc.on_async_outcome(job.job_id, fake.fail(0, "X has 2 features, but the model expects 20"))
    assert failed is not None and failed.status is JobStatus.FAILED
    assert failed.error is not None and failed.error["code"] == "backend_error" and "expects 20" in failed.error["message"]


def test_an_answer_of_the_wrong_length_fails_the_job(tmp_path: Path) -> None:
    svc, fake, _, _ = make(tmp_path)
    job = submit(svc, ROWS)
    failed = svc.on_async_outcome(job.job_id, fake.answer(0, {"predictions": [1, 2]}))
    assert failed is not None and failed.status is JobStatus.FAILED and "2 predictions for 3 instances" in (failed.error or {})["message"]


def test_the_sweeper_finds_the_answer_or_the_error_of_a_lost_notification(tmp_path: Path) -> None:
    svc, fake, clock, objects = make(tmp_path)
    ok, bad, pending = submit(svc, ROWS), submit(svc, ROWS), submit(svc, ROWS)
    fake.answer(0, {"predictions": [0, 1, 2]})
    fake.fail(1, "boom")
    clock.advance(3600)
    counts = svc.sweep(stale_after_s=60)
    assert counts["described"] == 3
    assert svc.store.get(ok.job_id).status is JobStatus.SUCCEEDED  # type: ignore[union-attr]
    failed = svc.store.get(bad.job_id)
    assert failed is not None and failed.status is JobStatus.FAILED and "boom" in (failed.error or {})["message"]
    assert svc.store.get(pending.job_id).status is JobStatus.RUNNING  # type: ignore[union-attr]  # still working
    assert len(fake.sent) == 3  # polling sends nothing


def test_a_request_that_did_not_reach_sagemaker_is_sent_by_the_sweeper_then_bounded(tmp_path: Path) -> None:
    svc, fake, clock, _ = make(tmp_path)
    fake.errors = [Throttled("slow down")]
    job = submit(svc, ROWS)
    assert job.status is JobStatus.QUEUED and fake.sent == []  # a quota: waits, no attempt counted
    clock.advance(3600)
    svc.sweep(stale_after_s=60)
    sent = svc.store.get(job.job_id)
    assert sent is not None and sent.status is JobStatus.RUNNING and [s["id"] for s in fake.sent] == [inference_id(job.job_id)]

    fake.errors = [BackendUnavailable("down"), BackendUnavailable("down"), BackendUnavailable("down")]
    other = submit(svc, ROWS)
    for _ in range(3):
        clock.advance(3600)
        svc.sweep(stale_after_s=60)
    ended = svc.store.get(other.job_id)
    assert ended is not None and ended.status is JobStatus.FAILED and "after 2 attempts" in (ended.error or {})["message"]


def test_cancel_ends_it_at_once_and_the_late_result_is_discarded(tmp_path: Path) -> None:
    svc, fake, _, objects = make(tmp_path)
    job = submit(svc, ROWS)
    cancelled = svc.cancel("alice", job.job_id)
    assert cancelled.status is JobStatus.CANCELLED
    after = svc.on_async_outcome(job.job_id, fake.answer(0, {"predictions": [0, 1, 2]}))
    assert after is not None and after.status is JobStatus.CANCELLED
    assert job.output_uri is not None and not objects.exists(job.output_uri)
    assert svc.cancel("alice", job.job_id).status is JobStatus.CANCELLED


@pytest.mark.parametrize("status", ["Completed", "Failed"])
def test_an_outcome_for_another_route_or_no_job_is_ignored(tmp_path: Path, status: str) -> None:
    svc, _, _, _ = make(tmp_path)
    assert svc.on_async_outcome("job_01JD2W3X4Y5Z6A7B8C9D0E1F2G", AsyncOutcome("router-job_01JD2W3X4Y5Z6A7B8C9D0E1F2G", status)) is None
