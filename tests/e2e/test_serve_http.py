"""`router serve`'s HTTP front under the clients that real callers use: keep-alive connections
(http.client reusing one connection, requests.Session), many requests at once, and a model
endpoint that hangs while other requests go on."""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import requests
import yaml

from .conftest import Server, wait_for

pytestmark = pytest.mark.e2e

KEY = "key-http-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
# A response held back by Nagle + delayed ACK takes at least 40 ms (Linux's minimum delayed-ACK
# time); a busy machine still answers most keep-alive requests in a few ms.
STALL_S = 0.040

HANG_MODULE = '''
import os, time
class HangModel:
    """predict() writes `started`, then waits until the `release` file exists."""
    n_features_in_ = 3
    def __init__(self, started, release):
        self.started, self.release = started, release
    def predict(self, x):
        open(self.started, "w").close()
        deadline = time.monotonic() + 120
        while not os.path.exists(self.release) and time.monotonic() < deadline:
            time.sleep(0.02)
        return [7.0] * len(x)
'''


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def http_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.linear_model import LinearRegression

    d = tmp_path_factory.mktemp("http")
    (d / "py").mkdir()
    (d / "py" / "http_hang.py").write_text(HANG_MODULE)
    x = np.random.default_rng(0).normal(size=(100, 3))
    joblib.dump(LinearRegression().fit(x, x @ [1.0, 2.0, -1.0] + 0.5), d / "reg.joblib")
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(d / "py"))
        import http_hang

        joblib.dump(http_hang.HangModel(str(d / "started"), str(d / "release")), d / "hang.joblib")
    config = {
        "version": 1,
        "storage": {"artifacts": "file://.", "jobs": "file://./.router/jobs", "job_table": "sqlite:///./.router/jobs.db"},
        "auth": {"api_keys": {KEY: "tester"}},
        "models": [
            {"name": "reg", "framework": "sklearn", "artifact": "file://./reg.joblib", "sha256": _sha(d / "reg.joblib")},
            {"name": "hang", "framework": "sklearn", "artifact": "file://./hang.joblib", "sha256": _sha(d / "hang.joblib"),
             "inline": False, "endpoint": {"name": "hang-ep"}},
        ],
    }
    (d / "http.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return d


@pytest.fixture(scope="module")
def srv(http_dir: Path) -> Iterator[Server]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", str(http_dir / "py"))  # the endpoint's model process unpickles HangModel
        server = Server(http_dir / "http.yaml").start()
    try:
        yield server
    finally:
        (http_dir / "release").write_text("go")  # never leave the endpoint blocked
        server.stop()


def _port(srv: Server) -> int:
    return int(srv.url.rsplit(":", 1)[1])


def _no_stall(latencies: list[float]) -> None:
    assert statistics.median(latencies) < STALL_S, f"median {statistics.median(latencies) * 1000:.1f} ms per keep-alive request"


def test_http_client_keeps_one_connection_without_stalls(srv: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", _port(srv), timeout=60)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as urllib3 and httpx do
    local = conn.sock.getsockname()
    latencies: list[float] = []
    try:
        for i in range(200):
            start = time.perf_counter()
            if i % 2:
                conn.request("GET", "/v1/health")
            else:
                conn.request("POST", "/v1/models/reg/predict", body=json.dumps({"instances": [[1, 2, i]]}), headers=AUTH)
            resp = conn.getresponse()
            body = json.loads(resp.read())
            latencies.append(time.perf_counter() - start)
            assert resp.status == 200, body
            assert resp.getheader("Connection") != "close"
            if not i % 2:
                assert body["predictions"] == pytest.approx([1 + 4 - i + 0.5])
        assert conn.sock is not None and conn.sock.getsockname() == local  # one connection throughout
    finally:
        conn.close()
    _no_stall(latencies)


def test_requests_session_keeps_one_connection_without_stalls(srv: Server) -> None:
    latencies: list[float] = []
    ports: set[int] = set()
    with requests.Session() as s:
        for i in range(200):
            start = time.perf_counter()
            r = s.post(srv.url + "/v1/models/reg/predict", json={"instances": [[i, 0, 0]]}, headers=AUTH, timeout=60, stream=True)
            ports.add(r.raw._connection.sock.getsockname()[1])
            body = r.json()
            latencies.append(time.perf_counter() - start)
            assert r.status_code == 200 and body["predictions"] == pytest.approx([i + 0.5])
            assert r.headers["X-Request-Id"] == r.headers["x-request-id"]
    assert len(ports) == 1
    _no_stall(latencies)


def _head_and_length(data: bytes) -> tuple[bytes, int]:
    head, sep, _ = data.partition(b"\r\n\r\n")
    assert sep, f"no complete head in {data[:200]!r}"
    lengths = [int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:] if line.lower().startswith(b"content-length:")]
    return head, len(head) + 4 + (lengths[0] if lengths else 0)


def test_each_answer_arrives_in_one_segment_on_a_kept_connection(srv: Server) -> None:
    # The status line, headers and body go out in one write: a client blocked in recv() wakes once
    # per answer with all of it (a head written alone would wake it with the head only).
    body = json.dumps({"instances": [[1, 2, 3]]})
    requests_ = [
        ("POST /v1/models/reg/predict", {**AUTH, "Content-Length": str(len(body))}, body, b"HTTP/1.1 200", False),
        ("POST /v1/models/reg/predict", {"Content-Type": "application/json", "Content-Length": str(len(body))}, body, b"HTTP/1.1 401", False),
        ("HEAD /v1/health", {}, "", b"HTTP/1.1 200", True),
        ("OPTIONS /v1/models/reg/predict", {}, "", b"HTTP/1.1 204", False),
        ("GET /v1/health", {}, "", b"HTTP/1.1 200", False),
    ]
    with socket.create_connection(("127.0.0.1", _port(srv)), timeout=60) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(10):
            for line, headers, text, status, head_only in requests_:
                head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                sock.sendall(f"{line} HTTP/1.1\r\nHost: x\r\n{head}\r\n{text}".encode())
                first = sock.recv(1 << 20)
                assert first.startswith(status), first[:200]
                got, length = _head_and_length(first)
                assert b"\r\nX-Request-Id: local-" in got  # the handler's spelling, not lower-cased
                assert len(first) == (len(got) + 4 if head_only else length), f"{line}: the first read held {len(first)} bytes: {first!r}"


def test_concurrent_requests_each_get_their_own_answer(srv: Server) -> None:
    # Each pool thread has its own resolver and Powertools' current event is per thread: under
    # load, no request sees another's body, path, credentials or request id.
    def one(i: int) -> None:
        with requests.Session() as s:
            for j in range(15):
                n = i * 100 + j
                if j % 3 == 0:
                    r = s.post(srv.url + "/v1/models/reg/predict", json={"instances": [[n, 0, 0]] * (1 + j % 4)}, headers=AUTH, timeout=60)
                    assert r.status_code == 200 and r.json()["predictions"] == pytest.approx([n + 0.5] * (1 + j % 4))
                elif j % 3 == 1:
                    r = s.get(srv.url + f"/v1/models/nope-{n}", headers=AUTH, timeout=60)
                    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
                    assert f"nope-{n}" in r.json()["error"]["message"]
                else:
                    r = s.post(srv.url + "/v1/models/reg/predict", json={"instances": [[1, 2, 3]]}, headers={"Authorization": f"Bearer wrong-{n}"}, timeout=60)
                    assert r.status_code == 401
                assert r.json().get("error", {}).get("request_id", r.headers["X-Request-Id"]) == r.headers["X-Request-Id"]

    with ThreadPoolExecutor(16) as pool:
        for f in [pool.submit(one, i) for i in range(16)]:
            f.result()


def test_a_hung_endpoint_holds_only_the_request_waiting_for_it(srv: Server, http_dir: Path) -> None:
    c = srv.client(KEY)
    wait_for(lambda: c.route("hang", mode="sync", records=1)["route"] == "endpoint", timeout_s=120, interval_s=0.2)
    result: dict[str, Any] = {}

    def hung() -> None:
        r = requests.post(srv.url + "/v1/models/hang/predict", json={"instances": [[1, 2, 3]]}, headers=AUTH, timeout=120)
        result["status"], result["body"] = r.status_code, r.json()

    waiting = threading.Thread(target=hung, daemon=True)
    waiting.start()
    wait_for(lambda: (http_dir / "started").exists(), timeout_s=60)  # the model process holds it now
    # Health and an inline prediction answer while the endpoint call still hangs.
    assert requests.get(srv.url + "/v1/health", timeout=20).json()["status"] == "ok"
    r = requests.post(srv.url + "/v1/models/reg/predict", json={"instances": [[1, 0, 0]]}, headers=AUTH, timeout=20)
    assert r.status_code == 200 and r.json()["predictions"] == pytest.approx([1.5])
    assert waiting.is_alive() and not result
    (http_dir / "release").write_text("go")
    waiting.join(timeout=60)
    assert result["status"] == 200 and result["body"]["predictions"] == [7.0] and result["body"]["route"] == "endpoint"
