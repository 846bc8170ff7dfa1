"""SageMaker real-time endpoint adapter: InvokeEndpoint against moto with a seeded result, the
InService cache with a fake clock, and the mapping of every runtime failure (Stubber errors, a
real read timeout against a silent local socket, connection failures) to a RouterError."""

from __future__ import annotations

import io
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ConnectTimeoutError
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws

from router.adapters.sagemaker_endpoint import (
    CONNECT_TIMEOUT_S,
    SageMakerEndpointClient,
    endpoint_read_timeout,
    make_runtime_client,
)
from router.errors import (
    MODEL_MESSAGE_MAX,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ModelRejectedInput,
)

# One session for the module: it caches the (large) SageMaker service models, so each client
# is cheap. Created after `import moto`, so moto's handler is part of it.
SESSION = boto3.session.Session(region_name="us-east-1")
ROLE = "arn:aws:iam::123456789012:role/RouterSageMaker"


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def create_endpoint(sm: Any, name: str) -> None:
    sm.create_model(
        ModelName=f"{name}-model",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1", "ModelDataUrl": "s3://b/model.tar.gz"},
    )
    sm.create_endpoint_config(
        EndpointConfigName=f"{name}-config",
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": f"{name}-model", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
        ],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-config")


@pytest.fixture
def aws() -> Iterator[tuple[Any, Any]]:
    with mock_aws():
        yield SESSION.client("sagemaker-runtime"), SESSION.client("sagemaker")


def stubbed_runtime() -> tuple[Any, Stubber]:
    client = SESSION.client("sagemaker-runtime")
    return client, Stubber(client)


def body(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


# ---------------------------------------------------------------- invoke


def test_invoke_returns_the_seeded_moto_result(aws: tuple[Any, Any]) -> None:
    runtime, sm = aws
    # moto 5: results for sagemaker-runtime InvokeEndpoint are queued through its own API.
    seeded = requests.post(
        "http://motoapi.amazonaws.com/moto-api/static/sagemaker/endpoint-results",
        json={"results": [{"Body": '{"predictions": [0, 2]}', "ContentType": "application/json"}]},
        timeout=5,
    )
    assert seeded.status_code == 201
    client = SageMakerEndpointClient(runtime, sm)
    assert client.invoke("iris-prod", b'{"instances": [[1, 2, 3, 4]]}') == b'{"predictions": [0, 2]}'


def test_invoke_sends_json_accept_and_the_callers_content_type() -> None:
    runtime, stub = stubbed_runtime()
    stub.add_response(
        "invoke_endpoint",
        {"Body": body(b"[1]"), "ContentType": "application/json"},
        {"EndpointName": "iris-prod", "Body": b"1,2", "ContentType": "text/csv", "Accept": "application/json"},
    )
    with stub:
        assert SageMakerEndpointClient(runtime, None).invoke("iris-prod", b"1,2", "text/csv") == b"[1]"
        stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("code", "message", "status", "expected"),
    [
        ("ModelError", "Received client error (400) from primary with message 'bad'", 424, BackendError),
        ("ModelError", "Your invocation timed out while waiting for a response from container primary", 424, BackendTimeout),
        ("ValidationError", "Endpoint iris-prod of account 123456789012 not found.", 400, BackendUnavailable),
        ("ValidationError", "Endpoint iris-prod is not in InService status", 400, BackendUnavailable),
        ("ValidationError", "1 validation error detected: Value at 'body' failed to satisfy constraint", 400, BackendError),
        ("ThrottlingException", "Rate exceeded", 400, BackendUnavailable),
        ("ServiceUnavailable", "busy", 503, BackendUnavailable),
        ("ModelNotReadyException", "not ready", 429, BackendUnavailable),
        ("InternalFailure", "oops", 500, BackendUnavailable),
        ("AccessDeniedException", "no", 403, BackendError),
    ],
)
def test_invoke_errors_map_to_router_errors(code: str, message: str, status: int, expected: type[Exception]) -> None:
    runtime, stub = stubbed_runtime()
    stub.add_client_error("invoke_endpoint", code, message, http_status_code=status)
    with stub, pytest.raises(expected) as info:
        SageMakerEndpointClient(runtime, None).invoke("iris-prod", b"{}")
    assert type(info.value) is expected


LOG_STREAM = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/iris-prod:log-stream:AllTraffic/i-0abc"
# What SageMaker says in Message; the container's own body is OriginalMessage.
SAGEMAKER_MESSAGE = (
    "Received client error ({status}) from primary with message \"{body}\". See "
    "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#logEventViewer:group=/aws/sagemaker/Endpoints/iris-prod "
    "in account 123456789012 for more information."
)


def model_error(stub: Stubber, status: int, body: str) -> None:
    """InvokeEndpoint's ModelError exactly as modeled: HTTP 424, OriginalStatusCode, OriginalMessage
    (the container's body) and LogStreamArn (the Stubber validates them against the error shape)."""
    stub.add_client_error(
        "invoke_endpoint",
        "ModelError",
        SAGEMAKER_MESSAGE.format(status=status, body=body[:100]),
        http_status_code=424,
        modeled_fields={"OriginalStatusCode": status, "OriginalMessage": body, "LogStreamArn": LOG_STREAM},
    )


def invoke_failing(status: int, body: str) -> Exception:
    runtime, stub = stubbed_runtime()
    model_error(stub, status, body)
    with stub, pytest.raises((ModelRejectedInput, BackendError)) as info:
        SageMakerEndpointClient(runtime, None).invoke("iris-prod", b"{}")
    return info.value


# The bodies the model servers of the default images send for one rejected record.
REJECTION = "expected 4 features per record, got 3"
SERVE_BODY = json.dumps({"error": {"code": "invalid_input", "message": REJECTION}})  # sagemaker_jobs.serve, output_fn
TOOLKIT_BODY = (  # sagemaker-inference: the error's message, then the traceback
    json.dumps({"error": {"code": "invalid_input", "message": REJECTION}}, separators=(",", ":"))
    + '\nTraceback (most recent call last):\n  File "/opt/ml/model/code/inference.py", line 312, in to_matrix\n'
    + "    raise InputError(...)\ninference.InputError: " + REJECTION + "\n"
)
CONTAINERS_BODY = json.dumps({"error": "ClientError", "error-message": REJECTION, "stack-trace": "Traceback (most recent call last): ..."})


@pytest.mark.parametrize("body", [SERVE_BODY, TOOLKIT_BODY, CONTAINERS_BODY, REJECTION + "\nTraceback (most recent call last):\n  x"])
@pytest.mark.parametrize("status", [400, 415, 422])
def test_a_4xx_model_error_is_422_model_error_with_the_models_message(status: int, body: str) -> None:
    err = invoke_failing(status, body)
    assert type(err) is ModelRejectedInput
    assert (err.status, err.code) == (422, "model_error")
    assert err.message == f"the model on endpoint 'iris-prod' refused the input: {REJECTION}"
    assert err.details == {"endpoint": "iris-prod", "aws_error": "ModelError", "model_status": status}


def test_the_models_message_is_one_line_and_truncated() -> None:
    err = invoke_failing(400, json.dumps({"error": {"message": "bad\nvalue " + "x" * 5000}}))
    assert isinstance(err, ModelRejectedInput)
    reason = err.message.removeprefix("the model on endpoint 'iris-prod' refused the input: ")
    assert reason.startswith("bad value xxx") and "\n" not in reason
    assert len(reason) == MODEL_MESSAGE_MAX and reason.endswith("\u2026")


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_5xx_model_error_is_502_without_the_models_body(status: int) -> None:
    err = invoke_failing(status, "Traceback (most recent call last):\n  secret stack trace from the container")
    assert type(err) is BackendError
    assert (err.status, err.code) == (502, "backend_error")
    assert "secret" not in err.message and "Traceback" not in err.message
    assert err.details["model_status"] == status


class ModelErrorServer(ThreadingHTTPServer):
    """sagemaker-runtime as seen on the wire when the container answered `status`: HTTP 424, the
    error type header and the JSON body InvokeEndpoint returns (botocore parses it for real)."""

    def __init__(self, status: int, body: str) -> None:
        self.status, self.body = status, body
        super().__init__(("127.0.0.1", 0), _ModelErrorHandler)


class _ModelErrorHandler(BaseHTTPRequestHandler):
    server: ModelErrorServer

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        doc = {
            "ErrorCode": "CLIENT_ERROR_FROM_MODEL" if self.server.status < 500 else "SERVER_ERROR_FROM_MODEL",
            "LogStreamArn": LOG_STREAM,
            "Message": SAGEMAKER_MESSAGE.format(status=self.server.status, body=self.server.body[:100]),
            "OriginalMessage": self.server.body,
            "OriginalStatusCode": self.server.status,
        }
        raw = json.dumps(doc).encode()
        self.send_response(424)
        self.send_header("x-amzn-ErrorType", "ModelError:http://internal.amazon.com/coral/com.amazon.sagemaker/")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize(("status", "expected"), [(400, ModelRejectedInput), (500, BackendError)])
def test_model_error_parsed_by_botocore_from_the_wire(status: int, expected: type[Exception]) -> None:
    server = ModelErrorServer(status, TOOLKIT_BODY)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        runtime = SESSION.client(
            "sagemaker-runtime",
            endpoint_url=f"http://127.0.0.1:{server.server_address[1]}",
            config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
        )
        with pytest.raises(expected) as info:
            SageMakerEndpointClient(runtime, None).invoke("iris-prod", b"{}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert type(info.value) is expected
    assert info.value.details["model_status"] == status
    if status == 400:
        assert info.value.message == f"the model on endpoint 'iris-prod' refused the input: {REJECTION}"
    assert "Traceback" not in info.value.message


def test_a_model_error_without_an_original_status_is_502() -> None:
    runtime, stub = stubbed_runtime()
    stub.add_client_error("invoke_endpoint", "ModelError", "An error occurred", http_status_code=424)
    with stub, pytest.raises(BackendError) as info:
        SageMakerEndpointClient(runtime, None).invoke("iris-prod", b"{}")
    assert info.value.status == 502 and "model_status" not in info.value.details


def test_missing_endpoint_is_503_and_marks_it_out_of_service() -> None:
    runtime, stub = stubbed_runtime()
    stub.add_client_error("invoke_endpoint", "ValidationError", "Endpoint gone of account 123456789012 not found.")
    client = SageMakerEndpointClient(runtime, sagemaker_client=None)  # no DescribeEndpoint possible
    with stub, pytest.raises(BackendUnavailable) as info:
        client.invoke("gone", b"{}")
    assert info.value.status == 503
    assert client.in_service("gone") is False  # answered from the cache, not by DescribeEndpoint


def test_read_timeout_is_504() -> None:
    # A socket that accepts connections (the kernel completes the handshake) but never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        runtime = SESSION.client(
            "sagemaker-runtime",
            endpoint_url=f"http://127.0.0.1:{port}",
            config=Config(connect_timeout=1, read_timeout=0.1, retries={"mode": "standard", "total_max_attempts": 1}),
        )
        with pytest.raises(BackendTimeout) as info:
            SageMakerEndpointClient(runtime, None).invoke("iris-prod", b"{}")
    assert info.value.status == 504


def test_connect_timeout_is_504() -> None:
    runtime = SESSION.client("sagemaker-runtime")

    def hang_up(**kwargs: Any) -> None:
        raise ConnectTimeoutError(endpoint_url="https://runtime.sagemaker.us-east-1.amazonaws.com")

    runtime.meta.events.register("before-send.sagemaker-runtime.InvokeEndpoint", hang_up)
    with pytest.raises(BackendTimeout):
        SageMakerEndpointClient(runtime, None).invoke("iris-prod", b"{}")


def test_unreachable_runtime_is_503() -> None:
    with socket.socket() as s:  # a free port with nothing listening: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runtime = SESSION.client(
        "sagemaker-runtime",
        endpoint_url=f"http://127.0.0.1:{port}",
        config=Config(connect_timeout=1, read_timeout=1, retries={"mode": "standard", "total_max_attempts": 1}),
    )
    with pytest.raises(BackendUnavailable):
        SageMakerEndpointClient(runtime, None).invoke("iris-prod", b"{}")


# ---------------------------------------------------------------- in_service


def test_in_service_is_cached_for_the_ttl(aws: tuple[Any, Any]) -> None:
    runtime, sm = aws
    create_endpoint(sm, "iris-prod")
    clock = FakeClock()
    client = SageMakerEndpointClient(runtime, sm, status_ttl_s=30.0, clock=clock)

    assert client.in_service("iris-prod") is True
    sm.delete_endpoint(EndpointName="iris-prod")
    clock.t += 29.0
    assert client.in_service("iris-prod") is True  # still the cached answer
    clock.t += 2.0
    assert client.in_service("iris-prod") is False  # TTL passed: DescribeEndpoint says it is gone


def test_missing_endpoint_is_not_in_service_and_that_is_cached_too(aws: tuple[Any, Any]) -> None:
    runtime, sm = aws
    clock = FakeClock()
    client = SageMakerEndpointClient(runtime, sm, status_ttl_s=30.0, clock=clock)
    assert client.in_service("later") is False
    create_endpoint(sm, "later")
    assert client.in_service("later") is False
    clock.t += 31.0
    assert client.in_service("later") is True


@pytest.mark.parametrize(("status", "serving"), [("InService", True), ("Updating", True), ("Creating", False), ("Failed", False)])
def test_in_service_follows_the_endpoint_status(status: str, serving: bool) -> None:
    sm = SESSION.client("sagemaker")
    stub = Stubber(sm)
    stub.add_response(
        "describe_endpoint",
        {
            "EndpointName": "e",
            "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/e",
            "EndpointStatus": status,
            "CreationTime": "2026-01-01T00:00:00Z",
            "LastModifiedTime": "2026-01-01T00:00:00Z",
        },
        {"EndpointName": "e"},
    )
    client = SageMakerEndpointClient(None, sm)
    assert client.status("e") == "Unknown"  # nobody looked yet; status() never calls AWS
    with stub:
        assert client.in_service("e") is serving
    assert client.status("e") == status  # what health and the 503-vs-422 choice read


def test_throttled_describe_serves_the_stale_answer_or_raises_503() -> None:
    sm = SESSION.client("sagemaker")
    stub = Stubber(sm)
    stub.add_client_error("describe_endpoint", "ThrottlingException", "Rate exceeded")
    stub.add_client_error("describe_endpoint", "ValidationException", "Could not find endpoint 'arn:...:endpoint/e'.")
    stub.add_client_error("describe_endpoint", "ThrottlingException", "Rate exceeded")
    clock = FakeClock()
    client = SageMakerEndpointClient(None, sm, status_ttl_s=1.0, clock=clock)
    with stub:
        with pytest.raises(BackendUnavailable):
            client.in_service("e")  # nothing known yet
        assert client.in_service("e") is False
        clock.t += 5.0
        assert client.in_service("e") is False  # throttled: the last answer, stale but known
        stub.assert_no_pending_responses()


# ---------------------------------------------------------------- the runtime client's budget


def test_runtime_client_fits_the_api_gateway_budget_and_the_routing_envelope() -> None:
    client = make_runtime_client(29.0, region="us-east-1")
    cfg = client.meta.config
    assert cfg.connect_timeout == CONNECT_TIMEOUT_S
    assert cfg.retries == {"mode": "standard", "total_max_attempts": 1}
    # One attempt of connect + read inside 29 s, so the router answers before API Gateway...
    assert cfg.connect_timeout + cfg.read_timeout < 29.0
    # ...and long enough for any call routing admits: 0.8 x min(60 s, 29 s) = 23.2 s.
    assert cfg.read_timeout >= 0.8 * 29.0


def test_read_timeout_never_exceeds_the_endpoints_own_60_s_limit_by_much() -> None:
    assert endpoint_read_timeout(600.0) == 61.0
    assert endpoint_read_timeout(2.0) == 1.0  # floor: an absurd budget still makes one real attempt
    assert endpoint_read_timeout(29.0) < endpoint_read_timeout(40.0)


def test_runtime_client_honours_endpoint_url() -> None:
    client = make_runtime_client(29.0, region="us-east-1", endpoint_url="http://127.0.0.1:9")
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
