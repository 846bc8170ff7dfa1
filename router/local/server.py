"""`router serve`'s HTTP front: turns each HTTP request into an API Gateway REST proxy event and
calls the very same Lambda handler (no second implementation of the API).

It plays API Gateway's part and nothing more: the payload limit (413 before the handler, as API
Gateway does at 10 MB), one request id per request, and the local presigned-URL endpoint that
stands in for S3 (`/_local/objects/...`, HMAC-signed by the file store).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

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


def _error_body(code: str, message: str, request_id: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "request_id": request_id}}).encode()


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
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _reject(self, status: int, code: str, message: str, rid: str) -> None:
        self.close_connection = True
        self._send(status, {"Content-Type": "application/json", "X-Request-Id": rid}, _error_body(code, message, rid))

    def _handle(self) -> None:
        rid = "local-" + uuid.uuid4().hex
        if self.path.startswith("/_local/objects/"):
            self._objects(rid)
            return
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self._reject(411, "invalid_request", "send the body with a Content-Length (chunked encoding is not supported)", rid)
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._reject(400, "invalid_request", "bad Content-Length", rid)
            return
        if length > self.server.max_body_bytes:
            # API Gateway refuses bodies over its limit before the Lambda runs (10 MB REST).
            # Read (and drop) a moderately large body first, so the client sees the 413 instead
            # of a reset connection; anything huge just gets the answer and a close.
            if length <= 8 * self.server.max_body_bytes:
                remaining = length
                while remaining > 0:
                    chunk = self.rfile.read(min(remaining, 1 << 20))
                    if not chunk:
                        break
                    remaining -= len(chunk)
            mb = self.server.max_body_bytes / (1024 * 1024)
            self._reject(
                413,
                "payload_too_large",
                f"the body is {length} bytes, over the API's {mb:g} MB limit; upload large inputs with POST /v1/uploads and submit a job",
                rid,
            )
            return
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items()}
        event = to_event(self.command, self.path, headers, body, rid, self.client_address[0])
        with self.server.handler_lock:
            resp = self.server.lambda_handler(event, LocalContext(rid, self.server.timeout_s))
        out_headers: dict[str, str] = {}
        for k, v in (resp.get("headers") or {}).items():
            out_headers[k] = str(v)
        for k, vs in (resp.get("multiValueHeaders") or {}).items():
            out_headers[k] = ", ".join(str(v) for v in vs)
        raw = resp.get("body") or ""
        data = base64.b64decode(raw) if resp.get("isBase64Encoded") else raw.encode("utf-8")
        self._send(int(resp.get("statusCode", 500)), out_headers, data)

    def _objects(self, rid: str) -> None:
        """The local stand-in for S3 presigned URLs: GET downloads, PUT uploads, if the signature holds."""
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
        length = int(self.headers.get("Content-Length") or 0)
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

    def _safe(self) -> None:
        try:
            self._handle()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:  # the server keeps serving whatever one request does
            import logging

            logging.getLogger("router.local").exception("local server error")
            try:
                self._reject(500, "internal_error", "internal error", "local")
            except OSError:
                self.close_connection = True


def serve_forever(server: LocalApiServer, on_ready: Callable[[str], None] | None = None) -> None:
    if on_ready:
        on_ready(server.url)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


__all__ = ["LocalApiServer", "LocalContext", "to_event", "serve_forever", "HTTPStatus"]
