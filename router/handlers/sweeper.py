"""The scheduled sweeper Lambda: finds stale queued/running jobs through the active-jobs index and
repairs them (re-dispatch what never reached its backend, describe what did), so a lost event or a
crash between the job write and the backend call never loses a job. Bounded work per run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def make_sweeper(runtime: Any, *, limit: int = 100) -> Handler:
    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return dict(runtime.jobs.sweep(limit=limit))

    return handle


_sweeper: Handler | None = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _sweeper
    if _sweeper is None:
        from router.bootstrap import runtime_from_env

        _sweeper = make_sweeper(runtime_from_env())
    return _sweeper(event, context)
