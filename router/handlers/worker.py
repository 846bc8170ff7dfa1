"""The lambda-job worker Lambda: runs one job in chunks and, when its deadline nears, re-invokes
itself to continue from the checkpoint (so no job is restarted from zero or half-written).

Invoked asynchronously (Lambda Event invoke, with an on-failure destination in infra) with
`{"job_id": "..."}`; under `router serve` by the local worker pool with the same event. Its log
lines carry the job id as correlation_id; with metrics on it counts JobsContinued, the job's end
(JobsSucceeded/JobsFailed/JobsCancelled) and Errors, by `model`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from router.errors import InvalidRequest
from router.handlers import Handler, jobs_of, telemetry

if TYPE_CHECKING:
    from router.runtime import Runtime


def make_worker(runtime: Runtime) -> Handler:
    jobs = jobs_of(runtime)

    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raw = event.get("job_id")
        job_id = raw if isinstance(raw, str) and raw else None
        with telemetry.job_event(job_id, telemetry.invocation_id(context)) as metrics:
            if job_id is None:
                raise InvalidRequest("worker event needs a job_id")
            again = jobs.run_lambda_job(job_id, lambda: context.get_remaining_time_in_millis() / 1000.0)
            if again:
                jobs.continue_lambda_job(job_id)
                metrics.count("JobsContinued")
            if metrics.on:  # one read of the job, for its model and how it ended
                telemetry.count_job(metrics, jobs.peek(job_id))
            return {"job_id": job_id, "continued": again}

    return handle

