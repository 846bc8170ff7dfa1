"""JobStore on SQLite: the embedded default for `router serve`, same contract as DynamoDB.

One WAL-mode connection per store, guarded by a lock (a thread-per-request server would otherwise
leak a connection per thread); every write is a BEGIN IMMEDIATE transaction, so several stores or
processes on one file serialize their writes too. The rules come from router/jobs.py.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from router import jobs as jm
from router.domain import Job, JobStatus
from router.errors import BackendUnavailable, InternalError
from router.ports import Clock, Page

T = TypeVar("T")
log = logging.getLogger("router.jobs")

# Indexed columns beside the full record (JSON of jobs.to_record). `idempotency_key` holds the key
# only while it is remembered (jobs.idempotency_expiry); it is cleared when a new job takes it.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created_sk TEXT NOT NULL,
    status TEXT NOT NULL,
    model TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    active INTEGER NOT NULL,
    expires_at TEXT,
    idempotency_key TEXT,
    idempotency_expires_at TEXT,
    version INTEGER NOT NULL,
    record TEXT NOT NULL,
    notify_due TEXT,
    UNIQUE (owner, idempotency_key)
);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, created_sk);
CREATE INDEX IF NOT EXISTS jobs_active ON jobs (updated_at, job_id) WHERE active = 1;
CREATE INDEX IF NOT EXISTS jobs_active_by_owner ON jobs (owner) WHERE active = 1;
"""
# The notification outbox (jobs.notification_due): added to tables made before it existed.
_OUTBOX_COLUMN = "ALTER TABLE jobs ADD COLUMN notify_due TEXT"
_OUTBOX_INDEX = "CREATE INDEX IF NOT EXISTS jobs_notify_due ON jobs (notify_due, job_id) WHERE notify_due IS NOT NULL"

# Seconds a writer waits for another connection's write lock before giving up (503).
_BUSY_TIMEOUT_S = 10.0


class SqliteJobStore:
    """router.ports.JobStore in one SQLite file (created on first use, durable across reopen)."""

    def __init__(self, path: str | Path, *, clock: Clock | None = None, ttl_days: int = 30) -> None:
        self._clock: Clock = clock or jm.UtcClock()
        self._ttl_days = ttl_days
        self._lock = threading.RLock()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(
                str(path), timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed job survives a power cut, not only a process crash.
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(jobs)")}
            if "notify_due" not in columns:
                self._conn.execute(_OUTBOX_COLUMN)
            self._conn.execute(_OUTBOX_INDEX)
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"job table {path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- plumbing ---------------------------------------------------------------------------

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            try:
                return fn(self._conn)
            except sqlite3.Error as exc:
                raise BackendUnavailable(f"job table: {exc}") from exc

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise BackendUnavailable(f"job table: {exc}") from exc
            try:
                result = fn(self._conn)
                self._conn.execute("COMMIT")
                return result
            except BaseException as exc:
                # SQLite has already rolled back after some errors (a full disk, I/O): a second
                # ROLLBACK would raise "no transaction is active" and hide the real error.
                if self._conn.in_transaction:
                    try:
                        self._conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        log.warning("rollback of the job table failed", exc_info=True)
                if isinstance(exc, sqlite3.Error):
                    raise BackendUnavailable(f"job table: {exc}") from exc
                raise

    @staticmethod
    def _row_values(job: Job) -> dict[str, Any]:
        return {
            "job_id": job.job_id,
            "owner": job.owner,
            "created_sk": jm.owner_sort_key(job),
            "status": job.status.value,
            "model": job.model,
            "updated_at": jm.format_time(job.updated_at),
            "active": int(job.status.active),
            "expires_at": None if job.expires_at is None else jm.format_time(job.expires_at),
            "version": job.version,
            "record": jm.canonical_json(jm.to_record(job)),
            "notify_due": jm.notification_due(job),
        }

    def _load(self, conn: sqlite3.Connection, job_id: str, now: datetime) -> Job | None:
        row = conn.execute("SELECT record FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        job = jm.from_record(_record(row[0]))
        return None if jm.is_expired(job, now) else job

    def _save(self, conn: sqlite3.Connection, job: Job) -> None:
        values = self._row_values(job)
        conn.execute(
            "UPDATE jobs SET status = :status, model = :model, updated_at = :updated_at, active = :active,"
            " expires_at = :expires_at, version = :version, record = :record, notify_due = :notify_due WHERE job_id = :job_id",
            values,
        )

    # --- JobStore ---------------------------------------------------------------------------

    def create(self, job: Job) -> tuple[Job, bool]:
        now = self._clock.now()
        job = jm.prepare_new(job, now, self._ttl_days)

        def tx(conn: sqlite3.Connection) -> tuple[Job, bool]:
            if job.idempotency_key is not None:
                row = conn.execute(
                    "SELECT job_id, idempotency_expires_at FROM jobs WHERE owner = ? AND idempotency_key = ?",
                    (job.owner, job.idempotency_key),
                ).fetchone()
                if row is not None:
                    existing = self._load(conn, row[0], now)
                    if existing is not None and row[1] > jm.format_time(now):
                        return existing, False
                    # The key's window has passed: it is free for this new job.
                    conn.execute("UPDATE jobs SET idempotency_key = NULL WHERE job_id = ?", (row[0],))
            if conn.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job.job_id,)).fetchone() is not None:
                # The same create repeated (ids carry 80 random bits): return the stored job.
                existing = self._load(conn, job.job_id, now)
                if existing is None or existing.owner != job.owner:
                    raise InternalError("job id collision")
                return existing, False
            values = self._row_values(job)
            values["idempotency_key"] = job.idempotency_key
            values["idempotency_expires_at"] = (
                None
                if job.idempotency_key is None
                else jm.format_time(jm.idempotency_expiry(job.created_at, self._ttl_days))
            )
            conn.execute(
                "INSERT INTO jobs (job_id, owner, created_sk, status, model, updated_at, active, expires_at,"
                " idempotency_key, idempotency_expires_at, version, record, notify_due) VALUES (:job_id, :owner,"
                " :created_sk, :status, :model, :updated_at, :active, :expires_at, :idempotency_key,"
                " :idempotency_expires_at, :version, :record, :notify_due)",
                values,
            )
            return job, True

        return self._write(tx)

    def get(self, job_id: str) -> Job | None:
        now = self._clock.now()
        return self._read(lambda conn: self._load(conn, job_id, now))

    def transition(self, job_id: str, from_: frozenset[JobStatus], to: JobStatus, **changes: Any) -> Job | None:
        jm.check_changes(changes)
        legal = jm.allowed_from(from_, to)
        if not legal:
            return None
        now = self._clock.now()

        def tx(conn: sqlite3.Connection) -> Job | None:
            job = self._load(conn, job_id, now)
            if job is None or job.status not in legal:
                return None
            new = jm.apply_transition(job, to, now, self._ttl_days, changes)
            self._save(conn, new)
            return new

        return self._write(tx)

    def update(self, job_id: str, expected_version: int, **changes: Any) -> Job | None:
        jm.check_changes(changes)
        now = self._clock.now()

        def tx(conn: sqlite3.Connection) -> Job | None:
            job = self._load(conn, job_id, now)
            if job is None or job.version != expected_version:
                return None
            new = jm.apply_update(job, now, changes)
            self._save(conn, new)
            return new

        return self._write(tx)

    def list_by_owner(
        self, owner: str, *, status: JobStatus | None = None, model: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> Page:
        jm.check_limit(limit)
        now = jm.format_time(self._clock.now())
        sql = "SELECT record FROM jobs WHERE owner = ? AND (expires_at IS NULL OR expires_at > ?)"
        params: list[Any] = [owner, now]
        if status is not None:
            sql += " AND status = ?"
            params.append(status.value)
        if model is not None:
            sql += " AND model = ?"
            params.append(model)
        if cursor is not None:
            sql += " AND created_sk < ?"
            params.append(jm.decode_cursor(cursor, owner))
        sql += " ORDER BY created_sk DESC LIMIT ?"
        params.append(limit + 1)  # one more than asked: tells whether a next page exists
        rows = self._read(lambda conn: conn.execute(sql, params).fetchall())
        found = [jm.from_record(_record(r[0])) for r in rows[:limit]]
        more = len(rows) > limit
        return Page(found, jm.encode_cursor(owner, jm.owner_sort_key(found[-1])) if more else None)

    def list_active(self, *, updated_before: datetime, limit: int) -> list[Job]:
        jm.check_limit(limit)
        rows = self._read(
            lambda conn: conn.execute(
                "SELECT record FROM jobs WHERE active = 1 AND updated_at < ? ORDER BY updated_at, job_id LIMIT ?",
                (jm.format_time(updated_before), limit),
            ).fetchall()
        )
        return [jm.from_record(_record(r[0])) for r in rows]

    def created_since(self, since: datetime) -> dict[str, tuple[int, int]]:
        """Jobs created at or after `since`, every owner's, by model: (jobs, records in them) — the
        local traffic `router advise` reads (a job whose size is not known yet counts 1 record)."""
        rows = self._read(
            lambda conn: conn.execute("SELECT model, record FROM jobs WHERE created_sk >= ?", (jm.format_time(since),)).fetchall()
        )
        out: dict[str, tuple[int, int]] = {}
        for model, record in rows:
            total = _record(record).get("records_total")
            jobs, records = out.get(model, (0, 0))
            out[model] = (jobs + 1, records + (total if isinstance(total, int) and total > 0 else 1))
        return out

    def list_notifications_due(self, *, due_before: datetime, limit: int) -> list[Job]:
        jm.check_limit(limit)
        now = self._clock.now()
        rows = self._read(
            lambda conn: conn.execute(
                "SELECT record FROM jobs WHERE notify_due IS NOT NULL AND notify_due <= ? ORDER BY notify_due, job_id LIMIT ?",
                (jm.format_time(due_before), limit),
            ).fetchall()
        )
        found = (jm.from_record(_record(r[0])) for r in rows)
        return [j for j in found if not jm.is_expired(j, now)]

    def count_active(self, owner: str) -> int:
        row = self._read(
            lambda conn: conn.execute("SELECT COUNT(*) FROM jobs WHERE owner = ? AND active = 1", (owner,)).fetchone()
        )
        return int(row[0])


def _record(text: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(text)
    return data
