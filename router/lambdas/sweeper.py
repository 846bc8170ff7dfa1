"""The scheduled sweeper function (router.handlers.sweeper)."""

from __future__ import annotations

from router.handlers.sweeper import make_sweeper
from router.lambdas import lambda_entry

handler = lambda_entry(make_sweeper)
