"""The demo's serverless model under `router serve`, over real HTTP: /route shows the serverless
candidate with its cost, sync predictions are answered through the emulated serverless endpoint
(the model server starts on the first call, a cold start, and stops when idle), on one-shot
connections and on one keep-alive connection."""

from __future__ import annotations

import http.client
import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import ALICE, Server, wait_for

pytestmark = pytest.mark.e2e

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
HEADERS = {"Authorization": f"Bearer {ALICE}", "Content-Type": "application/json"}
# Long enough that back-to-back requests find the model server up on a loaded machine; the test
# waits for the scale to zero by polling, never by sleeping a fixed time.
IDLE_S = "10"


@pytest.fixture(scope="module")
def serverless_server(demo_dir: Path) -> Iterator[Server]:
    srv = Server(demo_dir / "operator.yaml", args=("--serverless-idle-s", IDLE_S)).start()
    # router serve listens at once; the endpoint is Creating until its model folder is verified
    # (as SageMaker's is for minutes): slower on a loaded machine, so wait for InService.
    wait_for(lambda: _listed(srv.url)["iris-serverless"]["serverless_status"] == "InService", timeout_s=120)
    yield srv
    srv.stop()


def post(url: str, body: Any) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers=HEADERS)
    with urllib.request.urlopen(req, timeout=120) as r:  # one connection per request
        return r.status, json.loads(r.read())


def get(url: str) -> dict[str, Any]:
    req = urllib.request.Request(url, headers=HEADERS)
    with urllib.request.urlopen(req, timeout=60) as r:
        return dict(json.loads(r.read()))


def _listed(url: str) -> dict[str, Any]:
    return {m["name"]: m for m in get(url + "/v1/models")["models"]}


def serverless_candidate(url: str) -> dict[str, Any]:
    _, d = post(url + "/v1/models/iris-serverless/route", {"mode": "sync", "records": 3})
    [c] = [c for c in d["candidates"] if c["route"] == "serverless"]
    return {**c, "decision": d}


def test_route_shows_the_serverless_candidate_with_its_cost(serverless_server: Server) -> None:
    url = serverless_server.url
    listed = {m["name"]: m for m in get(url + "/v1/models")["models"]}
    assert "serverless" in listed["iris-serverless"]["routes"]
    assert listed["iris-serverless"]["serverless_status"] == "InService"
    detail = get(url + "/v1/models/iris-serverless")
    assert detail["serverless"] == {"name": "iris-serverless-local", "memory_mb": 1024, "max_concurrency": 2}
    c = serverless_candidate(url)
    assert c["feasible"] and c["estimates"]["cost_usd"] > 0
    d = c["decision"]
    assert d["route"] == "serverless" and d["estimates"]["cost_usd"] == c["estimates"]["cost_usd"]
    assert "on iris-serverless-local (1024 MB)" in d["reason"] and "not inline: in-process runs disabled" in d["reason"]


def test_serverless_answers_sync_requests_cold_then_warm_then_cold_after_idle(serverless_server: Server) -> None:
    url = serverless_server.url
    _, inline = post(url + "/v1/models/iris/predict", {"instances": ROWS})
    assert inline["route"] == "inline"

    # Nothing has called the serverless endpoint yet: the first request is a cold start.
    assert "cold start" in serverless_candidate(url)["decision"]["reason"]
    status, first = post(url + "/v1/models/iris-serverless/predict", {"instances": ROWS})
    assert status == 200 and first["route"] == "serverless"
    assert first["predictions"] == inline["predictions"]  # the same forest, through the model server
    assert "cold start" in first["decision"]["reason"]

    # One keep-alive connection: every request reaches the running model server, no cold start.
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    try:
        for _ in range(5):
            conn.request("POST", "/v1/models/iris-serverless/predict", json.dumps({"instances": ROWS}), HEADERS)
            r = conn.getresponse()
            body = json.loads(r.read())
            assert r.status == 200 and r.getheader("Connection", "").lower() != "close"
            assert body["route"] == "serverless" and body["predictions"] == inline["predictions"]
            assert "warm: " in body["decision"]["reason"], body["decision"]["reason"]
    finally:
        conn.close()

    # Idle: the endpoint scales to zero and routing counts the cold start again.
    wait_for(lambda: "cold start" in serverless_candidate(url)["decision"]["reason"], timeout_s=120, interval_s=0.5)
    status, again = post(url + "/v1/models/iris-serverless/predict", {"instances": ROWS})
    assert status == 200 and again["route"] == "serverless" and "cold start" in again["decision"]["reason"]
    assert again["predictions"] == inline["predictions"]
