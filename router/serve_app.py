"""The composition root of `router serve`: the embedded runtime (router.bootstrap.build_local, with
the worker pool and the local SageMaker emulator), the API handler and the local HTTP server
(uvicorn running the ASGI front). Beside bootstrap, above router.local: nothing below imports it.

Used by the CLI and by tests that want a real server in-process.
"""

from __future__ import annotations

from dataclasses import dataclass

from router.bootstrap import Runtime, build_local
from router.config import RouterConfig
from router.handlers.api import make_handler
from router.local.http import HttpFront
from router.local.server import LocalApi

MIB = 1024 * 1024
DEFAULT_THREADS = 64


@dataclass
class LocalApp:
    server: HttpFront
    api: LocalApi
    runtime: Runtime

    @property
    def url(self) -> str:
        return self.server.url

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def shutdown(self) -> None:
        """Stop accepting requests, then stop background work. Safe to call twice."""
        self.server.shutdown()
        self.server.server_close()
        self.api.pool.close()
        self.runtime.close()


def create_app(
    config: RouterConfig, host: str = "127.0.0.1", port: int = 8080, *, threads: int = DEFAULT_THREADS, serverless_idle_s: float | None = None
) -> LocalApp:
    """`threads`: how many API requests run at once (each pool thread has its own handler);
    `serverless_idle_s`: how long an emulated serverless endpoint keeps its model server after a call."""
    api = LocalApi(max_body_bytes=int(config.runtime.api_payload_mb * MIB), timeout_s=config.runtime.sync_timeout_s, threads=threads)
    # Bind first so the runtime knows its public URL (port 0 picks a free port).
    server = HttpFront(api, host, port)
    try:
        runtime = build_local(config, public_base_url=server.url, serverless_idle_s=serverless_idle_s)
    except BaseException:
        server.server_close()
        raise
    api.handler_factory = lambda: make_handler(runtime)
    api.loop_handler = make_handler(runtime)  # the event loop's own, for requests answered at once
    api.objects = runtime.files  # the front serves the file store's presigned URLs
    runtime.start()
    return LocalApp(server, api, runtime)
