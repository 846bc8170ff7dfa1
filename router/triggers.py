"""Object-created triggers: an object landing under a configured `triggers[].source` starts a job
for the trigger's owner (docs/configuration.md "Triggers").

Events come from S3 (bucket notifications or EventBridge "Object Created", router/handlers/
trigger.py) or from the folder watcher of `router serve` (router/local/watch.py); all become
ObjectCreated. Exactly one job per object version: the job's Idempotency-Key is derived from
(location, version id or ETag), so a re-delivered event finds the job the first one made.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from router.config import RouterConfig, Trigger
from router.domain import OutputKind
from router.errors import (
    IdempotencyKeyReuse,
    InvalidInput,
    InvalidRequest,
    ModelNotFound,
    NoFeasibleRoute,
    RouterError,
)
from router.jobs_service import JobsService

log = logging.getLogger("router.triggers")


@dataclass(frozen=True, slots=True)
class ObjectCreated:
    uri: str  # s3://bucket/key (the key decoded) or file:///path
    version: str  # "v:<version id>", "etag:<ETag>" or, for local files, "file:<mtime_ns>-<size>"
    size: int | None = None


def _version(version_id: Any, etag: Any) -> str | None:
    if isinstance(version_id, str) and version_id and version_id != "null":
        return f"v:{version_id}"
    if isinstance(etag, str) and etag:
        return f"etag:{etag.strip(chr(34))}"
    return None


def parse_event(event: Any) -> tuple[list[ObjectCreated], list[str]]:
    """(objects created, reasons for what was ignored) of an S3 notification (`Records`, keys
    URL-encoded as S3 sends them), an EventBridge "Object Created" event (keys as they are), or an
    s3:TestEvent (ignored). Anything else is ignored with its reason: a retry cannot fix it."""
    if not isinstance(event, Mapping):
        return [], ["not an S3 event (not an object)"]
    if event.get("Event") == "s3:TestEvent":
        return [], ["s3:TestEvent"]
    if event.get("source") == "aws.s3":
        detail = event.get("detail")
        if event.get("detail-type") != "Object Created" or not isinstance(detail, Mapping):
            return [], [f"EventBridge {event.get('detail-type')!r} event is not Object Created"]
        bucket = (detail.get("bucket") or {}).get("name") if isinstance(detail.get("bucket"), Mapping) else None
        obj = detail.get("object") if isinstance(detail.get("object"), Mapping) else None
        if not isinstance(bucket, str) or obj is None or not isinstance(obj.get("key"), str):
            return [], ["EventBridge Object Created event without bucket.name or object.key"]
        version = _version(obj.get("version-id"), obj.get("etag"))
        if version is None:
            return [], [f"s3://{bucket}/{obj['key']}: no version-id or etag"]
        size = obj.get("size")
        return [ObjectCreated(f"s3://{bucket}/{obj['key']}", version, size if isinstance(size, int) else None)], []
    records = event.get("Records")
    if not isinstance(records, list):
        return [], ["not an S3 event (no Records, not EventBridge)"]
    found: list[ObjectCreated] = []
    ignored: list[str] = []
    for r in records:
        if not isinstance(r, Mapping) or r.get("eventSource") != "aws:s3" or not isinstance(r.get("s3"), Mapping):
            ignored.append("a record that is not from aws:s3")
            continue
        name = str(r.get("eventName", ""))
        if not name.startswith("ObjectCreated:"):
            ignored.append(f"{name or 'an event'} is not ObjectCreated")
            continue
        s3 = r["s3"]
        bucket = s3.get("bucket", {}).get("name") if isinstance(s3.get("bucket"), Mapping) else None
        obj = s3.get("object") if isinstance(s3.get("object"), Mapping) else None
        if not isinstance(bucket, str) or obj is None or not isinstance(obj.get("key"), str):
            ignored.append("an ObjectCreated record without bucket.name or object.key")
            continue
        key = unquote_plus(obj["key"])  # S3 notifications URL-encode keys ("a b.csv" -> "a+b.csv")
        version = _version(obj.get("versionId"), obj.get("eTag"))
        if version is None:
            ignored.append(f"s3://{bucket}/{key}: no versionId or eTag")
            continue
        size = obj.get("size")
        found.append(ObjectCreated(f"s3://{bucket}/{key}", version, size if isinstance(size, int) else None))
    return found, ignored


def idempotency_key(obj: ObjectCreated) -> str:
    """The job's Idempotency-Key: one per (location, version), whichever event shape told us."""
    return "trigger-" + hashlib.sha256(f"{obj.uri}\n{obj.version}".encode()).hexdigest()


class Triggers:
    """Starts the job of a created object (the use case behind every event source)."""

    def __init__(self, config: RouterConfig, jobs: JobsService) -> None:
        self.config = config
        self.jobs = jobs

    def match(self, uri: str) -> Trigger | None:
        for t in self.config.triggers:  # sources never overlap (config cross-check)
            if uri.startswith(t.source):
                return t
        return None

    def on_object(self, obj: ObjectCreated) -> dict[str, Any]:
        """{"uri", "job_id", "created", "status"} for the object's job, or {"uri", "ignored"}.
        A transient failure (the job table or the backend busy, the owner at their job limit)
        raises: the event is then delivered again (Lambda's retries, the watcher's next look)."""
        trigger = self.match(obj.uri)
        if trigger is None:
            return {"uri": obj.uri, "ignored": "no trigger for this location"}
        rel = obj.uri[len(trigger.source):]
        if not rel or rel.endswith("/") or any(part.startswith(".") for part in rel.split("/")):
            return {"uri": obj.uri, "ignored": "a folder marker or hidden file"}
        fmt = trigger.format or ("csv" if rel.lower().endswith(".csv") else "jsonl")
        try:
            model = self.jobs.service.model(trigger.model)
            job, created = self.jobs.submit(
                trigger.owner, model, instances=None, input_uri=obj.uri, input_format=fmt, output=OutputKind(trigger.output),
                idempotency_key=idempotency_key(obj), trusted_input=True, output_uri=f"{trigger.output_prefix}{rel}.out.jsonl",
            )
        except IdempotencyKeyReuse as e:
            # This object version already started a job, under an older config: it stands.
            return {"uri": obj.uri, "ignored": "already started a job", "job_id": (e.details or {}).get("job_id")}
        except (InvalidInput, InvalidRequest, ModelNotFound, NoFeasibleRoute) as e:
            # The object itself (empty, unreadable) or the config: a re-delivery cannot help.
            log.warning("trigger for %s refused: %s", obj.uri, e.message)
            return {"uri": obj.uri, "ignored": f"{e.code}: {e.message}"}
        if created:
            log.info("trigger: %s started %s", obj.uri, job.job_id)
        return {"uri": obj.uri, "job_id": job.job_id, "created": created, "status": job.status.value}

    def on_event(self, event: Any) -> dict[str, Any]:
        """Every object of one event; raises RouterError (for a retry) only after trying them all."""
        objects, ignored = parse_event(event)
        results: list[dict[str, Any]] = []
        failure: RouterError | None = None
        for obj in objects:
            try:
                results.append(self.on_object(obj))
            except RouterError as e:
                failure = e
                results.append({"uri": obj.uri, "error": e.code})
        if failure is not None:
            raise failure  # the objects that did start jobs are idempotent on the retry
        return {"objects": results, "ignored": ignored}
