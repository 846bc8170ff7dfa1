"""The scheduled sweeper Lambda: finds stale queued/running jobs through the active-jobs index and
repairs them (re-dispatch what never reached its backend, describe what did), so a lost event or a
crash between the job write and the backend call never loses a job. Bounded work per run. With
metrics on, each run's counts are SweepSeen, SweepRedispatched, SweepDescribed and SweepFailed.
"""

from __future__ import annotations

from typing import Any

from router.handlers import Handler, lambda_entry, telemetry

_COUNTS = {"seen": "SweepSeen", "redispatched": "SweepRedispatched", "described": "SweepDescribed", "failed": "SweepFailed"}


def make_sweeper(runtime: Any, *, limit: int = 100) -> Handler:
    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        with telemetry.job_event(None, telemetry.invocation_id(context)) as metrics:
            result = dict(runtime.jobs.sweep(limit=limit))
            for key, name in _COUNTS.items():
                if key in result:
                    metrics.count(name, result[key])
            return result

    return handle


# The Lambda entry point: the runtime is built from the environment on the cold start.
handler = lambda_entry(make_sweeper)
