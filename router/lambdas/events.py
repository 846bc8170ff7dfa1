"""The EventBridge function: SageMaker transform job state changes (router.handlers.events)."""

from __future__ import annotations

from router.handlers.events import make_events_handler
from router.lambdas import lambda_entry

handler = lambda_entry(make_events_handler)
