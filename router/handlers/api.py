"""The API Gateway Lambda handler: the whole HTTP contract of docs/api.md. `router serve` calls
this same handler with API Gateway REST events.

Two layers. This module answers every request's common part itself (request id, method and path
table: 404, 405 with Allow, OPTIONS, HEAD; authentication before any body check; media type) and
the hot routes completely: `POST /v1/models/{model}/predict`, `GET /v1/jobs/{job_id}` and
`GET /v1/health`, with plain dict events, a hand check of the body shape (pydantic only to word
an error), and no per-request framework objects. Every other route, and `/v1/openapi.json`, goes
to the Powertools resolver in router.handlers.api_resolver, imported on first use: the inline
path's cold import holds no Powertools event handler. Both layers answer the same way (the
resolver still serves the hot routes, which tests compare against this one).

Thread-safe: `router serve` may call one handler from many threads at once. The hot routes share
no per-request state; the resolver (which keeps its current event in class state) is serialized.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from router import __version__
from router.auth import ApiKeyAuth
from router.domain import Job, OutputKind, Submitted
from router.errors import (
    InternalError,
    InvalidJson,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    RouterError,
    UnsupportedMediaType,
)
from router.handlers import telemetry
from router.handlers.api_common import (
    JSON_TYPE,
    PUBLIC_PATHS,
    Event,
    Response,
    body_text,
    dumps_json,
    dumps_predictions,
    error_response,
    json_response,
    loads_predict_body,
    timing_json,
    utf8_len,
    validation_error,
)
from router.jobs_io import NumberRows

if TYPE_CHECKING:
    from router.handlers.api_resolver import RouterApp
    from router.runtime import Runtime
    from router.service import Prediction

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

# Every (method, path template) the API serves, and whether it needs the job service. The
# resolver registers exactly these (a test holds them equal).
ROUTE_TABLE: tuple[tuple[str, str, bool], ...] = (
    ("GET", "/v1/health", False),
    ("GET", "/v1/models", False),
    ("GET", "/v1/models/<model>", False),
    ("POST", "/v1/models/<model>/route", False),
    ("POST", "/v1/models/<model>/predict", False),
    ("POST", "/v1/models/<model>/jobs", True),
    ("GET", "/v1/jobs/<job_id>", True),
    ("GET", "/v1/jobs", True),
    ("DELETE", "/v1/jobs/<job_id>", True),
    ("POST", "/v1/uploads", True),
    ("GET", "/v1/openapi.json", False),
)



def routes_for(runtime: Runtime) -> list[tuple[str, str]]:
    return [(m, t) for m, t, needs_jobs in ROUTE_TABLE if not needs_jobs or runtime.jobs is not None]


# ---------------------------------------------------------------- events


# The headers the common part reads, by lower-case name: their index in _hot_headers()'s list.
_HOT_HEADERS = {"content-type": 0, "prefer": 1, "idempotency-key": 2, "authorization": 3}
# Per tuple of header names as a client sends them (the same on every request of that client):
# the (index, name) pairs of the hot headers among them, in order. Bounded; small tuples only.
_PLANS: dict[tuple[Any, ...], tuple[tuple[int, Any], ...]] = {}
_PLAN_MAX_NAMES = 32


def _plan(names: tuple[Any, ...]) -> tuple[tuple[int, Any], ...]:
    plan = _PLANS.get(names)
    if plan is None:
        plan = tuple((i, k) for k in names if (i := _HOT_HEADERS.get(k.lower())) is not None)
        if len(names) <= _PLAN_MAX_NAMES:
            if len(_PLANS) >= 256:
                _PLANS.clear()
            _PLANS[names] = plan
    return plan


def _hot_headers(event: Mapping[str, Any]) -> list[Any]:
    """[content-type, prefer, idempotency-key, authorization, names, plan]: the first three from
    the single-value headers (any case; the last spelling with a value wins), the fourth as the
    bearer auth reads it (the first spelling, None when its value is); the single-value header
    names and their plan, for _multi_headers(), which completes the first three."""
    single = event.get("headers")
    if not single:
        return [None, None, None, None, None, None]
    names = tuple(single)
    plan = _plan(names)
    got: list[Any] = [None, None, None, None, names, plan]
    auth_seen = False
    for i, k in plan:
        v = single[k]
        if i == 3:
            if not auth_seen:
                auth_seen = True
                got[3] = None if v is None else str(v)
        elif v is not None:
            got[i] = str(v)
    return got


def _multi_headers(event: Mapping[str, Any], got: list[Any]) -> None:
    """Fills in what _hot_headers() did not find: a single-value header wins over multi-value ones,
    which give their last value (the last spelling with a non-empty list wins)."""
    if got[0] is not None and got[1] is not None and got[2] is not None:
        return
    multi = event.get("multiValueHeaders")
    if not multi:
        return
    names = tuple(multi)
    found: list[str | None] = [None, None, None, None]
    # A REST event's two header maps usually have the same names: then the same plan.
    for i, k in (got[5] if names == got[4] else _plan(names)):
        vs = multi[k]
        if vs and i != 3:
            found[i] = str(vs[-1])
    if got[0] is None:
        got[0] = found[0]
    if got[1] is None:
        got[1] = found[1]
    if got[2] is None:
        got[2] = found[2]


def _set_header(event: Event, name: str, value: str) -> None:
    for key in ("headers", "multiValueHeaders"):
        hdrs = event.get(key)
        if not hdrs:
            continue
        for k in [k for k in hdrs if k.lower() == name]:
            del hdrs[k]
        hdrs[name] = value if key == "headers" else [value]
    if not event.get("headers"):
        event["headers"] = {name: value}


def _add_header(resp: Response, name: str, value: str) -> None:
    if "multiValueHeaders" in resp:
        resp["multiValueHeaders"][name] = [value]
    else:
        resp.setdefault("headers", {})[name] = value


def _normalized(path: str) -> str:
    return "/" + "/".join(p for p in path.split("/") if p)


_MAPPING_FIELDS = ("headers", "multiValueHeaders", "queryStringParameters", "multiValueQueryStringParameters",
                   "pathParameters", "requestContext")


def not_a_proxy_event(event: Any) -> str | None:
    """Why `event` is neither a REST (1.0) nor an HTTP API (2.0) proxy event; None when it is one."""
    if not isinstance(event, dict):
        return f"the event is a JSON {type(event).__name__}, not an object"
    get = event.get
    for key in _MAPPING_FIELDS:
        value = get(key)
        if value is not None and not isinstance(value, dict):
            return f"`{key}` is not an object"
    if is_v2(event):
        rc = event.get("requestContext") or {}
        if not isinstance(rc.get("http") or {}, dict) or not isinstance(rc.get("authorizer") or {}, dict):
            return "`requestContext.http` or `requestContext.authorizer` is not an object"
        if not isinstance(event.get("cookies") or [], list):
            return "`cookies` is not a list"
        return None
    if not isinstance(get("httpMethod"), str) or not isinstance(get("path"), str):
        return "`httpMethod` and `path` must be strings"
    body = get("body")
    if body is not None and not isinstance(body, str):
        return "`body` is not a string"
    return None


def is_v2(event: Mapping[str, Any]) -> bool:
    """HTTP API payload format 2.0 (also Lambda function URLs)."""
    return "httpMethod" not in event and (event.get("version") == "2.0" or "rawPath" in event)


def from_v2(event: Mapping[str, Any]) -> Event:
    """A payload format 2.0 event in the 1.0 (REST) shape the handler reads: method, stage-less
    path, headers (cookies folded back into Cookie), query, body and the caller's identity."""
    from urllib.parse import unquote

    rc = event.get("requestContext") or {}
    http = rc.get("http") or {}
    path = unquote(str(event.get("rawPath") or http.get("path") or "/"))
    stage = rc.get("stage")
    if stage and stage != "$default" and path.startswith(f"/{stage}/"):
        path = path[len(stage) + 1:]
    headers = {str(k): str(v) for k, v in (event.get("headers") or {}).items()}
    if event.get("cookies"):
        headers["cookie"] = "; ".join(str(c) for c in event["cookies"])
    query = event.get("queryStringParameters") or None
    authorizer = rc.get("authorizer") or {}
    iam = authorizer.get("iam") or {}
    identity: dict[str, Any] = {"sourceIp": http.get("sourceIp"), "userAgent": http.get("userAgent")}
    if iam:
        identity.update(userArn=iam.get("userArn"), caller=iam.get("callerId"), accountId=iam.get("accountId"),
                        accessKey=iam.get("accessKey"), user=iam.get("userId"))
    v1_authorizer = {**(authorizer.get("lambda") or {})}
    if authorizer.get("jwt"):
        v1_authorizer["jwt"] = authorizer["jwt"]
    method = str(http.get("method") or "GET")
    return {
        "resource": rc.get("routeKey"),
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: str(v).split(",") for k, v in query.items()} if query else None,
        "pathParameters": event.get("pathParameters"),
        "stageVariables": event.get("stageVariables"),
        "requestContext": {
            "requestId": rc.get("requestId"), "stage": stage, "httpMethod": method, "path": path,
            "identity": identity, "authorizer": v1_authorizer or None, "apiId": rc.get("apiId"),
            "accountId": rc.get("accountId"), "requestTimeEpoch": rc.get("timeEpoch"),
        },
        "body": event.get("body"),
        "isBase64Encoded": bool(event.get("isBase64Encoded")),
    }


def to_v2_response(resp: Response) -> Response:
    """Payload format 2.0 responses have single-value headers only."""
    headers = {str(k): str(v) for k, v in (resp.get("headers") or {}).items()}
    for k, vs in (resp.get("multiValueHeaders") or {}).items():
        headers[k] = ", ".join(str(v) for v in vs)
    return {"statusCode": resp.get("statusCode", 500), "headers": headers, "body": resp.get("body") or "",
            "isBase64Encoded": bool(resp.get("isBase64Encoded"))}


# The characters Powertools' resolver accepts in a path parameter (its NAMED_GROUP_BOUNDARY_PATTERN),
# so that "is this path served?" here agrees with the resolver's own matching.
_PARAM_SEGMENT = re.compile(r"^[-._~()'!*:@,;=+&$%<> \[\]{}|^\w]+$")


def _matches(template: str, path: str) -> bool:
    t = [p for p in template.split("/") if p]
    s = [p for p in path.split("/") if p]
    return len(t) == len(s) and all(
        (a.startswith("<") and _PARAM_SEGMENT.match(b) is not None) or a == b for a, b in zip(t, s, strict=True)
    )


# ---------------------------------------------------------------- the handler


class ApiHandler:
    """A Lambda-style handler bound to one runtime; implements ApiCore for the resolver."""

    def __init__(self, runtime: Runtime, *, fast_path: bool = True) -> None:
        self.runtime = runtime
        self.service = runtime.service
        self.jobs = runtime.jobs
        self.fast_path = fast_path
        self.route_table = routes_for(runtime)
        self.quick_s = QUICK_S  # answers_at_once(): how quick a model's last call must have been
        self._paths: dict[str, _PathInfo] = {}  # per concrete path; bounded in _path()
        self._envelopes: dict[int, tuple[Any, Any, str, str]] = {}  # per Decision; see _prediction_body()
        self._resolver: RouterApp | None = None
        self._resolver_lock = threading.Lock()

    def __call__(self, event: Event, context: Any) -> Response:
        problem = not_a_proxy_event(event)
        if problem is not None:
            rid = "local-" + uuid.uuid4().hex
            resp = error_response(InvalidRequest(f"not an API Gateway proxy event: {problem}"), rid)
            _add_header(resp, "X-Request-Id", rid)
            return resp
        v2 = "httpMethod" not in event and is_v2(event)
        if v2:
            event = from_v2(event)
        ctx = event.get("requestContext")
        if not isinstance(ctx, dict):
            ctx = event["requestContext"] = {}
        given = ctx.get("requestId")
        rid = given if type(given) is str and given else str(given or ("local-" + uuid.uuid4().hex))
        if rid is not given:
            ctx["requestId"] = rid
        metrics, token = telemetry.enter_request(rid)
        try:
            resp = self._dispatch(event, context, rid)
        except RouterError as err:
            resp = error_response(err, rid)
        except Exception:
            telemetry.logger().exception("unhandled error")
            resp = error_response(InternalError("internal error; see the router's logs with this request id"), rid)
        finally:
            telemetry.leave_event(token)
        if metrics.on:
            metrics.flush()
        multi = resp.get("multiValueHeaders")
        if multi is not None:  # _add_header(), inline
            multi["X-Request-Id"] = [rid]
        else:
            _add_header(resp, "X-Request-Id", rid)
        return to_v2_response(resp) if v2 else resp

    # ---------------------------------------------------------- the common part

    def allowed(self, path: str) -> list[str]:
        """Methods served on a concrete path (HEAD with GET, OPTIONS everywhere); [] when unknown."""
        return self._path(path).allowed

    def _path(self, path: str) -> _PathInfo:
        """What the common part needs to know about a concrete path, worked out once per path."""
        info = self._paths.get(path)
        if info is not None:
            return info
        methods = {m for m, tpl in self.route_table if _matches(tpl, path)}
        if methods:
            if "GET" in methods:
                methods.add("HEAD")
            methods.add("OPTIONS")
        segs = [p for p in path.split("/") if p]
        hot, arg = "", ""
        if len(segs) == 4 and segs[3] == "predict" and "POST" in methods:
            hot, arg = "predict", segs[2]
        elif len(segs) == 3 and segs[1] == "jobs" and "GET" in methods:
            hot, arg = "job", segs[2]
        elif segs == ["v1", "health"]:
            hot = "health"
        info = _PathInfo(sorted(methods), _normalized(path) in PUBLIC_PATHS, hot, arg)
        if len(self._paths) >= 4096:  # job ids make paths unbounded: keep the cache small
            self._paths.clear()
        self._paths[path] = info
        return info

    def answers_at_once(self, method: str, path: str, prefer: str, body_bytes: int) -> bool:
        """Whether this request only reads memory and computes briefly: health, or a predict of at
        most QUICK_BYTES for a model that only runs in-process, is loaded and answered its last call
        within `quick_s` (QUICK_S). An HTTP front may then call the handler on its event loop (no thread hand-off);
        anything that may wait (an endpoint, a job table, a model load) is never such a request."""
        if not self.fast_path or "//" in path:
            return False
        info = self._path(path)
        if info.hot == "health":
            return method in ("GET", "HEAD")
        return (info.hot == "predict" and method == "POST" and body_bytes <= QUICK_BYTES
                and "respond-async" not in prefer.lower() and self.service.quick_inline(info.arg, self.quick_s))

    def _dispatch(self, event: Event, context: Any, rid: str) -> Response:
        """- an unknown path: 404; a method the path does not serve: 405 with Allow;
        - OPTIONS on a served path: 204 with `Allow` (no credentials needed, as for a CORS preflight);
        - HEAD on a GET path: answered as GET (the HTTP front sends the headers only);
        - a protected path: the caller is authenticated first, so a request without valid
          credentials is 401 whatever its body (not 400/415/422 that would probe the API);
        - a body that is not JSON by its Content-Type: 415 (any case, any parameters such as charset).
        """
        method = str(event.get("httpMethod") or "GET").upper()
        path = str(event.get("path") or "/")
        if "//" in path:  # "//v1//health" is "/v1/health" (as most HTTP servers merge slashes)
            path = event["path"] = re.sub("/{2,}", "/", path)
        info = self._path(path)
        if method != "POST" or info.hot != "predict":  # a predict path serves POST: nothing to check
            allowed = info.allowed
            if not allowed:
                raise NotFound(f"no such path: {path}", details={"path": path})
            if method == "OPTIONS":
                return {"statusCode": 204, "multiValueHeaders": {"Allow": [", ".join(allowed)]}, "body": "", "isBase64Encoded": False}
            if method == "HEAD" and "GET" in allowed:
                event["httpMethod"] = method = "GET"
            if method not in allowed:
                raise MethodNotAllowed(f"{method} is not allowed on {path}; allowed: {', '.join(allowed)}", details={"allowed": allowed})
        hot = _hot_headers(event)  # content-type, prefer, idempotency-key, authorization
        owner: str | None = None
        if not info.public:
            auth = self.runtime.auth
            # Bearer keys: the header read above (no second scan of the headers for it).
            owner = auth.owner_from_header(hot[3]) if type(auth) is ApiKeyAuth else str(auth.owner(event))
        _multi_headers(event, hot)
        ctype = hot[0]
        if ctype is not None and ctype != JSON_TYPE and method in BODY_METHODS and event.get("body"):
            media = ctype.split(";", 1)[0].strip().lower()
            if media != JSON_TYPE and not media.endswith("+json"):
                raise UnsupportedMediaType(f"send the body as application/json (got {media or 'an empty Content-Type'})")
            _set_header(event, "content-type", JSON_TYPE)  # the resolver matches it case-sensitively
        if self.fast_path and info.hot:
            if info.hot == "predict" and method == "POST" and owner is not None:
                return self._predict(event, hot[1] or "", hot[2], info.arg, owner)
            if info.hot == "job" and method == "GET" and owner is not None and self.jobs is not None:
                return json_response(200, self.jobs.to_dict(self.jobs.get(owner, info.arg), with_download=True))
            if info.hot == "health" and method == "GET":
                return self.health()
        return self._resolve(event, context)

    # ---------------------------------------------------------- the hot routes

    def health(self) -> Response:
        rt = self.runtime
        body: dict[str, Any] = {"status": "ok", "version": __version__, "config_digest": rt.config.digest, "runtime": rt.kind}
        endpoints = self.service.endpoint_statuses()  # last known states: no AWS call
        if endpoints:
            body["endpoints"] = endpoints
        return json_response(200, body)

    def _predict(self, event: Event, prefer: str, idempotency_key: str | None, name: str, owner: str) -> Response:
        start = time.perf_counter()
        body = event.get("body")
        # body_text() and utf8_len(), inline for a plain text body (the common case)
        text = body if type(body) is str and not event.get("isBase64Encoded") else body_text(event)
        size = (len(text) if text.isascii() else utf8_len(text)) if text else 0
        prefer = prefer.lower()
        if size > self.service.sync_limit_bytes:  # at most that, check_payload() has nothing to refuse
            self.check_sync_size(name, size, prefer)  # 413 before the rows are parsed or validated
        try:
            data, numbers = loads_predict_body(text) if text else (None, False)
        except json.JSONDecodeError as e:
            raise InvalidJson(f"the body is not valid JSON: {e.msg}") from None
        if data is None:  # no body, or JSON null: as the resolver words it
            raise validation_error([{"type": "missing", "loc": ("body",), "msg": "Field required"}])
        instances, output = predict_body(data)
        if numbers:
            instances = NumberRows(instances)
        return self.predict(owner, name, instances, output, size, prefer, idempotency_key, start)

    def check_sync_size(self, name: str, size: int, prefer: str) -> None:
        self.service.check_payload(name, size, respond_async="respond-async" in prefer)

    def predict(self, owner: str, name: str, instances: list[Any], output: OutputKind, size: int, prefer: str,
                idempotency_key: str | None, start: float) -> Response:
        """A validated predict request (both layers end here): renders what the service did."""
        service = self.service
        spec = service.model(name)
        metrics = telemetry.event_metrics()
        on = metrics.on  # off: no metric call at all
        if on:
            metrics.dimension("model", spec.name)
        result = service.predict(spec, instances, output, size, owner=owner, respond_async="respond-async" in prefer,
                                 idempotency_key=idempotency_key, started=start)
        if isinstance(result, Submitted):
            metrics.count("JobsSubmitted")
            return self.job_response(202, result.job)
        total = (time.perf_counter() - start) * 1000
        route = result.route._value_  # the plain str (Enum's .value is a Python-level property)
        if on:
            metrics.dimension("route", route)
            metrics.count("Predictions")
            metrics.milliseconds("PredictLatency", total)
        return {"statusCode": 200, "multiValueHeaders": {"Content-Type": [JSON_TYPE], "X-Router-Route": [route]},
                "body": self._prediction_body(result, total), "isBase64Encoded": False}

    def _prediction_body(self, result: Prediction, total_ms: float) -> str:
        """`dumps_json(result.to_dict(total_ms))`, with the part that depends only on the model and
        the (memoized, immutable) decision encoded once: model, version, route, decision and reason."""
        decision, model = result.decision, result.model
        cached = self._envelopes.get(id(decision))
        if cached is None or cached[0] is not decision or cached[1] is not model:
            body = result.to_dict(0.0)
            shape_ok = list(body)[-1] == "timing_ms" and list(body["timing_ms"]) == ["total", "model"]
            body["predictions"], body["timing_ms"] = _MARK, _MARK
            parts = dumps_json(body).split(dumps_json(_MARK))
            if not shape_ok or len(parts) != 3:  # not the shape cached here
                return dumps_json(result.to_dict(total_ms))
            if len(self._envelopes) >= 256:
                self._envelopes.clear()
            # The entry holds the decision: its id cannot be reused while it is cached.
            cached = self._envelopes[id(decision)] = (decision, model, parts[0], parts[1])
        # round() as to_dict() does (timing_json).
        return f'{cached[2]}{dumps_predictions(result.predictions)}{cached[3]}{timing_json(total_ms, result.model_ms)}}}'

    def job_response(self, status: int, job: Job) -> Response:
        assert self.jobs is not None  # a job exists only where the runtime has a job service
        body = self.jobs.to_dict(job, with_download=True)
        return json_response(status, body, {"Location": f"/v1/jobs/{job.job_id}", "X-Router-Route": job.route.value})

    # ---------------------------------------------------------- everything else

    def resolver(self) -> RouterApp:
        """The Powertools resolver for the other routes, built (and Powertools imported) on first use."""
        app = self._resolver
        if app is None:
            with self._resolver_lock:
                app = self._resolver
                if app is None:
                    from router.handlers.api_resolver import build_app

                    app = self._resolver = build_app(self)
        return app

    def _resolve(self, event: Event, context: Any) -> Response:
        app = self.resolver()
        with self._resolver_lock:  # the resolver keeps the current event in class state
            resp: Response = app.resolve(event, context)
        return resp


_PREDICT_KEYS = frozenset({"instances", "output"})
_OUTPUTS = {k.value: k for k in OutputKind}


QUICK_BYTES = 16 * 1024  # answers_at_once(): a predict body this small, for a model whose last call took
QUICK_S = 0.002  # at most this long
_MARK = "\x00router-envelope\x00"  # stands for a value in the cached envelope; no JSON body has it


@dataclass(frozen=True, slots=True)
class _PathInfo:
    allowed: list[str]  # methods served (sorted); [] for an unknown path
    public: bool  # answered without credentials
    hot: str  # "predict", "job", "health": a route of the fast path; "" otherwise
    arg: str  # the model name (predict) or job id (job)


def predict_body(data: Any) -> tuple[list[Any], OutputKind]:
    """The predict body's shape (docs/api.md: 400 invalid_request otherwise), checked by hand for
    the common valid case; anything else is worded by the pydantic model the resolver uses."""
    if type(data) is dict and data.keys() <= _PREDICT_KEYS:
        instances = data.get("instances")
        output = _OUTPUTS.get(data["output"]) if "output" in data and type(data["output"]) is str else (
            OutputKind.PREDICT if "output" not in data else None)
        if type(instances) is list and instances and output is not None:
            return instances, output
    from pydantic import ValidationError

    from router.handlers.api_models import PredictBody

    try:
        body = PredictBody.model_validate(data, from_attributes=True)  # as the resolver validates
    except ValidationError as e:
        raise validation_error(list(e.errors())) from None
    return body.instances, body.output


def make_handler(runtime: Runtime, *, fast_path: bool = True) -> ApiHandler:
    """A Lambda-style handler bound to one runtime (used by the Lambda entry point, `router serve`
    and the tests). Metrics are flushed after every event, as CloudWatch EMF lines on stdout
    (POWERTOOLS_METRICS_DISABLED=true turns them off; `router serve` does by default).
    fast_path=False sends every route through the resolver (the reference the tests compare with)."""
    telemetry.setup_logging()
    return ApiHandler(runtime, fast_path=fast_path)
