"""The AWS runtime wired by bootstrap, against moto: the Lambda cold start reads its config from S3,
serves an inline model whose artifact is on S3, keeps jobs in DynamoDB (the table made from
dynamodb_schema), and refuses to start without auth or without its worker function."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import joblib
import numpy as np
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from sklearn.tree import DecisionTreeClassifier

from router.adapters.dynamodb_schema import create_table
from router.adapters.lambda_worker import LambdaWorkerQueue
from router.bootstrap import build_aws, load_config_uri
from router.config import parse_config
from router.errors import BackendUnavailable, ConfigError, Throttled
from router.handlers.api import make_handler
from router.local.server import LocalContext

ARN = "arn:aws:iam::123456789012:user/alice"


def config_text(sha: str, auth: str = "") -> str:
    return f"""
storage: {{artifacts: s3://router-art/models, jobs: s3://router-jobs/jobs, job_table: dynamodb://router-jobs}}
{auth}
models:
  - name: tree
    framework: sklearn
    artifact: s3://router-art/models/tree.joblib
    sha256: {sha}
    features: [a, b]
"""


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in ("router-art", "router-jobs"):
            s3.create_bucket(Bucket=bucket)
        x = np.random.default_rng(0).normal(size=(50, 2))
        model = DecisionTreeClassifier(max_depth=2, random_state=0).fit(x, (x[:, 0] > 0).astype(int))
        buf = io.BytesIO()
        joblib.dump(model, buf)
        data = buf.getvalue()
        s3.put_object(Bucket="router-art", Key="models/tree.joblib", Body=data)
        sha = hashlib.sha256(data).hexdigest()
        s3.put_object(Bucket="router-art", Key="operator.yaml", Body=config_text(sha).encode())
        create_table(boto3.client("dynamodb", region_name="us-east-1"), "router-jobs")
        monkeypatch.setenv("ROUTER_WORKER_FUNCTION", "router-worker")  # environment, as the template sets it
        yield {"sha": sha, "model": model}


def event(method: str, path: str, body: Any = None) -> dict[str, Any]:
    return {
        "resource": "/v1/{proxy+}", "path": path, "httpMethod": method,
        "headers": {"Content-Type": "application/json"}, "multiValueHeaders": {"Content-Type": ["application/json"]},
        "queryStringParameters": None, "multiValueQueryStringParameters": None, "pathParameters": None,
        "stageVariables": None, "isBase64Encoded": False, "body": None if body is None else json.dumps(body),
        "requestContext": {"requestId": "r-1", "stage": "prod", "identity": {"userArn": ARN}},
    }


@pytest.mark.parametrize("lazy_jobs", [False, True])
def test_cold_start_from_s3_serves_an_inline_model_from_s3(aws: dict[str, Any], lazy_jobs: bool) -> None:
    config = load_config_uri("s3://router-art/operator.yaml")
    runtime = build_aws(config, lazy_jobs=lazy_jobs)  # lazy: the API function's wiring
    handler = make_handler(runtime)
    resp = handler(event("POST", "/v1/models/tree/predict", {"instances": [[1.0, 0.0], {"a": -1.0, "b": 0.0}]}), LocalContext("r-1", 29))
    assert resp["statusCode"] == 200, resp["body"]
    body = json.loads(resp["body"])
    assert body["predictions"] == aws["model"].predict(np.array([[1.0, 0.0], [-1.0, 0.0]])).tolist()
    # A job lands in DynamoDB, owned by the IAM caller.
    runtime.jobs.queue = None  # no worker Lambda in moto: the job waits for the sweeper
    resp = handler(event("POST", "/v1/models/tree/jobs", {"instances": [[1.0, 0.0]]}), LocalContext("r-2", 29))
    assert resp["statusCode"] == 202, resp["body"]
    job_id = json.loads(resp["body"])["job_id"]
    item = boto3.client("dynamodb", region_name="us-east-1").scan(TableName="router-jobs")["Items"]
    assert any(job_id in json.dumps(i) and ARN in json.dumps(i) for i in item)


def test_aws_refuses_auth_off_and_a_missing_worker(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as e:
        build_aws(parse_config(config_text(aws["sha"], "auth: {enabled: false}"), check_artifacts=False))
    assert "auth.enabled" in str(e.value)
    monkeypatch.delenv("ROUTER_WORKER_FUNCTION")
    for lazy_jobs in (False, True):  # the API function's lazy job wiring still refuses at cold start
        with pytest.raises(ConfigError) as e:
            build_aws(parse_config(config_text(aws["sha"]), check_artifacts=False), lazy_jobs=lazy_jobs)
        assert "ROUTER_WORKER_FUNCTION" in str(e.value)


def test_worker_queue_invokes_the_worker_asynchronously() -> None:
    client = boto3.client("lambda", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_response(
            "invoke", {"StatusCode": 202},
            {"FunctionName": "router-worker", "InvocationType": "Event", "Payload": b'{"job_id": "job_1"}'},
        )
        LambdaWorkerQueue(client, "router-worker").enqueue("job_1")
        stub.add_client_error("invoke", "TooManyRequestsException", http_status_code=429)
        with pytest.raises(Throttled):
            LambdaWorkerQueue(client, "router-worker").enqueue("job_2")
        stub.add_client_error("invoke", "ResourceNotFoundException", http_status_code=404)
        with pytest.raises(BackendUnavailable):
            LambdaWorkerQueue(client, "router-worker").enqueue("job_3")
