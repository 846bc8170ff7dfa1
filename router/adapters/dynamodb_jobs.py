"""JobStore on DynamoDB: every write conditional, one UpdateItem per transition, no table scans.

The low-level boto3 client is passed in (moto, a Stubber or a fault wrapper in tests). Key schema
and indexes live in dynamodb_schema.py; the state-machine rules and the record format in jobs.py.

- create: a conditional PutItem (attribute_not_exists); with an idempotency key, a
  TransactWriteItems of the job and an `IDEM#{owner}#{key}` item, both conditional, so fifty
  racing submissions create one job. The losers read the key's item and return its job.
- transition: UpdateItem conditioned on `status IN (legal sources)`; a failed condition is a stale
  or repeated event and returns None. Finishing REMOVEs the sparse index keys and sets the TTL.
- list_by_owner / list_active: Queries on the owner index and the sparse active index.
- count_active(owner): a Select=COUNT Query on the sparse active-by-owner index (keys only), so
  it reads just that owner's active jobs. GSIs are eventually consistent: a burst of concurrent
  submissions may briefly exceed the per-owner quota by a few jobs (a soft limit by design).
- TTL deletion is lazy (items can linger for days after expiry): every read filters expired
  items in code, and an expired idempotency item may be overwritten.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

from router import jobs as jm
from router.adapters import dynamodb_schema as sc
from router.adapters.aws_errors import (
    Kind,
    System,
    aws_error_code,
    classify,
    is_throttled,
    router_error_type,
    to_router_error,
)
from router.domain import Job, JobStatus
from router.errors import BackendUnavailable, IdempotencyInProgress, InternalError
from router.ports import Clock, Page

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_BUSY = "the job table is busy (throttled); retry in a moment"
# Transactions on the same items can be cancelled with TransactionConflict while another commits;
# after that many rounds the caller gets 409 idempotency_in_progress and may retry.
_CREATE_ATTEMPTS = 5
_INT_FIELDS = frozenset({"records_total", "records_done", "attempts", "version"})


class _ConditionFailed(Exception):
    """A ConditionalCheckFailed or a cancelled transaction (with one reason code per item)."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(", ".join(reasons))
        self.reasons = reasons


class _Expr:
    """Builds an expression's placeholder maps (every name goes through one: `status`, `owner`,
    `ttl`... are DynamoDB reserved words)."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, dict[str, str]] = {}

    def n(self, attr: str) -> str:
        key = f"#n{len(self.names)}"
        self.names[key] = attr
        return key

    def v(self, value: str | int) -> str:
        key = f":v{len(self.values)}"
        self.values[key] = _attr(value)
        return key

    def args(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ExpressionAttributeNames": self.names}
        if self.values:
            out["ExpressionAttributeValues"] = self.values
        return out


def _attr(value: str | int) -> dict[str, str]:
    if isinstance(value, bool):
        raise TypeError("booleans are not stored")
    return {"N": str(value)} if isinstance(value, int) else {"S": value}


def _shard(job_id: str) -> str:
    return f"ACTIVE#{zlib.crc32(job_id.encode('utf-8')) % sc.ACTIVE_SHARDS}"


def _job_key(job_id: str) -> dict[str, dict[str, str]]:
    return {sc.PK: {"S": sc.JOB_PREFIX + job_id}}


def _idem_key(owner: str, key: str) -> dict[str, dict[str, str]]:
    # The owner is percent-encoded so that a '#' in it cannot make two (owner, key) pairs collide.
    return {sc.PK: {"S": f"{sc.IDEM_PREFIX}{quote(owner, safe='')}#{key}"}}


class DynamoDBJobStore:
    """router.ports.JobStore on one DynamoDB table (schema: dynamodb_schema.py)."""

    def __init__(self, client: DynamoDBClient, table_name: str, *, clock: Clock | None = None, ttl_days: int = 30) -> None:
        self._client = client
        self._table = table_name
        self._clock: Clock = clock or jm.UtcClock()
        self._ttl_days = ttl_days

    # --- item <-> Job ---------------------------------------------------------------------

    def _item(self, job: Job) -> dict[str, dict[str, str]]:
        item = {k: _attr(v) for k, v in jm.to_record(job).items() if v is not None}
        item[sc.PK] = {"S": sc.JOB_PREFIX + job.job_id}
        item[sc.OWNER_SORT_ATTR] = {"S": jm.owner_sort_key(job)}
        if job.status.active:
            item[sc.ACTIVE_PK_ATTR] = {"S": _shard(job.job_id)}
            item[sc.ACTIVE_OWNER_ATTR] = {"S": job.owner}
        due = jm.notification_due(job)
        if due is not None:
            item[sc.NOTIFY_PK_ATTR] = {"S": sc.NOTIFY_PK}
            item[sc.NOTIFY_SORT_ATTR] = {"S": due}
        if job.expires_at is not None:
            item[sc.TTL_ATTR] = {"N": str(jm.epoch_seconds(job.expires_at))}
        return item

    @staticmethod
    def _job(item: dict[str, Any]) -> Job:
        rec: dict[str, Any] = {}
        for name, typed in item.items():
            if "S" in typed:
                rec[name] = typed["S"]
            elif "N" in typed and name in _INT_FIELDS:
                rec[name] = int(typed["N"])
        return jm.from_record(rec)

    def _live(self, item: dict[str, Any] | None, now: datetime) -> Job | None:
        if item is None or not item.get(sc.PK, {}).get("S", "").startswith(sc.JOB_PREFIX):
            return None
        job = self._job(item)
        return None if jm.is_expired(job, now) else job

    # --- calls ----------------------------------------------------------------------------

    def _call(self, op: str, **kwargs: Any) -> dict[str, Any]:
        method: Callable[..., Any] = getattr(self._client, op)
        try:
            return cast(dict[str, Any], method(**kwargs))
        except Exception as exc:
            # botocore is already loaded when its client raised: importing here keeps it off the
            # module's import path (Lambda cold start).
            from botocore.exceptions import BotoCoreError, ClientError

            if not isinstance(exc, ClientError | BotoCoreError):
                raise
            kind = classify(exc)
            code = aws_error_code(exc)
            if kind is Kind.CONDITION_FAILED:
                raise _ConditionFailed(["ConditionalCheckFailed"]) from None
            if code == "TransactionCanceledException":
                reasons = [str(r.get("Code") or "None") for r in getattr(exc, "response", {}).get("CancellationReasons", [])]
                if not any(is_throttled(r) for r in reasons):
                    raise _ConditionFailed(reasons) from None
                kind = Kind.THROTTLED
            if kind is Kind.THROTTLED:
                raise router_error_type(System.DYNAMODB, kind)(_BUSY) from exc
            raise to_router_error(exc, System.DYNAMODB, f"job table: {op} failed ({code or type(exc).__name__})") from exc

    def _get_item(self, key: dict[str, dict[str, str]]) -> dict[str, Any] | None:
        resp = self._call("get_item", TableName=self._table, Key=key, ConsistentRead=True)
        return cast("dict[str, Any] | None", resp.get("Item"))

    # --- JobStore ---------------------------------------------------------------------------

    def create(self, job: Job) -> tuple[Job, bool]:
        now = self._clock.now()
        job = jm.prepare_new(job, now, self._ttl_days)
        cond = _Expr()
        put_job = {
            "TableName": self._table,
            "Item": self._item(job),
            "ConditionExpression": f"attribute_not_exists({cond.n(sc.PK)})",
            **cond.args(),
        }
        if job.idempotency_key is None:
            try:
                self._call("put_item", **put_job)
            except _ConditionFailed:
                return self._on_id_conflict(job, now)
            return job, True

        idem_key = _idem_key(job.owner, job.idempotency_key)
        expiry = jm.idempotency_expiry(job.created_at, self._ttl_days)
        icond = _Expr()
        put_idem = {
            "TableName": self._table,
            "Item": {
                **idem_key,
                "job_id": {"S": job.job_id},
                sc.TTL_ATTR: {"N": str(jm.epoch_seconds(expiry))},
            },
            # An expired key (TTL deletion is lazy) is free to take.
            "ConditionExpression": (
                f"attribute_not_exists({icond.n(sc.PK)}) OR {icond.n(sc.TTL_ATTR)} <= {icond.v(jm.epoch_seconds(now))}"
            ),
            **icond.args(),
        }
        for _ in range(_CREATE_ATTEMPTS):
            try:
                # The token makes botocore's own retry after a lost reply succeed (within 10 min)
                # instead of failing its condition on the items the first attempt wrote.
                self._call("transact_write_items", TransactItems=[{"Put": put_job}, {"Put": put_idem}], ClientRequestToken=job.job_id)
                return job, True
            except _ConditionFailed as failed:
                reasons = failed.reasons + ["None", "None"]
                if reasons[0] == "ConditionalCheckFailed":
                    return self._on_id_conflict(job, now)
                if reasons[1] not in ("ConditionalCheckFailed", "TransactionConflict"):
                    raise BackendUnavailable(f"job table: create cancelled ({', '.join(failed.reasons)})") from None
                existing = self._idempotent_job(idem_key, now)
                if existing is not None:
                    return existing, False
        raise IdempotencyInProgress("another request with this Idempotency-Key is in progress; retry")

    def _idempotent_job(self, idem_key: dict[str, dict[str, str]], now: datetime) -> Job | None:
        """The live job an idempotency item names, or None (then the create is retried)."""
        idem = self._get_item(idem_key)
        if idem is None or int(idem.get(sc.TTL_ATTR, {}).get("N", "0")) <= jm.epoch_seconds(now):
            return None
        job_id = idem["job_id"]["S"]
        job = self._live(self._get_item(_job_key(job_id)), now)
        if job is None:
            # The key names a job that is gone (deleted by hand): drop the key, if unchanged.
            c = _Expr()
            with contextlib.suppress(_ConditionFailed):
                self._call(
                    "delete_item",
                    TableName=self._table,
                    Key=idem_key,
                    ConditionExpression=f"{c.n('job_id')} = {c.v(job_id)}",
                    **c.args(),
                )
        return job

    def _on_id_conflict(self, job: Job, now: datetime) -> tuple[Job, bool]:
        # Job ids carry 80 random bits: a conflict is the same create repeated (e.g. a retry after
        # a lost response), which returns the stored job; another owner's job is a bug.
        existing = self._live(self._get_item(_job_key(job.job_id)), now)
        if existing is None or existing.owner != job.owner:
            raise InternalError("job id collision")
        return existing, False

    def get(self, job_id: str) -> Job | None:
        return self._live(self._get_item(_job_key(job_id)), self._clock.now())

    def transition(self, job_id: str, from_: frozenset[JobStatus], to: JobStatus, **changes: Any) -> Job | None:
        jm.check_changes(changes)
        legal = jm.allowed_from(from_, to)
        if not legal:
            return None
        now = self._clock.now()
        e = _Expr()
        sets = [f"{e.n('status')} = {e.v(to.value)}"]
        removes: list[str] = []
        managed: dict[str, Any] = dict(changes)
        if to.finished:
            managed.update(jm.finished_effects(changes.get("finished_at"), now, self._ttl_days))
            sets.append(f"{e.n(sc.TTL_ATTR)} = {e.v(jm.epoch_seconds(managed['expires_at']))}")
            removes += [e.n(sc.ACTIVE_PK_ATTR), e.n(sc.ACTIVE_OWNER_ATTR)]
        elif to is JobStatus.RUNNING and "started_at" not in changes:
            at = e.n("started_at")
            sets.append(f"{at} = if_not_exists({at}, {e.v(jm.format_time(now))})")
        self._changes(e, managed, now, sets, removes)
        status_values = ", ".join(e.v(s.value) for s in sorted(legal, key=lambda s: s.value))
        condition = f"attribute_exists({e.n(sc.PK)}) AND {e.n('status')} IN ({status_values})"
        return self._update(job_id, e, sets, removes, condition)

    def update(self, job_id: str, expected_version: int, **changes: Any) -> Job | None:
        jm.check_changes(changes)
        now = self._clock.now()
        e = _Expr()
        sets: list[str] = []
        removes: list[str] = []
        self._changes(e, changes, now, sets, removes)
        ttl = e.n(sc.TTL_ATTR)
        condition = (
            f"attribute_exists({e.n(sc.PK)}) AND {e.n('version')} = {e.v(expected_version)}"
            f" AND (attribute_not_exists({ttl}) OR {ttl} > {e.v(jm.epoch_seconds(now))})"
        )
        return self._update(job_id, e, sets, removes, condition)

    @staticmethod
    def _changes(e: _Expr, changes: dict[str, Any], now: datetime, sets: list[str], removes: list[str]) -> None:
        """SET/REMOVE clauses for field changes, plus updated_at and the version bump."""
        for name, value in changes.items():
            stored = jm.field_to_record(name, value)
            if stored is None:
                removes.append(e.n(name))
            else:
                sets.append(f"{e.n(name)} = {e.v(stored)}")
            if name == "notification":  # the outbox index follows the notification's state
                due = jm.notification_due_of(value)
                if due is None:
                    removes += [e.n(sc.NOTIFY_PK_ATTR), e.n(sc.NOTIFY_SORT_ATTR)]
                else:
                    sets += [f"{e.n(sc.NOTIFY_PK_ATTR)} = {e.v(sc.NOTIFY_PK)}", f"{e.n(sc.NOTIFY_SORT_ATTR)} = {e.v(due)}"]
        version = e.n("version")
        sets.append(f"{e.n('updated_at')} = {e.v(jm.format_time(now))}")
        sets.append(f"{version} = {version} + {e.v(1)}")

    def _update(self, job_id: str, e: _Expr, sets: list[str], removes: list[str], condition: str) -> Job | None:
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        try:
            resp = self._call(
                "update_item",
                TableName=self._table,
                Key=_job_key(job_id),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ReturnValues="ALL_NEW",
                **e.args(),
            )
        except _ConditionFailed:
            return None
        return self._job(resp["Attributes"])

    def list_by_owner(
        self, owner: str, *, status: JobStatus | None = None, model: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> Page:
        jm.check_limit(limit)
        now = self._clock.now()
        e = _Expr()
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": sc.OWNER_INDEX,
            "KeyConditionExpression": f"{e.n(sc.OWNER_ATTR)} = {e.v(owner)}",
            "ScanIndexForward": False,
        }
        filters = []
        if status is not None:
            filters.append(f"{e.n('status')} = {e.v(status.value)}")
        if model is not None:
            filters.append(f"{e.n('model')} = {e.v(model)}")
        if filters:
            query["FilterExpression"] = " AND ".join(filters)
        query.update(e.args())
        if cursor is not None:
            sort_key = jm.decode_cursor(cursor, owner)
            job_id = sort_key.split("#", 1)[1]
            query["ExclusiveStartKey"] = {
                **_job_key(job_id),
                sc.OWNER_ATTR: {"S": owner},
                sc.OWNER_SORT_ATTR: {"S": sort_key},
            }
        found: list[Job] = []
        while True:
            remaining = limit - len(found)
            # Limit counts items read before the filter: read more when filtering, and cut below.
            query["Limit"] = min(max(remaining * 4, 50), 1000) if filters else remaining
            resp = self._call("query", **query)
            items: list[dict[str, Any]] = resp.get("Items", [])
            last_key = resp.get("LastEvaluatedKey")
            for i, item in enumerate(items):
                job = self._live(item, now)
                if job is None:
                    continue
                found.append(job)
                if len(found) == limit:
                    more = i < len(items) - 1 or last_key is not None
                    return Page(found, jm.encode_cursor(owner, jm.owner_sort_key(job)) if more else None)
            if last_key is None:
                return Page(found, None)
            query["ExclusiveStartKey"] = last_key

    def list_active(self, *, updated_before: datetime, limit: int) -> list[Job]:
        jm.check_limit(limit)
        now = self._clock.now()
        found: list[Job] = []
        for shard in range(sc.ACTIVE_SHARDS):
            e = _Expr()
            query: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": sc.ACTIVE_INDEX,
                "KeyConditionExpression": (
                    f"{e.n(sc.ACTIVE_PK_ATTR)} = {e.v(f'ACTIVE#{shard}')}"
                    f" AND {e.n(sc.ACTIVE_SORT_ATTR)} < {e.v(jm.format_time(updated_before))}"
                ),
                "ScanIndexForward": True,
                **e.args(),
            }
            taken = 0
            while taken < limit:
                resp = self._call("query", Limit=limit - taken, **query)
                for item in resp.get("Items", []):
                    job = self._live(item, now)
                    if job is not None and job.status.active:
                        found.append(job)
                        taken += 1
                if "LastEvaluatedKey" not in resp:
                    break
                query["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        found.sort(key=lambda j: (jm.format_time(j.updated_at), j.job_id))
        return found[:limit]

    def list_notifications_due(self, *, due_before: datetime, limit: int) -> list[Job]:
        jm.check_limit(limit)
        now = self._clock.now()
        e = _Expr()
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": sc.NOTIFY_INDEX,
            "KeyConditionExpression": (
                f"{e.n(sc.NOTIFY_PK_ATTR)} = {e.v(sc.NOTIFY_PK)} AND {e.n(sc.NOTIFY_SORT_ATTR)} <= {e.v(jm.format_time(due_before))}"
            ),
            "ScanIndexForward": True,
            **e.args(),
        }
        found: list[Job] = []
        while len(found) < limit:
            resp = self._call("query", Limit=limit - len(found), **query)
            for item in resp.get("Items", []):
                job = self._live(item, now)
                if job is not None and jm.notification_due(job) is not None:
                    found.append(job)
            if "LastEvaluatedKey" not in resp:
                break
            query["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        return found[:limit]

    def count_active(self, owner: str) -> int:
        e = _Expr()
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": sc.ACTIVE_OWNER_INDEX,
            "KeyConditionExpression": f"{e.n(sc.ACTIVE_OWNER_ATTR)} = {e.v(owner)}",
            "Select": "COUNT",
            **e.args(),
        }
        total = 0
        while True:
            resp = self._call("query", **query)
            total += int(resp.get("Count", 0))
            if "LastEvaluatedKey" not in resp:
                return total
            query["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
