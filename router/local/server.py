"""`router serve`'s HTTP front, as an ASGI application: turns each HTTP request into an API Gateway
REST proxy event and calls the very same Lambda handler (no second implementation of the API).

It plays API Gateway's part and nothing more: the payload limit (413 before the handler, as API
Gateway does at 10 MB), one request id per request, and the local presigned-URL endpoint that
stands in for S3 (`/_local/objects/...`, HMAC-signed by the file store).

Bodies are read on the event loop; each handler call runs on a pool thread with its own handler
instance, so a slow or hung backend call holds only the requests that wait for it. Only what the
handler vouches for as brief and in-memory (health; a small predict of a loaded in-process model
that answered its last call within 2 ms) runs on the event loop itself, when no other handler call
is in flight. This module
imports no HTTP server: `router.local.http` runs it on uvicorn. `LocalContext` and `to_event` are
also used by the worker pool, the benchmarks and the tests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from router.errors import Forbidden, NotFound, RouterError
from router.local.threads import DaemonPool, isolate_powertools_request_state

if TYPE_CHECKING:
    from router.adapters.file_store import FileObjectStore

log = logging.getLogger("router.local")

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


class QuickHandler(Protocol):
    """A Lambda handler that can tell which requests compute briefly in memory (ApiHandler)."""

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]: ...

    def answers_at_once(self, method: str, path: str, prefer: str, body_bytes: int) -> bool: ...

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

MAX_TARGET_BYTES = 65536  # the request target (http.server's request-line limit)
MAX_HEADERS = 100
MAX_HEADER_BYTES = 65536  # one header line
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # never in a header value (uvicorn refuses them)


class LocalContext:
    """The parts of a LambdaContext the handlers and Powertools read."""

    function_name = "router-local"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:local:000000000000:function:router-local"
    memory_limit_in_mb = 3008
    log_group_name = "/local/router"
    log_stream_name = "local"

    def __init__(self, request_id: str, timeout_s: float) -> None:
        self.aws_request_id = request_id
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def to_event(
    method: str,
    raw_path: str,
    headers: dict[str, str],
    body: bytes | None,
    request_id: str,
    source_ip: str,
    multi_headers: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """An API Gateway REST API proxy-integration event (payload format 1.0)."""
    path, multi_q = _path_and_query(raw_path)
    text: str | None = None
    b64 = False
    if body:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text, b64 = base64.b64encode(body).decode(), True
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": dict(headers),
        "multiValueHeaders": multi_headers if multi_headers is not None else {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in multi_q.items()} or None,
        "multiValueQueryStringParameters": multi_q or None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "requestId": request_id,
            "stage": "local",
            "httpMethod": method,
            "path": path,
            "resourcePath": "/{proxy+}",
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": source_ip},
        },
        "body": text,
        "isBase64Encoded": b64,
    }


# A request target urlsplit() would return unchanged as its path: no query, fragment, escape,
# authority ("//"), whitespace or control character.
_PLAIN_TARGET = re.compile(r"/(?!/)[-!$&'()*+,./0-9:;=@A-Z_a-z~]*")


def _path_and_query(target: str) -> tuple[str, dict[str, list[str]]]:
    """The decoded path and the query's values by name, as urlsplit + unquote + parse_qs read them."""
    if _PLAIN_TARGET.fullmatch(target):
        return target, {}
    parts = urlsplit(target)
    return unquote(parts.path) or "/", parse_qs(parts.query, keep_blank_values=True)


def error_body(code: str, message: str, request_id: str, details: dict[str, Any] | None = None) -> bytes:
    """docs/api.md's error envelope, `details` always present."""
    return json.dumps({"error": {"code": code, "message": message, "request_id": request_id, "details": details or {}}}).encode()


_V4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_V4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_request_id() -> str:
    """'local-' and a random version-4 UUID's 32 hex digits (uuid4().hex, without the object)."""
    return f"local-{int.from_bytes(os.urandom(16)) & _V4_CLEAR | _V4_SET:032x}"


class _BodyError(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or {}


class _Disconnected(Exception):
    """The client went away before its request was complete."""


class _StallWatch:
    """Drops a request whose client has sent nothing more of its body for `timeout_s`: a sweep
    every `period_s` over the requests waiting for body data, instead of a timer per receive."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.period_s = min(1.0, timeout_s / 4)
        self._waiting: dict[asyncio.Task[Any], float] = {}  # a request's task -> when it gives up
        self._stalled: set[asyncio.Task[Any]] = set()  # cancelled by the sweep, not by anyone else
        self._sweep: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def receive(self, receive: Receive) -> MutableMapping[str, Any]:
        """receive()'s next message; _Disconnected when the client went away or stalled."""
        task = asyncio.current_task()
        assert task is not None
        loop = task.get_loop()
        self._waiting[task] = loop.time() + self.timeout_s
        if self._sweep is None or self._loop is not loop:
            self._loop, self._sweep = loop, loop.call_later(self.period_s, self._check)
        try:
            msg = await receive()
        except asyncio.CancelledError:
            if task not in self._stalled:
                raise
            self._stalled.discard(task)
            task.uncancel()
            raise _Disconnected() from None
        finally:
            del self._waiting[task]
        if msg["type"] == "http.disconnect":
            raise _Disconnected()
        return msg

    def _check(self) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        for task, deadline in list(self._waiting.items()):
            # The task waits inside receive() (the sweep runs on the same loop): the cancel lands there.
            if deadline <= now and task not in self._stalled:
                self._stalled.add(task)
                task.cancel()
        self._sweep = loop.call_later(self.period_s, self._check) if self._waiting else None


_NAMES: dict[bytes, str] = {}


def _header_name(raw: bytes) -> str:
    """'content-type' -> 'Content-Type' (the HTTP front gets names lower-cased; API Gateway passes
    the client's spelling, and clients mostly send this one)."""
    name = _NAMES.get(raw)
    if name is None:
        name = "-".join(p.capitalize() for p in raw.decode("latin-1").split("-"))
        if len(_NAMES) < 1024:
            _NAMES[raw] = name
    return name


class LocalApi:
    """The ASGI application of `router serve`. `handler_factory` builds one Lambda handler per pool
    thread (it may be set after construction, before the first request)."""

    def __init__(
        self,
        handler_factory: Callable[[], LambdaHandler] | None = None,
        *,
        max_body_bytes: int,
        objects: FileObjectStore | None = None,
        timeout_s: float = 29.0,
        threads: int = 64,
        body_timeout_s: float = 60.0,
    ) -> None:
        isolate_powertools_request_state()
        self.handler_factory = handler_factory
        self.max_body_bytes = max_body_bytes
        self.objects = objects  # FileObjectStore: serves its presigned URLs
        self.timeout_s = timeout_s
        self._watch = _StallWatch(body_timeout_s)  # a client may stall mid-body this long
        self.pool = DaemonPool(threads, self._thread_handler)
        # Requests it says compute briefly in memory run on the event loop: a thread hand-off costs
        # two wake-ups, more than such a request's own work on a busy machine.
        self.loop_handler: QuickHandler | None = None
        self._in_flight = 0  # API handler calls running on the pool

    def _thread_handler(self) -> LambdaHandler:
        try:
            if self.handler_factory is not None:
                return self.handler_factory()
        except Exception:
            log.exception("could not build the API handler")
        return lambda event, context: {"statusCode": 503, "body": ""}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        rid = new_request_id()
        try:
            if scope["raw_path"].startswith(b"/_local/objects/"):
                await self._objects(scope, receive, send, rid)
            else:
                await self._api(scope, receive, send, rid)
        except _Disconnected:
            return
        except _BodyError as e:
            await self._reject(send, e.status, e.code, e.message, rid, e.details)
        except RouterError as e:  # the presigned-URL route's storage (a full disk: 503 + Retry-After)
            retry = {} if e.retry_after_s is None else {"Retry-After": str(e.retry_after_s)}
            await self._reject(send, e.status, e.code, e.message, rid, e.details, retry)
        except asyncio.CancelledError:
            raise
        except Exception:  # the server keeps serving whatever one request does
            log.exception("local server error")
            await self._reject(send, 500, "internal_error", "internal error; see the router's logs with this request id", rid)

    # ------------------------------------------------------------------ the API

    async def _api(self, scope: Scope, receive: Receive, send: Send, rid: str) -> None:
        target = scope.get("router.target")
        if target is None:
            target = scope["raw_path"] + (b"?" + scope["query_string"] if scope["query_string"] else b"")
        if target.startswith(b"//"):
            target = b"/" + target.lstrip(b"/")  # a path, not "//authority" (as http.server reads it)
        headers: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        for raw_name, raw_value in scope["headers"]:
            name = _NAMES.get(raw_name) or _header_name(raw_name)
            value = raw_value.decode("latin-1")
            if name in headers:
                multi[name].append(value)
            else:
                multi[name] = [value]
            headers[name] = value
        body = await self._read_body(scope, receive, self.max_body_bytes)
        client = scope.get("client")
        event = to_event(scope["method"], target.decode("latin-1"), headers, body, rid, client[0] if client else "127.0.0.1", multi)
        quick = self.loop_handler
        prefer = ", ".join(multi["Prefer"]) if "Prefer" in multi else ""
        # Only while no handler call is in flight: under concurrent load the pool overlaps the
        # handlers' work with the loop's HTTP work (two cores), which beats saving the hand-off.
        if (quick is not None and not self._in_flight
                and quick.answers_at_once(scope["method"], event["path"], prefer, len(body) if body else 0)):
            resp = self._call(quick, event, rid)
        else:
            self._in_flight += 1  # touched on the event loop only
            try:
                resp = await self.pool.run(self._call, event, rid)
            finally:
                self._in_flight -= 1
        out: dict[str, str] = {}
        single = resp.get("headers")
        if single:
            for k, v in single.items():
                out[k] = str(v)
        many = resp.get("multiValueHeaders")
        if many:
            for k, vs in many.items():
                out[k] = vs[0] if len(vs) == 1 and type(vs[0]) is str else ", ".join(str(v) for v in vs)
        if "X-Request-Id" not in out:
            out["X-Request-Id"] = rid
        raw = resp.get("body") or ""
        data = base64.b64decode(raw) if resp.get("isBase64Encoded") else raw.encode("utf-8")
        await self._send(send, int(resp.get("statusCode", 500)), out, data)

    def _call(self, handler: LambdaHandler, event: dict[str, Any], rid: str) -> dict[str, Any]:
        return handler(event, LocalContext(rid, self.timeout_s))

    # ------------------------------------------------------------------ bodies

    def _too_large(self, length: int | None) -> _BodyError:
        limit = self.max_body_bytes
        mb = limit / (1024 * 1024)
        size = f"{length} bytes" if length is not None else f"over {limit} bytes"
        return _BodyError(
            413,
            "payload_too_large",
            f"the body is {size}, over the API's {mb:g} MB limit; upload large inputs with POST /v1/uploads and submit a job",
            {"limit_bytes": limit, "hint": "POST /v1/uploads, PUT the data to upload_url, then POST /v1/models/{model}/jobs with {\"input\": {\"uri\": input_uri}}"},
        )

    async def _chunks(self, receive: Receive) -> Any:
        """The body's chunks as they arrive (a client that stalls past body_timeout_s is dropped)."""
        while True:
            msg = await self._watch.receive(receive)
            chunk = msg.get("body", b"")
            if chunk:
                yield chunk
            if not msg.get("more_body", False):
                return

    async def _read_body(self, scope: Scope, receive: Receive, limit: int) -> bytes | None:
        """The request body (Content-Length or chunked: the HTTP parser has checked the framing);
        over `limit` -> 413. A moderately large body is read (and dropped) first, so the client
        sees the 413 instead of a reset connection; anything huge just gets the answer and a close."""
        declared: int | None = None
        expect_continue = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = int(value)
            elif name == b"expect" and value.lower() == b"100-continue":
                expect_continue = True
        if declared is not None and declared > limit:
            if declared <= 8 * limit and not expect_continue:
                async for _ in self._chunks(receive):
                    pass
            raise self._too_large(declared)
        if declared == 0:
            return None
        parts: list[bytes] = []
        total = 0
        while True:  # not _chunks(): an async generator costs more than a small body's whole read
            msg = await self._watch.receive(receive)
            chunk = msg.get("body", b"")
            if chunk:
                total += len(chunk)
                if total > limit:
                    if total <= 8 * limit and msg.get("more_body", False):
                        async for more in self._chunks(receive):
                            total += len(more)
                            if total > 8 * limit:
                                break
                    raise self._too_large(None)
                parts.append(chunk)
            if not msg.get("more_body", False):
                break
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else b"".join(parts)

    # ------------------------------------------------------------------ responses

    async def _send(self, send: Send, status: int, headers: dict[str, str], body: bytes) -> None:
        raw: list[tuple[bytes, bytes]] = []
        for k, v in headers.items():
            if _CTL.search(v):
                v = _CTL.sub("", v)
            raw.append((k.encode("latin-1"), v.encode("latin-1", "replace")))
        if status in (204, 304):  # these never have a body (RFC 9110)
            body = b""
        else:
            raw.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    async def _reject(self, send: Send, status: int, code: str, message: str, rid: str,
                      details: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
        hdrs = {"Content-Type": "application/json", "X-Request-Id": rid, "Connection": "close", **(headers or {})}
        with contextlib.suppress(OSError, RuntimeError):  # the response had started, or the client is gone
            await self._send(send, status, hdrs, error_body(code, message, rid, details))

    # ------------------------------------------------------------------ presigned URLs

    async def _objects(self, scope: Scope, receive: Receive, send: Send, rid: str) -> None:
        """The local stand-in for S3 presigned URLs: GET (and HEAD) downloads, PUT uploads, if the
        signature holds."""
        method = scope["method"]
        if method not in ("GET", "HEAD", "PUT"):
            await self._reject(send, 405, "method_not_allowed", f"{method} is not allowed on a presigned URL; allowed: GET, HEAD, PUT", rid,
                               {"allowed": ["GET", "HEAD", "PUT"]}, {"Allow": "GET, HEAD, PUT"})
            return
        store = self.objects
        path = unquote(scope["raw_path"].decode("latin-1")[len("/_local/objects"):])
        q = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}
        try:
            expires = int(q.get("expires", "0"))
        except ValueError:
            expires = 0
        verb = "PUT" if method == "PUT" else "GET"
        if store is None or not store.verify(path, verb, expires, q.get("signature", ""), time.time()):
            denied = Forbidden("the URL's signature is invalid or expired")
            await self._reject(send, denied.status, denied.code, denied.message, rid)
            return
        uri = "file://" + path
        if verb == "GET":
            data = await self.pool.run(_get_object, store, uri)
            if data is None:
                missing = NotFound("no such object")
                await self._reject(send, missing.status, missing.code, missing.message, rid)
                return
            await self._send(send, 200, {"Content-Type": "application/octet-stream", "X-Request-Id": rid}, data)
            return
        out = await self.pool.run(_open_object, store, uri)
        try:
            buffered: list[bytes] = []
            size = 0
            async for chunk in self._chunks(receive):
                buffered.append(chunk)
                size += len(chunk)
                if size >= 1 << 20:
                    await self.pool.run(_write, out, b"".join(buffered))
                    buffered, size = [], 0
            await self.pool.run(_write, out, b"".join(buffered))
        except BaseException as e:
            await self.pool.run(_close, out, e)
            raise
        await self.pool.run(_close, out, None)
        await self._send(send, 200, {"X-Request-Id": rid}, b"")


def _get_object(_: Any, store: Any, uri: str) -> bytes | None:
    return bytes(store.get_bytes(uri)) if store.exists(uri) else None


def _open_object(_: Any, store: Any, uri: str) -> Any:
    cm = store.open_write(uri)
    return cm, cm.__enter__()


def _write(_: Any, out: Any, data: bytes) -> None:
    if data:
        out[1].write(data)


def _close(_: Any, out: Any, error: BaseException | None) -> None:
    if error is None:
        out[0].__exit__(None, None, None)
    else:
        out[0].__exit__(type(error), error, error.__traceback__)


__all__ = ["LocalApi", "LocalContext", "error_body", "new_request_id", "to_event"]
