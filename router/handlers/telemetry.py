"""Logs, metrics and traces of the four Lambda functions (api, worker, events, sweeper), on
Powertools, loaded only when used: an API request that logs nothing, with metrics and tracing off,
imports none of it, so the inline path's cold start stays small.

- Logs: one Powertools `Logger` (service `router`) whose handler also formats every `router.*`
  stdlib logger's lines. Each line carries `correlation_id` (the request id in the API, the job id
  in the worker), kept in a ContextVar: per thread and per request, never another request's id.
- Metrics: CloudWatch EMF in the `InferenceRouter` namespace with a `model` dimension, recorded
  per event and flushed when the event ends; nothing at all (no Powertools call) when
  POWERTOOLS_METRICS_DISABLED is true.
- Traces: a Powertools `Tracer` around the Lambda handler when POWERTOOLS_TRACE_DISABLED is
  false (the template's `EnableTracing` parameter); off otherwise, and off under `router serve`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from router.domain import Job

SERVICE = "router"
NAMESPACE = "InferenceRouter"
_TRUE = ("1", "true", "yes", "on")



@contextlib.contextmanager
def correlation(correlation_id: str, **keys: str) -> Iterator[None]:
    """Log lines inside carry correlation_id (and `keys`, e.g. request_id or job_id)."""
    token = _event.set(({"correlation_id": correlation_id, **keys}, _event.get()[1]))
    try:
        yield
    finally:
        _event.reset(token)


def enter_event(correlation_id: str, metrics: EventMetrics, **keys: str) -> Any:
    """correlation() and metrics.active() without the context managers' cost (the hot path)."""
    return _event.set(({"correlation_id": correlation_id, **keys}, metrics))


def enter_request(request_id: str) -> tuple[EventMetrics, Any]:
    """An API request's enter_event: its metrics (the shared no-op one when metrics are off) and the token."""
    metrics = EventMetrics() if metrics_enabled() else _OFF
    return metrics, _event.set(({"correlation_id": request_id, "request_id": request_id}, metrics))


def leave_event(token: Any) -> None:
    _event.reset(token)


class _CorrelationFilter(logging.Filter):
    """Puts the current request's ids on every record the handler formats (also records from
    child loggers and other threads, which carry their own ids or none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = _event.get()[0]
        if ids:
            for k, v in ids.items():
                if not hasattr(record, k):
                    setattr(record, k, v)
        return True


_lock = threading.Lock()
_logger: list[Any] = []


def logger() -> Any:
    """The Powertools Logger (built on first use; thread-safe)."""
    if not _logger:
        with _lock:
            if not _logger:
                from aws_lambda_powertools import Logger

                base = logging.getLogger(SERVICE)
                for h in [h for h in base.handlers if isinstance(h, _FirstLineHandler)]:
                    base.removeHandler(h)
                log = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or SERVICE)
                log.registered_handler.addFilter(_CorrelationFilter())
                _logger.append(log)
    return _logger[0]


class _FirstLineHandler(logging.Handler):
    """Stands in for the Powertools handler until the first `router.*` line: then builds the
    Logger (importing Powertools), steps aside and hands it the line."""

    def emit(self, record: logging.LogRecord) -> None:
        logger().registered_handler.handle(record)


def setup_logging() -> None:
    """Every `router.*` line goes out as Powertools JSON; Powertools loads with the first one."""
    if _logger:
        return
    base = logging.getLogger(SERVICE)
    if not any(isinstance(h, _FirstLineHandler) for h in base.handlers):
        level = os.environ.get("POWERTOOLS_LOG_LEVEL") or os.environ.get("LOG_LEVEL") or "INFO"
        base.setLevel(level.upper() if level.upper() in logging.getLevelNamesMapping() else "INFO")
        base.addHandler(_FirstLineHandler())


# ---------------------------------------------------------------- metrics


def metrics_enabled() -> bool:
    """Read on every event (an operator or a benchmark may flip it at run time)."""
    return os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() not in _TRUE


class EventMetrics:
    """One event's metrics, kept here and handed to Powertools in one go when the event ends, so
    concurrent events (`router serve` threads) never mix their dimensions. A no-op when off."""

    __slots__ = ("on", "_dims", "_points")

    def __init__(self) -> None:
        self.on = metrics_enabled()
        self._dims: dict[str, str] = {}
        self._points: list[tuple[str, str, float]] = []

    def dimension(self, name: str, value: str) -> None:
        if self.on:
            self._dims[name] = value

    def count(self, name: str, value: float = 1) -> None:
        if self.on:
            self._points.append((name, "Count", value))

    def milliseconds(self, name: str, value: float) -> None:
        if self.on:
            self._points.append((name, "Milliseconds", value))

    @contextlib.contextmanager
    def active(self) -> Iterator[EventMetrics]:
        """Code inside records into this event's metrics through event_metrics()."""
        token = _event.set((_event.get()[0], self))
        try:
            yield self
        finally:
            _event.reset(token)

    def flush(self) -> None:
        """Write this event's EMF line (stdout), if it recorded anything."""
        if not (self.on and self._points):
            return
        metrics = _metrics()
        with _metrics_lock:
            try:
                for name, value in self._dims.items():
                    metrics.add_dimension(name=name, value=value)
                for name, unit, v in self._points:
                    metrics.add_metric(name=name, unit=unit, value=v)
                metrics.flush_metrics()
            except Exception:  # a metric must never fail the request it describes
                metrics.clear_metrics()
                logger().exception("metrics flush failed")
            finally:
                self._points.clear()


_OFF = EventMetrics.__new__(EventMetrics)
_OFF.on, _OFF._dims, _OFF._points = False, {}, []
# This thread's current request or job: the ids its log lines carry (None: outside one) and its
# metrics. One variable: entering an event is one set.
_event: ContextVar[tuple[dict[str, str] | None, EventMetrics]] = ContextVar("router_event", default=(None, _OFF))


def event_metrics() -> EventMetrics:
    """The current event's metrics (a no-op outside an event)."""
    return _event.get()[1]


_FINISHED = {"succeeded": "JobsSucceeded", "failed": "JobsFailed", "cancelled": "JobsCancelled"}


def count_job(metrics: EventMetrics, job: Job | None) -> None:
    """A job's `model` dimension, and one of JobsSucceeded/JobsFailed/JobsCancelled when it ended."""
    if job is None:
        return
    metrics.dimension("model", str(job.model))
    name = _FINISHED.get(str(job.status.value))
    if name:
        metrics.count(name)


@contextlib.contextmanager
def job_event(job_id: str | None, invocation_id: str) -> Iterator[EventMetrics]:
    """One worker, events or sweeper invocation: log lines carry correlation_id (the job id, else
    the invocation's request id) and job_id; its metrics (plus Errors when it raises) are flushed
    at the end, raise or not."""
    metrics = EventMetrics()
    token = enter_event(job_id or invocation_id, metrics, **({"job_id": job_id} if job_id else {}))
    try:
        yield metrics
    except Exception:
        metrics.count("Errors")
        raise
    finally:
        leave_event(token)
        metrics.flush()


def invocation_id(context: Any) -> str:
    rid = getattr(context, "aws_request_id", None)
    return str(rid) if rid else "local-" + uuid.uuid4().hex


_metrics_lock = threading.Lock()
_metrics_obj: list[Any] = []


def _metrics() -> Any:
    if not _metrics_obj:
        with _lock:
            if not _metrics_obj:
                from aws_lambda_powertools import Metrics

                service = os.environ.get("POWERTOOLS_SERVICE_NAME") or SERVICE
                namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or NAMESPACE
                _metrics_obj.append(Metrics(namespace=namespace, service=service))
    return _metrics_obj[0]


# ---------------------------------------------------------------- tracing


def tracing_enabled() -> bool:
    """Only on Lambda and only when the template turned it on (POWERTOOLS_TRACE_DISABLED=false)."""
    if not os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        return False
    return os.environ.get("POWERTOOLS_TRACE_DISABLED", "true").lower() not in _TRUE


Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def traced(handler: Handler) -> Handler:
    """The handler inside a Powertools Tracer segment when tracing is on; unchanged otherwise
    (and when the X-Ray SDK is not in the package: a warning, not a failed cold start)."""
    if not tracing_enabled():
        return handler
    try:
        from aws_lambda_powertools import Tracer

        tracer = Tracer(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or SERVICE)
    except ImportError as e:
        print(f"tracing is on but the X-Ray SDK is not packaged ({e}); running untraced", file=sys.stderr)
        return handler
    wrapped: Handler = tracer.capture_lambda_handler(handler, capture_response=False)
    return wrapped
