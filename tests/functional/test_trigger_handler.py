"""The trigger Lambda on the AWS runtime (moto S3 + DynamoDB): an object landing under a trigger's
source starts exactly one job for the trigger's owner, however often (and in whichever shape) its
event is delivered, and the job's result lands under the trigger's output prefix."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_plus

import boto3
import joblib
import numpy as np
import pytest
from moto import mock_aws
from sklearn.tree import DecisionTreeClassifier

from router.adapters.dynamodb_schema import create_table
from router.bootstrap import Runtime, build_aws
from router.config import parse_config
from router.errors import TooManyJobs
from router.handlers.trigger import make_trigger_handler
from router.local.server import LocalContext
from tests.unit.test_triggers import eventbridge, s3_notification

OWNER = "arn:aws:iam::123456789012:role/ingest"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in ("router-art", "router-jobs", "inbox-bucket"):
            s3.create_bucket(Bucket=bucket)
        x = np.random.default_rng(0).normal(size=(50, 2))
        model = DecisionTreeClassifier(max_depth=2, random_state=0).fit(x, (x[:, 0] > 0).astype(int))
        buf = io.BytesIO()
        joblib.dump(model, buf)
        s3.put_object(Bucket="router-art", Key="models/tree.joblib", Body=buf.getvalue())
        create_table(boto3.client("dynamodb", region_name="us-east-1"), "router-jobs")
        monkeypatch.setenv("ROUTER_WORKER_FUNCTION", "router-worker")
        config = parse_config(
            f"""
storage: {{artifacts: s3://router-art/models, jobs: s3://router-jobs/jobs, job_table: dynamodb://router-jobs}}
models:
  - {{name: tree, framework: sklearn, artifact: s3://router-art/models/tree.joblib, sha256: {hashlib.sha256(buf.getvalue()).hexdigest()}, features: [a, b]}}
triggers:
  - {{source: s3://inbox-bucket/in/, model: tree, owner: "{OWNER}", output_prefix: s3://inbox-bucket/out/}}
""",
            check_artifacts=False,
        )
        runtime = build_aws(config)
        runtime.jobs.queue = None  # no worker Lambda in moto: the test runs the worker itself
        yield {"s3": s3, "runtime": runtime, "model": model}


def jobs_of(runtime: Runtime) -> list[Any]:
    return list(runtime.jobs.store.list_by_owner(OWNER, limit=100).jobs)


def test_a_redelivered_event_starts_no_second_job_and_the_result_lands_under_the_output_prefix(aws: dict[str, Any]) -> None:
    s3, runtime = aws["s3"], aws["runtime"]
    handler = make_trigger_handler(runtime)
    key = "in/day 1/rows (a).jsonl"
    put = s3.put_object(Bucket="inbox-bucket", Key=key, Body=b"[1.0, 0.0]\n[-1.0, 0.5]\n[2.0, 1.0]\n")
    event = s3_notification(quote_plus(key, safe="/"))
    event["Records"][0]["s3"]["object"]["eTag"] = put["ETag"].strip('"')

    first = handler(event, LocalContext("t-1", 60))
    again = handler(event, LocalContext("t-2", 60))  # S3 delivers at least once
    bridged = eventbridge(key)
    bridged["detail"]["object"]["etag"] = put["ETag"].strip('"')
    third = handler(bridged, LocalContext("t-3", 60))  # the same object through EventBridge

    assert first["objects"][0]["created"] is True
    job_id = first["objects"][0]["job_id"]
    assert again["objects"] == [{"uri": f"s3://inbox-bucket/{key}", "job_id": job_id, "created": False, "status": "queued"}]
    assert third["objects"][0]["job_id"] == job_id
    [job] = jobs_of(runtime)
    assert (job.job_id, job.owner, job.model, job.records_total) == (job_id, OWNER, "tree", 3)
    assert job.input_uri == f"s3://inbox-bucket/{key}"
    assert job.output_uri == "s3://inbox-bucket/out/day 1/rows (a).jsonl.out.jsonl"

    assert runtime.jobs.run_lambda_job(job_id, lambda: 900.0) is False
    done = runtime.jobs.store.get(job_id)
    assert done is not None and done.status.value == "succeeded"
    out = s3.get_object(Bucket="inbox-bucket", Key="out/day 1/rows (a).jsonl.out.jsonl")["Body"].read().decode()
    expected = aws["model"].predict(np.array([[1.0, 0.0], [-1.0, 0.5], [2.0, 1.0]])).tolist()
    assert [json.loads(line) for line in out.splitlines()] == expected
    # The result under out/ is outside the trigger's source: it starts nothing.
    assert handler(s3_notification("out/day+1/rows+%28a%29.jsonl.out.jsonl"), LocalContext("t-4", 60))["objects"][0]["ignored"]
    assert len(jobs_of(runtime)) == 1


def test_a_new_version_of_the_object_is_a_new_job(aws: dict[str, Any]) -> None:
    s3, runtime = aws["s3"], aws["runtime"]
    handler = make_trigger_handler(runtime)
    ids = set()
    for body in (b"[1.0, 0.0]\n", b"[1.0, 0.0]\n[0.0, 1.0]\n"):
        etag = s3.put_object(Bucket="inbox-bucket", Key="in/k.jsonl", Body=body)["ETag"].strip('"')
        event = s3_notification("in/k.jsonl")
        event["Records"][0]["s3"]["object"]["eTag"] = etag
        ids.add(handler(event, LocalContext("t", 60))["objects"][0]["job_id"])
    assert len(ids) == 2 and len(jobs_of(runtime)) == 2


def test_test_events_other_locations_and_bad_objects_are_acknowledged(aws: dict[str, Any]) -> None:
    s3, runtime = aws["s3"], aws["runtime"]
    handler = make_trigger_handler(runtime)
    assert handler({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "inbox-bucket"}, LocalContext("t", 60)) == {
        "objects": [], "ignored": ["s3:TestEvent"]
    }
    assert "no trigger" in handler(s3_notification("elsewhere/x.jsonl"), LocalContext("t", 60))["objects"][0]["ignored"]
    s3.put_object(Bucket="inbox-bucket", Key="in/empty.jsonl", Body=b"")
    result = handler(s3_notification("in/empty.jsonl"), LocalContext("t", 60))
    assert result["objects"][0]["ignored"].startswith("invalid_input")  # a retry cannot make it valid
    missing = handler(s3_notification("in/gone.jsonl"), LocalContext("t", 60))
    assert "not found" in missing["objects"][0]["ignored"]
    assert jobs_of(runtime) == []


def test_a_busy_owner_fails_the_event_for_a_retry_and_the_retry_starts_the_job(aws: dict[str, Any]) -> None:
    s3, runtime = aws["s3"], aws["runtime"]
    handler = make_trigger_handler(runtime)
    limit = runtime.config.jobs.max_active_per_owner
    for i in range(limit):  # the owner is at the limit of active jobs
        s3.put_object(Bucket="inbox-bucket", Key=f"in/{i}.jsonl", Body=b"[1.0, 0.0]\n")
        assert handler(s3_notification(f"in/{i}.jsonl"), LocalContext("t", 60))["objects"][0]["created"]
    s3.put_object(Bucket="inbox-bucket", Key="in/late.jsonl", Body=b"[1.0, 0.0]\n")
    with pytest.raises(TooManyJobs):  # Lambda delivers the event again (then the trigger DLQ)
        handler(s3_notification("in/late.jsonl"), LocalContext("t", 60))
    first = jobs_of(runtime)[-1]
    assert runtime.jobs.run_lambda_job(first.job_id, lambda: 900.0) is False  # one job ends
    retried = handler(s3_notification("in/late.jsonl"), LocalContext("t", 60))
    assert retried["objects"][0]["created"] is True and len(jobs_of(runtime)) == limit + 1
