"""Benchmark `serve`: `router serve` (the real CLI, a subprocess) against a 20-line Starlette +
uvicorn app serving the same model (20-feature LogisticRegression, one row per request), both over
keep-alive connections at concurrency 1 and 16, in interleaved rounds. The load client is `wrk` or
`hey` when installed, else a keep-alive asyncio client in this process (the same client for both).
Then, in this process without sockets, each ASGI app called directly: router serve's (with its API
handler, and with a stub handler for the front's own share) against the peer's.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.fixtures import API_KEY, bench_config, forest_rows, lr20
from benchmarks.harness import Context, Result, compare, fmt_rate, fmt_s, run_rounds

NAME = "serve"
TITLE = "router serve vs a Starlette + uvicorn app on the same model: keep-alive, concurrency 1 and 16"

# The peer: what a developer would write to serve the model over HTTP.
PEER_APP = '''\
import json, sys
import joblib, numpy as np, uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

model = joblib.load(sys.argv[1])


async def predict(request: Request) -> Response:
    body = json.loads(await request.body())
    predictions = model.predict(np.asarray(body["instances"], dtype=float)).tolist()
    return Response(json.dumps({"predictions": predictions}), media_type="application/json")


app = Starlette(routes=[Route("/v1/models/{name}/predict", predict, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
'''


def run(ctx: Context) -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        ctx.report.note(NAME, f"skipped: {e} (pip install -e '.[dev,local]')")
        return
    import yaml

    state = ctx.scratch / NAME
    entry = lr20(state / "models")
    cfg = bench_config(ctx.demo_config, state, models=(), extra_models=[entry])
    config_path = state / "router.yaml"
    config_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True), sort_keys=False))
    (state / "peer_app.py").write_text(PEER_APP)
    row = forest_rows(1, seed=7)
    body = json.dumps({"instances": row}).encode()
    path = "/v1/models/lr20/predict"
    procs: list[subprocess.Popen[str]] = []
    try:
        router_url = _start_router(config_path, procs)
        peer_url = _start_peer(state / "peer_app.py", Path(entry["artifact"].removeprefix("file://")), procs)
        expected = _check_same_answer(router_url, peer_url, path, body)
        ctx.report.note(NAME, f"both answer {expected} for the same row; load client: {_client_name()}")
        window = 0.1 if ctx.settings.quick else 1.5
        latencies: dict[str, list[float]] = {"router serve": [], "peer": []}
        for conc in (1, 16):
            subject, baseline = f"router serve, concurrency {conc}", f"Starlette + uvicorn peer, concurrency {conc}"
            measures = {
                subject: _measure(router_url, path, body, conc, window, latencies["router serve"] if conc == 1 else None),
                baseline: _measure(peer_url, path, body, conc, window, latencies["peer"] if conc == 1 else None),
            }
            times = run_rounds(measures, ctx.settings.rounds)
            result = compare(NAME, times, subject, baseline, unit="request")
            result.note = (
                f"{1 / result.ratio:.2f}x the peer's throughput (median of per-round ratios; target >= 0.9x); "
                f"median rounds {fmt_rate(1 / result.subject_s)} vs {fmt_rate(1 / result.baseline_s)} req/s"
            )
            ctx.report.add(result)
        if latencies["router serve"] and latencies["peer"]:
            p50, peer_p50 = statistics.median(latencies["router serve"]), statistics.median(latencies["peer"])
            ctx.report.add(Result(
                bench=NAME, subject="router serve p50 latency, 1 row, concurrency 1", baseline="peer p50 latency",
                subject_s=p50, baseline_s=peer_p50, ratio=p50 / peer_p50, rounds=ctx.settings.rounds, unit="request",
                note=f"target p50 <= 2 ms: {fmt_s(p50)}",
            ))
        _in_process(ctx, config_path, Path(entry["artifact"].removeprefix("file://")), path, body)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stdout is not None:
                p.stdout.close()


# ---------------------------------------------------------------- the two servers


def _start_router(config: Path, procs: list[subprocess.Popen[str]]) -> str:
    env = {**os.environ, "POWERTOOLS_METRICS_DISABLED": "true", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "router.cli", "serve", "--config", str(config), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    procs.append(proc)
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("router serve exited before serving")
        m = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
        if m:
            return m.group(1)
    raise RuntimeError("router serve did not start in time")


def _start_peer(app: Path, model: Path, procs: list[subprocess.Popen[str]]) -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(app), str(model), str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    procs.append(proc)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return f"http://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("the peer app exited before serving") from None
            time.sleep(0.05)
    raise RuntimeError("the peer app did not start in time")


def _check_same_answer(router_url: str, peer_url: str, path: str, body: bytes) -> Any:
    """A benchmark of a failing server measures nothing: both must answer 200 with equal predictions."""
    import urllib.request

    answers = []
    for url in (router_url, peer_url):
        req = urllib.request.Request(url + path, data=body, method="POST",
                                     headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status == 200
            answers.append(json.loads(r.read())["predictions"])
    if answers[0] != answers[1]:
        raise AssertionError(f"router serve and the peer disagree: {answers}")
    return answers[0]


# ---------------------------------------------------------------- in process


class _StubHandler:
    """Answers every request at once with a constant predict-shaped response: the front alone."""

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"statusCode": 200, "multiValueHeaders": {"Content-Type": ["application/json"], "X-Router-Route": ["inline"],
                "X-Request-Id": [event["requestContext"]["requestId"]]}, "body": '{"predictions":[1]}', "isBase64Encoded": False}

    def answers_at_once(self, method: str, path: str, prefer: str, body_bytes: int) -> bool:
        return True


def _in_process(ctx: Context, config: Path, model_path: Path, path: str, body: bytes) -> None:
    """Where one request's time goes without sockets, uvicorn or the load client: each ASGI app
    called directly on one event loop, with the scope and body uvicorn would hand it."""
    import joblib
    import numpy as np

    from router.config import load_config
    from router.serve_app import create_app

    metrics_off = os.environ.get("POWERTOOLS_METRICS_DISABLED")
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"  # as router serve runs (and the HTTP rows above)
    peer_ns: dict[str, Any] = {}
    exec(PEER_APP.rsplit("uvicorn.run", 1)[0].replace("sys.argv[1]", repr(str(model_path))), peer_ns)  # the peer's own code
    app = create_app(load_config(config), "127.0.0.1", 0)
    api, handler, stub = app.api, app.api.loop_handler, _StubHandler()
    headers = [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {API_KEY}".encode()),
               (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    loop = asyncio.new_event_loop()

    async def call(asgi: Any) -> None:
        sent: list[Any] = []
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> Any:
            return messages.pop() if messages else {"type": "http.disconnect"}

        async def send(msg: Any) -> None:
            sent.append(msg)

        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": headers, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080), "state": {}}
        await asgi(scope, receive, send)
        if sent[0]["status"] != 200:
            raise RuntimeError(f"in-process call answered {sent[0]['status']}: {sent[1:]}")

    def calls(asgi: Any, loop_handler: Any = None) -> Callable[[], float]:
        async def batch(n: int) -> None:
            api.loop_handler = loop_handler or handler
            for _ in range(n):
                await call(asgi)

        def measure() -> float:
            n = 50 if ctx.settings.quick else 500
            start = time.perf_counter()
            loop.run_until_complete(batch(n))
            return (time.perf_counter() - start) / n

        return measure

    x = np.asarray(forest_rows(1, seed=7), dtype=float)
    model = joblib.load(model_path)

    def bare() -> float:
        n = 50 if ctx.settings.quick else 500
        start = time.perf_counter()
        for _ in range(n):
            model.predict(x)
        return (time.perf_counter() - start) / n

    try:
        full, front, peer = "router serve's ASGI app in process (front + API handler)", "router serve's front alone (a stub handler)", "the peer's Starlette app in process"
        measures = {full: calls(api), front: calls(api, stub), peer: calls(peer_ns["app"]), "bare model.predict": bare}
        for m in measures.values():
            m()  # warm-up: the router loads the model on its first call
        times = run_rounds(measures, ctx.settings.rounds)
        result = compare(NAME, times, full, peer, unit="request")
        result.note = (f"bare model.predict {fmt_s(statistics.median(times['bare model.predict']))} of the peer's time "
                       "(the router's runner answers lr20 with its direct kernel)")
        ctx.report.add(result)
        result = compare(NAME, times, front, full, unit="request")
        result.note = "the HTTP front's share: the event, the body, the hand-off decision, the response"
        ctx.report.add(result)
    finally:
        api.loop_handler = handler
        loop.close()
        app.shutdown()
        if metrics_off is None:
            del os.environ["POWERTOOLS_METRICS_DISABLED"]
        else:
            os.environ["POWERTOOLS_METRICS_DISABLED"] = metrics_off


# ---------------------------------------------------------------- load clients


def _client_name() -> str:
    for tool in ("wrk", "hey"):
        if shutil.which(tool):
            return tool
    return "asyncio keep-alive client (no wrk or hey installed)"


def _request(url: str, path: str, body: bytes) -> bytes:
    host = url.removeprefix("http://")
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {API_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def _measure(url: str, path: str, body: bytes, conc: int, window: float, latencies: list[float] | None) -> Callable[[], float]:
    """Seconds per request over `window` seconds of keep-alive load with `conc` connections."""
    tool = _client_name()
    if tool in ("wrk", "hey") and latencies is None:
        return lambda: _external(tool, url + path, body, conc, window)
    request = _request(url, path, body)
    host, port = url.removeprefix("http://").split(":")
    return lambda: asyncio.run(_load(host, int(port), request, conc, window, latencies))


async def _load(host: str, port: int, request: bytes, conc: int, window: float, latencies: list[float] | None) -> float:
    counts = [0] * conc
    deadline = time.perf_counter() + window

    async def connection(i: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)  # asyncio sets TCP_NODELAY
        try:
            while True:
                start = time.perf_counter()
                if start >= deadline:
                    return
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"status line {head.splitlines()[0]!r}")
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if m is None:
                    raise RuntimeError("no Content-Length in the response")
                await reader.readexactly(int(m.group(1)))
                if latencies is not None:
                    latencies.append(time.perf_counter() - start)
                counts[i] += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection(i) for i in range(conc)))
    return (time.perf_counter() - started) / max(1, sum(counts))


def _external(tool: str, url: str, body: bytes, conc: int, window: float) -> float:
    """wrk or hey: seconds per request from its Requests/sec line."""
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    seconds = max(1, round(window))
    if tool == "hey":
        cmd = ["hey", "-z", f"{seconds}s", "-c", str(conc), "-m", "POST", "-d", body.decode()]
        for k, v in headers.items():
            cmd += ["-H", f"{k}: {v}"]
        out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    else:
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(body.decode())}\n'
                    + "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items()))
        try:
            cmd = ["wrk", "-t", "1", "-c", str(conc), "-d", f"{seconds}s", "-s", f.name, url]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
        finally:
            Path(f.name).unlink()
    m = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if m is None:
        raise RuntimeError(f"{tool} printed no Requests/sec line")
    return 1 / float(m.group(1))
