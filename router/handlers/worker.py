"""The lambda-job worker Lambda: runs one job in chunks and, when its deadline nears, re-invokes
itself to continue from the checkpoint (so no job is restarted from zero or half-written).

Invoked asynchronously (Lambda Event invoke, with an on-failure destination in infra) with
`{"job_id": "..."}`; under `router serve` by the local worker pool with the same event. Its log
lines carry the job id as correlation_id; with metrics on it counts JobsContinued, the job's end
(JobsSucceeded/JobsFailed/JobsCancelled) and Errors, by `model`.
"""

from __future__ import annotations

from typing import Any

from router.errors import InvalidRequest
from router.handlers import Handler, lambda_entry, telemetry


def make_worker(runtime: Any) -> Handler:
    jobs = runtime.jobs

    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        job_id = event.get("job_id")
        valid = isinstance(job_id, str) and bool(job_id)
        with telemetry.job_event(job_id if valid else None, telemetry.invocation_id(context)) as metrics:
            if not valid:
                raise InvalidRequest("worker event needs a job_id")
            again = jobs.run_lambda_job(job_id, lambda: context.get_remaining_time_in_millis() / 1000.0)
            if again:
                jobs.queue.enqueue(job_id)
                metrics.count("JobsContinued")
            if metrics.on:  # one read of the job, for its model and how it ended
                telemetry.count_job(metrics, jobs.store.get(job_id))
            return {"job_id": job_id, "continued": again}

    return handle


# The Lambda entry point: the runtime is built from the environment on the cold start.
handler = lambda_entry(make_worker)
