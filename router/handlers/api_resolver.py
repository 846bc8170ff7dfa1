"""The Powertools resolver behind router.handlers.api: the routes the hot path leaves to it (model
listing and detail, route dry runs, job submission, listing, cancel, uploads), request validation
from the pydantic models in router.handlers.api_models, and /v1/openapi.json generated from them.

Imported on the first request that needs it (Powertools' event handler is most of a cold import).
It also serves the hot routes (predict, job status, health) exactly as router.handlers.api does, so
the OpenAPI document lists them and tests can compare both answers.
"""

from __future__ import annotations

import binascii
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Query

from router import __version__
from router.domain import JobStatus, Mode
from router.errors import InternalError, InvalidJson, NotFound, RouterError, UnsupportedMediaType
from router.handlers import telemetry
from router.handlers.api_common import (
    LIST_LIMIT_MAX,
    PUBLIC_PATHS,
    ApiCore,
    error_response,
    json_response,
    loads_json,
    utf8_len,
    validation_error,
)
from router.handlers.api_models import (
    DecisionModel,
    ErrorResponse,
    HealthResponse,
    JobBody,
    JobList,
    JobModel,
    ModelDetail,
    ModelList,
    PredictBody,
    PredictResponse,
    RouteBody,
    UploadSlot,
)

if TYPE_CHECKING:
    from router.jobs_service import JobsService


class RouterApp(APIGatewayRestResolver):
    """The resolver plus the table of (method, path template) it registered."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.route_table: list[tuple[str, str]] = []
        self.openapi_text: str | None = None


def _pt(resp: dict[str, Any]) -> Response[Any]:
    """A proxy response dict of router.handlers.api as the resolver's Response."""
    headers = {k: v for k, v in resp.get("multiValueHeaders", {}).items() if k != "Content-Type"}
    return Response(status_code=resp["statusCode"], content_type=content_types.APPLICATION_JSON, body=resp["body"], headers=headers)


def _error_responses(*statuses: int) -> dict[int, Any]:
    return {s: {"description": "error", "content": {"application/json": {"model": ErrorResponse}}} for s in statuses}


def _responses(ok: Any, *statuses: int, ok_status: int = 200) -> dict[int, Any]:
    out = _error_responses(*statuses)
    out[ok_status] = {"description": "success", **({"content": {"application/json": {"model": ok}}} if ok is not None else {})}
    return out


def build_app(h: ApiCore) -> RouterApp:
    """The resolver for one handler's runtime. Route functions close over it."""
    app = RouterApp(enable_validation=True, json_body_deserializer=loads_json)
    runtime = h.runtime
    service = runtime.service

    def route(method: str, path: str, **kw: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        app.route_table.append((method, path))
        return app.route(path, method, **kw)

    def request_id() -> str:
        return str(app.current_event.raw_event["requestContext"]["requestId"])

    def owner() -> str:
        return str(runtime.auth.owner(app.current_event.raw_event))

    def header(name: str) -> str | None:
        v = app.current_event.headers.get(name)  # case-insensitive in Powertools v3
        return None if v is None else str(v)

    def payload_bytes() -> int:
        return utf8_len(app.current_event.decoded_body)

    def fail(err: RouterError) -> Response[Any]:
        return _pt(error_response(err, request_id()))

    # ---------------------------------------------------------- errors

    @app.exception_handler(RouterError)
    def _router_error(err: RouterError) -> Response[Any]:
        return fail(err)

    @app.exception_handler(RequestValidationError)
    def _validation_error(err: RequestValidationError) -> Response[Any]:
        return fail(validation_error(list(err.errors())))

    @app.not_found
    def _not_found(_: NotFoundError) -> Response[Any]:
        path = app.current_event.path
        return fail(NotFound(f"no such path: {path}", details={"path": path}))

    try:  # Powertools >= 3: unsupported request content types have their own exception
        from aws_lambda_powertools.event_handler.openapi.exceptions import RequestUnsupportedContentType

        @app.exception_handler(RequestUnsupportedContentType)
        def _media(_: Exception) -> Response[Any]:
            return fail(UnsupportedMediaType("send the body as application/json"))
    except ImportError:  # pragma: no cover
        pass

    @app.exception_handler([UnicodeDecodeError, binascii.Error])
    def _undecodable(_: Exception) -> Response[Any]:
        # API Gateway passes binary bodies base64-encoded; JSON must be UTF-8 (RFC 8259).
        return fail(InvalidJson("the body is not UTF-8 encoded JSON"))

    @app.exception_handler(Exception)
    def _unexpected(err: Exception) -> Response[Any]:
        telemetry.logger().exception("unhandled error")
        return fail(InternalError("internal error; see the router's logs with this request id"))

    # ---------------------------------------------------------- routes

    @route("GET", "/v1/health", summary="Liveness, version and config digest", responses=_responses(HealthResponse))
    def health() -> Response[Any]:
        return _pt(h.health())

    @route("GET", "/v1/models", summary="Models the config declares", responses=_responses(ModelList, 401))
    def list_models() -> Response[Any]:
        owner()
        return _pt(json_response(200, {"models": [service.describe_model(m) for m in runtime.config.models]}))

    @route("GET", "/v1/models/<model>", summary="One model with its routing envelope", responses=_responses(ModelDetail, 401, 404))
    def get_model(model: str) -> Response[Any]:
        who = owner()
        spec = service.model(model)
        jobs = None if runtime.jobs is None else runtime.jobs.job_samples(who, spec)
        return _pt(json_response(200, service.describe_model(spec, detail=True, job_samples=jobs)))

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
        return _pt(json_response(200, service.decide(spec, mode, records, size).to_dict()))

    @route("POST", "/v1/models/<model>/predict", summary="Synchronous prediction", responses={**_responses(PredictResponse, 400, 401, 404, 413, 415, 422, 429, 500, 502, 503, 504), **_responses(JobModel, ok_status=202)})
    def predict(model: str, body: Annotated[PredictBody, Body()]) -> Response[Any]:
        start = time.perf_counter()
        size = payload_bytes()
        prefer = (header("prefer") or "").lower()
        h.check_sync_size(model, size, prefer)
        return _pt(h.predict(owner(), model, body.instances, body.output, size, prefer, header("idempotency-key"), start))

    if runtime.jobs is not None:
        _register_job_routes(route, h, runtime.jobs, owner, header)

    @route("GET", "/v1/openapi.json", summary="This contract as OpenAPI 3")
    def openapi() -> Response[Any]:
        if app.openapi_text is None:
            app.openapi_text = openapi_json(app)
        return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=app.openapi_text)

    return app


def _register_job_routes(route: Callable[..., Callable[[Callable[..., Any]], Callable[..., Any]]], h: ApiCore, jobs: JobsService, owner: Callable[[], str],
                         header: Callable[[str], str | None]) -> None:
    """Job endpoints: submit, get, list, cancel, uploads."""
    runtime = h.runtime

    @route("POST", "/v1/models/<model>/jobs", summary="Submit an asynchronous job",
           responses={**_responses(JobModel, 400, 401, 404, 409, 413, 415, 422, 429, 503, ok_status=202), **_responses(JobModel)})
    def submit(model: str, body: Annotated[JobBody, Body()]) -> Response[Any]:
        who = owner()
        spec = runtime.service.model(model)
        metrics = telemetry.event_metrics()
        metrics.dimension("model", spec.name)
        job, created = jobs.submit(
            who, spec, instances=body.instances, input_uri=body.input.uri if body.input else None,
            input_format=body.input.format if body.input else "jsonl", output=body.output, idempotency_key=header("idempotency-key"),
            notify=body.notify.model_dump() if body.notify else None,
        )
        if created:
            metrics.count("JobsSubmitted")
        return _pt(h.job_response(202 if created else 200, job))

    @route("GET", "/v1/jobs/<job_id>", summary="Job status", responses=_responses(JobModel, 401, 404))
    def get_job(job_id: str) -> Response[Any]:
        return _pt(json_response(200, jobs.to_dict(jobs.get(owner(), job_id), with_download=True)))

    @route("GET", "/v1/jobs", summary="The caller's jobs, newest first", responses=_responses(JobList, 400, 401))
    def list_jobs(
        status: Annotated[str | None, Query(description="queued | running | succeeded | failed | cancelling | cancelled")] = None,
        model: Annotated[str | None, Query(description="only this model's jobs")] = None,
        limit: Annotated[int, Query(ge=1, description=f"page size (default 20); larger values are capped at {LIST_LIMIT_MAX}")] = 20,
        cursor: Annotated[str | None, Query(description="the previous page's next_cursor")] = None,
    ) -> Response[Any]:
        # An empty filter (`?status=`) is no filter; a huge limit is capped, not refused.
        page = jobs.list(owner(), status=status or None, model=model or None, limit=min(limit, LIST_LIMIT_MAX), cursor=cursor or None)
        return _pt(json_response(200, {"jobs": [jobs.to_dict(j, with_download=True) for j in page.jobs], "next_cursor": page.next_cursor}))

    @route("DELETE", "/v1/jobs/<job_id>", summary="Cancel a job", responses=_responses(JobModel, 401, 404, 409, ok_status=202))
    def cancel(job_id: str) -> Response[Any]:
        return _pt(json_response(202, jobs.to_dict(jobs.cancel(owner(), job_id), with_download=True)))

    @route("POST", "/v1/uploads", summary="A presigned upload slot for a large job input", responses=_responses(UploadSlot, 401, ok_status=201))
    def upload() -> Response[Any]:
        return _pt(json_response(201, jobs.upload_slot(owner())))


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
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},  # printable ASCII, no space
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
            for param in op.get("parameters", []):
                if path == "/v1/jobs" and param.get("name") == "status":  # "" (no filter) or a status; else 400
                    param["schema"] = {"anyOf": [{"type": "string", "enum": ["", *(s.value for s in JobStatus)]}, {"type": "null"}],
                                       "title": "Status", "description": param.get("description", "")}
            if method == "post" and path.endswith(("/predict", "/jobs")):
                params = op.setdefault("parameters", [])
                params.append(_IDEMPOTENCY_KEY)
                if path.endswith("/predict"):
                    params.append(_PREFER)
    text = json.dumps(doc.get("paths", {}))
    schemas = components.get("schemas", {})
    if "JobBody" in schemas:  # exactly one of instances / input (JobBody._one_source)
        schemas["JobBody"]["oneOf"] = [
            {"required": ["instances"], "properties": {"instances": {"type": "array"}, "input": {"type": "null"}}},
            {"required": ["input"], "properties": {"input": {"type": "object"}, "instances": {"type": "null"}}},
        ]
    for name in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        if name in schemas and f"#/components/schemas/{name}" not in text:
            del schemas[name]
    return doc
