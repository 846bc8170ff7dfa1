"""Every boto3 client the router builds has explicit timeouts and retries (router.adapters.aws_clients.aws_client)
whose worst case fits the budget of the route it serves: the API's sync budget (API Gateway's 29 s)
and the worker's checkpoint reserve before Lambda's deadline."""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from router.adapters.aws_clients import CLIENTS, aws_client, worst_case_s
from router.config import Runtime

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(CLIENTS) + ["sagemaker-runtime"]


def test_worst_case_arithmetic() -> None:
    assert worst_case_s(1.0, 26.0, 1) == 27.0  # no retry: connect + read
    assert worst_case_s(1.0, 2.0, 2) == 2 * 3.0 + (1.0 + 5.0)  # one retry: backoff cap 1 s + Retry-After 5 s
    assert worst_case_s(1.0, 1.0, 3) == 3 * 2.0 + (1.0 + 5.0) + (2.0 + 5.0)
    assert worst_case_s(0.0, 0.0, 8) == sum(min(2.0 ** (k - 1), 20.0) + 5.0 for k in range(1, 8))  # capped at 20 s


@pytest.mark.parametrize("service", SERVICES)
def test_each_client_has_explicit_retries_and_timeouts_within_the_api_budget(service: str) -> None:
    budget = Runtime().sync_timeout_s
    cfg = aws_client(service, region="us-east-1", sync_timeout_s=budget).meta.config
    assert cfg.retries["mode"] == "standard"
    attempts = cfg.retries["total_max_attempts"]
    if service in CLIENTS:
        s = CLIENTS[service]
        assert (cfg.connect_timeout, cfg.read_timeout, attempts) == (s.connect_timeout_s, s.read_timeout_s, s.max_attempts)
    assert worst_case_s(cfg.connect_timeout, cfg.read_timeout, attempts) <= budget, service


def test_the_runtime_client_follows_a_raised_sync_budget() -> None:
    cfg = aws_client("sagemaker-runtime", region="us-east-1", sync_timeout_s=60.0).meta.config
    assert 29.0 < worst_case_s(cfg.connect_timeout, cfg.read_timeout, cfg.retries["total_max_attempts"]) <= 60.0


def test_the_workers_last_calls_fit_its_checkpoint_reserve() -> None:
    # After its last deadline check the worker writes a part (S3), checkpoints (DynamoDB) and
    # re-invokes itself (Lambda); jobs_service keeps max(5 s, 5% of the Lambda timeout) for that.
    reserve = max(5.0, 0.05 * Runtime().lambda_timeout_s)
    worst = sum(worst_case_s(s.connect_timeout_s, s.read_timeout_s, s.max_attempts) for n, s in CLIENTS.items() if n in ("s3", "dynamodb", "lambda"))
    assert worst <= reserve


def test_s3_presigns_with_sigv4() -> None:
    assert aws_client("s3", region="us-east-1").meta.config.signature_version == "s3v4"


def test_clients_are_built_in_one_place() -> None:
    builders = {}
    for path in (ROOT / "router").rglob("*.py"):
        if "cli" in path.relative_to(ROOT / "router").parts:
            continue  # operator-side commands, never in a Lambda
        for m in re.finditer(r"boto3\.client\(", path.read_text()):
            builders.setdefault(str(path.relative_to(ROOT)), 0)
            builders[str(path.relative_to(ROOT))] += 1
            assert m is not None
    assert builders == {"router/adapters/aws_clients.py": 1, "router/adapters/sagemaker_endpoint.py": 1}


class _Failing(http.server.BaseHTTPRequestHandler):
    """A DynamoDB that answers every request with a retryable 500."""

    hits = 0

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        type(self).hits += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"boom"}'
        self.send_response(500)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def failing_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Failing]]:
    _Failing.hits = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "7")  # the explicit config wins over the environment
    try:
        yield _Failing
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def test_the_configured_attempts_are_the_attempts_made(failing_endpoint: type[_Failing]) -> None:
    client = aws_client("dynamodb", region="us-east-1")
    with pytest.raises(ClientError) as info:
        client.get_item(TableName="router-jobs", Key={"pk": {"S": "job_1"}})
    assert info.value.response["Error"]["Code"] == "InternalServerError"
    assert failing_endpoint.hits == CLIENTS["dynamodb"].max_attempts
