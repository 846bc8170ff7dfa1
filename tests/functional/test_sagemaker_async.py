"""SageMaker asynchronous inference adapter: InvokeEndpointAsync against moto (botocore validates
every parameter), error mapping with botocore's Stubber, instance counts from DescribeEndpoint,
the deterministic InferenceId, and the SNS notification SageMaker publishes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from router.adapters.sagemaker_async import SageMakerAsyncClient
from router.async_inference import (
    inference_id,
    invoke_request,
    job_id_from_inference_id,
    notification_message,
    parse_notifications,
    sns_event,
)
from router.errors import BackendError, BackendUnavailable, InvalidRequest, Throttled
from router.ports import AsyncOutcome

SESSION = boto3.session.Session(region_name="us-east-1")
JOB_ID = "job_01JD2W3X4Y5Z6A7B8C9D0E1F2G"
ENDPOINT = "router-iris-async"
IN_URI = "s3://jobs-bucket/jobs/job_01JD2W3X4Y5Z6A7B8C9D0E1F2G/async-input.json"
TOPIC = "arn:aws:sns:us-east-1:123456789012:router-async-success"

# The notification SageMaker publishes for a request that succeeded, as its documentation shows it.
COMPLETED = {
    "awsRegion": "us-east-1",
    "eventTime": "2026-12-01T12:00:05.608Z",
    "receivedTime": "2026-12-01T12:00:00.455Z",
    "invocationStatus": "Completed",
    "requestParameters": {"contentType": "application/json", "endpointName": ENDPOINT, "inputLocation": IN_URI},
    "responseParameters": {"contentType": "application/json", "outputLocation": "s3://out-bucket/async-output/abc.out"},
    "inferenceId": "router-" + JOB_ID,
    "eventVersion": "1.0",
    "eventSource": "aws:sagemaker",
    "eventName": "InferenceResult",
}
FAILED = {
    **{k: v for k, v in COMPLETED.items() if k != "responseParameters"},
    "invocationStatus": "Failed",
    "failureReason": "ClientError: Received server error (500) from model. See the SageMaker Endpoint logs.",
}


@pytest.fixture
def aws() -> Iterator[tuple[Any, Any, Any]]:
    with mock_aws():
        yield SESSION.client("sagemaker-runtime"), SESSION.client("sagemaker"), SESSION.client("s3")


def test_invoke_sends_a_valid_request_and_returns_the_output_locations(aws: tuple[Any, Any, Any]) -> None:
    runtime, sm, s3 = aws
    client = SageMakerAsyncClient(runtime, sm)
    got = client.invoke(ENDPOINT, IN_URI, inference_id(JOB_ID), invocation_timeout_s=3600)
    assert got.inference_id == "router-" + JOB_ID
    assert got.output_uri.startswith("s3://") and got.failure_uri is not None and got.failure_uri.startswith("s3://")
    # moto wrote its (canned) result where it said it would.
    bucket, _, key = got.output_uri[len("s3://"):].partition("/")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_the_request_carries_the_deterministic_id_and_json_types() -> None:
    params = invoke_request(ENDPOINT, IN_URI, inference_id(JOB_ID), 900)
    runtime = SESSION.client("sagemaker-runtime")
    with Stubber(runtime) as stub:  # botocore checks every parameter against the service model
        stub.add_response("invoke_endpoint_async", {"InferenceId": params["InferenceId"], "OutputLocation": "s3://o/x.out"}, params)
        got = SageMakerAsyncClient(runtime, None).invoke(ENDPOINT, IN_URI, inference_id(JOB_ID), invocation_timeout_s=900)
    assert params["ContentType"] == params["Accept"] == "application/json"
    assert got.output_uri == "s3://o/x.out" and got.failure_uri is None


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [("ThrottlingException", 400, Throttled), ("ServiceUnavailable", 503, BackendUnavailable), ("ValidationError", 400, BackendError)],
)
def test_invoke_errors_map_to_router_errors(code: str, status: int, error: type[Exception]) -> None:
    runtime = SESSION.client("sagemaker-runtime")
    with Stubber(runtime) as stub:
        stub.add_client_error("invoke_endpoint_async", service_error_code=code, http_status_code=status, service_message="no")
        with pytest.raises(error):
            SageMakerAsyncClient(runtime, None).invoke(ENDPOINT, IN_URI, inference_id(JOB_ID), invocation_timeout_s=60)


def test_a_local_input_is_refused_before_any_call() -> None:
    with pytest.raises(InvalidRequest):
        SageMakerAsyncClient(None, None).invoke(ENDPOINT, "file:///tmp/x.json", inference_id(JOB_ID), invocation_timeout_s=60)


def _describe(status: str, count: int) -> dict[str, Any]:
    return {
        "EndpointName": ENDPOINT,
        "EndpointArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{ENDPOINT}",
        "EndpointConfigName": "c",
        "EndpointStatus": status,
        "CreationTime": "2026-12-01T00:00:00Z",
        "LastModifiedTime": "2026-12-01T00:00:00Z",
        "ProductionVariants": [{"VariantName": "AllTraffic", "CurrentInstanceCount": count}],
    }


@pytest.mark.parametrize(("status", "count", "expected"), [("InService", 1, True), ("InService", 0, False), ("Creating", 0, False)])
def test_in_service_means_an_instance_is_up(status: str, count: int, expected: bool) -> None:
    sm = SESSION.client("sagemaker")
    with Stubber(sm) as stub:
        stub.add_response("describe_endpoint", _describe(status, count), {"EndpointName": ENDPOINT})
        client = SageMakerAsyncClient(None, sm)
        assert client.in_service(ENDPOINT) is expected
        assert client.in_service(ENDPOINT) is expected  # cached: no second DescribeEndpoint


def test_in_service_of_a_missing_endpoint_is_false_and_a_throttled_look_unknown() -> None:
    sm = SESSION.client("sagemaker")
    with Stubber(sm) as stub:
        stub.add_client_error("describe_endpoint", "ValidationException", "Could not find endpoint \"x\".")
        stub.add_client_error("describe_endpoint", "ThrottlingException", "slow down")
        assert SageMakerAsyncClient(None, sm, status_ttl_s=0).in_service("x") is False
        assert SageMakerAsyncClient(None, sm, status_ttl_s=0).in_service("y") is None


def test_inference_ids_name_their_job_and_nothing_else() -> None:
    assert job_id_from_inference_id(inference_id(JOB_ID)) == JOB_ID
    assert len(inference_id(JOB_ID)) <= 64
    assert job_id_from_inference_id("0b8c7e4e-6a7e-4e0c-9d7c-7c2f5f0d9a11") is None
    assert job_id_from_inference_id("router-job_short") is None
    with pytest.raises(InvalidRequest):
        inference_id("not-a-job")


def test_the_documented_notifications_parse_bare_and_inside_sns() -> None:
    for message in (COMPLETED, FAILED):
        event = sns_event(message, topic_arn=TOPIC, message_id="m-1", timestamp="2026-12-01T12:00:06.000Z")
        assert parse_notifications(event) == parse_notifications(message)
    [ok] = parse_notifications(COMPLETED)
    assert ok == AsyncOutcome("router-" + JOB_ID, "Completed", output_uri="s3://out-bucket/async-output/abc.out")
    [bad] = parse_notifications(FAILED)
    assert bad.status == "Failed" and bad.failure_reason is not None and "500" in bad.failure_reason and bad.output_uri is None


def test_the_emulators_message_is_the_documented_shape() -> None:
    outcome = AsyncOutcome("router-" + JOB_ID, "Completed", output_uri="s3://out-bucket/async-output/abc.out")
    message = notification_message(
        outcome, endpoint_name=ENDPOINT, input_uri=IN_URI, region="us-east-1",
        event_time=COMPLETED["eventTime"], received_time=COMPLETED["receivedTime"],  # type: ignore[arg-type]
    )
    assert message == COMPLETED


@pytest.mark.parametrize(
    "message",
    [
        {**COMPLETED, "eventSource": "aws:s3"},
        {**COMPLETED, "invocationStatus": "InProgress"},
        {**COMPLETED, "inferenceId": ""},
        {**COMPLETED, "responseParameters": {}},
        {**FAILED, "failureReason": 3},
        [],
    ],
)
def test_malformed_notifications_are_refused(message: Any) -> None:
    with pytest.raises(InvalidRequest):
        parse_notifications(message)
    with pytest.raises(InvalidRequest):
        parse_notifications({"Records": [{"Sns": {"Message": json.dumps(message)}}]})
