"""The lambda-job worker function (router.handlers.worker)."""

from __future__ import annotations

from router.handlers.worker import make_worker
from router.lambdas import lambda_entry

handler = lambda_entry(make_worker)
