"""Running Lambda handlers concurrently under `router serve`: Powertools' per-request state is per
thread, and the pool gives each thread its own handler."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver

from router.local.server import LocalContext, to_event
from router.local.threads import DaemonPool, isolate_powertools_request_state


def test_a_resolver_sees_its_own_event_while_another_thread_resolves() -> None:
    isolate_powertools_request_state()
    app = APIGatewayRestResolver()
    inside, go_on = threading.Event(), threading.Event()
    seen: dict[str, Any] = {}

    @app.get("/slow")
    def slow() -> dict[str, Any]:
        seen["before"] = app.current_event.path
        inside.set()
        go_on.wait(30)  # another thread resolves a request meanwhile
        seen["after"] = app.current_event.path
        seen["context"] = app.lambda_context.aws_request_id
        return {}

    @app.get("/fast")
    def fast() -> dict[str, Any]:
        return {"path": app.current_event.path}

    t = threading.Thread(target=app.resolve, args=(to_event("GET", "/slow", {}, None, "r-slow", "127.0.0.1"), LocalContext("r-slow", 5)))
    t.start()
    assert inside.wait(30)
    other = app.resolve(to_event("GET", "/fast", {}, None, "r-fast", "127.0.0.1"), LocalContext("r-fast", 5))
    assert other["statusCode"] == 200 and '"/fast"' in other["body"]
    go_on.set()
    t.join(30)
    assert seen == {"before": "/slow", "after": "/slow", "context": "r-slow"}


def test_the_pool_builds_one_state_per_thread_and_returns_results_and_errors() -> None:
    built: list[int] = []

    def init() -> int:
        built.append(threading.get_ident())
        return threading.get_ident()

    pool = DaemonPool(4, init)
    release = threading.Event()

    def work(state: int, n: int) -> tuple[int, int]:
        assert state == threading.get_ident()  # the thread's own state
        release.wait(30)
        if n < 0:
            raise ValueError("negative")
        return state, n * 2

    async def main() -> list[Any]:
        futures = [pool.run(work, n) for n in (1, 2, 3, -1)]
        await asyncio.sleep(0)
        release.set()
        return await asyncio.gather(*futures, return_exceptions=True)

    try:
        results = asyncio.run(main())
    finally:
        pool.close()
    assert [r[1] for r in results[:3]] == [2, 4, 6]
    assert isinstance(results[3], ValueError)
    assert len({r[0] for r in results[:3]}) == 3  # four calls blocked at once ran on four threads
    assert len(built) == len(set(built)) == 4


class _Recording:
    """A handler that notes which thread ran each request and vouches for /quick only."""

    def __init__(self) -> None:
        self.ran: dict[str, int] = {}
        self.asked: list[tuple[str, str, str, int]] = []
        self.inside, self.release = threading.Event(), threading.Event()

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.ran[event["path"]] = threading.get_ident()
        if event["path"] == "/held":
            self.inside.set()
            self.release.wait(30)
        return {"statusCode": 200, "multiValueHeaders": {"Content-Type": ["application/json"]}, "body": "{}"}

    def answers_at_once(self, method: str, path: str, prefer: str, body_bytes: int) -> bool:
        self.asked.append((method, path, prefer, body_bytes))
        return path in ("/quick", "/quick-2")


def test_only_requests_the_handler_vouches_for_run_on_the_event_loop() -> None:
    from router.local.server import LocalApi

    rec = _Recording()
    api = LocalApi(lambda: rec, max_body_bytes=1024, threads=2)
    api.loop_handler = rec

    async def call(path: str) -> int:
        sent: list[dict[str, Any]] = []
        body = [{"type": "http.request", "body": b"{}", "more_body": False}]

        async def receive() -> dict[str, Any]:
            return body.pop() if body else {"type": "http.disconnect"}

        async def send(msg: Any) -> None:
            sent.append(msg)

        scope = {"type": "http", "method": "POST", "raw_path": path.encode(), "query_string": b"", "client": ("127.0.0.1", 1),
                 "headers": [(b"content-length", b"2"), (b"prefer", b"respond-async"), (b"prefer", b"wait=5")]}
        await api(scope, receive, send)
        return int(sent[0]["status"])

    async def both() -> int:
        assert await call("/quick") == 200 and await call("/other") == 200
        # While another call is in flight on the pool, even a quick one goes to the pool.
        held = asyncio.ensure_future(call("/held"))
        assert await asyncio.to_thread(rec.inside.wait, 30)
        assert await call("/quick-2") == 200
        rec.release.set()
        assert await held == 200
        return threading.get_ident()

    try:
        loop_thread = asyncio.run(both())
    finally:
        rec.release.set()
        api.pool.close()
    assert rec.ran["/quick"] == loop_thread and rec.ran["/other"] != loop_thread
    assert rec.ran["/quick-2"] != loop_thread and rec.ran["/held"] != loop_thread
    assert rec.asked[:2] == [("POST", p, "respond-async, wait=5", 2) for p in ("/quick", "/other")]
