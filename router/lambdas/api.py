"""The API Gateway function (router.handlers.api)."""

from __future__ import annotations

from router.handlers.api import make_handler
from router.lambdas import lambda_entry

handler = lambda_entry(make_handler)
