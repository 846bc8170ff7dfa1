"""The S3 object-created trigger function (router.handlers.trigger)."""

from __future__ import annotations

from router.handlers.trigger import make_trigger_handler
from router.lambdas import lambda_entry

handler = lambda_entry(make_trigger_handler)
