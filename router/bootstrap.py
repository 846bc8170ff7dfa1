"""Wires the service for one runtime: "aws" (Lambda: S3, DynamoDB, SageMaker, Lambda worker) or
"local" (`router serve`: file system, SQLite, local SageMaker emulator, a worker thread pool).

The only module that knows which runtime it is in. Adapters are imported here, lazily, so a
handler's import graph holds only what its runtime uses (no boto3 on the local inline path).
"""

from __future__ import annotations

import os
import secrets
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from router.auth import ApiKeyAuth, Authenticator, IamAuth, NoAuth
from router.config import RouterConfig, load_config, parse_config, uri_to_path
from router.errors import BackendUnavailable, ConfigError, StartupError
from router.ports import EndpointClient, ObjectStore
from router.service import RouterService

RuntimeKind = Literal["aws", "local"]


@dataclass
class Runtime:
    kind: RuntimeKind
    config: RouterConfig
    service: RouterService
    auth: Authenticator
    objects: ObjectStore
    jobs: Any | None = None  # router.jobs_service.JobsService once jobs are wired
    closers: list[Callable[[], None]] = field(default_factory=list)
    starters: list[Callable[[], None]] = field(default_factory=list)

    def start(self) -> None:
        """Start background work (worker pool, sweeper, emulator): after the server is bound."""
        for start in self.starters:
            start()

    def close(self) -> None:
        for close in reversed(self.closers):
            close()
        self.closers.clear()


# ---------------------------------------------------------------- AWS clients
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


def _signing_key(state_dir: Path) -> bytes:
    """A per-installation key for local presigned URLs, kept so URLs survive a restart."""
    path = state_dir / "signing.key"
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        state_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        path.write_text(key.hex())
        path.chmod(0o600)
        return key


def _writable(folder: Path) -> Path:
    """`folder`, created if needed, once a file could be written in it (else StartupError)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".router-write-check-"):
            pass
    except OSError as e:
        raise StartupError(
            f"{folder}: {e.strerror or e}. router serve keeps its job table, job data and signing key there: "
            "make it writable, or point storage.jobs and storage.job_table at a writable folder"
        ) from None
    return folder


def build_local(
    config: RouterConfig,
    *,
    public_base_url: str | None = None,
    state_dir: Path | None = None,
    endpoints: EndpointClient | None = None,
    with_jobs: bool = True,
) -> Runtime:
    """The embedded runtime: the same service on local adapters."""
    from router.adapters.file_store import FileObjectStore
    from router.adapters.inline import InlineRunner
    from router.adapters.objects import CompositeObjectStore

    if state_dir is None:
        jobs_loc = config.storage.jobs
        # Not /tmp/router: a folder named like the package in the working directory would shadow it.
        state_dir = uri_to_path(jobs_loc).parent if jobs_loc.startswith("file://") else Path(tempfile.gettempdir()) / "router-state"
    _writable(state_dir)
    if with_jobs and config.storage.jobs.startswith("file://"):
        _writable(uri_to_path(config.storage.jobs))
    files = FileObjectStore(_signing_key(state_dir), public_base_url)
    objects = CompositeObjectStore(files, _s3_factory)
    runner = InlineRunner(objects, state_dir / "model-cache")
    auth: Authenticator = ApiKeyAuth(config.auth.api_keys) if config.auth.enabled else NoAuth()
    emulator_dir = state_dir / "sagemaker"
    local_endpoints = None
    if endpoints is None and any(m.endpoint is not None for m in config.models):
        from router.local.sagemaker_emulator import LocalEndpoints

        timeout = config.runtime.safety_margin * min(config.runtime.endpoint_timeout_s, config.runtime.sync_timeout_s)
        endpoints = local_endpoints = LocalEndpoints(config, objects, emulator_dir, invoke_timeout_s=timeout)
    # The local worker pool runs jobs in this process, on this runner: routing knows when it is warm.
    service = RouterService(config, runner=runner, endpoints=endpoints, worker_shares_runner=with_jobs)
    rt = Runtime("local", config, service, auth, objects)
    if local_endpoints is not None:
        rt.starters.append(local_endpoints.start)
        rt.closers.append(local_endpoints.close)
    if with_jobs:
        _local_jobs(rt, config, objects, emulator_dir)
    return rt


def _local_jobs(rt: Runtime, config: RouterConfig, objects: ObjectStore, emulator_dir: Path) -> None:
    from router.adapters.sqlite_jobs import SqliteJobStore
    from router.handlers.worker import make_worker
    from router.jobs import UtcClock
    from router.jobs_service import JobsService
    from router.local.workers import LocalSweeper, LocalWorkerQueue

    if not config.storage.job_table.startswith("sqlite:///"):
        raise ConfigError("config", ["storage.job_table: `router serve` needs sqlite:///PATH (dynamodb:// is for AWS)"])
    db_path = Path(config.storage.job_table[len("sqlite:///"):])
    _writable(db_path.parent)
    try:
        store = SqliteJobStore(db_path, ttl_days=config.jobs.ttl_days)
    except BackendUnavailable as e:
        raise StartupError(f"{e.message}: router serve needs a writable job table") from None
    queue = LocalWorkerQueue(workers=2, timeout_s=config.runtime.lambda_timeout_s)
    batch = None
    if any(config.batch_settings(m) is not None for m in config.models):
        from router.handlers.events import make_events_handler
        from router.local.sagemaker_emulator import LocalBatch
        from router.local.server import LocalContext
        from router.sagemaker_names import transform_job_name

        batch = LocalBatch(config, objects, emulator_dir)
        events = make_events_handler(rt)
        batch.on_event = lambda event: None if events(event, LocalContext("event-" + str(event.get("id")), 60.0)) else None
    rt.jobs = JobsService(
        config, service=rt.service, store=store, objects=objects, clock=UtcClock(), queue=queue, batch=batch,
        transform_name=transform_job_name if batch is not None else None,
    )
    queue.handler = make_worker(rt)
    sweeper = LocalSweeper(rt.jobs, interval_s=min(30.0, config.jobs.stale_after_s))
    rt.closers += [store.close, queue.close]
    if batch is not None:
        rt.closers.append(batch.close)
        rt.starters.append(batch.resume)
    rt.closers.append(sweeper.close)
    rt.starters.append(sweeper.start)


def build_aws(config: RouterConfig) -> Runtime:
    """The Lambda runtime. Refuses to start with auth off (docs/api.md)."""
    if not config.auth.enabled:
        raise ConfigError("config", ["auth.enabled: false is only allowed under `router serve`; on AWS the caller's IAM identity is the owner"])
    from router.adapters.file_store import FileObjectStore
    from router.adapters.inline import InlineRunner
    from router.adapters.objects import CompositeObjectStore
    from router.adapters.sagemaker_endpoint import SageMakerEndpointClient

    files = FileObjectStore(secrets.token_bytes(32), None)
    objects = CompositeObjectStore(files, _s3_factory)
    runner = InlineRunner(objects, Path(tempfile.gettempdir()) / "models")
    endpoints: EndpointClient | None = None
    if any(m.endpoint is not None for m in config.models):
        endpoints = SageMakerEndpointClient(
            lazy_client("sagemaker-runtime", region=config.sagemaker.region, sync_timeout_s=config.runtime.sync_timeout_s),
            lazy_client("sagemaker", region=config.sagemaker.region),
            status_ttl_s=config.routing.endpoint_status_ttl_s,
        )
    service = RouterService(config, runner=runner, endpoints=endpoints)
    rt = Runtime("aws", config, service, IamAuth(), objects)
    _aws_jobs(rt, config, objects)
    return rt


def _aws_jobs(rt: Runtime, config: RouterConfig, objects: ObjectStore) -> None:
    """DynamoDB job table, the worker Lambda (ROUTER_WORKER_FUNCTION) and SageMaker batch transform."""
    from router.adapters.dynamodb_jobs import DynamoDBJobStore
    from router.adapters.lambda_worker import LambdaWorkerQueue
    from router.adapters.sagemaker_batch import SageMakerBatchClient
    from router.jobs import UtcClock
    from router.jobs_service import JobsService
    from router.sagemaker_names import transform_job_name

    table = config.storage.job_table
    if not table.startswith("dynamodb://"):
        raise ConfigError("config", ["storage.job_table: the AWS runtime needs dynamodb://TABLE"])
    store = DynamoDBJobStore(lazy_client("dynamodb"), table[len("dynamodb://"):], ttl_days=config.jobs.ttl_days)
    worker = os.environ.get("ROUTER_WORKER_FUNCTION")
    if not worker and any(m.in_process for m in config.models):
        # lambda-job jobs would be accepted and never run: refuse at cold start instead.
        raise ConfigError("environment", ["ROUTER_WORKER_FUNCTION is not set: the worker Lambda's name is needed to run lambda-job jobs"])
    queue = LambdaWorkerQueue(lazy_client("lambda"), worker) if worker else None
    batch = None
    if any(config.batch_settings(m) is not None for m in config.models):
        batch = SageMakerBatchClient(lazy_client("sagemaker", region=config.sagemaker.region))
    rt.jobs = JobsService(
        config, service=rt.service, store=store, objects=objects, clock=UtcClock(), queue=queue, batch=batch,
        transform_name=transform_job_name, private_uris=[os.environ.get("ROUTER_CONFIG") or ""],
    )


def _s3_factory() -> ObjectStore:
    from router.adapters.s3_store import S3ObjectStore

    return S3ObjectStore(aws_client("s3"))


def load_config_uri(uri: str) -> RouterConfig:
    """A config from a path, file:// or s3:// location (ROUTER_CONFIG)."""
    if uri.startswith("s3://"):
        store = _s3_factory()
        return parse_config(store.get_bytes(uri).decode("utf-8"), source=uri, check_artifacts=False)
    return load_config(uri[len("file://"):] if uri.startswith("file://") else uri)


def runtime_from_env() -> Runtime:
    """Cold start: ROUTER_CONFIG (path or s3:// URI) and ROUTER_RUNTIME (aws | local, default aws)."""
    uri = os.environ.get("ROUTER_CONFIG")
    if not uri:
        raise ConfigError("environment", ["ROUTER_CONFIG is not set: point it at the operator config (a path or s3:// URI)"])
    config = load_config_uri(uri)
    kind = os.environ.get("ROUTER_RUNTIME", "aws")
    return build_local(config) if kind == "local" else build_aws(config)
