"""The Lambda entry points (the AWS composition root with router.bootstrap): one module per function,
each `handler = lambda_entry(make_...)` over its router.handlers factory. The infra template names
them: router.lambdas.api.handler, .worker.handler, .events.handler, .sweeper.handler.

A cold import loads the handler's module only; the runtime (config, services, adapters) is built
on the first event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from router.handlers import Handler

if TYPE_CHECKING:
    from router.runtime import Runtime


def lambda_entry(make: Callable[[Runtime], Handler], *, lazy_jobs: bool = False) -> Handler:
    """A Lambda entry point that builds its runtime from the environment on the first event (the
    cold start) and reuses it for every later event of the same instance; traced with X-Ray when
    the template turns tracing on (router.handlers.telemetry). `lazy_jobs`: the job service is
    built when a request first needs it (the API function: an inline predict never does)."""
    built: list[Handler] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if not built:
            from router.bootstrap import runtime_from_env
            from router.handlers import telemetry

            telemetry.setup_logging()  # Powertools JSON logs from the first line on
            built.append(telemetry.traced(make(runtime_from_env(lazy_jobs=lazy_jobs))))
        return built[0](event, context)

    return handler
