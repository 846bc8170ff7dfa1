"""The API Gateway (REST, proxy integration) Lambda handler: the whole HTTP contract of docs/api.md.

Thin on purpose: it parses and validates with Powertools' resolver (pydantic models, which also
generate /v1/openapi.json), calls the service, and maps every RouterError to its documented status
and error envelope. `router serve` calls this same handler with API Gateway events.
"""

from __future__ import annotations

import binascii
import json
import os
import re
import sys
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
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

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
from router.handlers import lambda_entry

logger = Logger(service="router")
metrics = Metrics(namespace="InferenceRouter", service="router")

MAX_JSON_DEPTH_MSG = "the JSON body is nested too deeply"


# ---------------------------------------------------------------- request / response models


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def __repr__(self) -> str:
        # Powertools formats the route arguments into a debug message on every call, even with
        # debug logging off: the default repr would print every instance (ms on large bodies).
        n = getattr(self, "instances", None)
        return f"{type(self).__name__}(instances={'None' if n is None else len(n)})"


class PredictBody(_Body):
    instances: list[Any] = Field(min_length=1, description="Rows in feature order, objects keyed by feature name, or whatever the model's inference code accepts.")
    output: OutputKind = Field(OutputKind.PREDICT, description="`predict` (default) or `proba` (class probabilities).")


# An S3 bucket name as the S3 client accepts it (other characters, or a longer name, are refused
# before any request is sent), then an object key (not empty: the input is read as one object)
# without control characters; or an upload's file:// URI.
_INPUT_URI = r"^(s3://[A-Za-z0-9._-]{1,255}/[^\x00-\x1f\x7f]+|file://[^\x00-\x1f\x7f]+)$"
_INPUT_URI_RE = re.compile(_INPUT_URI)
S3_KEY_MAX_BYTES = 1024


class JobInput(_Body):
    uri: str = Field(max_length=4096, json_schema_extra={"pattern": _INPUT_URI},
                     description="s3://bucket/key of one object (key: 1-1024 bytes), or an upload's input_uri.")
    format: Literal["jsonl", "csv"] = "jsonl"

    @field_validator("uri")
    @classmethod
    def _uri(cls, uri: str) -> str:
        if not _INPUT_URI_RE.match(uri):
            raise ValueError("must be s3://bucket/key (a bucket name of letters, digits, '.', '-' or '_', "
                             "a non-empty key, no control characters) or an upload's input_uri")
        if uri.startswith("s3://") and len(uri[len("s3://"):].partition("/")[2].encode()) > S3_KEY_MAX_BYTES:
            raise ValueError(f"an S3 key is at most {S3_KEY_MAX_BYTES} bytes")
        return uri


class JobBody(_Body):
    instances: list[Any] | None = Field(None, min_length=1)
    input: JobInput | None = None
    output: OutputKind = OutputKind.PREDICT

    @model_validator(mode="after")
    def _one_source(self) -> JobBody:
        if (self.instances is None) == (self.input is None):
            raise ValueError("give exactly one of `instances` or `input`")
        return self


class RouteBody(_Body):
    """A description of a request, or a predict/job body (then `mode` says which; default sync)."""

    mode: Mode | None = None
    # Strict: `"10"` or `true` is a type error (400), not silently a number.
    records: StrictInt | None = Field(None, ge=1, le=10**12)
    payload_bytes: StrictInt | None = Field(None, ge=0, le=10**18)
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
    details: dict[str, Any] = Field(description="Always present; an empty object when there is nothing to add.")


class ErrorResponse(BaseModel):
    error: ErrorBody


class ModelInfo(BaseModel):
    name: str
    framework: str
    version: str
    features: list[str] | None
    feature_count: int | None
    routes: list[str]


class ModelList(BaseModel):
    models: list[ModelInfo]


class ModelDetail(ModelInfo):
    latency_ms: float | None
    size_bytes: int | None
    profile: dict[str, Any]
    endpoint: dict[str, Any] | None
    batch_transform: dict[str, Any] | None
    envelope: dict[str, Any] = Field(description="Per route: feasible, and the largest request (records) it takes; null: no limit.")


class JobRecords(BaseModel):
    total: int | None
    done: int | None


class JobInputRef(BaseModel):
    uri: str
    format: str | None = None


class JobOutput(BaseModel):
    uri: str
    download_url: str | None = None
    expires_at: str | None = None


class JobError(BaseModel):
    code: str
    message: str
    details: dict[str, Any] | None = None


class JobBackend(BaseModel):
    name: str | None


class JobModel(BaseModel):
    job_id: str
    model: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelling", "cancelled"]
    route: str
    reason: str
    created_at: str
    updated_at: str
    started_at: str | None
    finished_at: str | None
    records: JobRecords
    input: JobInputRef
    output: JobOutput | None
    error: JobError | None
    backend: JobBackend | None


class JobList(BaseModel):
    jobs: list[JobModel]
    next_cursor: str | None


class UploadSlot(BaseModel):
    upload_url: str
    method: Literal["PUT"]
    headers: dict[str, str]
    input_uri: str
    expires_at: str


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
    except json.JSONDecodeError:
        raise
    except ValueError:
        # An integer literal over Python's int-from-text limit (4300 digits) is valid JSON that
        # json.loads refuses with a plain ValueError. Such a number is out of any float's range:
        # read it as +-inf, so it is refused like 1e400 (422 invalid_input where a number belongs).
        return json.loads(text, parse_int=_parse_int)


def _parse_int(s: str) -> int | float:
    limit = sys.get_int_max_str_digits()
    return int(s) if not limit or len(s.lstrip("-")) <= limit else float(s)


# ---------------------------------------------------------------- the app

PUBLIC_PATHS = frozenset({"/v1/health", "/v1/openapi.json"})  # answered without credentials
LIST_LIMIT_MAX = 100
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class RouterApp(APIGatewayRestResolver):
    """The resolver plus the table of (method, path template) it serves (405 / Allow / OPTIONS,
    and which requests must be authenticated before their body is even looked at)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.route_table: list[tuple[str, str]] = []
        self._allowed: dict[str, list[str]] = {}  # per concrete path; bounded below

    def allowed(self, path: str) -> list[str]:
        """Methods served on a concrete path (HEAD with GET, OPTIONS everywhere); [] when unknown."""
        cached = self._allowed.get(path)
        if cached is not None:
            return cached
        methods = {m for m, tpl in self.route_table if _matches(tpl, path)}
        if methods:
            if "GET" in methods:
                methods.add("HEAD")
            methods.add("OPTIONS")
        result = sorted(methods)
        if len(self._allowed) >= 4096:  # job ids make paths unbounded: keep the cache small
            self._allowed.clear()
        self._allowed[path] = result
        return result


def _with_details(body: dict[str, Any]) -> dict[str, Any]:
    """The documented envelope always has `details` (an empty object when there is nothing to add)."""
    body["error"].setdefault("details", {})
    return body


def build_app(runtime: Any) -> RouterApp:
    """Build the resolver for one runtime (router.bootstrap.Runtime). Route handlers close over it."""
    app = RouterApp(enable_validation=True, json_body_deserializer=_loads)
    service = runtime.service
    routes = app.route_table  # (method, template) for 405 detection

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
        body = _with_details(err.to_body(request_id()))
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
        allowed = app.allowed(path)
        if allowed and method not in allowed:
            resp = error_response(MethodNotAllowed(f"{method} is not allowed on {path}; allowed: {', '.join(allowed)}", details={"allowed": allowed}))
            resp.headers["Allow"] = ", ".join(allowed)
            return resp
        return error_response(NotFound(f"no such path: {path}", details={"path": path}))

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

    @route("GET", "/v1/models", summary="Models the config declares", responses=_responses(ModelList, 401))
    def list_models() -> Response[Any]:
        owner()
        return _json(200, {"models": [service.describe_model(m) for m in runtime.config.models]})

    @route("GET", "/v1/models/<model>", summary="One model with its routing envelope", responses=_responses(ModelDetail, 401, 404))
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

    @route("POST", "/v1/models/<model>/predict", summary="Synchronous prediction", responses={**_responses(PredictResponse, 400, 401, 404, 413, 415, 422, 429, 500, 502, 503, 504), **_responses(JobModel, ok_status=202)})
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
                    output=body.output, idempotency_key=header("idempotency-key"),
                )
                return job_response(202, job)
            raise service.not_syncable_error(result)
        total = (time.perf_counter() - start) * 1000
        metrics.add_dimension(name="route", value=result.route.value)
        metrics.add_metric(name="Predictions", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="PredictLatency", unit=MetricUnit.Milliseconds, value=total)
        return _json(200, result.to_dict(total), {"X-Router-Route": result.route.value})

    def job_response(status: int, job: Job, headers: Mapping[str, str] | None = None) -> Response[Any]:
        body = runtime.jobs.to_dict(job, with_download=True)
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

    @route("POST", "/v1/models/<model>/jobs", summary="Submit an asynchronous job",
           responses={**_responses(JobModel, 400, 401, 404, 409, 413, 415, 422, 429, 503, ok_status=202), **_responses(JobModel)})
    def submit(model: str, body: Annotated[JobBody, Body()]) -> Response[Any]:
        who = owner()
        spec = runtime.service.model(model)
        key = header("idempotency-key")
        job, created = jobs.submit(
            who, spec, instances=body.instances, input_uri=body.input.uri if body.input else None,
            input_format=body.input.format if body.input else "jsonl", output=body.output, idempotency_key=key,
        )
        return job_response(202 if created else 200, job)

    @route("GET", "/v1/jobs/<job_id>", summary="Job status", responses=_responses(JobModel, 401, 404))
    def get_job(job_id: str) -> Response[Any]:
        job = jobs.get(owner(), job_id)
        return _json(200, jobs.to_dict(job, with_download=True))

    @route("GET", "/v1/jobs", summary="The caller's jobs, newest first", responses=_responses(JobList, 400, 401))
    def list_jobs(
        status: Annotated[str | None, Query(description="queued | running | succeeded | failed | cancelling | cancelled")] = None,
        model: Annotated[str | None, Query(description="only this model's jobs")] = None,
        limit: Annotated[int, Query(ge=1, description=f"page size (default 20); larger values are capped at {LIST_LIMIT_MAX}")] = 20,
        cursor: Annotated[str | None, Query(description="the previous page's next_cursor")] = None,
    ) -> Response[Any]:
        # An empty filter (`?status=`) is no filter; a huge limit is capped, not refused.
        page = jobs.list(owner(), status=status or None, model=model or None, limit=min(limit, LIST_LIMIT_MAX), cursor=cursor or None)
        return _json(200, {"jobs": [jobs.to_dict(j, with_download=True) for j in page.jobs], "next_cursor": page.next_cursor})

    @route("DELETE", "/v1/jobs/<job_id>", summary="Cancel a job", responses=_responses(JobModel, 401, 404, 409, ok_status=202))
    def cancel(job_id: str) -> Response[Any]:
        job = jobs.cancel(owner(), job_id)
        return _json(202, jobs.to_dict(job, with_download=True))

    @route("POST", "/v1/uploads", summary="A presigned upload slot for a large job input", responses=_responses(UploadSlot, 401, ok_status=201))
    def upload() -> Response[Any]:
        return _json(201, jobs.upload_slot(owner()))


# The characters Powertools' resolver accepts in a path parameter (its NAMED_GROUP_BOUNDARY_PATTERN),
# so that "is this path served?" here agrees with the resolver's own matching.
_PARAM_SEGMENT = re.compile(r"^[-._~()'!*:@,;=+&$%<> \[\]{}|^\w]+$")


def _matches(template: str, path: str) -> bool:
    t = [p for p in template.split("/") if p]
    s = [p for p in path.split("/") if p]
    return len(t) == len(s) and all(
        (a.startswith("<") and _PARAM_SEGMENT.match(b) is not None) or a == b for a, b in zip(t, s, strict=True)
    )


def openapi_json(app: APIGatewayRestResolver) -> str:
    doc = json.loads(
        app.get_openapi_json_schema(
            title="Hybrid inference router",
            version=__version__,
            summary="Routes each prediction to inline Lambda, a SageMaker endpoint or a batch job, and explains why.",
        )
    )
    return json.dumps(_finish_openapi(doc), indent=2)


_HEADER_DOCS: dict[str, dict[str, Any]] = {
    "X-Request-Id": {"description": "The request's id (also in every error body).", "schema": {"type": "string"}},
    "X-Router-Route": {"description": "The route that ran (or will run) the prediction.", "schema": {"type": "string"}},
    "Location": {"description": "The job: /v1/jobs/{job_id}.", "schema": {"type": "string"}},
}
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "1-255 printable characters: repeating the same request with the same key returns the same job; "
                   "another body with the key is 422 idempotency_key_reuse. Keys are per owner.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
_PREFER = {
    "name": "Prefer", "in": "header", "required": False,
    "description": "`respond-async`: when no synchronous route is feasible, answer 202 with a Job instead of 422/413.",
    "schema": {"type": "string"},
}


def _error_response_doc() -> dict[str, Any]:
    return {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}


def _finish_openapi(doc: dict[str, Any]) -> dict[str, Any]:
    """What the generator cannot say from the handlers: authentication, the headers the API reads and
    writes, and no generic 422 "Validation Error" (request validation errors are 400 invalid_request)."""
    components = doc.setdefault("components", {})
    components["securitySchemes"] = {
        "bearerAuth": {"type": "http", "scheme": "bearer", "description": "Local runtime (`router serve`): an API key from the config's auth.api_keys."},
        "sigv4": {"type": "apiKey", "in": "header", "name": "Authorization", "description": "AWS: API Gateway IAM (SigV4) authorization."},
    }
    doc["security"] = [{"bearerAuth": []}, {"sigv4": []}]
    for path, ops in doc.get("paths", {}).items():
        for method, op in ops.items():
            if path in PUBLIC_PATHS:
                op["security"] = []
            responses = op.setdefault("responses", {})
            generic = responses.get("422")
            if generic is not None and "HTTPValidationError" in json.dumps(generic):
                del responses["422"]
            # What every operation can answer whatever its handler does: a body over the API's
            # payload limit (413, before the handler) or of another media type (415) on POST, and
            # 500 internal_error.
            for status in ((413, 415, 500) if method == "post" else (500,)):
                responses.setdefault(str(status), _error_response_doc())
            for status, resp in responses.items():
                headers = resp.setdefault("headers", {})
                headers["X-Request-Id"] = _HEADER_DOCS["X-Request-Id"]
                if method == "post" and path.endswith(("/predict", "/jobs")) and status in ("200", "202"):
                    headers["X-Router-Route"] = _HEADER_DOCS["X-Router-Route"]
                    if status == "202" or path.endswith("/jobs"):
                        headers["Location"] = _HEADER_DOCS["Location"]
            if method == "post" and path.endswith(("/predict", "/jobs")):
                params = op.setdefault("parameters", [])
                params.append(_IDEMPOTENCY_KEY)
                if path.endswith("/predict"):
                    params.append(_PREFER)
    text = json.dumps(doc.get("paths", {}))
    schemas = components.get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        if name in schemas and f"#/components/schemas/{name}" not in text:
            del schemas[name]
    return doc


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
            resp = _before(app, runtime, event, rid)
            if resp is None:
                resp = app.resolve(event, context)
        finally:
            logger.remove_keys(["request_id"])
        _add_header(resp, "X-Request-Id", rid)
        return resp

    return handle


def _before(app: RouterApp, runtime: Any, event: dict[str, Any], rid: str) -> dict[str, Any] | None:
    """What happens before the resolver looks at the request (None: go on and resolve it).

    - OPTIONS on a served path: 204 with `Allow` (no credentials needed, as for a CORS preflight);
    - HEAD on a GET path: answered as GET (the HTTP front sends the headers only);
    - a served method on a protected path: the caller is authenticated first, so a request without
      valid credentials is 401 whatever its body (not 400/415/422 that would probe the API);
    - a body that is not JSON by its Content-Type: 415 (any case, any parameters such as charset).
    """
    method = str(event.get("httpMethod") or "GET").upper()
    path = str(event.get("path") or "/")
    if "//" in path:  # "//v1//health" is "/v1/health" (as most HTTP servers merge slashes)
        path = event["path"] = re.sub("/{2,}", "/", path)
    allowed = app.allowed(path)
    if not allowed:
        return None  # the resolver answers 404
    if method == "OPTIONS":
        return {"statusCode": 204, "multiValueHeaders": {"Allow": [", ".join(allowed)]}, "body": "", "isBase64Encoded": False}
    if method == "HEAD" and "GET" in allowed:
        event["httpMethod"] = "GET"
        method = "GET"
    if method not in allowed:
        return None  # the resolver answers 405 with Allow
    if _normalized(path) not in PUBLIC_PATHS:
        try:
            runtime.auth.owner(event)
        except RouterError as err:
            return _error_dict(err, rid)
    if method in BODY_METHODS and event.get("body"):
        ctype = _get_header(event, "content-type")
        if ctype is not None:
            media = ctype.split(";", 1)[0].strip().lower()
            if media != "application/json" and not media.endswith("+json"):
                return _error_dict(UnsupportedMediaType(f"send the body as application/json (got {media or 'an empty Content-Type'})"), rid)
            _set_header(event, "content-type", "application/json")  # the resolver matches it case-sensitively
    return None


def _normalized(path: str) -> str:
    return "/" + "/".join(p for p in path.split("/") if p)


def _get_header(event: Mapping[str, Any], name: str) -> str | None:
    for k, v in (event.get("headers") or {}).items():
        if k.lower() == name:
            return None if v is None else str(v)
    for k, vs in (event.get("multiValueHeaders") or {}).items():
        if k.lower() == name and vs:
            return str(vs[-1])
    return None


def _set_header(event: dict[str, Any], name: str, value: str) -> None:
    for key in ("headers", "multiValueHeaders"):
        hdrs = event.get(key)
        if not hdrs:
            continue
        for k in [k for k in hdrs if k.lower() == name]:
            del hdrs[k]
        hdrs[name] = value if key == "headers" else [value]
    if not event.get("headers"):
        event["headers"] = {name: value}


def _error_dict(err: RouterError, rid: str) -> dict[str, Any]:
    logger.info("request rejected", extra={"code": err.code, "status": err.status})
    return {
        "statusCode": err.status,
        "multiValueHeaders": {"Content-Type": [content_types.APPLICATION_JSON]},
        "body": json.dumps(_with_details(err.to_body(rid)), separators=(",", ":")),
        "isBase64Encoded": False,
    }


def _flush_metrics() -> None:
    """Emit this event's metrics (EMF on stdout), or drop them when metrics are disabled.
    Powertools' own flush neither clears a disabled set (it would grow for ever under `router
    serve`) nor stays quiet on events that recorded no metric (health checks)."""
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


# The Lambda entry point: the runtime is built from the environment on the cold start.
handler = lambda_entry(make_handler)
