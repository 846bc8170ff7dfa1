"""The API Gateway (REST, proxy integration) Lambda handler: the whole HTTP contract of API.md.

Thin on purpose: it parses and validates with Powertools' resolver (pydantic models, which also
generate /v1/openapi.json), calls the service, and maps every RouterError to its documented status
and error envelope. `router serve` calls this same handler with API Gateway events.
"""

from __future__ import annotations

import binascii
import json
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ConfigDict, Field, model_validator

from router import __version__
from router.domain import Decision, Job, Mode, OutputKind
from router.errors import (
    InternalError,
    InvalidJson,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    RouterError,
    UnsupportedMediaType,
)

logger = Logger(service="router")
metrics = Metrics(namespace="InferenceRouter", service="router")

MAX_JSON_DEPTH_MSG = "the JSON body is nested too deeply"


# ---------------------------------------------------------------- request / response models


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictBody(_Body):
    instances: list[Any] = Field(min_length=1, description="Rows in feature order, objects keyed by feature name, or whatever the model's inference code accepts.")
    output: OutputKind = Field(OutputKind.PREDICT, description="`predict` (default) or `proba` (class probabilities).")


class JobInput(_Body):
    uri: str = Field(pattern=r"^(s3|file)://.+", description="s3://bucket/key-or-prefix (an upload's input_uri).")
    format: Literal["jsonl", "csv"] = "jsonl"


class JobBody(_Body):
    instances: list[Any] | None = Field(None, min_length=1)
    input: JobInput | None = None
    output: OutputKind = OutputKind.PREDICT

    @model_validator(mode="after")
    def _one_source(self) -> JobBody:
        if (self.instances is None) == (self.input is None):
            raise ValueError("give exactly one of `instances` or `input`")
        return self


class RouteDescription(_Body):
    mode: Mode
    records: int = Field(ge=1, le=10**12)
    payload_bytes: int = Field(0, ge=0)


class RouteBody(_Body):
    """A description of a request, or a predict/job body (then `mode` says which; default sync)."""

    mode: Mode | None = None
    records: int | None = Field(None, ge=1, le=10**12)
    payload_bytes: int | None = Field(None, ge=0)
    instances: list[Any] | None = Field(None, min_length=1)
    input: JobInput | None = None
    output: OutputKind = OutputKind.PREDICT

    @model_validator(mode="after")
    def _shape(self) -> RouteBody:
        if self.instances is None and self.input is None and self.records is None:
            raise ValueError("describe the request with `records` (and `mode`, `payload_bytes`), or send `instances`")
        return self


class EstimatesModel(BaseModel):
    duration_s: float
    cost_usd: float | None


class CandidateModel(BaseModel):
    route: str
    feasible: bool
    reasons: list[str]
    estimates: EstimatesModel


class DecisionModel(BaseModel):
    route: str | None
    mode: Mode
    reason: str
    estimates: EstimatesModel | None
    candidates: list[CandidateModel]


class PredictResponse(BaseModel):
    model: str
    model_version: str
    route: str
    predictions: list[Any]
    decision: dict[str, Any]
    timing_ms: dict[str, float]


class ErrorBody(BaseModel):
    code: str
    message: str
    request_id: str
    details: dict[str, Any] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class ModelInfo(BaseModel):
    name: str
    framework: str
    version: str
    features: list[str] | None
    feature_count: int | None
    routes: list[str]


class HealthResponse(BaseModel):
    status: str
    version: str
    config_digest: str
    runtime: str


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response[Any]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(body, separators=(",", ":"), default=str),
        headers=dict(headers or {}),
    )


def _error_responses(*statuses: int) -> dict[int, Any]:
    return {s: {"description": "error", "content": {"application/json": {"model": ErrorResponse}}} for s in statuses}


def _loads(text: str) -> Any:
    """json.loads that turns pathological nesting into a JSON error instead of a RecursionError
    (and so a 400 instead of a 500)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError(MAX_JSON_DEPTH_MSG, text[:64], 0) from None


# ---------------------------------------------------------------- the app


def build_app(runtime: Any) -> APIGatewayRestResolver:
    """Build the resolver for one runtime (router.bootstrap.Runtime). Route handlers close over it."""
    app = APIGatewayRestResolver(enable_validation=True, json_body_deserializer=_loads)
    service = runtime.service
    routes: list[tuple[str, str]] = []  # (method, template) for 405 detection

    def route(method: str, path: str, **kw: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        routes.append((method, path))
        return app.route(path, method, **kw)

    def request_id() -> str:
        ctx = app.current_event.raw_event.get("requestContext") or {}
        return str(ctx.get("requestId") or "local-" + uuid.uuid4().hex)

    def owner() -> str:
        return str(runtime.auth.owner(app.current_event.raw_event))

    def header(name: str) -> str | None:
        v = app.current_event.headers.get(name)  # case-insensitive in Powertools v3
        return None if v is None else str(v)

    def payload_bytes() -> int:
        body = app.current_event.decoded_body or ""
        return len(body.encode("utf-8"))

    # ---------------------------------------------------------- errors

    def error_response(err: RouterError) -> Response[Any]:
        body = err.to_body(request_id())
        if err.status >= 500:
            logger.error("request failed", extra={"code": err.code, "error_message": err.message})
        else:
            logger.info("request rejected", extra={"code": err.code, "status": err.status})
        return _json(err.status, body)

    @app.exception_handler(RouterError)
    def _router_error(err: RouterError) -> Response[Any]:
        return error_response(err)

    @app.exception_handler(RequestValidationError)
    def _validation_error(err: RequestValidationError) -> Response[Any]:
        problems = []
        for e in err.errors():
            if e.get("type") == "json_invalid":
                detail = (e.get("ctx") or {}).get("error") or "malformed JSON"
                return error_response(InvalidJson(f"the body is not valid JSON: {detail}"))
            loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
            msg = str(e.get("msg", "invalid"))
            if e.get("type") == "extra_forbidden":
                msg = "unknown field"
            elif e.get("type") == "missing" and loc == "body":
                msg = "a JSON body is required"
            problems.append({"field": loc, "problem": msg.removeprefix("Value error, ")})
        first = problems[0] if problems else {"field": "body", "problem": "invalid"}
        return error_response(InvalidRequest(f"{first['field']}: {first['problem']}", details={"problems": problems}))

    @app.not_found
    def _not_found(_: NotFoundError) -> Response[Any]:
        method = app.current_event.http_method.upper()
        path = app.current_event.path
        allowed = sorted({m for m, tpl in routes if _matches(tpl, path)})
        if allowed:
            resp = error_response(MethodNotAllowed(f"{method} is not allowed on {path}; allowed: {', '.join(allowed)}"))
            resp.headers["Allow"] = ", ".join(allowed)
            return resp
        return error_response(NotFound(f"no such path: {path}"))

    try:  # Powertools >= 3: unsupported request content types have their own exception
        from aws_lambda_powertools.event_handler.openapi.exceptions import RequestUnsupportedContentType

        @app.exception_handler(RequestUnsupportedContentType)
        def _media(_: Exception) -> Response[Any]:
            return error_response(UnsupportedMediaType("send the body as application/json"))
    except ImportError:  # pragma: no cover
        pass

    @app.exception_handler([UnicodeDecodeError, binascii.Error])
    def _undecodable(_: Exception) -> Response[Any]:
        # API Gateway passes binary bodies base64-encoded; JSON must be UTF-8 (RFC 8259).
        return error_response(InvalidJson("the body is not UTF-8 encoded JSON"))

    @app.exception_handler(Exception)
    def _unexpected(err: Exception) -> Response[Any]:
        logger.exception("unhandled error")
        return error_response(InternalError("internal error; see the router's logs with this request id"))

    # ---------------------------------------------------------- routes

    @route("GET", "/v1/health", summary="Liveness, version and config digest", responses=_responses(HealthResponse))
    def health() -> Response[Any]:
        return _json(200, {"status": "ok", "version": __version__, "config_digest": runtime.config.digest, "runtime": runtime.kind})

    @route("GET", "/v1/models", summary="Models the config declares", responses=_responses(dict[str, list[ModelInfo]], 401))
    def list_models() -> Response[Any]:
        owner()
        return _json(200, {"models": [service.describe_model(m) for m in runtime.config.models]})

    @route("GET", "/v1/models/<model>", summary="One model with its routing envelope", responses=_responses(None, 401, 404))
    def get_model(model: str) -> Response[Any]:
        owner()
        return _json(200, service.describe_model(service.model(model), detail=True))

    @route("POST", "/v1/models/<model>/route", summary="Dry run: the routing decision for a described request", responses=_responses(DecisionModel, 400, 401, 404, 415))
    def route_dry_run(model: str, body: Annotated[RouteBody, Body()]) -> Response[Any]:
        owner()
        spec = service.model(model)
        mode = body.mode or (Mode.JOB if body.input is not None else Mode.SYNC)
        if body.instances is not None:
            records = len(body.instances)
            size = body.payload_bytes if body.payload_bytes is not None else payload_bytes()
        else:
            records = body.records or 1
            size = body.payload_bytes or 0
        return _json(200, service.decide(spec, mode, records, size).to_dict())

    @route("POST", "/v1/models/<model>/predict", summary="Synchronous prediction", responses=_responses(PredictResponse, 400, 401, 404, 413, 415, 422, 500, 502, 503, 504))
    def predict(model: str, body: Annotated[PredictBody, Body()]) -> Response[Any]:
        start = time.perf_counter()
        who = owner()
        spec = service.model(model)
        result = service.predict(spec, body.instances, body.output, payload_bytes())
        if isinstance(result, Decision):
            prefer = (header("prefer") or "").lower()
            if "respond-async" in prefer and runtime.jobs is not None:
                job, _ = runtime.jobs.submit(
                    who, spec, instances=body.instances, input_uri=None, input_format="jsonl",
                    output=body.output, idempotency_key=header("idempotency-key"), decision_hint=None,
                )
                return job_response(202, job)
            raise service.not_syncable_error(result)
        total = (time.perf_counter() - start) * 1000
        metrics.add_dimension(name="route", value=result.route.value)
        metrics.add_metric(name="Predictions", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="PredictLatency", unit=MetricUnit.Milliseconds, value=total)
        return _json(200, result.to_dict(total), {"X-Router-Route": result.route.value})

    def job_response(status: int, job: Job, headers: Mapping[str, str] | None = None) -> Response[Any]:
        body = runtime.jobs.to_dict(job)
        hdrs = {"Location": f"/v1/jobs/{job.job_id}", "X-Router-Route": job.route.value, **(headers or {})}
        return _json(status, body, hdrs)

    if runtime.jobs is not None:
        _register_job_routes(route, runtime, owner, header, job_response)

    @route("GET", "/v1/openapi.json", summary="This contract as OpenAPI 3")
    def openapi() -> Response[Any]:
        return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=openapi_json(app))

    return app


def _responses(ok: Any, *statuses: int, ok_status: int = 200) -> dict[int, Any]:
    out = _error_responses(*statuses)
    out[ok_status] = {"description": "success", **({"content": {"application/json": {"model": ok}}} if ok is not None else {})}
    return out


def _register_job_routes(
    route: Any, runtime: Any, owner: Callable[[], str], header: Callable[[str], str | None], job_response: Callable[..., Response[Any]]
) -> None:
    """Job endpoints (issue 4): submit, get, list, cancel, uploads."""
    jobs = runtime.jobs

    @route("POST", "/v1/models/<model>/jobs", summary="Submit an asynchronous job", responses=_error_responses(400, 401, 404, 409, 413, 415, 422, 429))
    def submit(model: str, body: Annotated[JobBody, Body()]) -> Response[Any]:
        who = owner()
        spec = runtime.service.model(model)
        key = header("idempotency-key")
        job, created = jobs.submit(
            who, spec, instances=body.instances, input_uri=body.input.uri if body.input else None,
            input_format=body.input.format if body.input else "jsonl", output=body.output, idempotency_key=key, decision_hint=None,
        )
        return job_response(202 if created else 200, job)

    @route("GET", "/v1/jobs/<job_id>", summary="Job status", responses=_error_responses(401, 404))
    def get_job(job_id: str) -> Response[Any]:
        job = jobs.get(owner(), job_id)
        return _json(200, jobs.to_dict(job, with_download=True))

    @route("GET", "/v1/jobs", summary="The caller's jobs, newest first", responses=_error_responses(400, 401))
    def list_jobs(
        status: Annotated[str | None, Query()] = None,
        model: Annotated[str | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, Query()] = None,
    ) -> Response[Any]:
        page = jobs.list(owner(), status=status, model=model, limit=limit, cursor=cursor)
        return _json(200, {"jobs": [jobs.to_dict(j) for j in page.jobs], "next_cursor": page.next_cursor})

    @route("DELETE", "/v1/jobs/<job_id>", summary="Cancel a job", responses=_error_responses(401, 404, 409))
    def cancel(job_id: str) -> Response[Any]:
        job = jobs.cancel(owner(), job_id)
        return _json(202, jobs.to_dict(job))

    @route("POST", "/v1/uploads", summary="A presigned upload slot for a large job input", responses=_error_responses(400, 401))
    def upload() -> Response[Any]:
        return _json(201, jobs.upload_slot(owner()))


def _matches(template: str, path: str) -> bool:
    t = [p for p in template.split("/") if p]
    s = [p for p in path.split("/") if p]
    return len(t) == len(s) and all(a.startswith("<") or a == b for a, b in zip(t, s, strict=True))


def openapi_json(app: APIGatewayRestResolver) -> str:
    return app.get_openapi_json_schema(
        title="Hybrid inference router",
        version=__version__,
        summary="Routes each prediction to inline Lambda, a SageMaker endpoint or a batch job, and explains why.",
    )


# ---------------------------------------------------------------- Lambda entry points


def make_handler(runtime: Any) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """A Lambda-style handler bound to one runtime (used by the Lambda entry point, `router serve`
    and the tests). Metrics are flushed after every event, as CloudWatch EMF lines on stdout
    (POWERTOOLS_METRICS_DISABLED=true turns them off; `router serve` does by default)."""
    app = build_app(runtime)

    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        try:
            return _handle(event, context)
        finally:
            _flush_metrics()

    def _handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        ctx = event.get("requestContext") or {}
        rid = str(ctx.get("requestId") or ("local-" + uuid.uuid4().hex))
        event.setdefault("requestContext", {})["requestId"] = rid
        logger.append_keys(request_id=rid)
        try:
            resp = app.resolve(event, context)
        finally:
            logger.remove_keys(["request_id"])
        _add_header(resp, "X-Request-Id", rid)
        return resp

    return handle


def _flush_metrics() -> None:
    """Emit this event's metrics (EMF on stdout), or drop them when metrics are disabled.
    Powertools' own flush neither clears a disabled set (it would grow for ever under `router
    serve`) nor stays quiet on events that recorded no metric (health checks)."""
    import os

    if not metrics.metric_set:
        return
    if os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() in ("1", "true"):
        metrics.clear_metrics()
    else:
        metrics.flush_metrics()


def _add_header(resp: dict[str, Any], name: str, value: str) -> None:
    if "multiValueHeaders" in resp:
        resp["multiValueHeaders"][name] = [value]
    else:
        resp.setdefault("headers", {})[name] = value


_handler: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point: builds the runtime from the environment on the cold start."""
    global _handler
    if _handler is None:
        from router.bootstrap import runtime_from_env

        _handler = make_handler(runtime_from_env())
    return _handler(event, context)
