"""The events Lambda: EventBridge "SageMaker Transform Job State Change" events and the SNS
notifications of asynchronous inference ("InferenceResult", success or error topic) move router jobs.

Duplicated, reordered and unrelated events are harmless: the job is found from the transform job
name, and every move is a conditional transition (a stale event changes nothing). Log lines carry
the job id as correlation_id (a transform job's name, an InferenceId: both name their job); with metrics on, the job's end is counted by `model`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from router.async_inference import is_notification, job_id_from_inference_id, parse_notifications
from router.errors import InvalidRequest
from router.handlers import Handler, jobs_of, telemetry
from router.sagemaker_names import job_id_from_transform_job_name
from router.transform_events import parse_state_change_event

if TYPE_CHECKING:
    from router.runtime import Runtime

log = logging.getLogger("router.events")


def make_events_handler(runtime: Runtime) -> Handler:
    jobs = jobs_of(runtime)

    def on_notifications(event: dict[str, Any], context: Any) -> dict[str, Any]:
        try:
            outcomes = parse_notifications(event)
        except InvalidRequest as e:
            log.warning("ignored notification: %s", e.message)
            return {"ignored": e.message}
        results: list[dict[str, Any]] = []
        for outcome in outcomes:
            job_id = job_id_from_inference_id(outcome.inference_id)
            if job_id is None:
                results.append({"ignored": f"inference {outcome.inference_id} is not a router job"})
                continue
            with telemetry.job_event(job_id, telemetry.invocation_id(context)) as metrics:
                job = jobs.on_async_outcome(job_id, outcome)
                telemetry.count_job(metrics, job)
                results.append({"job_id": job_id, "status": None if job is None else job.status.value})
        return results[0] if len(results) == 1 else {"results": results}

    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if is_notification(event):
            return on_notifications(event, context)
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

