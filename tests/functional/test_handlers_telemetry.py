"""Powertools in the worker, events and sweeper functions: their log lines carry the job id as
correlation id, their EMF metrics carry the job's model and count how jobs end, errors are
counted; tracing wraps the entry points only when the template turns it on. The job service
behind them is a fake with the JobsService methods these handlers call."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from router.domain import JobStatus
from router.handlers import telemetry
from router.handlers.events import make_events_handler
from router.handlers.sweeper import make_sweeper
from router.handlers.worker import make_worker
from router.sagemaker_names import transform_job_name
from router.transform_events import EVENT_DETAIL_TYPE, EVENT_SOURCE

JOB = "job_01JAAAAAAAAAAAAAAAAAAAAAAA"
REPO = Path(__file__).resolve().parents[2]


class FakeJobs:
    """The JobsService surface the three handlers use; every job belongs to model `lr`."""

    def __init__(self, status: JobStatus = JobStatus.SUCCEEDED, again: bool = False, fail: bool = False) -> None:
        self.status, self.again, self.fail = status, again, fail
        self.enqueued: list[str] = []

    def continue_lambda_job(self, job_id: str) -> None:
        self.enqueued.append(job_id)

    def peek(self, job_id: str) -> Any:
        return SimpleNamespace(job_id=job_id, model="lr", status=self.status)

    def run_lambda_job(self, job_id: str, remaining_s: Any) -> bool:
        logging.getLogger("router.jobs").warning("working on %s", job_id)
        if self.fail:
            raise RuntimeError("storage broke")
        return self.again

    def on_batch_state(self, job_id: str, state: Any) -> Any:
        logging.getLogger("router.jobs").info("batch state of %s: %s", job_id, state.status)
        return SimpleNamespace(job_id=job_id, model="lr", status=self.status)

    def sweep(self, limit: int = 100) -> dict[str, int]:
        logging.getLogger("router.jobs").warning("sweeping")
        return {"seen": 3, "redispatched": 1, "described": 2, "failed": 0}


def context(rid: str = "inv-1") -> Any:
    return SimpleNamespace(aws_request_id=rid, get_remaining_time_in_millis=lambda: 600_000)


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    handler = telemetry.logger().registered_handler
    buf = io.StringIO()
    old = handler.setStream(buf)
    try:
        yield buf
    finally:
        handler.setStream(old)


@pytest.fixture
def emf(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    capsys.readouterr()

    def read() -> list[dict[str, Any]]:
        return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]

    return read


def lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_worker_logs_carry_the_job_id_and_metrics_count_how_it_ended(logs: io.StringIO, emf: Any) -> None:
    worker = make_worker(SimpleNamespace(jobs=FakeJobs(JobStatus.FAILED)))
    assert worker({"job_id": JOB}, context()) == {"job_id": JOB, "continued": False}
    (line,) = [rec for rec in lines(logs) if rec["message"] == f"working on {JOB}"]
    assert line["correlation_id"] == JOB and line["job_id"] == JOB
    (m,) = emf()
    assert m["model"] == "lr" and m["JobsFailed"] == [1.0]
    logging.getLogger("router.jobs").warning("after the job")
    assert "correlation_id" not in lines(logs)[-1]


def test_worker_continuation_and_errors(emf: Any) -> None:
    jobs = FakeJobs(JobStatus.RUNNING, again=True)
    assert make_worker(SimpleNamespace(jobs=jobs))({"job_id": JOB}, context())["continued"] is True
    assert jobs.enqueued == [JOB]
    (m,) = emf()
    assert m["JobsContinued"] == [1.0] and "JobsFailed" not in m and m["model"] == "lr"
    with pytest.raises(RuntimeError):
        make_worker(SimpleNamespace(jobs=FakeJobs(fail=True)))({"job_id": JOB}, context())
    (m,) = emf()
    assert m["Errors"] == [1.0]


def test_events_handler_counts_the_end_of_a_transform_job(logs: io.StringIO, emf: Any) -> None:
    event = {"source": EVENT_SOURCE, "detail-type": EVENT_DETAIL_TYPE,
             "detail": {"TransformJobName": transform_job_name(JOB), "TransformJobStatus": "Completed"}}
    out = make_events_handler(SimpleNamespace(jobs=FakeJobs(JobStatus.SUCCEEDED)))(event, context())
    assert out == {"job_id": JOB, "status": "succeeded"}
    (m,) = emf()
    assert m["model"] == "lr" and m["JobsSucceeded"] == [1.0]
    assert [rec["correlation_id"] for rec in lines(logs) if rec["message"].startswith("batch state")] == [JOB]


def test_sweeper_counts_what_it_did(logs: io.StringIO, emf: Any) -> None:
    assert make_sweeper(SimpleNamespace(jobs=FakeJobs()))({}, context("sweep-7"))["seen"] == 3
    (m,) = emf()
    assert (m["SweepSeen"], m["SweepRedispatched"], m["SweepDescribed"], m["SweepFailed"]) == ([3.0], [1.0], [2.0], [0.0])
    assert [rec["correlation_id"] for rec in lines(logs) if rec["message"] == "sweeping"] == ["sweep-7"]


def test_no_metrics_when_off(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    make_worker(SimpleNamespace(jobs=FakeJobs()))({"job_id": JOB}, context())
    make_sweeper(SimpleNamespace(jobs=FakeJobs()))({}, context())
    assert '"_aws"' not in capsys.readouterr().out


TRACED = """
import json, sys
from types import SimpleNamespace
from router.handlers import telemetry
def handler(event, context):
    return {"ok": True}
wrapped = telemetry.traced(handler)
out = wrapped({}, SimpleNamespace(aws_request_id="r", function_name="router-api", function_version="1",
                                  invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:router-api",
                                  memory_limit_in_mb=128, get_remaining_time_in_millis=lambda: 1000))
print(json.dumps({"wrapped": wrapped is not handler, "out": out, "xray": "aws_xray_sdk" in sys.modules}))
"""


@pytest.mark.parametrize("disabled", ["true", "false"])
def test_tracing_only_when_enabled(disabled: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "AWS_LAMBDA_FUNCTION_NAME": "router-api", "POWERTOOLS_TRACE_DISABLED": disabled,
           "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0",
           "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:9", "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR"}
    out = subprocess.run([sys.executable, "-c", TRACED], env=env, check=True, capture_output=True, text=True, timeout=120)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    on = disabled == "false"
    assert seen == {"wrapped": on, "out": {"ok": True}, "xray": on}
