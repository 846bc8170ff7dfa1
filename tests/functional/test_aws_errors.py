"""The one AWS-error -> RouterError map (router/adapters/aws_errors.py), over real botocore errors.

Each error is what botocore itself raises: an HTTP reply in the service's own wire format
(JSON 1.0/1.1, REST-JSON, REST-XML, a bodiless HEAD) parsed by the service's real parser (a
`before-send` handler answers instead of the network), moto's own error replies, or a refused
connection. Then each adapter is shown to raise exactly what the table says.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError, NoCredentialsError
from moto import mock_aws

from router.adapters.aws_errors import ERROR_KINDS, ROUTER_ERRORS, Kind, System, classify, to_router_error
from router.adapters.dynamodb_jobs import DynamoDBJobStore
from router.adapters.dynamodb_schema import table_definition
from router.adapters.lambda_worker import LambdaWorkerQueue
from router.adapters.s3_store import S3ObjectStore
from router.adapters.sagemaker_async import SageMakerAsyncClient
from router.adapters.sagemaker_batch import SageMakerBatchClient
from router.adapters.sagemaker_endpoint import SageMakerEndpointClient
from router.domain import Job, JobStatus, OutputKind, Route
from router.errors import (
    BackendError,
    BackendUnavailable,
    NotFound,
    RouterError,
    StorageAccessDenied,
    Throttled,
)

# Created after `import moto`, so moto's handler is part of it.
SESSION = boto3.session.Session(region_name="us-east-1")
ONE_ATTEMPT = Config(retries={"mode": "standard", "total_max_attempts": 1})


class _Raw:
    """The raw stream AWSResponse reads its body from."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def wire_client(service: str, status: int, headers: dict[str, str], body: bytes) -> Any:
    """A real boto3 client whose every call gets this HTTP reply, parsed by botocore."""
    client = SESSION.client(service, config=ONE_ATTEMPT)

    def answer(request: Any, **_: Any) -> AWSResponse:
        return AWSResponse(request.url, status, {"x-amzn-RequestId": "req-1", **headers}, _Raw(body))

    client.meta.events.register("before-send", answer)
    return client


def json_error(service: str, status: int, code: str, message: str, **extra: Any) -> Any:
    """The JSON protocols' error (SageMaker 1.1, DynamoDB 1.0): `__type` names the code."""
    body = json.dumps({"__type": code, "message": message, **extra}).encode()
    return wire_client(service, status, {"Content-Type": "application/x-amz-json-1.1"}, body)


def rest_json_error(service: str, status: int, code: str, body: dict[str, Any]) -> Any:
    """REST-JSON's error (sagemaker-runtime, Lambda): the code in the x-amzn-ErrorType header."""
    headers = {"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/", "Content-Type": "application/json"}
    return wire_client(service, status, headers, json.dumps(body).encode())


def s3_error(status: int, code: str | None, message: str = "") -> Any:
    """REST-XML's <Error> document, or a bare status (S3 answers HEAD errors without a body)."""
    body = b"" if code is None else (
        f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message>"
        "<RequestId>req-1</RequestId></Error>"
    ).encode()
    return wire_client("s3", status, {"Content-Type": "application/xml"}, body)


def raised(call: Callable[[], object]) -> BaseException:
    try:
        call()
    except Exception as e:  # botocore's own error, whatever its class
        return e
    raise AssertionError("the call did not fail")


# ---------------------------------------------------------------- real errors, one per row


def sm_describe(client: Any) -> Callable[[], object]:
    return lambda: client.describe_transform_job(TransformJobName="router-job-x")


def ddb_get(client: Any) -> Callable[[], object]:
    return lambda: client.get_item(TableName="jobs", Key={"pk": {"S": "JOB#x"}})


def s3_get(client: Any) -> Callable[[], object]:
    return lambda: client.get_object(Bucket="bucket", Key="k")


def s3_head(client: Any) -> Callable[[], object]:
    return lambda: client.head_object(Bucket="bucket", Key="k")


def runtime_invoke(client: Any) -> Callable[[], object]:
    return lambda: client.invoke_endpoint(EndpointName="ep", Body=b"{}", ContentType="application/json")


def lambda_invoke(client: Any) -> Callable[[], object]:
    return lambda: client.invoke(FunctionName="worker", InvocationType="Event", Payload=b"{}")


def moto_error(make: Callable[[], Callable[[], object]]) -> Callable[[], BaseException]:
    def build() -> BaseException:
        with mock_aws():
            return raised(make())

    return build


def _moto_sm_missing() -> Callable[[], object]:
    return sm_describe(SESSION.client("sagemaker"))


def _moto_ddb_missing_table() -> Callable[[], object]:
    return ddb_get(SESSION.client("dynamodb"))


def _moto_ddb_condition() -> Callable[[], object]:
    ddb = SESSION.client("dynamodb")
    ddb.create_table(**table_definition("jobs"))
    ddb.put_item(TableName="jobs", Item={"pk": {"S": "JOB#x"}})
    return lambda: ddb.put_item(TableName="jobs", Item={"pk": {"S": "JOB#x"}}, ConditionExpression="attribute_not_exists(pk)")


def _moto_s3(head: bool) -> Callable[[], Callable[[], object]]:
    def make() -> Callable[[], object]:
        s3 = SESSION.client("s3")
        s3.create_bucket(Bucket="bucket")
        return s3_head(s3) if head else s3_get(s3)

    return make


def _moto_lambda_missing() -> Callable[[], object]:
    return lambda_invoke(SESSION.client("lambda"))


def _refused(service: str, call: Callable[[Any], Callable[[], object]]) -> Callable[[], BaseException]:
    # Port 9 on loopback: nothing listens, the connection is refused at once.
    return lambda: raised(call(SESSION.client(service, endpoint_url="http://127.0.0.1:9", config=ONE_ATTEMPT)))


@dataclass(frozen=True)
class Row:
    name: str
    error: Callable[[], BaseException]
    code: str  # what botocore parsed ("" for an error without a reply)
    kind: Kind


def wire(call: Callable[[Any], Callable[[], object]], client: Callable[[], Any]) -> Callable[[], BaseException]:
    return lambda: raised(call(client()))


ROWS = [
    # SageMaker control plane (JSON 1.1)
    Row("sagemaker throttled", wire(sm_describe, lambda: json_error("sagemaker", 400, "ThrottlingException", "Rate exceeded")),
        "ThrottlingException", Kind.THROTTLED),
    Row("sagemaker quota", wire(sm_describe, lambda: json_error(
        "sagemaker", 400, "ResourceLimitExceeded", "The account-level service limit 'ml.m5.xlarge for transform job usage' is 2")),
        "ResourceLimitExceeded", Kind.THROTTLED),
    Row("sagemaker internal", wire(sm_describe, lambda: json_error("sagemaker", 500, "InternalFailure", "We encountered an internal error")),
        "InternalFailure", Kind.UNAVAILABLE),
    Row("sagemaker unknown 5xx", wire(sm_describe, lambda: json_error("sagemaker", 503, "SomethingNew", "later")),
        "SomethingNew", Kind.UNAVAILABLE),
    Row("sagemaker validation 5xx", wire(sm_describe, lambda: json_error("sagemaker", 500, "ValidationException", "odd")),
        "ValidationException", Kind.UNAVAILABLE),
    Row("sagemaker denied", wire(sm_describe, lambda: json_error(
        "sagemaker", 400, "AccessDeniedException", "User is not authorized to perform: sagemaker:DescribeTransformJob")),
        "AccessDeniedException", Kind.DENIED),
    Row("sagemaker invalid", wire(sm_describe, lambda: json_error("sagemaker", 400, "ValidationException", "1 validation error detected")),
        "ValidationException", Kind.INVALID),
    Row("sagemaker exists", wire(sm_describe, lambda: json_error(
        "sagemaker", 400, "ValidationException", "Job name must be unique within an AWS account and region, and a job with this name already exists")),
        "ValidationException", Kind.ALREADY_EXISTS),
    Row("sagemaker in use", wire(sm_describe, lambda: json_error("sagemaker", 400, "ResourceInUse", "name in use")),
        "ResourceInUse", Kind.ALREADY_EXISTS),
    Row("sagemaker missing (moto)", moto_error(_moto_sm_missing), "ValidationException", Kind.NOT_FOUND),
    Row("sagemaker not found", wire(sm_describe, lambda: json_error("sagemaker", 400, "ResourceNotFound", "Could not find it")),
        "ResourceNotFound", Kind.NOT_FOUND),
    Row("sagemaker refused connection", _refused("sagemaker", sm_describe), "", Kind.UNAVAILABLE),
    # sagemaker-runtime (REST-JSON)
    Row("runtime model error", wire(runtime_invoke, lambda: rest_json_error("sagemaker-runtime", 424, "ModelError", {
        "ErrorCode": "CLIENT_ERROR_FROM_MODEL", "OriginalStatusCode": 400, "OriginalMessage": "bad input",
        "Message": "Received client error (400) from primary with message \"bad input\"."})), "ModelError", Kind.MODEL_ERROR),
    Row("runtime throttled", wire(runtime_invoke, lambda: rest_json_error("sagemaker-runtime", 400, "ThrottlingException", {"message": "Rate exceeded"})),
        "ThrottlingException", Kind.THROTTLED),
    Row("runtime model not ready", wire(runtime_invoke, lambda: rest_json_error(
        "sagemaker-runtime", 429, "ModelNotReadyException", {"Message": "Model is not ready"})), "ModelNotReadyException", Kind.UNAVAILABLE),
    Row("runtime unavailable", wire(runtime_invoke, lambda: rest_json_error("sagemaker-runtime", 503, "ServiceUnavailable", {"message": "later"})),
        "ServiceUnavailable", Kind.UNAVAILABLE),
    Row("runtime no endpoint", wire(runtime_invoke, lambda: rest_json_error(
        "sagemaker-runtime", 400, "ValidationError", {"message": "Endpoint ep of account 123456789012 not found."})),
        "ValidationError", Kind.NOT_FOUND),
    Row("runtime not in service", wire(runtime_invoke, lambda: rest_json_error(
        "sagemaker-runtime", 400, "ValidationError", {"message": "Endpoint ep is not in service (status Creating)"})),
        "ValidationError", Kind.NOT_IN_SERVICE),
    # DynamoDB (JSON 1.0)
    Row("dynamodb throughput", wire(ddb_get, lambda: json_error(
        "dynamodb", 400, "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException", "The level of configured provisioned throughput for the table was exceeded")),
        "ProvisionedThroughputExceededException", Kind.THROTTLED),
    Row("dynamodb throttled", wire(ddb_get, lambda: json_error("dynamodb", 400, "com.amazonaws.dynamodb.v20120810#ThrottlingException", "Rate of requests exceeds the allowed throughput")),
        "ThrottlingException", Kind.THROTTLED),
    Row("dynamodb internal", wire(ddb_get, lambda: json_error("dynamodb", 500, "com.amazonaws.dynamodb.v20120810#InternalServerError", "Internal server error")),
        "InternalServerError", Kind.UNAVAILABLE),
    Row("dynamodb missing table (moto)", moto_error(_moto_ddb_missing_table), "ResourceNotFoundException", Kind.NOT_FOUND),
    Row("dynamodb condition (moto)", moto_error(_moto_ddb_condition), "ConditionalCheckFailedException", Kind.CONDITION_FAILED),
    Row("dynamodb denied", wire(ddb_get, lambda: json_error("dynamodb", 400, "com.amazon.coral.service#AccessDeniedException", "not authorized")),
        "AccessDeniedException", Kind.DENIED),
    # S3 (REST-XML, and HEAD without a body)
    Row("s3 slow down", wire(s3_get, lambda: s3_error(503, "SlowDown", "Please reduce your request rate.")), "SlowDown", Kind.THROTTLED),
    Row("s3 head slow down", wire(s3_head, lambda: s3_error(503, None)), "503", Kind.THROTTLED),
    Row("s3 internal", wire(s3_get, lambda: s3_error(500, "InternalError", "We encountered an internal error.")), "InternalError", Kind.UNAVAILABLE),
    Row("s3 denied", wire(s3_get, lambda: s3_error(403, "AccessDenied", "Access Denied")), "AccessDenied", Kind.DENIED),
    Row("s3 head denied", wire(s3_head, lambda: s3_error(403, None)), "403", Kind.DENIED),
    Row("s3 no such key (moto)", moto_error(_moto_s3(head=False)), "NoSuchKey", Kind.NOT_FOUND),
    Row("s3 head missing (moto)", moto_error(_moto_s3(head=True)), "404", Kind.NOT_FOUND),
    Row("s3 no credentials", NoCredentialsError, "", Kind.DENIED),
    # Lambda (REST-JSON)
    Row("lambda throttled", wire(lambda_invoke, lambda: rest_json_error("lambda", 429, "TooManyRequestsException", {
        "Type": "User", "message": "Rate Exceeded.", "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"})),
        "TooManyRequestsException", Kind.THROTTLED),
    Row("lambda service", wire(lambda_invoke, lambda: rest_json_error("lambda", 500, "ServiceException", {"Type": "Service", "message": "oops"})),
        "ServiceException", Kind.UNAVAILABLE),
    Row("lambda missing (moto)", moto_error(_moto_lambda_missing), "ResourceNotFoundException", Kind.NOT_FOUND),
    Row("lambda refused connection", _refused("lambda", lambda_invoke), "", Kind.UNAVAILABLE),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_real_errors_are_classified_by_the_one_table(row: Row) -> None:
    err = row.error()
    if row.code:
        assert isinstance(err, ClientError) and err.response["Error"]["Code"] == row.code
    assert classify(err) is row.kind


# What each system's callers see, per kind: (HTTP status, code, Retry-After). Spelled out so that a
# change to the map is a change to this test.
T, U, E = (429, "throttled", 1), (503, "backend_unavailable", 5), (502, "backend_error", None)
EXPECTED: dict[System, dict[Kind, tuple[int, str, int | None]]] = {
    System.SAGEMAKER_BATCH: {Kind.THROTTLED: T, Kind.UNAVAILABLE: U, Kind.DENIED: E, Kind.INVALID: E, Kind.NOT_FOUND: E, Kind.OTHER: E},
    System.SAGEMAKER_ASYNC: {Kind.THROTTLED: T, Kind.UNAVAILABLE: U, Kind.DENIED: E, Kind.INVALID: E, Kind.NOT_FOUND: E, Kind.OTHER: E},
    System.SAGEMAKER_ENDPOINT: {Kind.THROTTLED: U, Kind.UNAVAILABLE: U, Kind.NOT_FOUND: U, Kind.NOT_IN_SERVICE: U,
                                Kind.DENIED: E, Kind.INVALID: E, Kind.MODEL_ERROR: E, Kind.OTHER: E},
    System.DYNAMODB: {Kind.THROTTLED: T, Kind.UNAVAILABLE: U, Kind.DENIED: U, Kind.INVALID: U, Kind.NOT_FOUND: U, Kind.OTHER: U},
    System.S3: {Kind.THROTTLED: T, Kind.UNAVAILABLE: U, Kind.DENIED: U, Kind.NOT_FOUND: (404, "not_found", None), Kind.OTHER: U},
    System.LAMBDA: {Kind.THROTTLED: T, Kind.UNAVAILABLE: U, Kind.DENIED: U, Kind.NOT_FOUND: U, Kind.OTHER: U},
}
CASES = [(s, k, v) for s, row in EXPECTED.items() for k, v in row.items()]


@pytest.mark.parametrize(("system", "kind", "expected"), CASES, ids=[f"{s.value}-{k.value}" for s, k, _ in CASES])
def test_each_system_turns_each_kind_into_its_documented_error(system: System, kind: Kind, expected: tuple[int, str, int | None]) -> None:
    err = ROUTER_ERRORS[system][kind]("m")
    assert (err.status, err.code, err.retry_after_s) == expected


def test_every_system_has_a_row_for_every_kind_and_every_code_a_kind() -> None:
    for system in System:
        assert set(ROUTER_ERRORS[system]) == set(Kind), system
    assert set(ERROR_KINDS.values()) <= set(Kind)
    # S3 refusing the router is the operator's to fix: a 503 that the jobs service can tell apart.
    assert ROUTER_ERRORS[System.S3][Kind.DENIED] is StorageAccessDenied


@pytest.mark.parametrize("row", [r for r in ROWS if r.code], ids=[r.name for r in ROWS if r.code])
def test_to_router_error_follows_the_table(row: Row) -> None:
    err = row.error()
    for system in System:
        mapped = to_router_error(err, system, "message " * 300, details={"aws_error": row.code})
        assert type(mapped) is ROUTER_ERRORS[system][row.kind]
        assert len(mapped.message) == 1000 and mapped.details == {"aws_error": row.code}


# ---------------------------------------------------------------- every adapter uses the map


def _job() -> Job:
    now = datetime(2026, 11, 22, 1, 2, 3, tzinfo=UTC)
    return Job(
        job_id="job_01JD2W3X4Y5Z6A7B8C9D0E1F2G", owner="alice", model="m", status=JobStatus.QUEUED,
        route=Route.BATCH_TRANSFORM, reason="r", created_at=now, updated_at=now, input_uri="s3://b/in.jsonl",
        output_uri="s3://b/out.jsonl", output_kind=OutputKind.PREDICT, idempotency_key="k",
    )


ADAPTER_CASES: list[tuple[str, Callable[[], object], type[RouterError]]] = [
    ("batch describe throttled", lambda: SageMakerBatchClient(
        json_error("sagemaker", 400, "ThrottlingException", "Rate exceeded")).describe("router-job-x"), Throttled),
    ("batch stop denied", lambda: SageMakerBatchClient(
        json_error("sagemaker", 400, "AccessDeniedException", "not authorized")).stop("router-job-x"), BackendError),
    ("batch describe refused", lambda: SageMakerBatchClient(
        SESSION.client("sagemaker", endpoint_url="http://127.0.0.1:9", config=ONE_ATTEMPT)).describe("router-job-x"), BackendUnavailable),
    ("async invoke throttled", lambda: SageMakerAsyncClient(
        rest_json_error("sagemaker-runtime", 400, "ThrottlingException", {"message": "Rate exceeded"}), None).invoke(
        "ep", "s3://bucket/in.json", "job_x", invocation_timeout_s=60), Throttled),
    ("async invoke refused", lambda: SageMakerAsyncClient(
        SESSION.client("sagemaker-runtime", endpoint_url="http://127.0.0.1:9", config=ONE_ATTEMPT), None).invoke(
        "ep", "s3://bucket/in.json", "job_x", invocation_timeout_s=60), BackendUnavailable),
    ("endpoint invoke throttled", lambda: SageMakerEndpointClient(
        rest_json_error("sagemaker-runtime", 400, "ThrottlingException", {"message": "Rate exceeded"}), None).invoke("ep", b"{}"),
        BackendUnavailable),
    ("endpoint status denied", lambda: SageMakerEndpointClient(
        None, json_error("sagemaker", 400, "AccessDeniedException", "not authorized")).in_service("ep"), BackendError),
    ("endpoint status throttled", lambda: SageMakerEndpointClient(
        None, json_error("sagemaker", 400, "ThrottlingException", "Rate exceeded")).in_service("ep"), BackendUnavailable),
    ("dynamodb throttled", lambda: DynamoDBJobStore(json_error(
        "dynamodb", 400, "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException", "exceeded"), "jobs").get("job_x"),
        Throttled),
    ("dynamodb transaction throttled", lambda: DynamoDBJobStore(json_error(
        "dynamodb", 400, "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "Transaction cancelled, please refer cancellation reasons for specific reasons [ThrottlingError, None]",
        CancellationReasons=[{"Code": "ThrottlingError", "Message": "Throughput exceeds the current capacity"}, {"Code": "None"}],
    ), "jobs").create(_job()), Throttled),
    ("dynamodb denied", lambda: DynamoDBJobStore(json_error(
        "dynamodb", 400, "com.amazon.coral.service#AccessDeniedException", "not authorized"), "jobs").get("job_x"), BackendUnavailable),
    ("s3 head slow down", lambda: S3ObjectStore(s3_error(503, None)).exists("s3://bucket/k"), Throttled),
    ("s3 denied", lambda: S3ObjectStore(s3_error(403, "AccessDenied", "Access Denied")).get_bytes("s3://bucket/k"), StorageAccessDenied),
    ("s3 missing", lambda: S3ObjectStore(s3_error(404, "NoSuchKey", "The specified key does not exist.")).get_bytes("s3://bucket/k"), NotFound),
    ("lambda throttled", lambda: LambdaWorkerQueue(rest_json_error("lambda", 429, "TooManyRequestsException", {
        "Type": "User", "message": "Rate Exceeded."}), "worker").enqueue("job_x"), Throttled),
    ("lambda missing", lambda: LambdaWorkerQueue(rest_json_error("lambda", 404, "ResourceNotFoundException", {
        "Type": "User", "message": "Function not found"}), "worker").enqueue("job_x"), BackendUnavailable),
]


@pytest.mark.parametrize(("name", "call", "expected"), ADAPTER_CASES, ids=[c[0] for c in ADAPTER_CASES])
def test_each_adapter_raises_what_the_map_says(name: str, call: Callable[[], object], expected: type[RouterError]) -> None:
    err = raised(call)
    assert type(err) is expected, f"{name}: {type(err).__name__}: {err}"
    assert isinstance(err, RouterError) and not isinstance(err, ClientError)
