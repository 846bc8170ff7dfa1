"""Races on the job stores: fifty threads submitting with one Idempotency-Key create one job;
twenty threads racing one transition (or one versioned update) produce one winner.

Run on SQLite (several store instances on one file, so BEGIN IMMEDIATE is what serializes, not
the in-process lock) and on DynamoDB over real HTTP (a moto server).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

from router import jobs as jm
from router.adapters import dynamodb_schema as sc
from router.adapters.dynamodb_jobs import DynamoDBJobStore
from router.adapters.sqlite_jobs import SqliteJobStore
from router.domain import JobStatus
from router.ports import JobStore
from tests.functional.test_jobstore_contract import FakeClock, make_job

T = TypeVar("T")
S = JobStatus


class SerializedMotoServer:
    """moto's server over real HTTP, one request at a time.

    moto's DynamoDB backend is not thread-safe (its docs say so; transact_write_items even rolls
    back by restoring a deep copy of the whole table, wiping other threads' commits). Real
    DynamoDB serializes conflicting writes to an item, so serializing requests here models it;
    the clients still race for real: many threads, many connections, interleaved round trips.
    """

    def __init__(self) -> None:
        app = DomainDispatcherApplication(create_backend_app)
        lock = threading.Lock()

        def serialized(environ: Any, start_response: Any) -> Any:
            with lock:
                return list(app(environ, start_response))

        self._server = make_server("127.0.0.1", 0, serialized, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        return f"http://127.0.0.1:{self._server.server_port}"

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()


@pytest.fixture(scope="module")
def dynamo_endpoint() -> Iterator[str]:
    with SerializedMotoServer() as endpoint:
        yield endpoint


# Each worker thread gets its own store instance (own boto3 client / own SQLite connection), as
# separate Lambda invocations or server threads would.
StoreMaker = Callable[[FakeClock], JobStore]


@pytest.fixture(params=["sqlite", "dynamodb-server"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreMaker]:
    opened: list[Any] = []
    if request.param == "sqlite":
        path = tmp_path / "jobs.db"

        def make(clock: FakeClock) -> JobStore:
            store = SqliteJobStore(path, clock=clock)
            opened.append(store)
            return store

        yield make
        for s in opened:
            s.close()
    else:
        endpoint = request.getfixturevalue("dynamo_endpoint")
        table = f"jobs-{uuid.uuid4().hex[:12]}"
        sc.create_table(boto3.client("dynamodb", region_name="us-east-1", endpoint_url=endpoint), table)

        def make(clock: FakeClock) -> JobStore:
            client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=endpoint)
            opened.append(client)
            return DynamoDBJobStore(client, table, clock=clock)

        yield make
        for c in opened:
            c.close()


def race(n: int, stores: list[JobStore], fn: Callable[[JobStore], T]) -> list[T]:
    """Run fn on n threads released together by a barrier; each thread uses stores[i % len]."""
    barrier = threading.Barrier(n)

    def run(i: int) -> T:
        barrier.wait()
        return fn(stores[i % len(stores)])

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def test_fifty_identical_submissions_create_one_job(make_store: StoreMaker) -> None:
    clock = FakeClock()
    stores = [make_store(clock) for _ in range(5)]
    # Each attempt carries its own fresh job id, as fifty separate API requests would.
    results = race(50, stores, lambda s: s.create(make_job(clock, key="same-key")))
    created = [job for job, was_created in results if was_created]
    assert len(created) == 1
    assert {job.job_id for job, _ in results} == {created[0].job_id}
    assert [j.job_id for j in stores[0].list_by_owner("alice").jobs] == [created[0].job_id]
    assert stores[0].count_active("alice") == 1


def test_twenty_racing_transitions_have_one_winner(make_store: StoreMaker) -> None:
    clock = FakeClock()
    stores = [make_store(clock) for _ in range(5)]
    job, _ = stores[0].create(make_job(clock))
    results = race(20, stores, lambda s: s.transition(job.job_id, jm.sources(S.RUNNING), S.RUNNING))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert winners[0].version == 2
    assert stores[0].get(job.job_id) == winners[0]


def test_racing_finish_and_cancel_end_in_exactly_one_final_state(make_store: StoreMaker) -> None:
    clock = FakeClock()
    stores = [make_store(clock) for _ in range(5)]
    job, _ = stores[0].create(make_job(clock))
    stores[0].transition(job.job_id, jm.sources(S.RUNNING), S.RUNNING)
    targets = [S.SUCCEEDED, S.FAILED, S.CANCELLING]

    def move(i_store: tuple[int, JobStore]) -> Any:
        i, s = i_store
        to = targets[i % 3]
        return s.transition(job.job_id, jm.sources(to), to)

    barrier = threading.Barrier(20)

    def run(i: int) -> Any:
        barrier.wait()
        return move((i, stores[i % len(stores)]))

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(run, range(20)))
    winners = [r for r in results if r is not None]
    final = stores[0].get(job.job_id)
    assert final is not None
    # Either one finish won outright, or cancelling won and no finish got through after it.
    assert len(winners) == 1
    assert final == winners[0]
    assert final.version == 3


def test_twenty_racing_versioned_updates_have_one_winner(make_store: StoreMaker) -> None:
    clock = FakeClock()
    stores = [make_store(clock) for _ in range(5)]
    job, _ = stores[0].create(make_job(clock))
    results = race(20, stores, lambda s: s.update(job.job_id, 1, records_done=7))
    assert sum(r is not None for r in results) == 1
    stored = stores[0].get(job.job_id)
    assert stored is not None and stored.version == 2 and stored.records_done == 7
