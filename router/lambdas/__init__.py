"""The Lambda entry points (the AWS composition root with router.bootstrap): one module per function,
each `handler = lambda_entry(make_...)` over its router.handlers factory. The infra template names
them: router.lambdas.api.handler, .worker.handler, .events.handler, .sweeper.handler.

A cold import loads the handler's module only; the runtime (config, services, adapters) is built
on the first event, with the cyclic garbage collector paused: the cold start's imports allocate
hundreds of thousands of objects that live as long as the instance, and every full collection
during them would walk all of them again. Those objects are then frozen (gc.freeze) out of later
collections.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from router.handlers import Handler

if TYPE_CHECKING:
    from router.runtime import Runtime


def lambda_entry(make: Callable[[Runtime], Handler], *, lazy_jobs: bool = False, first_event_gc_paused: bool = False) -> Handler:
    """A Lambda entry point that builds its runtime from the environment on the first event (the
    cold start) and reuses it for every later event of the same instance; traced with X-Ray when
    the template turns tracing on (router.handlers.telemetry). `lazy_jobs`: the job service is
    built when a request first needs it (the API function: an inline predict never does).
    `first_event_gc_paused`: the collector stays paused through the first event too, which loads
    its model (and imports the framework); only for a function whose events are bounded (API
    Gateway's 29 s and 10 MB), never for one that may run a whole job."""
    built: list[Handler] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if built:
            return built[0](event, context)
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            from router.bootstrap import runtime_from_env
            from router.handlers import telemetry

            telemetry.setup_logging()  # Powertools JSON logs from the first line on
            built.append(telemetry.traced(make(runtime_from_env(lazy_jobs=lazy_jobs))))
            if first_event_gc_paused:
                return built[0](event, context)
        finally:
            gc.freeze()  # what the cold start built lives as long as the instance
            if was_enabled:
                gc.enable()
        return built[0](event, context)

    return handler
