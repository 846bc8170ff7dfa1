"""The composition root of the two server runtimes: build_aws (the Lambda functions: S3, DynamoDB,
SageMaker, the worker Lambda) and build_local (`router serve`: file system, SQLite, the local
SageMaker emulator, a worker thread pool), and runtime_from_env, which the Lambda entry points
(router.lambdas) call on their cold start.

The only module that knows which runtime it is in, and the top of the layers with the entry points
(router.lambdas, router.serve_app) and the CLI: nothing below imports it. Adapters are imported
here, lazily, so a handler's import graph holds only what its runtime uses (no boto3 on the local
inline path).
"""

from __future__ import annotations

import os
import secrets
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from router.adapters.aws_clients import lazy_client, s3_object_store
from router.auth import ApiKeyAuth, Authenticator, IamAuth, NoAuth
from router.config import RouterConfig, load_config, parse_config, uri_to_path
from router.errors import BackendUnavailable, ConfigError, StartupError
from router.ports import AsyncInferenceClient, EndpointClient, ObjectStore
from router.runtime import Runtime, RuntimeKind
from router.service import RouterService

if TYPE_CHECKING:
    from router.adapters.sqlite_jobs import SqliteJobStore
    from router.jobs_service import JobsService
    from router.local.sagemaker_emulator import LocalAsyncEndpoints

__all__ = ["Runtime", "RuntimeKind", "build_aws", "build_local", "load_config_uri", "runtime_from_env"]


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


class _LazyJobs:
    """Stands in for a runtime's JobsService until something first reads it (a job route, a 202
    fallback, a model's detail), then builds it once under a lock and forwards every attribute:
    an inline predict never imports or wires the job machinery (store, lifecycle, notifier)."""

    __slots__ = ("_build", "_lock", "_real")

    def __init__(self, build: Callable[[], JobsService]) -> None:
        object.__setattr__(self, "_build", build)
        object.__setattr__(self, "_lock", threading.Lock())
        object.__setattr__(self, "_real", None)

    def _service(self) -> JobsService:
        real: JobsService | None = self._real
        if real is None:
            with self._lock:
                if self._real is None:  # a failed build is retried by the next reader
                    object.__setattr__(self, "_real", self._build())
                real = self._real
                assert real is not None
        return real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._service(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._service(), name, value)


def _lazy_jobs(rt: Runtime, build: Callable[[], None]) -> None:
    """rt.jobs (and the service's job submitter) as a _LazyJobs whose first use runs `build`, which
    replaces rt.jobs with the real JobsService."""

    def real() -> JobsService:
        build()
        assert rt.jobs is not None and not isinstance(rt.jobs, _LazyJobs)
        return rt.jobs

    lazy = cast("JobsService", _LazyJobs(real))  # forwards every attribute to the JobsService it builds
    rt.jobs = lazy
    rt.service.attach_jobs(lazy)


def build_local(
    config: RouterConfig,
    *,
    public_base_url: str | None = None,
    state_dir: Path | None = None,
    endpoints: EndpointClient | None = None,
    with_jobs: bool = True,
    serverless_idle_s: float | None = None,
    lazy_jobs: bool = False,
) -> Runtime:
    """The embedded runtime: the same service on local adapters. `serverless_idle_s`: how long an
    emulated serverless endpoint keeps its model server after its last call (None: the emulator's default).
    `lazy_jobs` (the API Lambda's cold start): the job table is checked now, the job service built
    on first use; the runtime is then never start()ed (no worker pool, sweeper or folder watcher)."""
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
    objects = CompositeObjectStore(files, s3_object_store)
    runner = InlineRunner(objects, state_dir / "model-cache")
    auth: Authenticator = ApiKeyAuth(config.auth.api_keys) if config.auth.enabled else NoAuth()
    emulator_dir = state_dir / "sagemaker"
    local_endpoints = None
    if endpoints is None and any(m.endpoint is not None or m.serverless is not None for m in config.models):
        from router.local.sagemaker_emulator import LocalEndpoints

        timeout = config.runtime.safety_margin * min(config.runtime.endpoint_timeout_s, config.runtime.sync_timeout_s)
        idle = {} if serverless_idle_s is None else {"serverless_idle_s": serverless_idle_s}
        endpoints = local_endpoints = LocalEndpoints(config, objects, emulator_dir, invoke_timeout_s=timeout, **idle)
    local_async: LocalAsyncEndpoints | None = None
    if with_jobs and any(m.async_inference is not None for m in config.models):
        from router.local.sagemaker_emulator import LocalAsyncEndpoints

        local_async = LocalAsyncEndpoints(config, objects, emulator_dir)
    # The local worker pool runs jobs in this process, on this runner: routing knows when it is warm.
    service = RouterService(config, runner=runner, endpoints=endpoints, worker_shares_runner=with_jobs, async_endpoints=local_async)
    rt = Runtime("local", config, service, auth, objects, files=files)
    if local_endpoints is not None:
        rt.starters.append(local_endpoints.start)
        rt.closers.append(local_endpoints.close)
    if with_jobs:
        store = _sqlite_store(config)
        if lazy_jobs:
            _lazy_jobs(rt, lambda: _local_jobs(rt, config, objects, emulator_dir, store, local_async))
        else:
            _local_jobs(rt, config, objects, emulator_dir, store, local_async)
    return rt


def _sqlite_store(config: RouterConfig) -> SqliteJobStore:
    """The local job table, opened (a bad location or file refuses the start)."""
    from router.adapters.sqlite_jobs import SqliteJobStore

    if not config.storage.job_table.startswith("sqlite:///"):
        raise ConfigError("config", ["storage.job_table: `router serve` needs sqlite:///PATH (dynamodb:// is for AWS)"])
    db_path = Path(config.storage.job_table[len("sqlite:///"):])
    _writable(db_path.parent)
    try:
        return SqliteJobStore(db_path, ttl_days=config.jobs.ttl_days)
    except BackendUnavailable as e:
        raise StartupError(f"{e.message}: router serve needs a writable job table") from None


def _local_jobs(
    rt: Runtime, config: RouterConfig, objects: ObjectStore, emulator_dir: Path, store: SqliteJobStore,
    local_async: LocalAsyncEndpoints | None = None,
) -> None:
    from router.handlers.worker import make_worker
    from router.jobs import UtcClock
    from router.jobs_service import JobsService
    from router.local.workers import LocalSweeper, LocalWorkerQueue

    queue = LocalWorkerQueue(workers=2, timeout_s=config.runtime.lambda_timeout_s)
    batch = None
    if any(config.batch_settings(m) is not None for m in config.models):
        from router.local.sagemaker_emulator import LocalBatch
        from router.sagemaker_names import transform_job_name

        batch = LocalBatch(config, objects, emulator_dir)
    from concurrent.futures import ThreadPoolExecutor

    from router.adapters.webhook import UrllibWebhookSender
    from router.local.watch import FolderWatcher
    from router.notifications import Notifier
    from router.triggers import Triggers

    clock = UtcClock()
    rt.jobs = JobsService(
        config, service=rt.service, store=store, objects=objects, clock=clock, queue=queue, batch=batch,
        transform_name=transform_job_name if batch is not None else None, async_client=local_async,
    )
    rt.service.attach_jobs(rt.jobs)
    # Immediate deliveries run beside the worker (a slow receiver never holds a job or a request).
    sender = ThreadPoolExecutor(max_workers=2, thread_name_prefix="router-notify")
    notifier = Notifier(
        config, store, clock, rt.jobs.to_dict, webhook=UrllibWebhookSender(), allow_private=True,
        dispatch=lambda fn: None if sender.submit(fn) else None,
    )
    rt.jobs.attach_notifier(notifier)
    if batch is not None or local_async is not None:
        from router.handlers.events import make_events_handler
        from router.local.server import LocalContext

        events = make_events_handler(rt)

        def deliver(event: dict[str, Any]) -> None:
            # As EventBridge or SNS would invoke the events function: one event per invocation.
            name = str(event.get("id") or event.get("Records", [{}])[0].get("Sns", {}).get("MessageId"))
            events(event, LocalContext("event-" + name, 60.0))

        if batch is not None:
            batch.on_event = deliver
        if local_async is not None:
            local_async.on_event = deliver
    queue.handler = make_worker(rt)
    sweeper = LocalSweeper(rt.jobs, interval_s=min(30.0, config.jobs.stale_after_s))
    # The notification sender closes after the workers (which finish jobs, hence notify), before the store.
    rt.closers += [store.close, lambda: sender.shutdown(wait=True, cancel_futures=False), queue.close]
    if batch is not None:
        rt.closers.append(batch.close)
        rt.starters.append(batch.resume)
    if local_async is not None:
        rt.closers.append(local_async.close)
        rt.starters.append(local_async.start)
    rt.closers.append(sweeper.close)
    rt.starters.append(sweeper.start)
    # router serve's stand-in for S3 events: file:// trigger folders (first to close).
    watcher = FolderWatcher(Triggers(config, rt.jobs))
    rt.starters.append(watcher.start)
    rt.closers.append(watcher.close)


def build_aws(config: RouterConfig, *, lazy_jobs: bool = False) -> Runtime:
    """The Lambda runtime. Refuses to start with auth off (docs/api.md). `lazy_jobs` (the API
    Lambda): the job settings are checked now, the job service built on first use."""
    if not config.auth.enabled:
        raise ConfigError("config", ["auth.enabled: false is only allowed under `router serve`; on AWS the caller's IAM identity is the owner"])
    from router.adapters.file_store import FileObjectStore
    from router.adapters.inline import InlineRunner
    from router.adapters.objects import CompositeObjectStore
    from router.adapters.sagemaker_endpoint import SageMakerEndpointClient

    files = FileObjectStore(secrets.token_bytes(32), None)
    objects = CompositeObjectStore(files, s3_object_store)
    runner = InlineRunner(objects, Path(tempfile.gettempdir()) / "models")
    endpoints: EndpointClient | None = None
    if any(m.endpoint is not None or m.serverless is not None for m in config.models):
        endpoints = SageMakerEndpointClient(
            lazy_client("sagemaker-runtime", region=config.sagemaker.region, sync_timeout_s=config.runtime.sync_timeout_s),
            lazy_client("sagemaker", region=config.sagemaker.region),
            status_ttl_s=config.routing.endpoint_status_ttl_s,
        )
    async_client: AsyncInferenceClient | None = None
    if any(m.async_inference is not None for m in config.models):
        from router.adapters.sagemaker_async import SageMakerAsyncClient

        async_client = SageMakerAsyncClient(
            lazy_client("sagemaker-runtime", region=config.sagemaker.region, sync_timeout_s=config.runtime.sync_timeout_s),
            lazy_client("sagemaker", region=config.sagemaker.region),
            status_ttl_s=config.routing.endpoint_status_ttl_s,
        )
    service = RouterService(config, runner=runner, endpoints=endpoints, async_endpoints=async_client)
    rt = Runtime("aws", config, service, IamAuth(), objects)
    table, worker = _aws_job_settings(config)
    if lazy_jobs:
        _lazy_jobs(rt, lambda: _aws_jobs(rt, config, objects, table, worker, async_client))
    else:
        _aws_jobs(rt, config, objects, table, worker, async_client)
    return rt


def _aws_job_settings(config: RouterConfig) -> tuple[str, str | None]:
    """(DynamoDB table name, worker Lambda name or None), or ConfigError: checked at cold start."""
    table = config.storage.job_table
    if not table.startswith("dynamodb://"):
        raise ConfigError("config", ["storage.job_table: the AWS runtime needs dynamodb://TABLE"])
    worker = os.environ.get("ROUTER_WORKER_FUNCTION")
    if not worker and any(m.in_process for m in config.models):
        # lambda-job jobs would be accepted and never run: refuse at cold start instead.
        raise ConfigError("environment", ["ROUTER_WORKER_FUNCTION is not set: the worker Lambda's name is needed to run lambda-job jobs"])
    return table[len("dynamodb://"):], worker or None


def _aws_jobs(
    rt: Runtime, config: RouterConfig, objects: ObjectStore, table: str, worker: str | None,
    async_client: AsyncInferenceClient | None = None,
) -> None:
    """DynamoDB job table, the worker Lambda (ROUTER_WORKER_FUNCTION), SageMaker batch transform and
    asynchronous inference."""
    from router.adapters.dynamodb_jobs import DynamoDBJobStore
    from router.adapters.lambda_worker import LambdaWorkerQueue
    from router.adapters.sagemaker_batch import SageMakerBatchClient
    from router.jobs import UtcClock
    from router.jobs_service import JobsService
    from router.sagemaker_names import transform_job_name

    store = DynamoDBJobStore(lazy_client("dynamodb"), table, ttl_days=config.jobs.ttl_days)
    queue = LambdaWorkerQueue(lazy_client("lambda"), worker) if worker else None
    batch = None
    if any(config.batch_settings(m) is not None for m in config.models):
        batch = SageMakerBatchClient(lazy_client("sagemaker", region=config.sagemaker.region))
    from router.adapters.webhook import UrllibWebhookSender
    from router.notifications import Notifier

    clock = UtcClock()
    rt.jobs = JobsService(
        config, service=rt.service, store=store, objects=objects, clock=clock, queue=queue, batch=batch,
        transform_name=transform_job_name, private_uris=[os.environ.get("ROUTER_CONFIG") or ""], async_client=async_client,
    )
    rt.service.attach_jobs(rt.jobs)
    topic = None
    if config.notifications.sns_topic_arn:
        from router.adapters.sns_topic import SnsTopicPublisher

        topic = SnsTopicPublisher(lazy_client("sns", region=config.sagemaker.region))
    # Delivered inline by whichever function finished the job (worker, events, API cancel), then
    # by the sweeper until it is delivered (the outbox).
    notifier = Notifier(config, store, clock, rt.jobs.to_dict, webhook=UrllibWebhookSender(), topic=topic)
    rt.jobs.attach_notifier(notifier)


def load_config_uri(uri: str) -> RouterConfig:
    """A config from a path, file:// or s3:// location (ROUTER_CONFIG)."""
    if uri.startswith("s3://"):
        store = s3_object_store()
        return parse_config(store.get_bytes(uri).decode("utf-8"), source=uri, check_artifacts=False)
    return load_config(uri[len("file://"):] if uri.startswith("file://") else uri)


def runtime_from_env(*, lazy_jobs: bool = False) -> Runtime:
    """Cold start: ROUTER_CONFIG (path or s3:// URI) and ROUTER_RUNTIME (aws | local, default aws).
    `lazy_jobs`: the job service is built on first use (the API function; see build_aws)."""
    uri = os.environ.get("ROUTER_CONFIG")
    if not uri:
        raise ConfigError("environment", ["ROUTER_CONFIG is not set: point it at the operator config (a path or s3:// URI)"])
    config = load_config_uri(uri)
    kind = os.environ.get("ROUTER_RUNTIME", "aws")
    return build_local(config, lazy_jobs=lazy_jobs) if kind == "local" else build_aws(config, lazy_jobs=lazy_jobs)
