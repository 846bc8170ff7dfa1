"""Every boto3 client the router uses, with explicit timeouts and retries (CLIENTS), built lazily
so a cold start that makes no AWS call imports no boto3. The composition roots (router.bootstrap,
the CLI's router.cli.wiring) build their AWS adapters on these.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from router.ports import ObjectStore

# Every boto3 client the router uses is built by aws_client(), with explicit timeouts and retries
# whose worst case fits the tightest budget the client serves: the API's 29 s (API Gateway cuts
# the request there) and the worker's checkpoint reserve (jobs_service: the last chunk's part,
# checkpoint and self re-invoke must finish before Lambda's deadline). Worst case of one call:
#   attempts x (connect + read) + sum over retries of (backoff cap + Retry-After allowance),
# with botocore "standard" mode's backoff of at most min(2^(k-1), 20) s before retry k and at most
# 5 s more when the service sends x-amz-retry-after (tests/unit/test_aws_clients.py checks it).
BACKOFF_CAP_S = 20.0
RETRY_AFTER_ALLOWANCE_S = 5.0


@dataclass(frozen=True)
class ClientSettings:
    connect_timeout_s: float
    read_timeout_s: float  # per socket read: a streamed S3 body may take longer in total
    max_attempts: int  # total attempts, the first one included


def worst_case_s(connect_timeout_s: float, read_timeout_s: float, max_attempts: int) -> float:
    """The longest one call can take before it fails, retries included."""
    backoff = sum(min(2.0 ** (k - 1), BACKOFF_CAP_S) + RETRY_AFTER_ALLOWANCE_S for k in range(1, max_attempts))
    return max_attempts * (connect_timeout_s + read_timeout_s) + backoff


CLIENTS: dict[str, ClientSettings] = {
    # Item reads and conditional writes answer in milliseconds; a throttle gets one retry.
    "dynamodb": ClientSettings(connect_timeout_s=1.0, read_timeout_s=2.0, max_attempts=2),
    # Config, artifacts (streamed), job data, server-side copies of job inputs.
    "s3": ClientSettings(connect_timeout_s=1.0, read_timeout_s=6.0, max_attempts=2),
    # Asynchronous (Event) invokes of the worker: Lambda only queues the event.
    "lambda": ClientSettings(connect_timeout_s=1.0, read_timeout_s=2.0, max_attempts=2),
    # Control plane: DescribeEndpoint, Create/Describe/StopTransformJob.
    "sagemaker": ClientSettings(connect_timeout_s=1.0, read_timeout_s=5.0, max_attempts=2),
    # Job-end notifications (Publish).
    "sns": ClientSettings(connect_timeout_s=1.0, read_timeout_s=3.0, max_attempts=2),
}


def aws_client(service: str, *, region: str | None = None, sync_timeout_s: float = 29.0) -> Any:
    """A boto3 client with the router's timeouts and retries (CLIENTS; sagemaker-runtime's are
    sized by router.adapters.sagemaker_endpoint to the sync budget)."""
    if service == "sagemaker-runtime":
        from router.adapters.sagemaker_endpoint import make_runtime_client

        return make_runtime_client(sync_timeout_s, region=region)
    import boto3
    from botocore.config import Config

    s = CLIENTS[service]
    extra: dict[str, Any] = {}
    if service == "s3":
        # SigV4 presigned URLs: required by every region launched after 2014 and by KMS-encrypted objects.
        extra["signature_version"] = "s3v4"
    config = Config(
        connect_timeout=s.connect_timeout_s,
        read_timeout=s.read_timeout_s,
        retries={"mode": "standard", "total_max_attempts": s.max_attempts},
        **extra,
    )
    return boto3.client(service, region_name=region, config=config)  # type: ignore[call-overload]


class LazyClient:
    """An aws_client() built on first use: a cold start that makes no AWS call (an inline predict
    with a bundled config and model) imports no boto3 and builds no client."""

    def __init__(self, service: str, **kw: Any) -> None:
        self._args = (service, kw)
        self._client: Any = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    service, kw = self._args
                    self._client = aws_client(service, **kw)
                client = self._client
        return getattr(client, name)


def lazy_client(service: str, *, region: str | None = None, sync_timeout_s: float = 29.0) -> Any:
    return LazyClient(service, region=region, sync_timeout_s=sync_timeout_s)


def s3_object_store() -> ObjectStore:
    """The S3 object store on a fresh S3 client (the factory CompositeObjectStore calls on first s3:// use)."""
    from router.adapters.s3_store import S3ObjectStore

    return S3ObjectStore(aws_client("s3"))
