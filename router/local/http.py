"""`router serve`'s HTTP server: uvicorn (httptools parser, keep-alive, TCP_NODELAY from asyncio)
running `router.local.server.LocalApi`. CLI-side only: nothing in the Lambda artifact imports it.

What uvicorn would answer on its own, a request its parser refuses, is answered in the API's
error envelope instead (400 invalid_request), as are requests past http.server's old limits:
a request target over 64 KiB, more than 100 header lines, a header line over 64 KiB.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from router.local.server import MAX_HEADER_BYTES, MAX_HEADERS, MAX_TARGET_BYTES, error_body, new_request_id

MAX_HEAD_BYTES = 1 << 20  # request line and headers together
_STATUS_400 = b"HTTP/1.1 400 Bad Request\r\n"


class _Refused(Exception):
    pass


class _Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the API's envelope for what the parser refuses."""

    _why: tuple[int, str] | None = None
    _header_count = 0
    _head_bytes = 0
    _in_body = False

    def data_received(self, data: bytes) -> None:
        if not self._in_body:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._why = (431, "the request headers are too long or too many")
                self.send_400_response("")
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._why, self._header_count = None, 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_TARGET_BYTES:
            self._why = (414, "the request line is over 65536 bytes")
            raise _Refused()

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._header_count += 1
        if self._header_count > MAX_HEADERS or len(name) + len(value) + 2 > MAX_HEADER_BYTES:
            self._why = (431, "the request headers are too long or too many")
            raise _Refused()

    def on_headers_complete(self) -> None:
        if self.parser.get_http_version() not in ("1.0", "1.1"):
            self._why = (505, "unsupported HTTP version")
            raise _Refused()
        self._in_body, self._head_bytes = True, 0
        self.scope["router.target"] = self.url  # type: ignore[typeddict-unknown-key]  # as sent: "//v1//health" is a path, not an authority
        super().on_headers_complete()
        if type(self.cycle) is RequestResponseCycle:
            self.cycle.__class__ = _Cycle  # before its task first runs: it sends with our send()

    def on_message_complete(self) -> None:
        self._in_body = False
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if self.transport.is_closing():
            return
        rid = new_request_id()
        status, text = self._why or (400, "malformed HTTP request")
        body = error_body("invalid_request", text, rid, {"http_status": status})
        head = [_STATUS_400]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"x-request-id: " + rid.encode() + b"\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


class _Cycle(RequestResponseCycle):
    """uvicorn's request/response cycle, sending header names as the handler spelled them
    (`X-Request-Id`, as API Gateway does) instead of lower-cased, and the status line, headers and
    first body chunk in one write: one segment and one wake-up of the client per answer, not two."""

    _start: Any = None  # the http.response.start message, held until its body comes

    async def send(self, message: Any) -> None:
        if message["type"] == "http.response.start" and not self.response_started:
            self._start = message  # a later start (uvicorn's 500) replaces a head that never went out
            return
        start, self._start = self._start, None
        if start is None:
            await super().send(message)
            return
        transport = self.transport
        joined = _Joined(transport, {k.lower(): k for k, _ in start.get("headers", ())})
        self.transport = joined  # type: ignore[assignment]
        try:
            await super().send(start)
            await super().send(message)
        finally:
            self.transport = transport
            joined.flush()


class _Joined:
    """A transport that holds the head (the first write, its header names' case given back) and
    writes it with the next write, at flush() or before a close, whichever comes first."""

    def __init__(self, transport: Any, names: dict[bytes, bytes]) -> None:
        self._transport = transport
        self._names = names
        self._head: bytes | None = None
        self._sent = False

    def write(self, data: bytes) -> None:
        if self._sent:
            self._transport.write(data)
        elif self._head is None:
            self._head = self._recased(data)
        else:
            self._sent = True
            self._transport.write(self._head + data)

    def _recased(self, data: bytes) -> bytes:
        lines = data.split(b"\r\n")
        for i in range(1, len(lines)):
            name, sep, rest = lines[i].partition(b":")
            spelled = self._names.get(name)
            if spelled is not None:
                lines[i] = spelled + sep + rest
        return b"\r\n".join(lines)

    def flush(self) -> None:
        """Write a head still held (a HEAD answer, a 204 or an empty body wrote nothing after it)."""
        if not self._sent and self._head is not None:
            self._sent = True
            self._transport.write(self._head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpFront:
    """Binds at once (port 0 picks a free port, so `url` is known before serving), then serves the
    ASGI app on uvicorn in `serve_forever()` until `shutdown()` (from any thread)."""

    def __init__(self, app: Any, host: str, port: int, *, graceful_s: int = 5) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
        # without it the header and body writes of each response stall ~40 ms on keep-alive.
        self.socket = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind((host, port))
            self.socket.listen(2048)  # connections wait in the backlog until uvicorn accepts them
        except OSError:
            self.socket.close()
            raise
        self.server_address = self.socket.getsockname()
        self.app = app
        logging.getLogger("uvicorn.error").setLevel(logging.ERROR)  # parser warnings: answered above
        self._server = uvicorn.Server(
            uvicorn.Config(
                app, http=_Protocol, ws="none", lifespan="off", interface="asgi3",
                log_config=None, access_log=False, server_header=False, headers=[("Server", "router-local")],
                timeout_keep_alive=60, timeout_graceful_shutdown=graceful_s,
            )
        )
        self._serving = threading.Event()
        self._done = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def serve_forever(self) -> None:
        """Serve until shutdown(); in any thread (uvicorn installs no signal handlers off the main
        thread, and `router serve` runs it off the main thread)."""
        self._serving.set()
        try:
            if not self._server.should_exit:
                self._server.run(sockets=[self.socket])
        finally:
            self._done.set()

    def shutdown(self) -> None:
        """Stop accepting, finish or (after graceful_s) cancel what is in flight, then return."""
        self._server.should_exit = True
        if self._serving.is_set():
            self._done.wait()

    def server_close(self) -> None:
        self.socket.close()
