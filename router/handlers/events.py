"""The EventBridge Lambda: "SageMaker Transform Job State Change" events move router jobs.

Duplicated, reordered and unrelated events are harmless: the job is found from the transform job
name, and every move is a conditional transition (a stale event changes nothing). Log lines carry
the job id as correlation_id; with metrics on, the job's end is counted by `model`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from router.errors import InvalidRequest
from router.handlers import Handler, jobs_of, telemetry
from router.sagemaker_names import job_id_from_transform_job_name
from router.transform_events import parse_state_change_event

if TYPE_CHECKING:
    from router.runtime import Runtime

log = logging.getLogger("router.events")


def make_events_handler(runtime: Runtime) -> Handler:
    jobs = jobs_of(runtime)

    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        try:
            state = parse_state_change_event(event)
        except InvalidRequest as e:
            # Not ours or malformed: acknowledge (a retry would not make it valid).
            log.warning("ignored event: %s", e.message)
            return {"ignored": e.message}
        job_id = job_id_from_transform_job_name(state.name)
        if job_id is None:
            return {"ignored": f"transform job {state.name} is not a router job"}
        with telemetry.job_event(job_id, telemetry.invocation_id(context)) as metrics:
            job = jobs.on_batch_state(job_id, state)
            telemetry.count_job(metrics, job)
            return {"job_id": job_id, "status": None if job is None else job.status.value}

    return handle

