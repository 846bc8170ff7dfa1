"""The JobStore contract: one suite, run against SQLite, DynamoDB on moto in-process, and DynamoDB
on a ThreadedMotoServer over real HTTP. Any adapter that passes it can back the service.

Time comes from a FakeClock; nothing sleeps.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.server import ThreadedMotoServer

from router import jobs as jm
from router.adapters import dynamodb_schema as sc
from router.adapters.dynamodb_jobs import DynamoDBJobStore
from router.adapters.sqlite_jobs import SqliteJobStore
from router.domain import Job, JobStatus, Route
from router.errors import BackendUnavailable, InvalidRequest, Throttled
from router.ports import JobStore

S = JobStatus
ALL = frozenset(JobStatus)
T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


class FakeClock:
    def __init__(self, start: datetime = T0) -> None:
        self.t = start

    def now(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


def make_job(clock: FakeClock, owner: str = "alice", *, model: str = "iris", key: str | None = None, **kw: Any) -> Job:
    now = clock.now()
    fields: dict[str, Any] = {
        "job_id": jm.new_job_id(now),
        "owner": owner,
        "model": model,
        "status": S.QUEUED,
        "route": Route.LAMBDA_JOB,
        "reason": "fits lambda",
        "created_at": now,
        "updated_at": now,
        "input_uri": "file:///tmp/in.jsonl",
        "idempotency_key": key,
        "request_digest": None if key is None else jm.request_digest({"instances": [[1]]}),
    }
    fields.update(kw)
    return Job(**fields)


# --- store fixtures ---------------------------------------------------------------------------

StoreFactory = Callable[..., Any]


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def moto_client() -> Iterator[Any]:
    """In-process moto, started once per module (tables are per test: unique names)."""
    with mock_aws():
        yield boto3.client("dynamodb", region_name="us-east-1")


def _dynamo_factory(client: Any) -> StoreFactory:
    def make(clock: FakeClock, ttl_days: int = 30) -> DynamoDBJobStore:
        name = f"jobs-{uuid.uuid4().hex[:12]}"
        sc.create_table(client, name)
        return DynamoDBJobStore(client, name, clock=clock, ttl_days=ttl_days)

    return make


def _sqlite_factory(tmp_path: Path, opened: list[SqliteJobStore]) -> StoreFactory:
    def make(clock: FakeClock, ttl_days: int = 30) -> SqliteJobStore:
        store = SqliteJobStore(tmp_path / f"jobs-{uuid.uuid4().hex[:8]}.db", clock=clock, ttl_days=ttl_days)
        opened.append(store)
        return store

    return make


@pytest.fixture(params=["sqlite", "dynamodb-moto", "dynamodb-server"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    kind = request.param
    if kind == "sqlite":
        opened: list[SqliteJobStore] = []
        yield _sqlite_factory(tmp_path, opened)
        for store in opened:
            store.close()
    elif kind == "dynamodb-moto":
        yield _dynamo_factory(request.getfixturevalue("moto_client"))
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=endpoint)
        yield _dynamo_factory(client)
        client.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(store_factory: StoreFactory, clock: FakeClock) -> JobStore:
    made: JobStore = store_factory(clock)
    return made


def all_pages(store: JobStore, owner: str, limit: int, **filters: Any) -> list[list[Job]]:
    pages, cursor = [], None
    while True:
        page = store.list_by_owner(owner, limit=limit, cursor=cursor, **filters)
        pages.append(page.jobs)
        assert len(page.jobs) <= limit
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor
        assert len(pages) < 100, "pagination does not terminate"


# --- create / get -----------------------------------------------------------------------------


def test_create_then_get_round_trips_every_field(store: JobStore, clock: FakeClock) -> None:
    job = make_job(
        clock,
        error={"code": "x", "nested": [1, 2]},
        checkpoint={"offset": 10},
        extra={"k": "v"},
        records_total=250000,
        output_uri="file:///tmp/out.jsonl",
        backend_name="router-iris-1",
        estimate={"duration_s": 0.123456, "cost_usd": 2.5e-06, "records": 250000, "cold": False},
    )
    stored, created = store.create(job)
    assert created is True
    assert stored == job
    assert store.get(job.job_id) == job


def test_the_estimate_stays_beside_what_happened(store: JobStore, clock: FakeClock) -> None:
    # Calibration reads a finished job's estimate next to its started -> finished times and records.
    est = {"duration_s": 1.5, "cost_usd": None, "records": 20000, "cold": True}
    job, _ = store.create(make_job(clock, estimate=est, records_total=20000))
    clock.advance(1)
    store.transition(job.job_id, frozenset({S.QUEUED}), S.RUNNING)
    clock.advance(0.25)
    done = store.transition(job.job_id, frozenset({S.RUNNING}), S.SUCCEEDED, records_done=20000)
    assert done is not None and done.estimate == est
    got = store.get(job.job_id)
    assert got is not None and got.estimate == est and got.records_done == 20000
    assert got.finished_at is not None and got.started_at is not None
    assert (got.finished_at - got.started_at).total_seconds() == 0.25
    page = store.list_by_owner("alice", status=S.SUCCEEDED, model="iris")
    assert [j.estimate for j in page.jobs] == [est]


def test_get_unknown_job_is_none(store: JobStore) -> None:
    assert store.get("job_01ARZ3NDEKTSV4RRFFQ69G5FAV") is None


def test_repeating_the_same_create_returns_the_stored_job(store: JobStore, clock: FakeClock) -> None:
    job = make_job(clock)
    store.create(job)
    again, created = store.create(job.evolve(reason="changed"))
    assert created is False
    assert again == job


def test_same_owner_and_key_returns_the_first_job(store: JobStore, clock: FakeClock) -> None:
    first, created1 = store.create(make_job(clock, key="k-1"))
    clock.advance(1)
    second, created2 = store.create(make_job(clock, key="k-1"))
    assert (created1, created2) == (True, False)
    assert second == first
    assert [j.job_id for j in store.list_by_owner("alice").jobs] == [first.job_id]


def test_idempotency_keys_are_per_owner(store: JobStore, clock: FakeClock) -> None:
    a, _ = store.create(make_job(clock, "alice", key="shared"))
    b, created = store.create(make_job(clock, "bob", key="shared"))
    assert created is True
    assert b.job_id != a.job_id
    assert b.owner == "bob"


def test_owner_with_separator_does_not_collide_with_key(store: JobStore, clock: FakeClock) -> None:
    a, _ = store.create(make_job(clock, "a#b", key="c"))
    b, created = store.create(make_job(clock, "a", key="b#c"))
    assert created is True
    assert a.job_id != b.job_id


def test_idempotency_key_is_free_again_after_its_window(store_factory: StoreFactory, clock: FakeClock) -> None:
    store = store_factory(clock, ttl_days=2)
    first, _ = store.create(make_job(clock, key="k"))
    clock.advance(timedelta(days=2, seconds=1).total_seconds())
    second, created = store.create(make_job(clock, key="k"))
    assert created is True
    assert second.job_id != first.job_id
    assert store.get(first.job_id) == first  # the old job is still there (not finished, no TTL)
    third, created3 = store.create(make_job(clock, key="k"))
    assert created3 is False
    assert third == second


# --- transitions ------------------------------------------------------------------------------


def test_running_then_succeeded_sets_timestamps_version_and_expiry(store: JobStore, clock: FakeClock) -> None:
    job, _ = store.create(make_job(clock))
    clock.advance(5)
    t_run = clock.now()
    running = store.transition(job.job_id, frozenset({S.QUEUED}), S.RUNNING, backend_name="b-1", attempts=1)
    assert running is not None
    assert (running.status, running.version, running.started_at, running.updated_at) == (S.RUNNING, 2, t_run, t_run)
    assert (running.backend_name, running.attempts, running.finished_at, running.expires_at) == ("b-1", 1, None, None)
    clock.advance(7)
    done = store.transition(job.job_id, frozenset({S.RUNNING}), S.SUCCEEDED, output_uri="file:///o", records_done=3)
    assert done is not None
    assert done.status is S.SUCCEEDED and done.version == 3
    assert done.started_at == t_run  # not reset
    assert done.finished_at == clock.now()
    assert done.expires_at == clock.now() + timedelta(days=30)
    assert (done.output_uri, done.records_done) == ("file:///o", 3)
    assert store.get(job.job_id) == done


def test_finishing_can_carry_the_backend_finish_time(store: JobStore, clock: FakeClock) -> None:
    job, _ = store.create(make_job(clock))
    store.transition(job.job_id, frozenset({S.QUEUED}), S.RUNNING)
    at = clock.now() + timedelta(seconds=3)
    clock.advance(60)
    done = store.transition(job.job_id, frozenset({S.RUNNING}), S.FAILED, finished_at=at, error={"code": "x"})
    assert done is not None
    assert (done.finished_at, done.expires_at, done.error) == (at, at + timedelta(days=30), {"code": "x"})


def test_repeated_transition_is_a_no_op(store: JobStore, clock: FakeClock) -> None:
    job, _ = store.create(make_job(clock))
    first = store.transition(job.job_id, frozenset({S.QUEUED}), S.RUNNING)
    assert first is not None
    clock.advance(1)
    assert store.transition(job.job_id, frozenset({S.QUEUED}), S.RUNNING) is None
    assert store.get(job.job_id) == first


def test_illegal_move_is_refused_even_when_the_caller_allows_it(store: JobStore, clock: FakeClock) -> None:
    job, _ = store.create(make_job(clock))
    # queued -> succeeded skips running; the store never makes an illegal move.
    assert store.transition(job.job_id, ALL, S.SUCCEEDED) is None
    assert store.transition(job.job_id, ALL, S.QUEUED) is None
    assert store.get(job.job_id) == job


def test_stale_source_status_is_refused(store: JobStore, clock: FakeClock) -> None:
    job, _ = store.create(make_job(clock))
    assert store.transition(job.job_id, frozenset({S.RUNNING}), S.FAILED) is None
    assert store.get(job.job_id) == job


def test_queued_job_can_be_cancelled_directly(store: JobStore, clock: FakeClock) -> None:
    job, _ = store.create(make_job(clock))
    done = store.transition(job.job_id, jm.sources(S.CANCELLED), S.CANCELLED)
    assert done is not None and done.status is S.CANCELLED and done.finished_at == clock.now()


def test_cancelling_then_cancelled_and_late_success_ignored(store: JobStore, clock: FakeClock) -> None:
    job, _ = store.create(make_job(clock))
    store.transition(job.job_id, frozenset({S.QUEUED}), S.RUNNING)
    assert store.transition(job.job_id, jm.sources(S.CANCELLING), S.CANCELLING) is not None
    assert store.transition(job.job_id, ALL, S.SUCCEEDED) is None
    cancelled = store.transition(job.job_id, frozenset({S.CANCELLING}), S.CANCELLED)
    assert cancelled is not None and cancelled.status is S.CANCELLED


@pytest.mark.parametrize("final", [S.SUCCEEDED, S.FAILED, S.CANCELLED])
def test_finished_states_are_absorbing(store: JobStore, clock: FakeClock, final: JobStatus) -> None:
    job, _ = store.create(make_job(clock))
    if final is S.CANCELLED:
        end = store.transition(job.job_id, ALL, S.CANCELLED)
    else:
        store.transition(job.job_id, ALL, S.RUNNING)
        end = store.transition(job.job_id, ALL, final)
    assert end is not None and end.status is final
    for to in JobStatus:
        assert store.transition(job.job_id, ALL, to) is None
    assert store.get(job.job_id) == end


def test_transition_of_unknown_job_is_none(store: JobStore) -> None:
    assert store.transition("job_01ARZ3NDEKTSV4RRFFQ69G5FAV", ALL, S.RUNNING) is None


def test_transition_refuses_managed_fields(store: JobStore, clock: FakeClock) -> None:
    job, _ = store.create(make_job(clock))
    with pytest.raises(TypeError):
        store.transition(job.job_id, ALL, S.RUNNING, version=7)
    assert store.get(job.job_id) == job


# --- update -----------------------------------------------------------------------------------


def test_update_is_conditional_on_version(store: JobStore, clock: FakeClock) -> None:
    job, _ = store.create(make_job(clock))
    clock.advance(2)
    v2 = store.update(job.job_id, 1, records_done=10, checkpoint={"offset": 10})
    assert v2 is not None
    assert (v2.version, v2.records_done, v2.checkpoint, v2.updated_at) == (2, 10, {"offset": 10}, clock.now())
    assert v2.status is S.QUEUED
    assert store.update(job.job_id, 1, records_done=99) is None  # lost the race: stale version
    v3 = store.update(job.job_id, 2, checkpoint=None)
    assert v3 is not None and v3.checkpoint is None and v3.version == 3
    assert store.get(job.job_id) == v3


def test_update_of_unknown_job_is_none_and_status_is_not_updatable(store: JobStore, clock: FakeClock) -> None:
    assert store.update("job_01ARZ3NDEKTSV4RRFFQ69G5FAV", 1, attempts=1) is None
    job, _ = store.create(make_job(clock))
    with pytest.raises(TypeError):
        store.update(job.job_id, 1, status=S.SUCCEEDED)


# --- listing ----------------------------------------------------------------------------------


def test_list_is_newest_first_and_pages_cover_every_job_once(store: JobStore, clock: FakeClock) -> None:
    ids = []
    for i in range(8):
        if i != 4:  # jobs 3 and 4 share a creation time: ties are broken by id
            clock.advance(1)
        ids.append(store.create(make_job(clock))[0].job_id)
    store.create(make_job(clock, "bob"))
    newest_first = [store.get(i) for i in ids]
    newest_first.sort(key=lambda j: (j.created_at, j.job_id) if j else (T0, ""), reverse=True)
    for limit in (1, 3, 8, 50):
        pages = all_pages(store, "alice", limit)
        flat = [j.job_id for p in pages for j in p]
        assert flat == [j.job_id for j in newest_first if j]
        assert all(len(p) == limit for p in pages[:-1] if p)


def test_list_filters_by_status_and_model(store: JobStore, clock: FakeClock) -> None:
    made = []
    for i in range(9):
        clock.advance(1)
        job, _ = store.create(make_job(clock, model="iris" if i % 3 else "wine"))
        if i % 2:
            store.transition(job.job_id, ALL, S.RUNNING)
        made.append(job)
    running_iris = [j.job_id for j in reversed(made) if made.index(j) % 2 and made.index(j) % 3]
    pages = all_pages(store, "alice", 2, status=S.RUNNING, model="iris")
    assert [j.job_id for p in pages for j in p] == running_iris
    wine = all_pages(store, "alice", 50, model="wine")
    assert [j.model for p in wine for j in p] == ["wine"] * 3
    queued = [j for p in all_pages(store, "alice", 4, status=S.QUEUED) for j in p]
    assert len(queued) == 5 and all(j.status is S.QUEUED for j in queued)


def test_owners_see_only_their_jobs_and_cursors(store: JobStore, clock: FakeClock) -> None:
    for owner in ("alice", "alice", "bob"):
        clock.advance(1)
        store.create(make_job(clock, owner))
    page = store.list_by_owner("alice", limit=1)
    assert page.next_cursor is not None
    assert [j.owner for j in store.list_by_owner("bob").jobs] == ["bob"]
    assert store.list_by_owner("carol").jobs == []
    with pytest.raises(InvalidRequest):
        store.list_by_owner("bob", cursor=page.next_cursor)


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 !!",
        base64.urlsafe_b64encode(b"not json").decode(),
        base64.urlsafe_b64encode(b'{"v":1,"o":"alice"}').decode(),
        base64.urlsafe_b64encode(b'{"v":1,"o":"alice","k":5}').decode(),
        base64.urlsafe_b64encode(b"[1,2]").decode(),
        "",
    ],
)
def test_bad_cursor_is_invalid_request(store: JobStore, cursor: str) -> None:
    with pytest.raises(InvalidRequest):
        store.list_by_owner("alice", cursor=cursor)


@pytest.mark.parametrize("limit", [0, -1, 1001])
def test_limit_out_of_range_is_invalid_request(store: JobStore, limit: int) -> None:
    with pytest.raises(InvalidRequest):
        store.list_by_owner("alice", limit=limit)


# --- active jobs, counts, TTL -----------------------------------------------------------------


def test_list_active_oldest_first_and_finished_jobs_leave(store: JobStore, clock: FakeClock) -> None:
    jobs = []
    for owner in ("alice", "bob", "alice", "bob", "alice"):
        clock.advance(1)
        jobs.append(store.create(make_job(clock, owner))[0])
    clock.advance(1)
    store.transition(jobs[0].job_id, ALL, S.RUNNING)  # touched now: newest update
    store.transition(jobs[1].job_id, ALL, S.CANCELLED)  # finished: gone from the active set
    cutoff = clock.now() + timedelta(seconds=1)
    assert [j.job_id for j in store.list_active(updated_before=cutoff, limit=10)] == [
        jobs[2].job_id,
        jobs[3].job_id,
        jobs[4].job_id,
        jobs[0].job_id,
    ]
    assert [j.job_id for j in store.list_active(updated_before=cutoff, limit=2)] == [jobs[2].job_id, jobs[3].job_id]
    # strictly before: a job updated exactly at the cutoff is not stale yet
    assert [j.job_id for j in store.list_active(updated_before=jobs[3].updated_at, limit=10)] == [jobs[2].job_id]
    store.transition(jobs[2].job_id, ALL, S.RUNNING)
    store.transition(jobs[2].job_id, ALL, S.SUCCEEDED)
    assert jobs[2].job_id not in {j.job_id for j in store.list_active(updated_before=cutoff, limit=10)}


def test_count_active_counts_one_owners_unfinished_jobs(store: JobStore, clock: FakeClock) -> None:
    a = [store.create(make_job(clock, "alice"))[0] for _ in range(4)]
    store.create(make_job(clock, "bob"))
    assert store.count_active("alice") == 4
    store.transition(a[0].job_id, ALL, S.RUNNING)
    store.transition(a[1].job_id, ALL, S.CANCELLING)
    assert store.count_active("alice") == 4
    store.transition(a[1].job_id, ALL, S.CANCELLED)
    store.transition(a[2].job_id, ALL, S.FAILED)
    assert store.count_active("alice") == 2
    assert store.count_active("bob") == 1
    assert store.count_active("carol") == 0


def test_expired_jobs_are_invisible(store_factory: StoreFactory, clock: FakeClock) -> None:
    store = store_factory(clock, ttl_days=1)
    old, _ = store.create(make_job(clock))
    live, _ = store.create(make_job(clock))
    store.transition(old.job_id, ALL, S.CANCELLED)
    clock.advance(timedelta(days=1).total_seconds() - 1)
    assert store.get(old.job_id) is not None
    clock.advance(1)  # exactly at expires_at: expired
    assert store.get(old.job_id) is None
    assert [j.job_id for j in store.list_by_owner("alice").jobs] == [live.job_id]
    assert [j.job_id for p in all_pages(store, "alice", 1) for j in p] == [live.job_id]
    assert store.update(old.job_id, 2, attempts=5) is None
    assert store.get(live.job_id) is not None  # active jobs never expire


def _pending(clock: FakeClock, delay_s: float = 0.0) -> dict[str, Any]:
    return {"id": "ntf_x", "state": "pending", "attempts": 0, "due_at": jm.format_time(clock.now() + timedelta(seconds=delay_s))}


def test_the_terminal_transition_records_the_notification_in_the_outbox(store: JobStore, clock: FakeClock) -> None:
    # The outbox entry is written by the very transition that finishes the job (one atomic write).
    notify = {"webhook": "https://example.com/hook"}
    a, _ = store.create(make_job(clock, notify=notify))
    b, _ = store.create(make_job(clock))
    assert store.list_notifications_due(due_before=clock.now() + timedelta(days=1), limit=10) == []
    store.transition(a.job_id, ALL, S.RUNNING)
    done = store.transition(a.job_id, ALL, S.SUCCEEDED, notification=_pending(clock, 5))
    store.transition(b.job_id, ALL, S.CANCELLED, notification=_pending(clock, 1))
    assert done is not None and done.notify == notify and done.notification == _pending(clock, 5)
    assert store.get(a.job_id) == done
    assert store.list_notifications_due(due_before=clock.now(), limit=10) == []  # not due yet
    due = store.list_notifications_due(due_before=clock.now() + timedelta(seconds=10), limit=10)
    assert [j.job_id for j in due] == [b.job_id, a.job_id]  # soonest first
    assert [j.job_id for j in store.list_notifications_due(due_before=clock.now() + timedelta(seconds=10), limit=1)] == [b.job_id]


def test_a_delivered_notification_leaves_the_outbox(store: JobStore, clock: FakeClock) -> None:
    job, _ = store.create(make_job(clock))
    job = store.transition(job.job_id, ALL, S.FAILED, notification=_pending(clock)) or job
    later = clock.now() + timedelta(seconds=1)
    retry = {**_pending(clock, 60), "attempts": 1, "last_error": "HTTP 500"}
    moved = store.update(job.job_id, job.version, notification=retry)
    assert moved is not None and moved.notification == retry
    assert store.list_notifications_due(due_before=later, limit=10) == []  # backing off
    assert [j.job_id for j in store.list_notifications_due(due_before=later + timedelta(seconds=60), limit=10)] == [job.job_id]
    delivered = store.update(job.job_id, moved.version, notification={**retry, "state": "delivered"})
    assert delivered is not None and delivered.notification is not None and delivered.notification["state"] == "delivered"
    assert store.list_notifications_due(due_before=later + timedelta(days=1), limit=10) == []
    assert store.update(job.job_id, moved.version, notification=retry) is None  # version-checked like any update


# --- adapter specifics ------------------------------------------------------------------------


def test_sqlite_store_is_durable_across_reopen(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "sub" / "jobs.db"
    store = SqliteJobStore(path, clock=clock)
    job, _ = store.create(make_job(clock, key="k"))
    running = store.transition(job.job_id, ALL, S.RUNNING)
    store.close()
    reopened = SqliteJobStore(path, clock=clock)
    try:
        assert reopened.get(job.job_id) == running
        assert reopened.create(make_job(clock, key="k")) == (running, False)
        assert reopened.count_active("alice") == 1
    finally:
        reopened.close()


def test_sqlite_store_adds_the_outbox_column_to_a_table_made_before_it(tmp_path: Path, clock: FakeClock) -> None:
    # A job table from before notifications: no notify_due column. Opening it migrates in place.
    import sqlite3

    path = tmp_path / "old.db"
    store = SqliteJobStore(path, clock=clock)
    job, _ = store.create(make_job(clock))
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("DROP INDEX jobs_notify_due")
    conn.execute("ALTER TABLE jobs DROP COLUMN notify_due")
    conn.commit()
    conn.close()
    reopened = SqliteJobStore(path, clock=clock)
    try:
        done = reopened.transition(job.job_id, ALL, S.CANCELLED, notification=_pending(clock))
        assert done is not None and reopened.get(job.job_id) == done
        assert [j.job_id for j in reopened.list_notifications_due(due_before=clock.now(), limit=5)] == [job.job_id]
    finally:
        reopened.close()


class RecordingClient:
    """Forwards to a real (moto) client and records which operations were called."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return attr(*args, **kwargs)

        return call


def test_dynamodb_uses_indexes_never_scans_and_keeps_the_active_index_sparse(moto_client: Any, clock: FakeClock) -> None:
    client = moto_client
    sc.create_table(client, "jobs")
    rec = RecordingClient(client)
    store = DynamoDBJobStore(rec, "jobs", clock=clock, ttl_days=3)
    job, _ = store.create(make_job(clock, key="k"))
    item = client.get_item(TableName="jobs", Key={"pk": {"S": "JOB#" + job.job_id}})["Item"]
    assert sc.ACTIVE_PK_ATTR in item and item[sc.ACTIVE_OWNER_ATTR] == {"S": "alice"}
    assert sc.TTL_ATTR not in item
    store.transition(job.job_id, ALL, S.CANCELLED)
    item = client.get_item(TableName="jobs", Key={"pk": {"S": "JOB#" + job.job_id}})["Item"]
    assert sc.ACTIVE_PK_ATTR not in item and sc.ACTIVE_OWNER_ATTR not in item
    assert int(item[sc.TTL_ATTR]["N"]) == jm.epoch_seconds(clock.now() + timedelta(days=3))
    store.list_by_owner("alice", status=S.QUEUED)
    store.list_active(updated_before=clock.now(), limit=5)
    store.count_active("alice")
    store.list_notifications_due(due_before=clock.now(), limit=5)
    assert "scan" not in rec.calls
    assert rec.calls.count("query") >= 3
    ttl = client.describe_time_to_live(TableName="jobs")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": sc.TTL_ATTR}


class FailingClient:
    """A DynamoDB client whose every call fails with the given error code."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __getattr__(self, name: str) -> Any:
        def fail(**kwargs: Any) -> Any:
            raise ClientError({"Error": {"Code": self.code, "Message": "boom"}}, name)

        return fail


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("ProvisionedThroughputExceededException", Throttled),
        ("ThrottlingException", Throttled),
        ("InternalServerError", BackendUnavailable),
        ("ResourceNotFoundException", BackendUnavailable),
    ],
)
def test_dynamodb_errors_become_router_errors(clock: FakeClock, code: str, expected: type[Exception]) -> None:
    store = DynamoDBJobStore(FailingClient(code), "jobs", clock=clock)  # type: ignore[arg-type]
    calls: list[Callable[[], object]] = [
        lambda: store.get("job_x"),
        lambda: store.create(make_job(clock)),
        lambda: store.create(make_job(clock, key="k")),
        lambda: store.transition("job_x", ALL, S.RUNNING),
        lambda: store.update("job_x", 1, attempts=1),
        lambda: store.list_by_owner("alice"),
        lambda: store.list_active(updated_before=clock.now(), limit=1),
        lambda: store.count_active("alice"),
    ]
    for call in calls:
        with pytest.raises(expected) as info:
            call()
        assert not isinstance(info.value, ClientError)


def test_dynamodb_missing_table_is_backend_unavailable(moto_client: Any, clock: FakeClock) -> None:
    store = DynamoDBJobStore(moto_client, "nope", clock=clock)
    with pytest.raises(BackendUnavailable):
        store.get("job_x")
