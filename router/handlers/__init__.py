"""The handlers: api (API Gateway), worker (async invoke), events (EventBridge), sweeper (schedule).
Each is thin: it parses its event, calls a service of the runtime it is given and renders the
answer. Their Lambda entry points are in router.lambdas."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from router.errors import ConfigError

if TYPE_CHECKING:
    from router.jobs_service import JobsService
    from router.runtime import Runtime

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def jobs_of(runtime: Runtime) -> JobsService:
    """The runtime's job service, which the worker, events and sweeper handlers need."""
    if runtime.jobs is None:
        raise ConfigError("runtime", ["this runtime has no job service: the worker, events and sweeper handlers need one"])
    return runtime.jobs
