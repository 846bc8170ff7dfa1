"""SageMaker real-time endpoint adapter: InvokeEndpoint against moto with a seeded result, the
InService cache with a fake clock, and the mapping of every runtime failure (Stubber errors, a
real read timeout against a silent local socket, connection failures) to a RouterError."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
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
from router.errors import BackendError, BackendTimeout, BackendUnavailable

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


def test_model_error_keeps_the_status_but_not_the_models_message() -> None:
    runtime, stub = stubbed_runtime()
    stub.add_client_error(
        "invoke_endpoint",
        "ModelError",
        "secret stack trace from the container",
        http_status_code=424,
        response_meta={"OriginalStatusCode": 500},
    )
    with stub, pytest.raises(BackendError) as info:
        SageMakerEndpointClient(runtime, None).invoke("iris-prod", b"{}")
    assert info.value.status == 502
    assert "secret" not in info.value.message


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
    with stub:
        assert SageMakerEndpointClient(None, sm).in_service("e") is serving


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
