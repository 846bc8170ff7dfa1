"""`router serve`'s HTTP front: turns each HTTP request into an API Gateway REST proxy event and
calls the very same Lambda handler (no second implementation of the API).

It plays API Gateway's part and nothing more: the payload limit (413 before the handler, as API
Gateway does at 10 MB), one request id per request, and the local presigned-URL endpoint that
stands in for S3 (`/_local/objects/...`, HMAC-signed by the file store).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from router.errors import RouterError

log = logging.getLogger("router.local")

_CHUNK_SIZE = re.compile(rb"^[0-9A-Fa-f]{1,16}$")
_METHOD_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}$")  # an HTTP method is a token (RFC 9110)

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


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


def to_event(method: str, raw_path: str, headers: dict[str, str], body: bytes | None, request_id: str, source_ip: str) -> dict[str, Any]:
    """An API Gateway REST API proxy-integration event (payload format 1.0)."""
    parts = urlsplit(raw_path)
    path = unquote(parts.path) or "/"
    multi_q = parse_qs(parts.query, keep_blank_values=True)
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
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
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


def _error_body(code: str, message: str, request_id: str, details: dict[str, Any] | None = None) -> bytes:
    """docs/api.md's error envelope, `details` always present."""
    return json.dumps({"error": {"code": code, "message": message, "request_id": request_id, "details": details or {}}}).encode()


class _BodyError(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or {}


class LocalApiServer(ThreadingHTTPServer):
    """Threaded HTTP server; handler calls are serialized (one Lambda instance handles one event
    at a time, and Powertools keeps the current event in class state)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: LambdaHandler,
        *,
        max_body_bytes: int,
        objects: Any | None = None,
        timeout_s: float = 29.0,
    ) -> None:
        super().__init__(address, _RequestHandler)
        self.lambda_handler = handler
        self.max_body_bytes = max_body_bytes
        self.objects = objects  # FileObjectStore: serves its presigned URLs
        self.timeout_s = timeout_s
        self.handler_lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _RequestHandler(BaseHTTPRequestHandler):
    server: LocalApiServer
    protocol_version = "HTTP/1.1"
    server_version = "router-local"
    timeout = 60  # seconds a client may stall mid-request before its connection is dropped

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # the handler logs each request as structured JSON

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if status not in (204, 304):  # these never have a body (RFC 9110)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(body)

    def _reject(self, status: int, code: str, message: str, rid: str, details: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
        self.close_connection = True
        hdrs = {"Content-Type": "application/json", "X-Request-Id": rid, **(headers or {})}
        self._send(status, hdrs, _error_body(code, message, rid, details))

    def _drain(self, length: int) -> None:
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                break
            remaining -= len(chunk)

    def _too_large(self, length: int | None) -> _BodyError:
        limit = self.server.max_body_bytes
        mb = limit / (1024 * 1024)
        size = f"{length} bytes" if length is not None else f"over {limit} bytes"
        return _BodyError(
            413,
            "payload_too_large",
            f"the body is {size}, over the API's {mb:g} MB limit; upload large inputs with POST /v1/uploads and submit a job",
            {"limit_bytes": limit, "hint": "POST /v1/uploads, PUT the data to upload_url, then POST /v1/models/{model}/jobs with {\"input\": {\"uri\": input_uri}}"},
        )

    def _read_body(self, limit: int | None) -> bytes | None:
        """The request body: Content-Length or chunked transfer encoding; over `limit` -> 413
        (API Gateway refuses bodies over its limit before the Lambda runs: 10 MB REST)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked(limit)
        values = {v.strip() for v in self.headers.get_all("Content-Length") or []}
        if len(values) > 1:
            raise _BodyError(400, "invalid_request", "conflicting Content-Length headers", {"content_length": sorted(values)})
        raw = (self.headers.get("Content-Length") or "0").strip()
        if not (raw.isascii() and raw.isdigit()):  # str.isdigit() is also true of '²'
            raise _BodyError(400, "invalid_request", "the Content-Length header must be a whole number of bytes", {"content_length": raw})
        length = int(raw)
        if limit is not None and length > limit:
            # Read (and drop) a moderately large body first, so the client sees the 413 instead
            # of a reset connection; anything huge just gets the answer and a close.
            if length <= 8 * limit:
                self._drain(length)
            raise self._too_large(length)
        return self.rfile.read(length) if length else None

    def _read_chunked(self, limit: int | None) -> bytes | None:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            field = line.split(b";", 1)[0].strip()
            if not _CHUNK_SIZE.match(field):  # hex digits only: no sign, no 0x, no "_"
                raise _BodyError(400, "invalid_request", "malformed chunked body")
            size = int(field, 16)
            if size == 0:
                while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            total += size
            if limit is not None and total > limit:
                raise self._too_large(None)
            parts.append(self.rfile.read(size))
            self.rfile.readline(8)  # the CRLF after the chunk
        return b"".join(parts) or None

    def _handle(self, rid: str) -> None:
        if self.path.startswith("/_local/objects/"):
            self._objects(rid)
            return
        try:
            body = self._read_body(self.server.max_body_bytes)
        except _BodyError as e:
            self._reject(e.status, e.code, e.message, rid, e.details)
            return
        headers = dict(self.headers.items())
        event = to_event(self.command, self.path, headers, body, rid, self.client_address[0])
        with self.server.handler_lock:
            resp = self.server.lambda_handler(event, LocalContext(rid, self.server.timeout_s))
        out_headers: dict[str, str] = {}
        for k, v in (resp.get("headers") or {}).items():
            out_headers[k] = str(v)
        for k, vs in (resp.get("multiValueHeaders") or {}).items():
            out_headers[k] = ", ".join(str(v) for v in vs)
        out_headers.setdefault("X-Request-Id", rid)
        raw = resp.get("body") or ""
        data = base64.b64decode(raw) if resp.get("isBase64Encoded") else raw.encode("utf-8")
        self._send(int(resp.get("statusCode", 500)), out_headers, data)

    def _objects(self, rid: str) -> None:
        """The local stand-in for S3 presigned URLs: GET (and HEAD) downloads, PUT uploads, if the
        signature holds."""
        if self.command not in ("GET", "HEAD", "PUT"):
            self._reject(405, "method_not_allowed", f"{self.command} is not allowed on a presigned URL; allowed: GET, HEAD, PUT", rid,
                         {"allowed": ["GET", "HEAD", "PUT"]}, {"Allow": "GET, HEAD, PUT"})
            return
        store = self.server.objects
        parts = urlsplit(self.path)
        path = unquote(parts.path[len("/_local/objects"):])
        q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            expires = int(q.get("expires", "0"))
        except ValueError:
            expires = 0
        method = "PUT" if self.command == "PUT" else "GET"
        if store is None or not store.verify(path, method, expires, q.get("signature", ""), time.time()):
            self._reject(403, "forbidden", "the URL's signature is invalid or expired", rid)
            return
        uri = "file://" + path
        if method == "GET":
            if not store.exists(uri):
                self._reject(404, "not_found", "no such object", rid)
                return
            data = store.get_bytes(uri)
            self._send(200, {"Content-Type": "application/octet-stream", "X-Request-Id": rid}, data)
            return
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            try:
                data = self._read_chunked(None) or b""
            except _BodyError as e:
                self._reject(e.status, e.code, e.message, rid, e.details)
                return
            with store.open_write(uri) as out:
                out.write(data)
            self._send(200, {"X-Request-Id": rid}, b"")
            return
        raw = (self.headers.get("Content-Length") or "0").strip()
        if not (raw.isascii() and raw.isdigit()):  # str.isdigit() is also true of '²'
            self._reject(400, "invalid_request", "the Content-Length header must be a whole number of bytes", rid, {"content_length": raw})
            return
        length = int(raw)
        with store.open_write(uri) as out:
            remaining = length
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                out.write(chunk)
                remaining -= len(chunk)
        self._send(200, {"X-Request-Id": rid}, b"")

    def do_GET(self) -> None:
        self._safe()

    def do_POST(self) -> None:
        self._safe()

    def do_PUT(self) -> None:
        self._safe()

    def do_DELETE(self) -> None:
        self._safe()

    def do_PATCH(self) -> None:
        self._safe()

    def do_HEAD(self) -> None:
        self._safe()

    def do_OPTIONS(self) -> None:
        self._safe()

    def do_TRACE(self) -> None:
        self._safe()  # served nowhere: the handler answers 405 with Allow (or 404), as for any method

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What http.server answers on its own, before any do_* method runs, in the API's envelope
        instead of its HTML page: a method it has no do_* for (501), a request line over 64 KiB
        (414), header lines too long or too many (431), a malformed request line (400), an HTTP
        version it does not speak (505). A method goes to the handler like any other (405 with
        Allow, or 404); the rest is the client's malformed request: 400 invalid_request."""
        rid = "local-" + uuid.uuid4().hex
        if self.request_version in ("", "HTTP/0.9"):
            self.request_version = "HTTP/1.1"  # a request line it could not read: still answer with a status line
        if code == HTTPStatus.NOT_IMPLEMENTED and _METHOD_TOKEN.match(self.command or ""):
            self._safe()  # e.g. PROPFIND: not an HTTP error of the server's, a method this API does not serve
            return
        why = {
            int(HTTPStatus.REQUEST_URI_TOO_LONG): "the request line is over 65536 bytes",
            int(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE): "the request headers are too long or too many",
            int(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED): "unsupported HTTP version",
        }.get(int(code))
        text = why or (message or "malformed HTTP request").split("(", 1)[0].strip() or "malformed HTTP request"
        try:
            self._reject(400, "invalid_request", text, rid, {"http_status": int(code)})
        except OSError:
            self.close_connection = True

    def _safe(self) -> None:
        rid = "local-" + uuid.uuid4().hex
        try:
            self._handle(rid)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except RouterError as e:  # the presigned-URL route's storage (a full disk: 503 + Retry-After)
            retry = {} if e.retry_after_s is None else {"Retry-After": str(e.retry_after_s)}
            try:
                self._reject(e.status, e.code, e.message, rid, e.details, retry)
            except OSError:
                self.close_connection = True
        except Exception:  # the server keeps serving whatever one request does
            log.exception("local server error")
            try:
                self._reject(500, "internal_error", "internal error; see the router's logs with this request id", rid)
            except OSError:
                self.close_connection = True


def serve_forever(server: LocalApiServer, on_ready: Callable[[str], None] | None = None) -> None:
    if on_ready:
        on_ready(server.url)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


__all__ = ["LocalApiServer", "LocalContext", "to_event", "serve_forever"]
