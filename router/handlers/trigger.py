"""The trigger function: S3 "object created" events (a bucket notification or EventBridge "Object
Created") start a job for the trigger configured on the object's location (router/triggers.py).

Thin: parse the event, call the trigger use case. An s3:TestEvent, other event types and objects
outside every trigger are acknowledged and ignored; a re-delivered event starts no second job
(idempotent on location + version). A transient failure raises, so Lambda delivers it again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from router.handlers import Handler, jobs_of, telemetry
from router.triggers import Triggers

if TYPE_CHECKING:
    from router.runtime import Runtime


def make_trigger_handler(runtime: Runtime) -> Handler:
    triggers = Triggers(runtime.config, jobs_of(runtime))

    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        with telemetry.job_event(None, telemetry.invocation_id(context)) as metrics:
            result = triggers.on_event(event)
            started = sum(1 for r in result["objects"] if r.get("created"))
            if started:
                metrics.count("JobsSubmitted", started)
            return result

    return handle
