"""Review of the job lifecycle's failure modes (JobsService on the real SQLite store, fakes for the
rest): jobs that could stay active forever (a worker that keeps dying, a model removed from the
config, a batch submission SageMaker keeps refusing, a transform job that completed without its
output), a sweeper starved by long batch jobs, a sweeper that kills the live worker it meant to
help, cancels racing the last write or a crashed submission, and inputs changed after submission."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from router.config import BatchTransformDefaults, ModelSpec, RouterConfig
from router.domain import Job, JobStatus, OutputKind, Route
from router.errors import BackendError, BackendUnavailable
from router.jobs import new_job_id
from router.jobs_service import JobsService
from router.sagemaker_names import transform_job_name
from router.service import RouterService
from tests.fakes import FakeBatch, FakeRunner
from tests.functional.test_jobs_service import (
    JOBS,
    big_batch_job,
    make,
    output_lines,
    rows,
    submit,
)

S = JobStatus


class Killed(BaseException):
    """The worker process dies (OOM kill, Lambda timeout): nothing after this line runs."""


class HookRunner(FakeRunner):
    """FakeRunner that calls `hook(n)` before its n-th predict call (1-based)."""

    def __init__(self, hook: Callable[[int], None]) -> None:
        super().__init__()
        self.hook = hook

    def predict(self, model: ModelSpec, instances: Sequence[Any], output: OutputKind) -> list[Any]:
        self.hook(len(self.calls) + 1)
        return super().predict(model, instances, output)


class RefusingBatch(FakeBatch):
    """FakeBatch whose CreateTransformJob fails with `error` (BackendError: validation, access
    denied, missing Model; BackendUnavailable: SageMaker 5xx)."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def submit(self, job: Job, model: ModelSpec, settings: BatchTransformDefaults, input_uri: str, output_uri: str) -> str:
        self.submits.append(transform_job_name(job.job_id))
        raise self.error


def with_runner(svc: JobsService, runner: FakeRunner) -> JobsService:
    return JobsService(svc.config, service=RouterService(svc.config, runner=runner), store=svc.store, objects=svc.objects,
                       clock=svc.clock, queue=svc.queue, batch=svc.batch, transform_name=svc.transform_name)


def with_batch(svc: JobsService, batch: FakeBatch) -> JobsService:
    return JobsService(svc.config, service=svc.service, store=svc.store, objects=svc.objects, clock=svc.clock,
                       queue=svc.queue, batch=batch, transform_name=svc.transform_name)


def without_model(svc: JobsService) -> JobsService:
    """The same service after the operator removed model `m` from the config."""
    data = svc.config.model_dump(mode="json")
    data["models"] = [{**data["models"][0], "name": "other"}]
    cfg = RouterConfig.model_validate(data)
    return JobsService(cfg, service=RouterService(cfg, runner=FakeRunner()), store=svc.store, objects=svc.objects,
                       clock=svc.clock, queue=svc.queue, batch=svc.batch, transform_name=svc.transform_name)


def status(svc: JobsService, job_id: str) -> JobStatus:
    job = svc.store.get(job_id)
    assert job is not None
    return job.status


def sweep_until_finished(svc: JobsService, clock: Any, job_id: str, rounds: int, on_redispatch: Callable[[], None] | None = None) -> int:
    """Sweeps (each after the job went stale) until the job finishes; returns the sweeps it took,
    or rounds + 1 when it never finished."""
    for i in range(1, rounds + 1):
        clock.advance(svc.config.jobs.stale_after_s + 1)
        svc.sweep()
        if status(svc, job_id).finished:
            return i
        if on_redispatch is not None:
            on_redispatch()
    return rounds + 1


# ---------------------------------------------------------------- jobs that never finish


def test_a_worker_that_keeps_dying_ends_failed_after_max_attempts(tmp_path: Path) -> None:
    """Every worker run is killed mid-chunk (no exception handler runs). The sweeper re-dispatches
    the stale running job; each re-dispatch must count as an attempt, or the job runs forever."""
    svc, p = make(tmp_path, chunk=5)

    def die(n: int) -> None:
        raise Killed()

    dying = with_runner(svc, HookRunner(die))
    job, _ = submit(svc, rows(20))

    def run_worker() -> None:
        with contextlib.suppress(Killed):
            dying.run_lambda_job(job.job_id, lambda: 1e9)

    run_worker()
    assert status(svc, job.job_id) is S.RUNNING
    sweeps = sweep_until_finished(svc, p["clock"], job.job_id, rounds=10, on_redispatch=run_worker)
    done = svc.store.get(job.job_id)
    assert done is not None and done.status is S.FAILED, f"still {done.status if done else None} after 10 sweeps"
    assert sweeps <= svc.config.jobs.max_attempts
    assert done.attempts == svc.config.jobs.max_attempts


def test_a_lambda_job_whose_model_was_removed_fails_instead_of_crashing_the_worker(tmp_path: Path) -> None:
    svc, _ = make(tmp_path)
    job, _ = submit(svc, rows(5))
    later = without_model(svc)
    assert later.run_lambda_job(job.job_id, lambda: 1e9) is False  # raised ModelNotFound before the fix
    failed = later.store.get(job.job_id)
    assert failed is not None and failed.status is S.FAILED
    assert failed.error is not None and failed.error["code"] == "model_not_found"


def test_a_queued_batch_job_whose_model_was_removed_is_failed_by_the_sweeper(tmp_path: Path) -> None:
    svc, p = make(tmp_path, batch=True)
    p["batch"].throttle_next = 1
    job = big_batch_job(svc)  # throttled: queued, waiting for the sweeper
    assert job.status is S.QUEUED
    later = without_model(svc)
    assert sweep_until_finished(later, p["clock"], job.job_id, rounds=5) <= 1
    failed = later.store.get(job.job_id)
    assert failed is not None and failed.status is S.FAILED and failed.error["code"] == "model_not_found"  # type: ignore[index]


def test_a_batch_submission_sagemaker_refuses_fails_the_job(tmp_path: Path) -> None:
    """map_client_error: BackendError means retrying the same call cannot succeed."""
    svc, p = make(tmp_path, batch=True)
    refusing = with_batch(svc, RefusingBatch(BackendError("SageMaker CreateTransformJob failed: Could not find model")))
    job = big_batch_job(refusing)
    if job.status is S.QUEUED:  # before the fix it stayed queued, and every sweep tried again
        assert sweep_until_finished(refusing, p["clock"], job.job_id, rounds=5) <= 1
    failed = refusing.store.get(job.job_id)
    assert failed is not None and failed.status is S.FAILED
    assert failed.error is not None and failed.error["code"] == "backend_error" and "Could not find model" in failed.error["message"]


def test_a_batch_submission_that_keeps_failing_transiently_ends_failed_after_max_attempts(tmp_path: Path) -> None:
    svc, p = make(tmp_path, batch=True)
    batch = RefusingBatch(BackendUnavailable("SageMaker CreateTransformJob failed: InternalFailure"))
    unavailable = with_batch(svc, batch)
    job = big_batch_job(unavailable)
    assert job.status is S.QUEUED  # a transient failure: the sweeper retries
    sweeps = sweep_until_finished(unavailable, p["clock"], job.job_id, rounds=10)
    failed = unavailable.store.get(job.job_id)
    assert failed is not None and failed.status is S.FAILED, f"still {failed.status if failed else None} after 10 sweeps"
    assert len(batch.submits) == unavailable.config.jobs.max_attempts and sweeps < 10
    assert failed.error is not None and failed.error["code"] == "backend_unavailable"


def test_a_throttled_batch_submission_is_not_counted_as_an_attempt(tmp_path: Path) -> None:
    """Account quotas clear by themselves: a throttled job waits, it is not failed."""
    svc, p = make(tmp_path, batch=True)
    p["batch"].throttle_next = 5
    job = big_batch_job(svc)
    for _ in range(5):
        p["clock"].advance(1000)
        svc.sweep()
    running = svc.store.get(job.job_id)
    assert running is not None and running.status is S.RUNNING and p["batch"].creates == 1


def test_a_running_batch_job_whose_transform_vanished_and_cannot_be_resubmitted_fails(tmp_path: Path) -> None:
    svc, p = make(tmp_path, batch=True)
    job = big_batch_job(svc)
    assert job.status is S.RUNNING
    p["batch"].jobs.clear()  # SageMaker has no such transform job any more
    later = without_model(svc)  # ... and the model is gone, so it cannot be submitted again
    assert sweep_until_finished(later, p["clock"], job.job_id, rounds=5) <= 1
    assert status(later, job.job_id) is S.FAILED


def test_a_completed_transform_without_its_output_fails_the_job(tmp_path: Path) -> None:
    """Completed, but the `.out` object is missing: assemble_output raises BackendError. Before
    the fix the event handler raised and the sweeper re-described the job forever (running)."""
    svc, p = make(tmp_path, batch=True)
    job = big_batch_job(svc)
    name = job.backend_name
    assert name is not None
    state = p["batch"].finish(name, "Completed")  # no transform_output(): the output is missing
    after = svc.on_batch_state(job.job_id, state)
    assert after is not None and after.status is S.FAILED
    assert after.error is not None and after.error["code"] == "backend_error"
    assert svc.sweep()["seen"] == 0  # nothing left for the sweeper


# ---------------------------------------------------------------- the sweeper


def test_long_running_batch_jobs_do_not_starve_the_sweeper(tmp_path: Path) -> None:
    """list_active returns the least recently updated jobs first. A batch job that is simply
    InProgress for hours is described and left untouched, so with `limit` of them the sweeper saw
    the same ones every run and never reached the job behind them."""
    svc, p = make(tmp_path, batch=True)
    for i in range(2):
        slot = svc.upload_slot("alice")
        svc.objects.put_bytes(slot["input_uri"], b"[1,2]\n" * 1_000_000)
        j, _ = svc.submit("alice", svc.service.model("m"), instances=None, input_uri=slot["input_uri"], input_format="jsonl",
                          output=OutputKind.PREDICT, idempotency_key=f"big-{i}")
        assert j.status is S.RUNNING
    p["clock"].advance(10)
    p["queue"].fail = True
    lost, _ = submit(svc, rows(3))  # its enqueue failed: only the sweeper can start it
    p["queue"].fail = False
    for _ in range(3):
        p["clock"].advance(1000)
        svc.sweep(limit=2)
        if p["queue"].enqueued:
            break
    assert p["queue"].enqueued == [lost.job_id]


def test_the_sweepers_touch_does_not_kill_the_live_worker(tmp_path: Path) -> None:
    """A chunk took longer than stale_after_s: the sweeper re-dispatches the job while its worker
    is still running. Under `router serve` the local queue drops that enqueue (the job is in
    flight), so if the touch makes the live worker give up, nobody runs the job until the next
    stale period. The live worker must carry on; one worker, one output."""
    svc, p = make(tmp_path, chunk=5)
    job, _ = submit(svc, rows(20))

    def slow_second_chunk(n: int) -> None:
        if n == 2:
            p["clock"].advance(1000)
            assert svc.sweep()["redispatched"] == 1

    live = with_runner(svc, HookRunner(slow_second_chunk))
    assert live.run_lambda_job(job.job_id, lambda: 1e9) is False
    done = svc.store.get(job.job_id)
    assert done is not None and done.status is S.SUCCEEDED, f"left {done.status if done else None}"
    assert output_lines(p, done) == [float(i) + 1.0 for i in range(20)]


def test_two_workers_on_one_job_write_one_output(tmp_path: Path) -> None:
    """On AWS the sweeper's re-dispatch starts a second worker while the first is alive: they
    must not both carry on (guards the fix above: only a worker whose checkpoint was not moved
    by someone else may retry its checkpoint write)."""
    svc, p = make(tmp_path, chunk=5)
    job, _ = submit(svc, rows(20))
    second: list[bool] = []

    def other_worker_meanwhile(n: int) -> None:
        if n == 2:
            p["clock"].advance(1000)
            svc.sweep()
            second.append(svc.run_lambda_job(job.job_id, lambda: 1e9))

    first = with_runner(svc, HookRunner(other_worker_meanwhile))
    assert first.run_lambda_job(job.job_id, lambda: 1e9) is False
    assert second == [False]
    done = svc.store.get(job.job_id)
    assert done is not None and done.status is S.SUCCEEDED and done.records_done == 20
    assert output_lines(p, done) == [float(i) + 1.0 for i in range(20)]


# ---------------------------------------------------------------- cancels


def test_a_cancel_just_before_the_final_transition_ends_cancelled(tmp_path: Path) -> None:
    """The cancel lands between the worker's last checkpoint and its `succeeded` write: the
    worker's transition fails; it must finish the cancel, not leave the job `cancelling` until
    the sweeper's next stale pass."""
    svc, _ = make(tmp_path, chunk=5)
    job, _ = submit(svc, rows(10))
    calls = iter(range(100))

    def remaining() -> float:
        if next(calls) == 1:  # after the last chunk's checkpoint
            assert svc.cancel("alice", job.job_id).status is S.CANCELLING
        return 1e9

    assert svc.run_lambda_job(job.job_id, remaining) is False
    assert status(svc, job.job_id) is S.CANCELLED


def test_cancelling_a_queued_batch_job_stops_a_transform_job_a_crashed_submission_started(tmp_path: Path) -> None:
    """CreateTransformJob ran, then the process died before the job was marked running (queued,
    no backend name). A cancel used to end the job at once (queued -> cancelled), and the transform
    job ran on, billed, with nobody left to stop it."""
    svc, p = make(tmp_path, batch=True)
    now = p["clock"].now()
    slot = svc.upload_slot("alice")
    p["objects"].put_bytes(slot["input_uri"], b"[1,2]\n" * 10)
    job_id = new_job_id(now)
    job, _ = svc.store.create(Job(job_id=job_id, owner="alice", model="m", status=S.QUEUED, route=Route.BATCH_TRANSFORM,
                                  reason="r", created_at=now, updated_at=now, input_uri=slot["input_uri"],
                                  output_uri=f"{JOBS}/{job_id}/output.jsonl", records_total=10))
    name = p["batch"].submit(job, svc.service.model("m"), BatchTransformDefaults(), job.input_uri, f"{JOBS}/{job_id}/transform/")
    cancelled = svc.cancel("alice", job_id)
    assert p["batch"].stops == [name]
    assert cancelled.status is S.CANCELLING
    done = svc.on_batch_state(job_id, p["batch"].finish(name, "Stopped"))
    assert done is not None and done.status is S.CANCELLED


def test_cancelling_a_queued_batch_job_that_never_reached_sagemaker_ends_it_at_once(tmp_path: Path) -> None:
    svc, p = make(tmp_path, batch=True)
    p["batch"].throttle_next = 1
    job = big_batch_job(svc)
    assert job.status is S.QUEUED
    assert svc.cancel("alice", job.job_id).status is S.CANCELLED
    assert p["batch"].creates == 0


# ---------------------------------------------------------------- inputs


def test_an_upload_overwritten_after_submission_does_not_change_the_job(tmp_path: Path) -> None:
    """The upload URL stays valid after submission: the client (or anyone holding the URL) can
    PUT new content. The job must run on what was submitted (and counted, and routed), never
    mix two inputs across a checkpoint."""
    svc, p = make(tmp_path, chunk=5)
    slot = svc.upload_slot("alice")
    p["objects"].put_bytes(slot["input_uri"], b"".join(json.dumps([i, 1]).encode() + b"\n" for i in range(10)))
    job, _ = svc.submit("alice", svc.service.model("m"), instances=None, input_uri=slot["input_uri"], input_format="jsonl",
                        output=OutputKind.PREDICT, idempotency_key=None)
    assert job.input_uri == slot["input_uri"]  # docs/api.md: the job shows the input the client named
    assert svc.run_lambda_job(job.job_id, iter([0.0]).__next__) is True  # one chunk, then the deadline
    p["objects"].put_bytes(slot["input_uri"], b"[100,100]\n" * 30)  # overwritten through the same URL
    while svc.run_lambda_job(job.job_id, lambda: 1e9):
        pass
    done = svc.store.get(job.job_id)
    assert done is not None and done.status is S.SUCCEEDED
    assert output_lines(p, done) == [float(i) + 1.0 for i in range(10)]
    assert done.records_done == done.records_total == 10


# ---------------------------------------------------------------- attempts are failures, not restarts


def test_restarts_during_a_progressing_job_are_not_counted_as_attempts(tmp_path: Path) -> None:
    """`router serve` restarted (or a continuation was lost) while the job was making progress:
    each re-dispatch resumes it. Only re-dispatches after which the job made no progress are
    failed attempts; otherwise a long job would fail after max_attempts restarts."""
    svc, p = make(tmp_path, chunk=5)
    job, _ = submit(svc, rows(30))
    for _ in range(4):  # one chunk per "process lifetime", then the process is gone
        assert svc.run_lambda_job(job.job_id, iter([0.0]).__next__) is True
        p["clock"].advance(svc.config.jobs.stale_after_s + 1)
        assert svc.sweep()["redispatched"] == 1
    assert run_to_end_ok(svc, job.job_id)
    done = svc.store.get(job.job_id)
    assert done is not None and done.status is S.SUCCEEDED
    assert output_lines(p, done) == [float(i) + 1.0 for i in range(30)]


def run_to_end_ok(svc: JobsService, job_id: str) -> bool:
    while svc.run_lambda_job(job_id, lambda: 1e9):
        pass
    return status(svc, job_id) is S.SUCCEEDED


def test_a_continuation_waiting_in_the_local_pool_is_not_failed_by_the_sweeper(tmp_path: Path) -> None:
    """Under `router serve` the worker pool is small: a job's continuation can wait behind other
    long jobs for more than stale_after_s. The queue knows it is in flight: the sweeper must not
    count that wait as a dead worker."""
    import threading

    from router.local.workers import LocalWorkerQueue

    svc, p = make(tmp_path, chunk=5)
    queue = LocalWorkerQueue(workers=1, timeout_s=900)
    busy = threading.Event()
    release = threading.Event()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event["job_id"] == "job_blocker":
            busy.set()
            release.wait(10)
        return {"continued": False}

    queue.handler = handler
    local = JobsService(svc.config, service=svc.service, store=svc.store, objects=svc.objects, clock=svc.clock,
                        queue=queue, batch=None, transform_name=svc.transform_name)
    try:
        job, _ = submit(svc, rows(20))  # (FakeQueue: not started)
        assert svc.run_lambda_job(job.job_id, iter([0.0]).__next__) is True  # a continuation is due...
        queue.enqueue("job_blocker")
        assert busy.wait(10)
        queue.enqueue(job.job_id)  # ... and waits behind the blocker
        for _ in range(4):
            p["clock"].advance(svc.config.jobs.stale_after_s + 1)
            local.sweep()
        assert status(svc, job.job_id) is S.RUNNING
        assert svc.store.get(job.job_id).attempts == 1  # type: ignore[union-attr]
    finally:
        release.set()
        queue.close()


def test_a_restart_during_the_last_allowed_attempt_resumes_the_job(tmp_path: Path) -> None:
    """The job used its retries (attempts == max_attempts) and is making progress when the
    process restarts: the sweeper resumes it, it does not fail it."""
    svc, p = make(tmp_path, chunk=5)
    job, _ = submit(svc, rows(20))
    assert svc.run_lambda_job(job.job_id, iter([0.0]).__next__) is True
    running = svc.store.get(job.job_id)
    assert running is not None
    svc.store.update(job.job_id, running.version, attempts=svc.config.jobs.max_attempts)  # as after failed runs
    p["clock"].advance(svc.config.jobs.stale_after_s + 1)
    assert svc.sweep()["redispatched"] == 1
    assert run_to_end_ok(svc, job.job_id)
