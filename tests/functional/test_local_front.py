"""`router serve`'s ASGI front (router.local.server.LocalApi) on its own: the event it builds,
request ids, and how it reads bodies (several chunks, over the limit, a client that stalls)."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from hypothesis import example, given
from hypothesis import strategies as st

from router.local.server import LocalApi, new_request_id, to_event

Message = dict[str, Any]


def _general(target: str) -> tuple[str, dict[str, list[str]]]:
    parts = urlsplit(target)
    return unquote(parts.path) or "/", parse_qs(parts.query, keep_blank_values=True)


@given(st.text(alphabet=st.sampled_from("/aZ09-._~!$&'()*+,;=:@?#%2F \t\r\n\x00\x7f"), max_size=30))
@example("/v1/models/lr20/predict")
@example("//v1//health")
@example("/v1/jobs?limit=5&status=")
@example("/v1/models/a%20b/predict")
@example("/")
@example("/a#frag")
def test_the_event_reads_any_target_as_urlsplit_unquote_and_parse_qs_do(tail: str) -> None:
    target = "/" + tail
    event = to_event("GET", target, {"Host": "x"}, None, "r", "127.0.0.1")
    path, query = _general(target)
    assert event["path"] == path and event["requestContext"]["path"] == path
    assert event["pathParameters"] == {"proxy": path.lstrip("/")}
    assert event["multiValueQueryStringParameters"] == (query or None)
    assert event["queryStringParameters"] == ({k: v[-1] for k, v in query.items()} or None)


def test_request_ids_are_local_and_a_random_uuid4() -> None:
    ids = {new_request_id() for _ in range(2000)}
    assert len(ids) == 2000
    for rid in list(ids)[:200]:
        assert re.fullmatch(r"local-[0-9a-f]{32}", rid)
        u = uuid.UUID(rid.removeprefix("local-"))
        assert u.version == 4 and u.variant == uuid.RFC_4122


class _Echo:
    """A handler that answers with the body it got (and counts its calls)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.calls += 1
        return {"statusCode": 200, "multiValueHeaders": {"Content-Type": ["text/plain"]}, "body": event["body"] or ""}

    def answers_at_once(self, method: str, path: str, prefer: str, body_bytes: int) -> bool:
        return True


def _scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "raw_path": b"/echo", "query_string": b"", "client": ("127.0.0.1", 1), "headers": headers}


async def _call(api: LocalApi, headers: list[tuple[bytes, bytes]], messages: list[Message], stall: asyncio.Event | None = None) -> list[Message]:
    """One request; after `messages`, receive() blocks as uvicorn's does until the client goes
    (here: until `stall` is set, or for ever)."""
    sent: list[Message] = []
    queue = list(messages)

    async def receive() -> Message:
        if queue:
            return queue.pop(0)
        await (stall or asyncio.Event()).wait()
        return {"type": "http.disconnect"}

    async def send(msg: Message) -> None:
        sent.append(msg)

    await asyncio.wait_for(api(_scope(headers), receive, send), 30)  # a generous bound: the test never waits on a timer
    return sent


def _api(**kw: Any) -> tuple[LocalApi, _Echo]:
    echo = _Echo()
    api = LocalApi(lambda: echo, max_body_bytes=kw.pop("max_body_bytes", 100), threads=2, **kw)
    api.loop_handler = echo
    return api, echo


def test_a_body_in_several_chunks_reaches_the_handler_whole() -> None:
    api, echo = _api()
    chunks = [{"type": "http.request", "body": p, "more_body": True} for p in (b"ab", b"", b"cd")]
    try:
        sent = asyncio.run(_call(api, [(b"transfer-encoding", b"chunked")], [*chunks, {"type": "http.request", "body": b"e", "more_body": False}]))
    finally:
        api.pool.close()
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"abcde" and echo.calls == 1


def test_a_chunked_body_whose_last_chunk_passes_the_limit_is_413_at_once() -> None:
    # Nothing more comes after the last chunk: the front must not wait for another one.
    api, echo = _api()
    messages = [{"type": "http.request", "body": b"x" * 60, "more_body": True}, {"type": "http.request", "body": b"x" * 60, "more_body": False}]
    try:
        sent = asyncio.run(_call(api, [(b"transfer-encoding", b"chunked")], messages))
    finally:
        api.pool.close()
    assert sent[0]["status"] == 413 and b"payload_too_large" in sent[1]["body"] and echo.calls == 0


def test_a_client_that_stalls_mid_body_is_dropped_while_others_are_answered() -> None:
    api, echo = _api(body_timeout_s=0.2)
    started = [{"type": "http.request", "body": b"ab", "more_body": True}]

    async def both() -> tuple[list[Message], list[Message]]:
        stalled = asyncio.ensure_future(_call(api, [(b"content-length", b"10")], started))
        answered = await _call(api, [(b"content-length", b"2")], [{"type": "http.request", "body": b"ok", "more_body": False}])
        return await stalled, answered

    try:
        stalled, answered = asyncio.run(both())
    finally:
        api.pool.close()
    assert stalled == []  # no answer: the connection is dropped, as for a client gone away
    assert answered[0]["status"] == 200 and answered[1]["body"] == b"ok" and echo.calls == 1


def test_a_request_cancelled_by_the_server_while_reading_stays_cancelled() -> None:
    # Only the stall sweep's own cancellation becomes a dropped request; a shutdown's propagates.
    api, _ = _api()

    async def main() -> bool:
        task = asyncio.ensure_future(_call(api, [(b"content-length", b"10")], [{"type": "http.request", "body": b"ab", "more_body": True}]))
        await asyncio.sleep(0.05)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False

    try:
        assert asyncio.run(main())
    finally:
        api.pool.close()
