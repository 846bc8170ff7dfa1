"""The API Gateway function (router.handlers.api). Its job service is wired on first use: an inline
predict's cold start never builds it. Its first event (bounded by API Gateway) runs with the
collector paused, like the runtime's build: it loads the model and imports its framework."""

from __future__ import annotations

from router.handlers.api import make_handler
from router.lambdas import lambda_entry

handler = lambda_entry(make_handler, lazy_jobs=True, first_event_gc_paused=True)
