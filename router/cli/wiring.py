"""The CLI's composition root: the object stores, model runner and job service the `router`
commands build for themselves (offline: no server, no job table of a deployment). Commands get
their adapters here, never from another runtime's wiring.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from router.adapters.aws_clients import s3_object_store
from router.adapters.file_store import FileObjectStore
from router.adapters.inline import InlineRunner
from router.adapters.objects import CompositeObjectStore
from router.adapters.sqlite_jobs import SqliteJobStore
from router.config import RouterConfig
from router.jobs import UtcClock
from router.jobs_service import JobsService
from router.ports import ModelRunner, ObjectStore
from router.service import RouterService


def file_store() -> FileObjectStore:
    """file:// locations only, with a throwaway signing key (the CLI presigns nothing it keeps)."""
    return FileObjectStore(secrets.token_bytes(16))


def object_store() -> ObjectStore:
    """file:// and s3:// locations (an S3 client is built on the first s3:// use)."""
    return CompositeObjectStore(file_store(), s3_object_store)


def inline_runner(objects: ObjectStore, cache_dir: Path) -> InlineRunner:
    return InlineRunner(objects, cache_dir)


def offline_jobs(config: RouterConfig, runner: ModelRunner, files: ObjectStore, db_path: Path) -> tuple[JobsService, SqliteJobStore]:
    """A job service on a SQLite table and no worker queue: the caller runs jobs itself."""
    store = SqliteJobStore(db_path, ttl_days=1)
    service = RouterService(config, runner=runner)
    return JobsService(config, service=service, store=store, objects=files, clock=UtcClock(), queue=None), store
