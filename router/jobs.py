"""The job state machine and the job record format, in pure code (no I/O).

Every JobStore adapter asks this module which moves are legal, what a move changes, how a Job is
written as a flat record, and how list cursors look, so SQLite and DynamoDB cannot drift apart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

from router.domain import Job, JobStatus, OutputKind, Route
from router.errors import InvalidRequest

S = JobStatus

# The allowed moves. Anything not listed is refused (a no-op for the stores, never an error).
# - queued -> cancelled: a job never handed to a backend has nothing to stop, so a cancel ends it
#   at once; queued -> cancelling is for a job whose submission may already be in flight.
# - queued -> failed: submission to the backend failed, or the sweeper gave up after max_attempts.
# - cancelling -> cancelled only. When the backend finished before the stop took effect the job
#   still ends `cancelled`: the client asked for it, and a late success/failure event is then a
#   stale event (a no-op). This keeps "DELETE is honoured" simple to state and to test.
# - finished states (succeeded, failed, cancelled) are absorbing.
TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = {
    S.QUEUED: frozenset({S.RUNNING, S.FAILED, S.CANCELLING, S.CANCELLED}),
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.CANCELLING}),
    S.CANCELLING: frozenset({S.CANCELLED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}

# Fields a caller may change through transition()/update(). The rest are identity (job_id, owner,
# created_at, idempotency), or maintained by the store itself (status, version, updated_at, expires_at).
MUTABLE_FIELDS: frozenset[str] = frozenset(
    {
        "model", "route", "reason", "input_uri", "input_format", "output_uri", "output_kind",
        "started_at", "finished_at", "records_total", "records_done", "error", "backend_name",
        "checkpoint", "attempts", "extra", "notification",
    }
)  # fmt: skip

_DATETIME_FIELDS = frozenset({"created_at", "updated_at", "started_at", "finished_at", "expires_at"})
_JSON_FIELDS = frozenset({"error", "checkpoint", "extra", "estimate", "notify", "notification"})
_JOB_FIELDS = tuple(f.name for f in fields(Job))


def can_transition(a: JobStatus, b: JobStatus) -> bool:
    """True when a job in status `a` may move to `b` in one step (a == b is never a move)."""
    return b in TRANSITIONS[a]


def sources(to: JobStatus) -> frozenset[JobStatus]:
    """The statuses from which `to` is reachable in one step."""
    return frozenset(a for a, targets in TRANSITIONS.items() if to in targets)


def allowed_from(from_: frozenset[JobStatus], to: JobStatus) -> frozenset[JobStatus]:
    """The part of a caller's `from_` set that is legal for `to`: stores never make an illegal move."""
    return frozenset(from_) & sources(to)


# --- identifiers and digests ------------------------------------------------------------------

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_job_id(now: datetime) -> str:
    """"job_" + a ULID: 48-bit milliseconds since the epoch + 80 random bits, Crockford base32.

    Ids sort by creation time (to the millisecond), and random bits come from `secrets`."""
    ms = int(_utc(now).timestamp() * 1000)
    if not 0 <= ms < 1 << 48:
        raise ValueError(f"time out of ULID range: {now!r}")
    value = (ms << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):  # 26 * 5 = 130 bits >= 128
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "job_" + "".join(reversed(chars))


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no spaces: equal data gives equal text (digests, stored dicts)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def request_digest(obj: Any) -> str:
    """sha256 of the canonical JSON of a request: the idempotency check compares these."""
    return "sha256:" + hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


# --- time -------------------------------------------------------------------------------------


class UtcClock:
    """The real clock (ports.Clock). Tests pass a fake with the same `now()`."""

    def now(self) -> datetime:
        return datetime.now(UTC)


def _utc(dt: datetime) -> datetime:
    # Naive datetimes are taken to be UTC: the project never produces local times.
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def format_time(dt: datetime) -> str:
    """ISO-8601 UTC with 'Z' and fixed-width microseconds, so text order is time order (indexes)."""
    return _utc(dt).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    return _utc(datetime.fromisoformat(text))


def epoch_seconds(dt: datetime) -> int:
    return int(_utc(dt).timestamp())


def is_expired(job: Job, now: datetime) -> bool:
    """TTL deletion is lazy on DynamoDB (and absent on SQLite): expired jobs are filtered in code."""
    return job.expires_at is not None and _utc(job.expires_at) <= _utc(now)


# --- moves ------------------------------------------------------------------------------------


def check_changes(changes: Mapping[str, Any]) -> None:
    """Refuse changes to fields no caller may set (a programming error, hence TypeError)."""
    bad = sorted(set(changes) - MUTABLE_FIELDS)
    if bad:
        raise TypeError(f"these job fields cannot be changed: {', '.join(bad)}")


def finished_effects(finished_at: datetime | None, now: datetime, ttl_days: int) -> dict[str, Any]:
    """What entering a finished state sets: finished_at (now, unless the caller gave the backend's
    time) and the expiry, ttl_days after that."""
    at = finished_at or now
    return {"finished_at": at, "expires_at": _utc(at) + timedelta(days=ttl_days)}


def apply_transition(job: Job, to: JobStatus, now: datetime, ttl_days: int, changes: Mapping[str, Any]) -> Job:
    """The job after a legal move to `to` (caller checked it): status, changes, timestamps,
    expiry on finishing, version + 1. The DynamoDB adapter expresses the same in one UpdateItem."""
    check_changes(changes)
    new = job.evolve(**changes, status=to, updated_at=now, version=job.version + 1)
    if to is JobStatus.RUNNING and new.started_at is None:
        new = new.evolve(started_at=now)
    if to.finished:
        new = new.evolve(**finished_effects(changes.get("finished_at"), now, ttl_days))
    return new


def apply_update(job: Job, now: datetime, changes: Mapping[str, Any]) -> Job:
    check_changes(changes)
    return job.evolve(**changes, updated_at=now, version=job.version + 1)


def idempotency_expiry(created_at: datetime, ttl_days: int) -> datetime:
    """An idempotency key is remembered for ttl_days after its job was created; a job outlives its
    key (it expires ttl_days after it *finished*), so a live key always names a live job."""
    return _utc(created_at) + timedelta(days=ttl_days)


def prepare_new(job: Job, now: datetime, ttl_days: int) -> Job:
    """A job created already finished (e.g. refused at submission) gets its expiry like any other."""
    if job.status.finished and job.expires_at is None:
        return job.evolve(**finished_effects(job.finished_at, now, ttl_days))
    return job


# --- the flat record (both stores) ------------------------------------------------------------


def to_record(job: Job) -> dict[str, str | int | None]:
    """Job -> flat dict of str/int/None: datetimes as ISO 'Z' text, enums by value, dicts as JSON text."""
    out: dict[str, str | int | None] = {}
    for name in _JOB_FIELDS:
        out[name] = field_to_record(name, getattr(job, name))
    return out


def field_to_record(name: str, value: Any) -> str | int | None:
    if value is None:
        return None
    if name in _DATETIME_FIELDS:
        return format_time(value)
    if name in _JSON_FIELDS:
        return canonical_json(value)
    if isinstance(value, JobStatus | Route | OutputKind):
        return str(value.value)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"job field {name} has an unsupported type: {type(value).__name__}")
    return value


def from_record(rec: Mapping[str, Any]) -> Job:
    """Inverse of to_record. Missing optional fields take the Job defaults."""
    kwargs: dict[str, Any] = {}
    for name in _JOB_FIELDS:
        value = rec.get(name)
        if value is None:
            continue
        if name in _DATETIME_FIELDS:
            value = parse_time(value)
        elif name in _JSON_FIELDS:
            value = json.loads(value)
        elif name == "status":
            value = JobStatus(value)
        elif name == "route":
            value = Route(value)
        elif name == "output_kind":
            value = OutputKind(value)
        elif name in ("records_total", "records_done", "attempts", "version"):
            value = int(value)
        kwargs[name] = value
    return Job(**kwargs)


def notification_due(job: Job) -> str | None:
    """The outbox index key of a job: its notification's due time (ISO 'Z' text) while it is
    pending delivery, else None (not in the index). Both stores index exactly this."""
    return notification_due_of(job.notification)


def notification_due_of(n: Mapping[str, Any] | None) -> str | None:
    if not n or n.get("state") != "pending" or not isinstance(n.get("due_at"), str):
        return None
    return str(n["due_at"])


# --- listing order and cursors ----------------------------------------------------------------


def owner_sort_key(job: Job) -> str:
    """Newest-first order of an owner's jobs: creation time, ties broken by job id."""
    return f"{format_time(job.created_at)}#{job.job_id}"


def encode_cursor(owner: str, sort_key: str) -> str:
    """An opaque cursor: the position after which the next page starts."""
    raw = canonical_json({"v": 1, "o": owner, "k": sort_key}).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


_BAD_CURSOR = "cursor is not valid: pass the next_cursor of a previous page of your own jobs, unchanged"


def decode_cursor(cursor: str, owner: str) -> str:
    """The sort key inside `cursor`; InvalidRequest when it is malformed or another owner's."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8"))
    except (ValueError, UnicodeError, binascii.Error) as exc:
        raise InvalidRequest(_BAD_CURSOR) from exc
    if (
        not isinstance(data, dict)
        or data.get("v") != 1
        or set(data) != {"v", "o", "k"}
        or data["o"] != owner
        or not isinstance(data["k"], str)
        or "#" not in data["k"]
    ):
        raise InvalidRequest(_BAD_CURSOR)
    key: str = data["k"]
    return key


def check_limit(limit: int, maximum: int = 1000) -> None:
    if not 1 <= limit <= maximum:
        raise InvalidRequest(f"limit must be between 1 and {maximum}")
