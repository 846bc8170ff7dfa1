"""Running Lambda handlers concurrently under `router serve`.

A Lambda instance handles one event at a time; `router serve` runs many at once on a pool of
threads. Two things make that safe: each pool thread builds its own handler (its own resolver, so
the resolver's per-request `context` is not shared), and Powertools' current event and Lambda
context, which its resolvers keep as class attributes of `BaseRouter`, are made per-thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("router.local")

_isolated = False
_isolate_lock = threading.Lock()


class _PerThread:
    """A data descriptor whose value belongs to the thread that set it."""

    def __init__(self, name: str, local: threading.local) -> None:
        self._name = name
        self._local = local

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        try:
            return getattr(self._local, self._name)
        except AttributeError:
            raise AttributeError(self._name) from None

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(self._local, self._name, value)


def isolate_powertools_request_state() -> None:
    """Make `current_event` and `lambda_context` of every API Gateway resolver per-thread.

    `resolve()` stores them on `BaseRouter` (shared by every thread); the descriptors sit on
    `ApiGatewayResolver`, before `BaseRouter` in every resolver's MRO, so each instance lookup
    (the resolver's own, its middlewares', our route handlers') reads the value its thread's
    `resolve()` call set. Idempotent; the Lambda runtime never calls it.
    """
    global _isolated
    with _isolate_lock:
        if _isolated:
            return
        from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver

        local = threading.local()
        original = ApiGatewayResolver.resolve

        def resolve(self: Any, event: Any, context: Any) -> Any:
            local.current_event = self._to_proxy_event(event)
            local.lambda_context = context
            try:
                return original(self, event, context)
            finally:
                del local.current_event, local.lambda_context

        ApiGatewayResolver.current_event = _PerThread("current_event", local)  # type: ignore[assignment]
        ApiGatewayResolver.lambda_context = _PerThread("lambda_context", local)  # type: ignore[assignment]
        ApiGatewayResolver.resolve = resolve  # type: ignore[method-assign]
        _isolated = True


class DaemonPool:
    """Up to `size` daemon threads, started on demand, each with its own state from `init()`
    (built once, on the thread, before its first task). Daemon threads, so a call that hangs
    never holds up the process's exit."""

    def __init__(self, size: int, init: Callable[[], Any], name: str = "router-http") -> None:
        self._size = size
        self._init = init
        self._name = name
        self._tasks: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[..., Any], tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closed = False

    def run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """`fn(state, *args)` on a pool thread; the future resolves on the calling event loop."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._tasks.put((loop, fut, fn, args))
        if not self._idle.acquire(blocking=False):
            with self._lock:
                if len(self._threads) < self._size and not self._closed:
                    t = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
                    self._threads.append(t)
                    t.start()
        return fut

    def _work(self) -> None:
        state = self._init()
        while True:
            item = self._tasks.get()
            if item is None:
                return
            loop, fut, fn, args = item
            try:
                result, error = fn(state, *args), None
            except BaseException as e:  # delivered to the awaiting request
                result, error = None, e
            self._idle.release()  # idle before the caller hears back: its next call must not start a thread
            with contextlib.suppress(RuntimeError):  # the loop is closed: the server stopped meanwhile
                loop.call_soon_threadsafe(_settle, fut, result, error)
            del item, loop, fut, fn, args, result, error

    def close(self) -> None:
        """Stop the idle threads; a thread busy with a call ends after it (or with the process)."""
        with self._lock:
            self._closed = True
            for _ in self._threads:
                self._tasks.put(None)


def _settle(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if fut.cancelled():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)
