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
