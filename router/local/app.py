"""Assembles `router serve`: the embedded runtime, the API handler and the local HTTP server
(and, as they are built, the worker pool and the local SageMaker emulator).

Used by the CLI and by tests that want a real server in-process.
"""

from __future__ import annotations

from dataclasses import dataclass

from router.bootstrap import Runtime, build_local
from router.config import RouterConfig
from router.handlers.api import make_handler
from router.local.server import LocalApiServer

MIB = 1024 * 1024


@dataclass
class LocalApp:
    server: LocalApiServer
    runtime: Runtime

    @property
    def url(self) -> str:
        return self.server.url

    def serve_forever(self) -> None:
        self.server.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        """Stop accepting requests, then stop background work. Safe to call twice."""
        self.server.shutdown()
        self.server.server_close()
        self.runtime.close()


def create_app(config: RouterConfig, host: str = "127.0.0.1", port: int = 8080) -> LocalApp:
    # Bind first so the runtime knows its public URL (port 0 picks a free port).
    server = LocalApiServer(
        (host, port),
        handler=lambda e, c: {"statusCode": 503, "body": ""},
        max_body_bytes=int(config.runtime.api_payload_mb * MIB),
        timeout_s=config.runtime.sync_timeout_s,
    )
    try:
        runtime = build_local(config, public_base_url=server.url)
    except BaseException:
        server.server_close()
        raise
    server.lambda_handler = make_handler(runtime)
    server.objects = getattr(runtime.objects, "file_store", None)
    runtime.start()
    return LocalApp(server, runtime)
