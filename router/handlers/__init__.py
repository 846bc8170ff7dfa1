"""Lambda entry points: api (API Gateway), worker (async invoke), events (EventBridge), sweeper
(schedule). Each is thin: it parses its event and calls the service that bootstrap wires."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def lambda_entry(make: Callable[[Any], Handler]) -> Handler:
    """A Lambda entry point that builds its runtime from the environment on the first event (the
    cold start) and reuses it for every later event of the same instance; traced with X-Ray when
    the template turns tracing on (router.handlers.telemetry)."""
    built: list[Handler] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if not built:
            from router.bootstrap import runtime_from_env
            from router.handlers import telemetry

            telemetry.setup_logging()  # Powertools JSON logs from the first line on
            built.append(telemetry.traced(make(runtime_from_env())))
        return built[0](event, context)

    return handler
