"""The scheduled sweeper Lambda: finds stale queued/running jobs through the active-jobs index and
repairs them (re-dispatch what never reached its backend, describe what did), so a lost event or a
crash between the job write and the backend call never loses a job. Bounded work per run. With
metrics on, each run's counts are SweepSeen, SweepRedispatched, SweepDescribed and SweepFailed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from router.handlers import Handler, jobs_of, telemetry

if TYPE_CHECKING:
    from router.runtime import Runtime

_COUNTS = {"seen": "SweepSeen", "redispatched": "SweepRedispatched", "described": "SweepDescribed", "failed": "SweepFailed"}


def make_sweeper(runtime: Runtime, *, limit: int = 100) -> Handler:
    jobs = jobs_of(runtime)

    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        with telemetry.job_event(None, telemetry.invocation_id(context)) as metrics:
            result = dict(jobs.sweep(limit=limit))
            for key, name in _COUNTS.items():
                if key in result:
                    metrics.count(name, result[key])
            return result

    return handle

